/*
 * spool: opening the spool (its tree of directories and its sqlite schema),
 * its usage against the limits, and the sqlite helpers its other files
 * share (spool_internal.h). The rest of the spool.h API is in
 * spool_store.c (the receiver's side: writing objects, group commit),
 * spool_queue.c (the uplink's side), spool_recover.c (start-up) and
 * spool_operator.c (the console's and the metrics' side).
 */
#include "common/file.h"
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

static const char schema_v1[] =
	"CREATE TABLE instances ("
	" id INTEGER PRIMARY KEY,"
	" sop_instance_uid TEXT NOT NULL UNIQUE,"
	" sop_class_uid TEXT NOT NULL,"
	" study_uid TEXT NOT NULL,"
	" series_uid TEXT NOT NULL,"
	" transfer_syntax TEXT NOT NULL,"
	" patient_id TEXT NOT NULL DEFAULT '',"
	" modality TEXT NOT NULL DEFAULT '',"
	" calling_aet TEXT NOT NULL DEFAULT '',"
	" size INTEGER NOT NULL,"
	" hash TEXT NOT NULL,"
	" received_at INTEGER NOT NULL,"
	" priority INTEGER NOT NULL DEFAULT 1,"
	" state TEXT NOT NULL DEFAULT 'queued'"
	"  CHECK (state IN ('queued', 'sending', 'sent', 'quarantined')),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt_at INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" state_changed_at INTEGER NOT NULL);"
	/* The uplink's queue order: urgent first, then oldest. */
	"CREATE INDEX instances_queue ON instances (state, priority DESC, received_at);"
	"CREATE INDEX instances_by_study ON instances (study_uid, state);"
	/* Eviction order of the sent cache. */
	"CREATE INDEX instances_by_change ON instances (state, state_changed_at);"
	"CREATE INDEX instances_by_hash ON instances (hash);";

/*
 * Schema 2 (issue 16): one row per (instance, destination) delivery, the
 * truth of what each destination holds. The instance's own state,
 * attempts, next attempt and last error become a summary of its
 * deliveries (op__spool_refresh), so that what reads instances (the
 * sent-cache eviction, the operator's study list) needs no change:
 * 'sending' or 'queued' while any delivery still moves, else
 * 'quarantined' when any was refused, else 'sent' (every destination holds
 * it, or it was routed nowhere). study_uid, priority and received_at are
 * copied so that a destination's queue is claimed from one index.
 */
static const char schema_v2_deliveries[] =
	"CREATE TABLE deliveries ("
	" instance_id INTEGER NOT NULL REFERENCES instances (id),"
	" destination TEXT NOT NULL,"
	" study_uid TEXT NOT NULL,"
	" priority INTEGER NOT NULL,"
	" received_at INTEGER NOT NULL,"
	" state TEXT NOT NULL DEFAULT 'queued'"
	"  CHECK (state IN ('queued', 'sending', 'sent', 'quarantined')),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_attempt_at INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" state_changed_at INTEGER NOT NULL,"
	" PRIMARY KEY (instance_id, destination)) WITHOUT ROWID;"
	"CREATE INDEX deliveries_queue ON deliveries"
	" (destination, state, priority DESC, received_at);"
	"CREATE INDEX deliveries_by_study ON deliveries (destination, study_uid, state);";

/* Schema 1 -> 2, in the transaction that opens the spool: every instance
 * had one destination, the cloud, and its row was its delivery. */
static const char upgrade_v1_v2[] =
	"INSERT INTO deliveries (instance_id, destination, study_uid, priority, received_at,"
	" state, attempts, next_attempt_at, last_error, state_changed_at)"
	" SELECT id, 'cloud', study_uid, priority, received_at, state, attempts,"
	" next_attempt_at, last_error, state_changed_at FROM instances;";

/*
 * Tables for the operator's side, added without a schema version: an older
 * release that opens this database ignores them (an update rolled back
 * keeps its spool; issue 7). IF NOT EXISTS: run at every open.
 */
static const char schema_operator[] =
	/* Monotonic counters (Prometheus' *_total), kept across restarts. */
	"CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL) WITHOUT ROWID;"
	/* What the operator set through the console (pause, shaping). */
	"CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY,"
	" value TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL,"
	" who TEXT NOT NULL, origin TEXT NOT NULL, action TEXT NOT NULL,"
	" detail TEXT NOT NULL);"
	/* The deliveries ever quarantined: the quarantined counters count
	 * an instance once per destination, however often a retry
	 * quarantines it again. */
	"CREATE TABLE IF NOT EXISTS quarantined_once (destination TEXT NOT NULL,"
	" sop_instance_uid TEXT NOT NULL, PRIMARY KEY (destination, sop_instance_uid))"
	" WITHOUT ROWID;"
	/* What the uplink made of an object for a transfer syntax
	 * (spool_encoding.c): a copy (its hash and size) or the original to be
	 * sent (and why). Keyed by the object's hash, as its file is. */
	"CREATE TABLE IF NOT EXISTS encodings (hash TEXT NOT NULL, syntax TEXT NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN ('copy', 'original')), reason TEXT,"
	" copy_hash TEXT, size INTEGER NOT NULL DEFAULT 0, encode_ms INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (hash, syntax)) WITHOUT ROWID;"
	/* What query/retrieve finds an instance by (spool_query.c), one row
	 * per instance, written with it (the instance's UIDs, patient and
	 * modality copied, for the triggers below); an older spool's rows are
	 * indexed by op_spool_recover. The trigger drops the row with its
	 * instance (eviction, discard), in an older release's transactions
	 * too. */
	"CREATE TABLE IF NOT EXISTS qr_index (instance_id INTEGER PRIMARY KEY,"
	" study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, patient_id TEXT NOT NULL,"
	" modality TEXT NOT NULL,"
	" charset TEXT NOT NULL, patient_name TEXT NOT NULL, patient_birth_date TEXT NOT NULL,"
	" patient_sex TEXT NOT NULL, study_date TEXT NOT NULL, study_time TEXT NOT NULL,"
	" accession_number TEXT NOT NULL, study_id TEXT NOT NULL,"
	" study_description TEXT NOT NULL, referring_physician TEXT NOT NULL,"
	" series_number TEXT NOT NULL, series_description TEXT NOT NULL,"
	" body_part TEXT NOT NULL, instance_number TEXT NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS qr_index_gone AFTER DELETE ON instances"
	" BEGIN DELETE FROM qr_index WHERE instance_id = old.id; END;"
	"CREATE INDEX IF NOT EXISTS instances_by_patient ON instances (patient_id);"
	"CREATE INDEX IF NOT EXISTS qr_by_accession ON qr_index (accession_number);"
	/* A row per series and per study, kept by the index's triggers: a
	 * study-level C-FIND reads one row a study instead of grouping its
	 * instances (a study's attributes: its latest instance's). */
	"CREATE TABLE IF NOT EXISTS qr_series (series_uid TEXT PRIMARY KEY,"
	" study_uid TEXT NOT NULL, modality TEXT NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS qr_series_by_study ON qr_series (study_uid, modality);"
	"CREATE TABLE IF NOT EXISTS qr_studies (study_uid TEXT PRIMARY KEY,"
	" patient_id TEXT NOT NULL, charset TEXT NOT NULL, patient_name TEXT NOT NULL,"
	" patient_birth_date TEXT NOT NULL, patient_sex TEXT NOT NULL, study_date TEXT NOT NULL,"
	" study_time TEXT NOT NULL, accession_number TEXT NOT NULL, study_id TEXT NOT NULL,"
	" study_description TEXT NOT NULL, referring_physician TEXT NOT NULL,"
	" n_series INTEGER NOT NULL, n_instances INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS qr_studies_by_patient ON qr_studies (patient_id);"
	"CREATE INDEX IF NOT EXISTS qr_studies_by_date ON qr_studies (study_date);"
	"CREATE TRIGGER IF NOT EXISTS qr_index_in AFTER INSERT ON qr_index BEGIN"
	" INSERT INTO qr_series VALUES (new.series_uid, new.study_uid, new.modality, 1)"
	"  ON CONFLICT DO UPDATE SET n = n + 1, modality = excluded.modality;"
	" INSERT INTO qr_studies VALUES (new.study_uid, new.patient_id, new.charset,"
	"  new.patient_name, new.patient_birth_date, new.patient_sex, new.study_date,"
	"  new.study_time, new.accession_number, new.study_id, new.study_description,"
	"  new.referring_physician,"
	"  (SELECT COUNT(*) FROM qr_series WHERE study_uid = new.study_uid), 1)"
	"  ON CONFLICT DO UPDATE SET patient_id = excluded.patient_id, charset = excluded.charset,"
	"  patient_name = excluded.patient_name,"
	"  patient_birth_date = excluded.patient_birth_date, patient_sex = excluded.patient_sex,"
	"  study_date = excluded.study_date, study_time = excluded.study_time,"
	"  accession_number = excluded.accession_number, study_id = excluded.study_id,"
	"  study_description = excluded.study_description,"
	"  referring_physician = excluded.referring_physician, n_series = excluded.n_series,"
	"  n_instances = n_instances + 1;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS qr_index_out AFTER DELETE ON qr_index BEGIN"
	" UPDATE qr_series SET n = n - 1 WHERE series_uid = old.series_uid;"
	" DELETE FROM qr_series WHERE series_uid = old.series_uid AND n <= 0;"
	" UPDATE qr_studies SET n_instances = n_instances - 1,"
	"  n_series = (SELECT COUNT(*) FROM qr_series WHERE study_uid = old.study_uid)"
	"  WHERE study_uid = old.study_uid;"
	" DELETE FROM qr_studies WHERE study_uid = old.study_uid AND n_instances <= 0;"
	" END;"
	/* Storage commitment requests until reported, then kept for the
	 * record (spool_commit.c). result NULL: not decided yet. */
	"CREATE TABLE IF NOT EXISTS commitments (id INTEGER PRIMARY KEY,"
	" transaction_uid TEXT NOT NULL, calling_aet TEXT NOT NULL, cloud INTEGER NOT NULL,"
	" received_at INTEGER NOT NULL, deadline INTEGER NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN ('pending', 'reported')),"
	" attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT, reported_at INTEGER);"
	"CREATE INDEX IF NOT EXISTS commitments_due ON commitments (state, next_attempt_at);"
	"CREATE TABLE IF NOT EXISTS commitment_items (commitment_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL, sop_class_uid TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,"
	" result INTEGER, PRIMARY KEY (commitment_id, seq)) WITHOUT ROWID;"
	/* A destination's queue in claim order, of what is due: a delivery
	 * put off (a retry's back-off) waits in deliveries_later, and a claim
	 * first sets the next attempt of those whose time has come back to 0
	 * (spool_queue.c), so that no claim passes over rows not yet due. */
	"CREATE INDEX IF NOT EXISTS deliveries_ready ON deliveries"
	" (destination, priority DESC, received_at)"
	" WHERE state = 'queued' AND next_attempt_at = 0;"
	"CREATE INDEX IF NOT EXISTS deliveries_later ON deliveries (destination, next_attempt_at)"
	" WHERE state = 'queued' AND next_attempt_at > 0;";

/*
 * What the operator's status counts, kept by triggers in the transactions
 * that change it (issue 19: /api/status never scans the instances). Per
 * scope ('' for the instances' summaries, else a destination's
 * deliveries) and state: instances and bytes; the studies with something
 * waiting (queued or sending) and how many rows of each. A delivery's
 * bytes are its instance's size (deliveries go before their instance, in
 * eviction and discard alike). Older releases' writes keep them too: the
 * triggers live in the database.
 */
static const char schema_tallies[] =
	"CREATE TABLE IF NOT EXISTS tallies (scope TEXT NOT NULL, state TEXT NOT NULL,"
	" instances INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (scope, state))"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS waiting_studies (scope TEXT NOT NULL,"
	" study_uid TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (scope, study_uid))"
	" WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS instances_waiting ON instances (received_at)"
	" WHERE state IN ('queued', 'sending');"
	"CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (destination, received_at)"
	" WHERE state IN ('queued', 'sending');"
	"CREATE TRIGGER IF NOT EXISTS tally_instance_in AFTER INSERT ON instances BEGIN"
	" INSERT INTO tallies VALUES ('', new.state, 1, new.size) ON CONFLICT DO UPDATE"
	"  SET instances = instances + 1, bytes = bytes + excluded.bytes;"
	" INSERT INTO waiting_studies SELECT '', new.study_uid, 1"
	"  WHERE new.state IN ('queued', 'sending') ON CONFLICT DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS tally_instance_out AFTER DELETE ON instances BEGIN"
	" UPDATE tallies SET instances = instances - 1, bytes = bytes - old.size"
	"  WHERE scope = '' AND state = old.state;"
	" UPDATE waiting_studies SET n = n - 1 WHERE scope = '' AND study_uid = old.study_uid"
	"  AND old.state IN ('queued', 'sending');"
	" DELETE FROM waiting_studies WHERE scope = '' AND study_uid = old.study_uid AND n <= 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS tally_instance_change AFTER UPDATE OF state, size, study_uid"
	" ON instances WHEN old.state != new.state OR old.size != new.size"
	" OR old.study_uid != new.study_uid BEGIN"
	" UPDATE tallies SET instances = instances - 1, bytes = bytes - old.size"
	"  WHERE scope = '' AND state = old.state;"
	" INSERT INTO tallies VALUES ('', new.state, 1, new.size) ON CONFLICT DO UPDATE"
	"  SET instances = instances + 1, bytes = bytes + excluded.bytes;"
	/* The size its deliveries count changes with it. */
	" UPDATE tallies SET bytes = bytes + (new.size - old.size) * (SELECT COUNT(*)"
	"  FROM deliveries d WHERE d.instance_id = new.id AND d.destination = tallies.scope"
	"  AND d.state = tallies.state) WHERE scope != '' AND new.size != old.size;"
	" UPDATE waiting_studies SET n = n - 1 WHERE scope = '' AND study_uid = old.study_uid"
	"  AND old.state IN ('queued', 'sending');"
	" DELETE FROM waiting_studies WHERE scope = '' AND study_uid = old.study_uid AND n <= 0;"
	" INSERT INTO waiting_studies SELECT '', new.study_uid, 1"
	"  WHERE new.state IN ('queued', 'sending') ON CONFLICT DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS tally_delivery_in AFTER INSERT ON deliveries BEGIN"
	" INSERT INTO tallies VALUES (new.destination, new.state, 1,"
	"  (SELECT size FROM instances WHERE id = new.instance_id)) ON CONFLICT DO UPDATE"
	"  SET instances = instances + 1, bytes = bytes + excluded.bytes;"
	" INSERT INTO waiting_studies SELECT new.destination, new.study_uid, 1"
	"  WHERE new.state IN ('queued', 'sending') ON CONFLICT DO UPDATE SET n = n + 1;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS tally_delivery_out AFTER DELETE ON deliveries BEGIN"
	" UPDATE tallies SET instances = instances - 1, bytes = bytes -"
	"  (SELECT size FROM instances WHERE id = old.instance_id)"
	"  WHERE scope = old.destination AND state = old.state;"
	" UPDATE waiting_studies SET n = n - 1 WHERE scope = old.destination"
	"  AND study_uid = old.study_uid AND old.state IN ('queued', 'sending');"
	" DELETE FROM waiting_studies WHERE scope = old.destination AND study_uid = old.study_uid"
	"  AND n <= 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS tally_delivery_change AFTER UPDATE OF state, study_uid"
	" ON deliveries WHEN old.state != new.state OR old.study_uid != new.study_uid BEGIN"
	" UPDATE tallies SET instances = instances - 1, bytes = bytes -"
	"  (SELECT size FROM instances WHERE id = old.instance_id)"
	"  WHERE scope = old.destination AND state = old.state;"
	" INSERT INTO tallies VALUES (new.destination, new.state, 1,"
	"  (SELECT size FROM instances WHERE id = new.instance_id)) ON CONFLICT DO UPDATE"
	"  SET instances = instances + 1, bytes = bytes + excluded.bytes;"
	" UPDATE waiting_studies SET n = n - 1 WHERE scope = old.destination"
	"  AND study_uid = old.study_uid AND old.state IN ('queued', 'sending');"
	" DELETE FROM waiting_studies WHERE scope = old.destination AND study_uid = old.study_uid"
	"  AND n <= 0;"
	" INSERT INTO waiting_studies SELECT new.destination, new.study_uid, 1"
	"  WHERE new.state IN ('queued', 'sending') ON CONFLICT DO UPDATE SET n = n + 1;"
	" END;";

/*
 * A row a study, per scope as in tallies: how many of its rows are in each
 * state and when the last of them changed. The console's study list
 * (op_spool_studies) picks its page and counts its total from it, most
 * recently changed first, instead of grouping every row of the spool.
 * A study's changed_at follows its rows: raised by a row's change, and
 * read again from the study's rows (by their study index) when the row
 * that set it goes or moves back in time.
 */
static const char schema_study_tallies[] =
	"CREATE TABLE IF NOT EXISTS study_tallies (scope TEXT NOT NULL, study_uid TEXT NOT NULL,"
	" queued INTEGER NOT NULL, sending INTEGER NOT NULL, sent INTEGER NOT NULL,"
	" quarantined INTEGER NOT NULL, changed_at INTEGER NOT NULL,"
	" PRIMARY KEY (scope, study_uid)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS study_tallies_by_change"
	" ON study_tallies (scope, changed_at DESC, study_uid);";

/* A row counted into its study's tally, and counted out of it (the
 * study's changed_at read again from its rows when this row set it). */
#define STUDY_TALLY_IN                                                                             \
	" INSERT INTO study_tallies VALUES (%3$s, new.study_uid, new.state = 'queued',"            \
	"  new.state = 'sending', new.state = 'sent', new.state = 'quarantined',"                  \
	"  new.state_changed_at) ON CONFLICT DO UPDATE SET"                                        \
	"  queued = queued + excluded.queued, sending = sending + excluded.sending,"               \
	"  sent = sent + excluded.sent, quarantined = quarantined + excluded.quarantined,"         \
	"  changed_at = MAX(changed_at, excluded.changed_at);"

#define STUDY_TALLY_OUT                                                                            \
	" UPDATE study_tallies SET queued = queued - (old.state = 'queued'),"                      \
	"  sending = sending - (old.state = 'sending'), sent = sent - (old.state = 'sent'),"       \
	"  quarantined = quarantined - (old.state = 'quarantined'),"                               \
	"  changed_at = CASE WHEN changed_at > old.state_changed_at THEN changed_at"               \
	"  ELSE COALESCE((SELECT MAX(state_changed_at) FROM %2$s r"                                \
	"  WHERE r.study_uid = old.study_uid%5$s), 0) END"                                         \
	"  WHERE scope = %4$s AND study_uid = old.study_uid;"                                      \
	" DELETE FROM study_tallies WHERE scope = %4$s AND study_uid = old.study_uid"              \
	"  AND queued + sending + sent + quarantined <= 0;"

/*
 * The triggers of study_tallies on one table (%1$s their name's part, %2$s
 * the table, %3$s and %4$s the scope of its new and old rows, %5$s what
 * keeps a study's rows to the old row's scope, %6$s what says the scope
 * did not change). _move is the common change (same study, later): one
 * update; _change any other (the old row's study counted again).
 */
static const char study_tally_triggers[] =
	"CREATE TRIGGER IF NOT EXISTS study_tally_%1$s_in AFTER INSERT ON %2$s BEGIN" STUDY_TALLY_IN
	" END;"
	"CREATE TRIGGER IF NOT EXISTS study_tally_%1$s_out AFTER DELETE ON %2$s "
	"BEGIN" STUDY_TALLY_OUT " END;"
	"CREATE TRIGGER IF NOT EXISTS study_tally_%1$s_move AFTER UPDATE OF state, study_uid,"
	" state_changed_at ON %2$s WHEN old.study_uid = new.study_uid%6$s"
	" AND new.state_changed_at >= old.state_changed_at BEGIN"
	" UPDATE study_tallies SET"
	"  queued = queued - (old.state = 'queued') + (new.state = 'queued'),"
	"  sending = sending - (old.state = 'sending') + (new.state = 'sending'),"
	"  sent = sent - (old.state = 'sent') + (new.state = 'sent'),"
	"  quarantined = quarantined - (old.state = 'quarantined') + (new.state = 'quarantined'),"
	"  changed_at = MAX(changed_at, new.state_changed_at)"
	"  WHERE scope = %3$s AND study_uid = new.study_uid;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS study_tally_%1$s_change AFTER UPDATE OF state, study_uid,"
	" state_changed_at ON %2$s WHEN NOT (old.study_uid = new.study_uid%6$s"
	" AND new.state_changed_at >= old.state_changed_at) BEGIN" STUDY_TALLY_OUT STUDY_TALLY_IN
	" END;";

static const char study_tallies_count[] =
	"INSERT INTO study_tallies SELECT '', study_uid, SUM(state = 'queued'),"
	" SUM(state = 'sending'), SUM(state = 'sent'), SUM(state = 'quarantined'),"
	" MAX(state_changed_at) FROM instances GROUP BY study_uid;"
	"INSERT INTO study_tallies SELECT destination, study_uid, SUM(state = 'queued'),"
	" SUM(state = 'sending'), SUM(state = 'sent'), SUM(state = 'quarantined'),"
	" MAX(state_changed_at) FROM deliveries GROUP BY destination, study_uid;";

/* The tallies of a spool that had none (a new one, or an older release's):
 * counted once, in the transaction that creates the triggers. */
static const char tallies_count[] =
	"INSERT INTO tallies SELECT '', state, COUNT(*), COALESCE(SUM(size), 0) FROM instances"
	" GROUP BY state;"
	"INSERT INTO tallies SELECT d.destination, d.state, COUNT(*), COALESCE(SUM(i.size), 0)"
	" FROM deliveries d JOIN instances i ON i.id = d.instance_id"
	" GROUP BY d.destination, d.state;"
	"INSERT INTO waiting_studies SELECT '', study_uid, COUNT(*) FROM instances"
	" WHERE state IN ('queued', 'sending') GROUP BY study_uid;"
	"INSERT INTO waiting_studies SELECT destination, study_uid, COUNT(*) FROM deliveries"
	" WHERE state IN ('queued', 'sending') GROUP BY destination, study_uid;";

/* --- sqlite, for every part of the spool --------------------------------- */

int op__spool_sql_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW: return 0;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH: return -EACCES;
	default: return -EIO;
	}
}

int op__spool_fail_on(op_spool *sp, sqlite3 *db, const char *what, int rc)
{
	op_error("spool.sql", "db=%s op=%s error=\"%s\"", sp->db_path, what, sqlite3_errmsg(db));
	return op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
}

int op__spool_sql_fail(op_spool *sp, const char *what, int rc)
{
	return op__spool_fail_on(sp, sp->db, what, rc);
}

int op__spool_exec(op_spool *sp, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(sp->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		op_error("spool.sql", "db=%s error=\"%s\" sql=\"%.60s\"", sp->db_path,
			 msg ? msg : sqlite3_errstr(rc), sql);
		sqlite3_free(msg);
	}
	return op__spool_sql_err(rc);
}

int op__spool_exec_text(op_spool *sp, const char *sql, const char *arg)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, arg);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "exec", rc);
}

int op__spool_prepare(op_spool *sp, const char *sql, sqlite3_stmt **st)
{
	size_t n = sizeof(sp->stmts) / sizeof(sp->stmts[0]), i;

	for (i = 0; i < n && sp->stmts[i].sql; i++) {
		if (sp->stmts[i].sql == sql) {
			*st = sp->stmts[i].st;
			return SQLITE_OK;
		}
	}
	if (i == n) /* more call sites than slots: a programming error */
		return SQLITE_MISUSE;
	int rc = sqlite3_prepare_v3(sp->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	if (rc == SQLITE_OK) {
		sp->stmts[i].sql = sql;
		sp->stmts[i].st = *st;
	}
	return rc;
}

void op__spool_done(sqlite3_stmt *st)
{
	if (!st)
		return;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int op__spool_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* --- opening ------------------------------------------------------------- */

/* mkdir that tolerates an existing directory; fsyncs the parent when it
 * created something, so the tree survives a power cut. Group-writable
 * unless the umask says otherwise: on the appliance the receiver and the
 * uplink are two users sharing the spool's group (UMask=0007, the top
 * folder setgid; docs/SECURITY.md). */
static int make_dir(const char *path, const char *parent)
{
	if (mkdir(path, 0770) == 0)
		return op_fsync_dir(parent);
	return errno == EEXIST ? 0 : -errno;
}

static int make_tree(op_spool *sp)
{
	char path[PATH_MAX], objects[OP_DIR_MAX + 16];
	int rc;

	snprintf(objects, sizeof(objects), "%s/objects", sp->dir);
	if ((rc = make_dir(sp->dir, ".")) < 0)
		return rc;
	for (const char *sub = "tmp\0objects\0damaged\0"; *sub; sub += strlen(sub) + 1) {
		snprintf(path, sizeof(path), "%s/%s", sp->dir, sub);
		if ((rc = make_dir(path, sp->dir)) < 0)
			return rc;
	}
	/* All 256 fan-out directories exist from the start, so a commit never
	 * has to create (and fsync) a directory. */
	for (int i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/%02x", objects, i);
		if ((rc = make_dir(path, objects)) < 0)
			return rc;
	}
	return 0;
}

void op_spool_object_file(const op_spool *sp, const char *hash, char *out, size_t size)
{
	snprintf(out, size, "%s/objects/%.2s/%s.dcm", sp->dir, hash, hash);
}

/* Waiting for the other service's write lock (the receiver and the uplink
 * share the database). sqlite's own busy handler sleeps 1, 2, 5, 10 ms...
 * between tries: a receiver commit that meets one uplink settlement (a
 * millisecond or two) would wait 3-8 ms, as long as storing the instance.
 * Short sleeps first, then a millisecond; BUSY after about 10 s. */
#define BUSY_SHORT_TRIES 50
#define BUSY_SHORT_US 100
#define BUSY_LONG_US 1000
#define BUSY_TIMEOUT_MS 10000

static int on_busy(void *arg, int tries)
{
	(void)arg;
	if (tries < BUSY_SHORT_TRIES) {
		usleep(BUSY_SHORT_US);
		return 1;
	}
	if ((tries - BUSY_SHORT_TRIES) * (BUSY_LONG_US / 1000) >= BUSY_TIMEOUT_MS)
		return 0;
	usleep(BUSY_LONG_US);
	return 1;
}

/* Creates a set of tallies and their triggers when absent (trigger, the
 * last of them, is not there), counting them once: drop, schema, count. */
static int open_tally_set(op_spool *sp, const char *trigger, const char *drop, const char *schema,
			  const char *count, const char *event)
{
	sqlite3_stmt *st = NULL;
	int64_t t0 = op_clock_mono_ms();
	int have = 0,
	    rc = sqlite3_prepare_v2(sp->db, "SELECT COUNT(*) FROM sqlite_master WHERE name = ?", -1,
				    &st, NULL);

	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, trigger);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		have = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return op__spool_sql_fail(sp, "tallies", rc);
	if (have)
		return 0;
	rc = op__spool_exec(sp, drop);
	if (rc == 0)
		rc = op__spool_exec(sp, schema);
	if (rc == 0)
		rc = op__spool_exec(sp, count);
	if (rc == 0)
		op_info(event, "db=%s counted=1 ms=%" PRId64, sp->db_path, op_clock_mono_ms() - t0);
	return rc;
}

/* Creates the tallies and their triggers when absent, counting them once. */
static int open_tallies(op_spool *sp)
{
	int rc =
		open_tally_set(sp, "tally_delivery_change",
			       "DROP TABLE IF EXISTS tallies; DROP TABLE IF EXISTS waiting_studies",
			       schema_tallies, tallies_count, "spool.tallies");

	char schema[16384];
	size_t n = (size_t)snprintf(schema, sizeof(schema), "%s", schema_study_tallies);

	n += (size_t)snprintf(schema + n, sizeof(schema) - n, study_tally_triggers, "instance",
			      "instances", "''", "''", "", "");
	n += (size_t)snprintf(schema + n, sizeof(schema) - n, study_tally_triggers, "delivery",
			      "deliveries", "new.destination", "old.destination",
			      " AND r.destination = old.destination",
			      " AND old.destination = new.destination");
	if (n >= sizeof(schema))
		return -ENAMETOOLONG; /* a programming error */
	if (rc == 0)
		rc = open_tally_set(sp, "study_tally_delivery_change",
				    "DROP TABLE IF EXISTS study_tallies", schema,
				    study_tallies_count, "spool.study_tallies");
	return rc;
}

static int open_db(op_spool *sp)
{
	sqlite3_stmt *st = NULL;
	int version = 0, rc;

	/* Created here rather than by sqlite (0644 less the umask), so that
	 * both users may write it: its -wal and -shm files take its mode. */
	int fd = open(sp->db_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0660);
	if (fd < 0) {
		rc = -errno;
		op_error("spool.open", "db=%s error=\"%s\"", sp->db_path, strerror(errno));
		return rc;
	}
	close(fd);
	rc = sqlite3_open_v2(sp->db_path, &sp->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		op_error("spool.open", "db=%s error=\"%s\"", sp->db_path,
			 sp->db ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc));
		return op__spool_sql_err(rc);
	}
	sqlite3_busy_handler(sp->db, on_busy, NULL);
	/* Switching a new database to WAL needs an exclusive lock, and sqlite
	 * answers BUSY at once, without its busy handler, when another process
	 * switches it at the same moment (the receiver and the uplink starting
	 * together): try again a few times. */
	for (int i = 0; i < 100; i++) {
		rc = sqlite3_exec(sp->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if ((rc & 0xff) != SQLITE_BUSY)
			break;
		usleep(10000);
	}
	if (rc != SQLITE_OK)
		return op__spool_exec(sp, "PRAGMA journal_mode=WAL"); /* logs the error */
	/* synchronous=FULL: a COMMIT is on disk when it returns, even in WAL. */
	rc = op__spool_exec(sp, "PRAGMA synchronous=FULL");
	if (rc < 0)
		return rc;
	/* The version is read inside a write transaction: the receiver and the
	 * uplink may open a new spool at the same moment, and only one of them
	 * may create the schema. */
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	rc = sqlite3_prepare_v2(sp->db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		version = sqlite3_column_int(st, 0);
		rc = 0;
	} else {
		rc = op__spool_sql_fail(sp, "user_version", rc);
	}
	sqlite3_finalize(st);
	if (rc == 0 && version > OP_SPOOL_SCHEMA_VERSION) {
		op_error("spool.open",
			 "db=%s schema=%d supported=%d reason=\"written by a newer release\"",
			 sp->db_path, version, OP_SPOOL_SCHEMA_VERSION);
		rc = -EPROTO;
	}
	if (rc == 0 && version == 0) {
		rc = op__spool_exec(sp, schema_v1);
		if (rc == 0)
			rc = op__spool_exec(sp, schema_v2_deliveries);
		if (rc == 0)
			rc = op__spool_exec(sp, "PRAGMA user_version=2");
	}
	if (rc == 0 && version == 1) {
		int64_t t0 = op_clock_mono_ms();

		rc = op__spool_exec(sp, schema_v2_deliveries);
		if (rc == 0)
			rc = op__spool_exec(sp, upgrade_v1_v2);
		if (rc == 0)
			rc = op__spool_exec(sp, "PRAGMA user_version=2");
		if (rc == 0)
			op_info("spool.upgrade", "db=%s from=1 to=2 deliveries=%d ms=%" PRId64,
				sp->db_path, sqlite3_changes(sp->db), op_clock_mono_ms() - t0);
	}
	if (rc == 0)
		rc = op__spool_exec(sp, schema_operator);
	if (rc == 0)
		rc = open_tallies(sp);
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
	return rc;
}

int op__spool_load_usage(op_spool *sp)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		sp->db,
		"SELECT COUNT(*), COALESCE(SUM(size), 0)"
		" + (SELECT COALESCE(SUM(size), 0) FROM encodings) FROM instances",
		-1, &st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		pthread_mutex_lock(&sp->mu);
		sp->usage.objects = (uint64_t)sqlite3_column_int64(st, 0);
		sp->usage.bytes = (uint64_t)sqlite3_column_int64(st, 1);
		pthread_mutex_unlock(&sp->mu);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return op__spool_sql_err(rc);
}

int op_spool_open(const char *dir, const op_spool_limits *limits, op_spool **out)
{
	op_spool *sp = calloc(1, sizeof(*sp));
	int rc;

	*out = NULL;
	if (!sp)
		return -ENOMEM;
	if (strlen(dir) >= sizeof(sp->dir)) {
		free(sp);
		return -ENAMETOOLONG;
	}
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	snprintf(sp->db_path, sizeof(sp->db_path), "%s/spool.db", dir);
	sp->limits = *limits;
	if (sodium_init() < 0) { /* picks the fastest BLAKE2b for this CPU */
		free(sp);
		return -ENOSYS;
	}
	pthread_mutex_init(&sp->mu, NULL);
	pthread_mutex_init(&sp->tx_mu, NULL);
	pthread_mutex_init(&sp->gc_mu, NULL);
	pthread_cond_init(&sp->gc_cv, NULL);
	rc = make_tree(sp);
	if (rc < 0) {
		op_error("spool.open", "dir=%s error=\"%s\"", dir, strerror(-rc));
		goto out;
	}
	rc = open_db(sp);
	if (rc == 0)
		rc = op__spool_load_usage(sp);
	if (rc == 0 &&
	    sqlite3_open_v2(sp->db_path, &sp->ro, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		op_error("spool.open", "db=%s error=\"%s\" reason=\"read connection\"", sp->db_path,
			 sp->ro ? sqlite3_errmsg(sp->ro) : "out of memory");
		rc = -EIO;
	}
	if (rc == 0)
		sqlite3_busy_handler(sp->ro, on_busy, NULL);
out:
	if (rc < 0)
		op_spool_close(sp);
	else
		*out = sp;
	return rc;
}

void op_spool_close(op_spool *sp)
{
	if (!sp)
		return;
	for (size_t i = 0; i < sizeof(sp->stmts) / sizeof(sp->stmts[0]); i++)
		sqlite3_finalize(sp->stmts[i].st);
	sqlite3_close(sp->ro);
	sqlite3_close(sp->db);
	pthread_mutex_destroy(&sp->mu);
	pthread_mutex_destroy(&sp->tx_mu);
	pthread_mutex_destroy(&sp->gc_mu);
	pthread_cond_destroy(&sp->gc_cv);
	free(sp);
}

const char *op_spool_db_path(const op_spool *sp)
{
	return sp->db_path;
}

void op_spool_get_usage(op_spool *sp, op_spool_usage *out)
{
	pthread_mutex_lock(&sp->mu);
	*out = sp->usage;
	pthread_mutex_unlock(&sp->mu);
}

void op_spool_set_limits(op_spool *sp, const op_spool_limits *limits)
{
	pthread_mutex_lock(&sp->mu);
	sp->limits = *limits;
	pthread_mutex_unlock(&sp->mu);
}

/* --- limits -------------------------------------------------------------- */

/* Would `more` bytes keep the disk above min_free_bytes? If not, *short
 * says by how much. */
static int disk_has_room(op_spool *sp, uint64_t more, uint64_t min_free, uint64_t *short_by)
{
	struct statvfs vfs;
	uint64_t avail;

	*short_by = 0;
	if (statvfs(sp->dir, &vfs) < 0)
		return 1; /* cannot tell: let write(2) report a full disk */
	avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= more && avail - more >= min_free)
		return 1;
	*short_by = more + min_free - avail;
	return 0;
}

/* Holds len more bytes against max_bytes and the disk. With len 0 it asks
 * whether there is room for anything at all. */
static int try_reserve(op_spool *sp, uint64_t len, uint64_t *over_limit, uint64_t *over_disk)
{
	uint64_t min_free, after;
	int rc = 0;

	*over_limit = *over_disk = 0;
	pthread_mutex_lock(&sp->mu);
	min_free = sp->limits.min_free_bytes;
	after = sp->usage.bytes + sp->usage.reserved + len;
	if (sp->limits.max_bytes &&
	    (after > sp->limits.max_bytes || (len == 0 && after >= sp->limits.max_bytes))) {
		*over_limit = after - sp->limits.max_bytes + 1;
		rc = -EDQUOT;
	} else {
		sp->usage.reserved += len;
	}
	pthread_mutex_unlock(&sp->mu);
	if (rc == 0 && !disk_has_room(sp, len, min_free, over_disk)) {
		pthread_mutex_lock(&sp->mu);
		sp->usage.reserved -= len;
		pthread_mutex_unlock(&sp->mu);
		rc = -EDQUOT;
	}
	return rc;
}

/*
 * The slow path, when an object does not fit: the usage is read again
 * (the uplink, another process, may have evicted), then sent objects - a
 * cache - are evicted, oldest first, to make room. Unsent objects never
 * are.
 */
int op__spool_reserve(op_spool *sp, uint64_t len)
{
	uint64_t over_limit, over_disk, freed = 0;
	unsigned n = 0;
	int rc = try_reserve(sp, len, &over_limit, &over_disk);

	if (rc != -EDQUOT)
		return rc;
	pthread_mutex_lock(&sp->tx_mu);
	if (op__spool_load_usage(sp) == 0)
		rc = try_reserve(sp, len, &over_limit, &over_disk);
	if (rc == -EDQUOT &&
	    op__spool_evict(sp, UINT64_MAX, over_limit > over_disk ? over_limit : over_disk, &n,
			    &freed) == 0 &&
	    n > 0)
		rc = try_reserve(sp, len, &over_limit, &over_disk);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

void op__spool_release(op_spool *sp, uint64_t len)
{
	pthread_mutex_lock(&sp->mu);
	sp->usage.reserved -= len;
	pthread_mutex_unlock(&sp->mu);
}

/* --- deliveries ---------------------------------------------------------- */

int op__spool_refresh(op_spool *sp, int64_t id, int64_t now)
{
	sqlite3_stmt *st = NULL;
	char state[16] = "sent";
	char *error = NULL;
	int attempts = 0;
	int64_t next = 0;
	int rc;

	rc = op__spool_prepare(
		sp,
		"SELECT CASE WHEN SUM(state = 'sending') THEN 'sending'"
		" WHEN SUM(state = 'queued') THEN 'queued'"
		" WHEN SUM(state = 'quarantined') THEN 'quarantined' ELSE 'sent' END,"
		" COALESCE(MAX(attempts), 0),"
		" COALESCE(MIN(CASE WHEN state = 'queued' THEN next_attempt_at END), 0),"
		" (SELECT last_error FROM deliveries WHERE instance_id = ?1 AND state != 'sent'"
		"  AND last_error IS NOT NULL"
		"  ORDER BY state = 'quarantined' DESC, state_changed_at DESC LIMIT 1)"
		" FROM deliveries WHERE instance_id = ?1",
		&st);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		snprintf(state, sizeof(state), "%s", sqlite3_column_text(st, 0));
		attempts = sqlite3_column_int(st, 1);
		next = sqlite3_column_int64(st, 2);
		if (sqlite3_column_type(st, 3) != SQLITE_NULL &&
		    !(error = strdup((const char *)sqlite3_column_text(st, 3))))
			rc = SQLITE_NOMEM;
	}
	op__spool_done(st);
	st = NULL;
	if (rc != SQLITE_ROW)
		goto out;
	rc = op__spool_prepare(sp,
			       "UPDATE instances SET attempts = ?3, next_attempt_at = ?4,"
			       " last_error = ?5, state_changed_at = CASE WHEN state = ?2"
			       " THEN state_changed_at ELSE ?6 END, state = ?2 WHERE id = ?1",
			       &st);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		op__spool_bind_text(st, 2, state);
		sqlite3_bind_int(st, 3, attempts);
		sqlite3_bind_int64(st, 4, next);
		op__spool_bind_text(st, 5, error);
		sqlite3_bind_int64(st, 6, now);
		rc = sqlite3_step(st);
	}
out:
	op__spool_done(st);
	free(error);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "refresh", rc);
}

int op__spool_add_deliveries(op_spool *sp, int64_t id, const op_instance *in, int64_t now)
{
	sqlite3_stmt *st = NULL;
	const char *list = in->destinations[0] ? in->destinations : OP_SPOOL_DEFAULT_DESTINATION;
	int rc = SQLITE_OK;

	if (in->local_only)
		return 0;
	/* A destination listed twice (two routes to it) is one delivery. */
	rc = op__spool_prepare(
		sp,
		"INSERT OR IGNORE INTO deliveries (instance_id, destination, study_uid,"
		" priority, received_at, state_changed_at)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
		&st);
	for (const char *p = list; rc == SQLITE_OK && *p;) {
		size_t len = strcspn(p, ",");

		if (len > 0) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_text(st, 2, p, (int)len, SQLITE_TRANSIENT);
			op__spool_bind_text(st, 3, in->study_uid);
			sqlite3_bind_int(st, 4, in->priority);
			sqlite3_bind_int64(st, 5, now);
			rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
		}
		p += len;
		p += *p == ',';
	}
	op__spool_done(st);
	return rc == SQLITE_OK ? 0 : op__spool_sql_fail(sp, "deliveries", rc);
}

int op__spool_step_ids(op_spool *sp, sqlite3_stmt *st, int64_t **ids, size_t *n)
{
	size_t cap = 0;
	int rc;

	*ids = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			int64_t *grown = realloc(*ids, (cap = cap ? 2 * cap : 64) * sizeof(**ids));

			if (!grown) {
				rc = SQLITE_NOMEM;
				break;
			}
			*ids = grown;
		}
		(*ids)[(*n)++] = sqlite3_column_int64(st, 0);
	}
	if (rc == SQLITE_DONE)
		return 0;
	free(*ids);
	*ids = NULL;
	*n = 0;
	return op__spool_sql_fail(sp, "ids", rc);
}
