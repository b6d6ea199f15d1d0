/*
 * spool_fixture: what the spool's unit tests (test_spool*.c) share: a spool
 * in a directory of its own, objects to store, and the spool's index and
 * files read back without the spool.
 *
 * The tests check what is on disk, not only what the API says: the
 * fixture computes each object's BLAKE2b-256 itself (libsodium), reads the
 * files back, and queries spool.db with its own sqlite3 connection.
 *
 * Failure paths (limits, aborts, recovery of every kind of leftover, a
 * newer schema) are tested as seriously as the happy path, and so is
 * concurrency (group commit).
 *
 * Objects here are not DICOM: the spool does not parse what it stores.
 * Their first line names the instance ("SOP=1.2.3\n"), which is what the
 * reader that recovery calls (an injected parser) reads back.
 *
 * Every unit test links it (tests/unit/ files that are not tests are
 * fixtures), hence the prefix spool_fx_ on all it exports. Its checks are
 * cmocka asserts: call them from the test's thread, unless it says.
 */
#ifndef OP_SPOOL_FIXTURE_H
#define OP_SPOOL_FIXTURE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "common/spool.h"
#include "unit.h"

/* A test's spool, in its own mkdtemp directory (removed after), opened
 * with limits (none, until the test sets some). */
struct spool_fx {
	struct unit_tmp t; /* t.dir: the spool's directory */
	op_spool *sp;
	op_spool_limits limits;
};

/* cmocka's setup and teardown of each test: *state is a struct spool_fx.
 * Setup also keeps the log to warnings and errors, unless
 * OUTPOST_TEST_VERBOSE is set. */
int spool_fx_setup(void **state);
int spool_fx_teardown(void **state);

/* A test with that setup and teardown, in a CMUnitTest array (the file
 * includes <cmocka.h> first). */
#define SPOOL_FX_TEST(name) cmocka_unit_test_setup_teardown(name, spool_fx_setup, spool_fx_teardown)

/* --- objects ------------------------------------------------------------- */

/* The hash the spool names data by (BLAKE2b-256), in hex. */
void spool_fx_hash_hex(const void *data, size_t len, char out[OP_HASH_HEX + 1]);

/* Where the spool keeps the object whose hash is hash. */
void spool_fx_object_path(const struct spool_fx *f, const char *hash, char *out, size_t size);

/* Object content: "SOP=<uid>\n", then len - that bytes from seed. Called
 * from worker threads too, so it aborts instead of asserting. The caller
 * frees it. */
unsigned char *spool_fx_make_content(const char *sop, size_t len, unsigned seed);

/* spool_fx_make_content() owned by the fixture (main thread only). */
unsigned char *spool_fx_content(struct spool_fx *f, const char *sop, size_t len, unsigned seed);

/* The attributes every test instance has (study 1.2.826.0.1.1, patient
 * PID-7, CT, from STORESCU, urgent), with sop's SOP Instance UID. */
void spool_fx_fill_inst(op_instance *in, const char *sop);

/* Writes data in uneven pieces (1 byte, a few, then large ones) so both the
 * gathering buffer and the direct path are used. */
int spool_fx_write_pieces(op_spool_object *obj, const unsigned char *data, size_t len);

/* begin + write + commit. Returns the first failure. No asserts: worker
 * threads call it. */
int spool_fx_store(op_spool *sp, const unsigned char *data, size_t len, const char *sop,
		   enum op_spool_outcome *outcome, char *hash);

/* spool_fx_store() that must succeed with the given outcome. */
void spool_fx_store_ok(struct spool_fx *f, const unsigned char *data, size_t len, const char *sop,
		       enum op_spool_outcome want, char *hash);

/* Does path hold exactly len bytes of data? */
int spool_fx_file_equals(const char *path, const unsigned char *data, size_t len);

/* Does path exist (lstat)? */
int spool_fx_exists(const char *path);

/* --- the index, read with the test's own connection ---------------------- */

/* spool.db, read-write; the caller closes it. */
sqlite3 *spool_fx_db_open(const struct spool_fx *f);

/* The first column of sql's first row (arg, when not NULL, bound to ?1);
 * -1 when there is no row. */
long long spool_fx_db_int(sqlite3 *db, const char *sql, const char *arg);

/* One text column; "" when NULL, "(no row)" when there is no row. */
void spool_fx_db_text(sqlite3 *db, const char *sql, const char *arg, char *out, size_t size);

/* Rows in instances. */
long long spool_fx_rows(const struct spool_fx *f);

/* A column of sop's row, as spool_fx_db_text() and spool_fx_db_int(). */
void spool_fx_row_text(const struct spool_fx *f, const char *sop, const char *column, char *out,
		       size_t size);
long long spool_fx_row_int(const struct spool_fx *f, const char *sop, const char *column);

/* Runs sql, which must succeed. */
void spool_fx_db_exec(const struct spool_fx *f, const char *sql);

/* op_spool_get_usage() says exactly this. */
void spool_fx_assert_usage(struct spool_fx *f, uint64_t objects, uint64_t bytes, uint64_t reserved);

/* The usage the spool keeps agrees with its index. */
void spool_fx_assert_usage_matches_index(struct spool_fx *f);

/* Every row's file exists, has the row's size and hashes to its name. */
void spool_fx_assert_rows_have_files(struct spool_fx *f);

/* --- files --------------------------------------------------------------- */

/* Regular files below DIR/sub (not thread-safe; tests call it from one thread). */
size_t spool_fx_files_in(const struct spool_fx *f, const char *sub);

/* Writes data straight into DIR/rel (a file the spool did not write). */
void spool_fx_put_file(const struct spool_fx *f, const char *rel, const void *data, size_t len);

/* --- the uplink's side --------------------------------------------------- */

/* Stores len bytes as instance sop of study at priority; returns its hash. */
void spool_fx_store_study(struct spool_fx *f, const char *sop, const char *study, int priority,
			  size_t len, char *hash);

/* Claims as the uplink would at a moment when every row is due, at any
 * priority; must succeed. */
void spool_fx_claim(struct spool_fx *f, unsigned max_items, uint64_t max_bytes,
		    op_spool_item *items, unsigned *n);

/* Settles it alone with verdict v (next: when due again; error: why);
 * must succeed. */
void spool_fx_settle_one(struct spool_fx *f, const op_spool_item *it, enum op_spool_verdict v,
			 int64_t next, const char *error, int64_t now);

#endif
