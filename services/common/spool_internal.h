/*
 * spool_internal: what the spool's own files share (spool.c, spool_store.c,
 * spool_queue.c, spool_recover.c, spool_operator.c), and nothing outside
 * them may use: the API is spool.h. Names are op__spool_*.
 *
 * Locks, in the order they are taken: tx_mu (every transaction on db),
 * gc_mu (the group-commit queue and the pins), mu (usage and limits).
 */
#ifndef OP_SPOOL_INTERNAL_H
#define OP_SPOOL_INTERNAL_H

#include "common/spool.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

/* The last_error of a row quarantined because recovery found its file
 * missing: storing the same bytes again (the file is back) queues it
 * again; the operator's retry leaves it. */
#define OP__SPOOL_MISSING_REASON "spool file missing at start-up"

/* One row waiting for the group commit (see op__spool_commit_row). */
struct op__spool_pending {
	const op_instance *inst;
	const char *hash;
	uint64_t size;
	int rc;
	enum op_spool_outcome outcome;
	int may_unlink;                 /* no row held this content before the batch */
	int refuse_foreign;             /* -EPERM for another AE's bytes over an unsent row */
	char old_hash[OP_HASH_HEX + 1]; /* replaced version, if unreferenced now */
	uint64_t old_size;
	int done;
	struct op__spool_pending *next;
};

struct op_spool {
	char dir[OP_DIR_MAX];
	char db_path[PATH_MAX];
	sqlite3 *db;
	/* The operator's reads (status, queue, audit): a connection of their
	 * own, so that in WAL mode they never wait for the uplink's
	 * transactions nor make them wait, and see only committed rows. */
	sqlite3 *ro;

	pthread_mutex_t mu; /* usage, limits */
	op_spool_limits limits;
	op_spool_usage usage;

	/* Held for every transaction on db: the group-commit leader's batches,
	 * the uplink's claims and settlements, evictions. Taken before mu. */
	pthread_mutex_t tx_mu;

	pthread_mutex_t gc_mu; /* group commit queue */
	pthread_cond_t gc_cv;
	struct op__spool_pending *gc_head, *gc_tail;
	int gc_leader;
	/* Hashes of objects renamed into objects/ whose rows are not yet
	 * committed (guarded by gc_mu): their files must not be unlinked as
	 * "old versions" meanwhile. */
	struct op__spool_pin *pins;

	/* The write path's statements, prepared once (op__spool_prepare):
	 * their triggers are compiled with them, at every prepare. Used
	 * under tx_mu, like every statement on db. */
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} stmts[32];
};

/* --- spool.c: sqlite, usage and limits ----------------------------------- */

/* sqlite's result codes become negative errno codes here, once; what failed
 * is logged with the database's path. */

/* sqlite result -> negative errno (0 for OK, DONE and ROW). */
int op__spool_sql_err(int rc);

/* Logs what failed on the connection db (what: the operation) and returns
 * rc as a negative errno, -EIO when it was no error at all. */
int op__spool_fail_on(op_spool *sp, sqlite3 *db, const char *what, int rc);

/* op__spool_fail_on() the read-write connection. */
int op__spool_sql_fail(op_spool *sp, const char *what, int rc);

/* Runs sql on db; logs a failure. */
int op__spool_exec(op_spool *sp, const char *sql);

/* Runs one statement on db with arg bound to ?1; logs a failure. */
int op__spool_exec_text(op_spool *sp, const char *sql, const char *arg);

/* Binds s (NULL: SQL NULL), which must outlive the statement's use. */
int op__spool_bind_text(sqlite3_stmt *st, int i, const char *s);

/* The statement for sql (a string literal: it is cached by its address),
 * prepared on db at its first use; give it back with op__spool_done()
 * instead of sqlite3_finalize(). Returns sqlite's code. Caller holds
 * tx_mu (or is alone on sp, as recovery is). */
int op__spool_prepare(op_spool *sp, const char *sql, sqlite3_stmt **st);

/* Resets a statement of op__spool_prepare() for its next use. */
void op__spool_done(sqlite3_stmt *st);

/* Reads the usage again from the rows (another process may have changed
 * them). */
int op__spool_load_usage(op_spool *sp);

/* Holds len more bytes against the limits, evicting sent objects to make
 * room if need be (then it takes tx_mu: the caller holds no lock of the
 * spool); with len 0, asks whether anything fits. -EDQUOT when it does
 * not. */
int op__spool_reserve(op_spool *sp, uint64_t len);

/* Gives back what op__spool_reserve() held. */
void op__spool_release(op_spool *sp, uint64_t len);

/* Sets an instance's state, attempts, next attempt and last error to the
 * summary of its deliveries (spool.c's schema comment); state_changed_at
 * moves only when the state does. Inside the caller's transaction. */
int op__spool_refresh(op_spool *sp, int64_t id, int64_t now);

/* Steps st to its end, collecting its first column (ids) into *ids
 * (malloc'd, the caller frees) and *n. */
int op__spool_step_ids(op_spool *sp, sqlite3_stmt *st, int64_t **ids, size_t *n);

/* Adds the deliveries in->destinations names (queued) for instance id;
 * one already there is kept. Inside the caller's transaction. */
int op__spool_add_deliveries(op_spool *sp, int64_t id, const op_instance *in, int64_t now);

/* --- spool_store.c: the receiver's side ---------------------------------- */

/* Commits p's row in the next group commit (recovery indexes orphans with
 * it too) and waits until it is done; takes gc_mu and tx_mu. Returns
 * p->rc. */
int op__spool_commit_row(op_spool *sp, struct op__spool_pending *p);

/* Does any row name hash? (-1 when the query fails: keep the file.)
 * Caller holds tx_mu. */
int op__spool_hash_in_use(op_spool *sp, const char *hash);

/* n bytes as 2n lowercase hex digits and a NUL, into out. */
void op__spool_hex(const unsigned char *in, size_t n, char *out);

/* --- spool_queue.c: the uplink's side ------------------------------------ */

/* Evicts sent objects, oldest sent first, while they take more than
 * keep_sent or until want bytes are freed. Caller holds tx_mu. */
int op__spool_evict(op_spool *sp, uint64_t keep_sent, uint64_t want, unsigned *n_out,
		    uint64_t *freed);

/* --- spool_encoding.c: encoded copies ------------------------------------ */

/* Deletes the encodings of hash inside the caller's transaction, adding
 * the copies' bytes to *freed; with only_when_sent, only the copies, and
 * only once every instance row naming hash is 'sent' (no delivery needs a
 * copy any more). 1 when a copy's file is to go (op__spool_encoding_unlink
 * after the commit), 0 when none is. Caller holds tx_mu. */
int op__spool_encoding_forget(op_spool *sp, const char *hash, int only_when_sent, uint64_t *freed);

/* Removes the copy of hash and takes freed off the usage. */
void op__spool_encoding_unlink(op_spool *sp, const char *hash, uint64_t freed);

/* Does a copy row name hash? (-1 when the query fails.) */
int op__spool_encoding_known(op_spool *sp, const char *hash);

/* --- spool_operator.c: the operator's side ------------------------------- */

/* Adds to a counter inside the caller's transaction. */
int op__spool_counter_add(op_spool *sp, const char *name, uint64_t delta);

/* --- spool_query.c --- */

/* Writes instance id's query index row (in the caller's transaction). */
int op__spool_qr_put(op_spool *sp, int64_t id, const op_instance *in);

/* Indexes the instances that have no index row (a spool from an older
 * release), reading their files with read; logs progress. Takes tx_mu. */
int op__spool_qr_backfill(op_spool *sp, op_spool_reader read, void *ctx, unsigned *indexed);

#endif
