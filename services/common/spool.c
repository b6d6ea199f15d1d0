/*
 * spool: files in a content-addressed tree, rows in sqlite (see spool.h).
 *
 * The order of a commit is what keeps the one promise:
 *
 *   write tmp/X, fdatasync(X), rename(X, objects/ab/<hash>.dcm),
 *   fsync(objects/ab), then COMMIT the row (WAL, synchronous=FULL)
 *
 * A crash before the rename leaves a partial file in tmp/ (removed at
 * recovery; the instance was never acknowledged). A crash after the rename
 * but before the COMMIT leaves a complete orphan that recovery indexes.
 *
 * Group commit: a thread that wants a row committed queues it; if no other
 * thread is committing, it becomes the leader and commits everything queued
 * in one transaction, and repeats until the queue is empty. Followers wait on
 * a condition variable. One fsync of the WAL then serves many instances.
 */
#include "common/clock.h"
#include "common/file.h"
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

struct op__spool_pin {
	char hash[OP_HASH_HEX + 1];
	int n;
	struct op__spool_pin *next;
};

/* Caller holds gc_mu. */
static struct op__spool_pin *find_pin(op_spool *sp, const char *hash)
{
	for (struct op__spool_pin *q = sp->pins; q; q = q->next)
		if (strcmp(q->hash, hash) == 0)
			return q;
	return NULL;
}

static int pin_hash(op_spool *sp, const char *hash)
{
	struct op__spool_pin *q;
	int rc = 0;

	pthread_mutex_lock(&sp->gc_mu);
	q = find_pin(sp, hash);
	if (!q && (q = calloc(1, sizeof(*q))) != NULL) {
		snprintf(q->hash, sizeof(q->hash), "%s", hash);
		q->next = sp->pins;
		sp->pins = q;
	}
	if (q)
		q->n++;
	else
		rc = -ENOMEM;
	pthread_mutex_unlock(&sp->gc_mu);
	return rc;
}

static void unpin_hash(op_spool *sp, const char *hash)
{
	pthread_mutex_lock(&sp->gc_mu);
	for (struct op__spool_pin **pp = &sp->pins; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->hash, hash) == 0) {
			if (--(*pp)->n == 0) {
				struct op__spool_pin *dead = *pp;
				*pp = dead->next;
				free(dead);
			}
			break;
		}
	}
	pthread_mutex_unlock(&sp->gc_mu);
}

struct op_spool_object {
	op_spool *sp;
	int fd;
	int failed;
	uint64_t size;
	crypto_generichash_state hash;
	int finished; /* flushed and fdatasync'd */
	size_t buffered;
	unsigned char buf[16384];
	char path[PATH_MAX];
};

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
	" detail TEXT NOT NULL);";

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

int op__spool_sql_fail(op_spool *sp, const char *what, int rc)
{
	op_error("spool.sql", "db=%s op=%s error=\"%s\"", sp->db_path, what,
		 sqlite3_errmsg(sp->db));
	return op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
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

/* mkdir that tolerates an existing directory; fsyncs the parent when it
 * created something, so the tree survives a power cut. */
static int make_dir(const char *path, const char *parent)
{
	if (mkdir(path, 0750) == 0)
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

static int open_db(op_spool *sp)
{
	sqlite3_stmt *st = NULL;
	int version = 0, rc;

	rc = sqlite3_open_v2(sp->db_path, &sp->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		op_error("spool.open", "db=%s error=\"%s\"", sp->db_path,
			 sp->db ? sqlite3_errmsg(sp->db) : sqlite3_errstr(rc));
		return op__spool_sql_err(rc);
	}
	sqlite3_busy_timeout(sp->db, 10000);
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
			rc = op__spool_exec(sp, "PRAGMA user_version=1");
	}
	if (rc == 0)
		rc = op__spool_exec(sp, schema_operator);
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
		sp->db, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances", -1, &st, NULL);

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
		sqlite3_busy_timeout(sp->ro, 10000);
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

/* --- writing an object --------------------------------------------------- */

int op_spool_object_begin(op_spool *sp, op_spool_object **out)
{
	op_spool_object *obj;
	int rc;

	*out = NULL;
	/* Refuse up front when full, so a modality is told at once. */
	rc = op__spool_reserve(sp, 0);
	if (rc < 0)
		return rc;
	obj = calloc(1, sizeof(*obj));
	if (!obj)
		return -ENOMEM;
	obj->sp = sp;
	snprintf(obj->path, sizeof(obj->path), "%s/tmp/XXXXXX.part", sp->dir);
	obj->fd = mkostemps(obj->path, 5, O_CLOEXEC);
	if (obj->fd < 0) {
		rc = -errno;
		op_error("spool.create", "path=%s error=\"%s\"", obj->path, strerror(errno));
		free(obj);
		return rc == -EDQUOT ? -ENOSPC : rc; /* the filesystem's quota: full */
	}
	crypto_generichash_init(&obj->hash, NULL, 0, OP_HASH_BYTES);
	*out = obj;
	return 0;
}

const char *op_spool_object_path(const op_spool_object *obj)
{
	return obj->path;
}

uint64_t op_spool_object_size(const op_spool_object *obj)
{
	return obj->size;
}

static int write_all(op_spool_object *obj, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(obj->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == ENOSPC || errno == EDQUOT)
				return -ENOSPC;
			op_error("spool.write", "path=%s error=\"%s\"", obj->path, strerror(errno));
			return -EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int flush_buffer(op_spool_object *obj)
{
	int rc = write_all(obj, obj->buf, obj->buffered);

	obj->buffered = 0;
	return rc;
}

int op_spool_object_write(op_spool_object *obj, const void *buf, uint64_t len)
{
	int rc;

	if (obj->failed || obj->finished)
		return -EIO;
	rc = op__spool_reserve(obj->sp, len);
	if (rc < 0)
		goto out;
	obj->size += len; /* reserved: released by commit or abort */
	crypto_generichash_update(&obj->hash, buf, len);
	/* DCMTK writes the meta header element by element: small writes are
	 * gathered, PDV-sized ones go straight through. */
	if (obj->buffered + len <= sizeof(obj->buf)) {
		memcpy(obj->buf + obj->buffered, buf, len);
		obj->buffered += len;
		goto out;
	}
	rc = flush_buffer(obj);
	if (rc == 0)
		rc = write_all(obj, buf, len);
out:
	if (rc < 0)
		obj->failed = 1;
	return rc;
}

static void object_free(op_spool_object *obj)
{
	if (obj->fd >= 0)
		close(obj->fd);
	op__spool_release(obj->sp, obj->size);
	free(obj);
}

void op_spool_object_abort(op_spool_object *obj)
{
	if (!obj)
		return;
	unlink(obj->path);
	object_free(obj);
}

/* --- group commit -------------------------------------------------------- */

int op__spool_bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* Inserts or updates one row inside the leader's transaction. */
static int apply_row(op_spool *sp, struct op__spool_pending *p)
{
	const op_instance *in = p->inst;
	sqlite3_stmt *st = NULL;
	char old_hash[OP_HASH_HEX + 1] = "";
	uint64_t old_size = 0;
	int64_t now = op_clock_wall_ms();
	int found = 0, rc;

	rc = sqlite3_prepare_v2(sp->db,
				"SELECT hash, size FROM instances WHERE sop_instance_uid = ?", -1,
				&st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, in->sop_instance_uid);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			found = 1;
			snprintf(old_hash, sizeof(old_hash), "%s", sqlite3_column_text(st, 0));
			old_size = (uint64_t)sqlite3_column_int64(st, 1);
			rc = SQLITE_DONE;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		goto out;
	if (found && strcmp(old_hash, p->hash) == 0) {
		/* The file is back (it was just renamed into place): a row
		 * quarantined because its file was missing is queued again. */
		rc = sqlite3_prepare_v2(
			sp->db,
			"UPDATE instances SET state = 'queued', attempts = 0,"
			" next_attempt_at = 0, last_error = NULL, state_changed_at = ?2"
			" WHERE sop_instance_uid = ?1 AND state = 'quarantined'"
			" AND last_error = '" OP__SPOOL_MISSING_REASON "'",
			-1, &st, NULL);
		if (rc == SQLITE_OK) {
			op__spool_bind_text(st, 1, in->sop_instance_uid);
			sqlite3_bind_int64(st, 2, now);
			rc = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			goto out;
		p->outcome = OP_SPOOL_DUPLICATE;
		return 0;
	}
	p->may_unlink = 1;
	if (found) {
		rc = sqlite3_prepare_v2(
			sp->db,
			"UPDATE instances SET sop_class_uid = ?2, study_uid = ?3, series_uid = ?4,"
			" transfer_syntax = ?5, patient_id = ?6, modality = ?7, calling_aet = ?8,"
			" size = ?9, hash = ?10, received_at = ?11, priority = ?12,"
			/* A version being sent stays 'sending' (with the new hash)
			 * until the uplink settles the old one and queues the new:
			 * two versions of one instance are never in flight at once. */
			" state = CASE state WHEN 'sending' THEN 'sending' ELSE 'queued' END,"
			" attempts = 0, next_attempt_at = 0, last_error = NULL,"
			" state_changed_at = ?11 WHERE sop_instance_uid = ?1",
			-1, &st, NULL);
	} else {
		rc = sqlite3_prepare_v2(
			sp->db,
			"INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid,"
			" series_uid, transfer_syntax, patient_id, modality, calling_aet, size,"
			" hash, received_at, priority, state_changed_at)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11)",
			-1, &st, NULL);
	}
	if (rc != SQLITE_OK)
		goto out;
	op__spool_bind_text(st, 1, in->sop_instance_uid);
	op__spool_bind_text(st, 2, in->sop_class_uid);
	op__spool_bind_text(st, 3, in->study_uid);
	op__spool_bind_text(st, 4, in->series_uid);
	op__spool_bind_text(st, 5, in->transfer_syntax);
	op__spool_bind_text(st, 6, in->patient_id);
	op__spool_bind_text(st, 7, in->modality);
	op__spool_bind_text(st, 8, in->calling_aet);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)p->size);
	op__spool_bind_text(st, 10, p->hash);
	sqlite3_bind_int64(st, 11, now);
	sqlite3_bind_int(st, 12, in->priority);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		goto out;
	p->outcome = found ? OP_SPOOL_REPLACED : OP_SPOOL_STORED;
	if (found) {
		/* The old file goes once no row names it. */
		p->old_size = old_size;
		rc = sqlite3_prepare_v2(sp->db, "SELECT COUNT(*) FROM instances WHERE hash = ?", -1,
					&st, NULL);
		if (rc == SQLITE_OK) {
			op__spool_bind_text(st, 1, old_hash);
			rc = sqlite3_step(st);
			if (rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 0)
				snprintf(p->old_hash, sizeof(p->old_hash), "%s", old_hash);
			rc = rc == SQLITE_ROW ? SQLITE_DONE : rc;
		}
		sqlite3_finalize(st);
	}
out:
	if (rc != SQLITE_DONE) {
		op_error("spool.index", "db=%s sop=%s error=\"%s\"", sp->db_path,
			 in->sop_instance_uid, sqlite3_errmsg(sp->db));
		return op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
	}
	return 0;
}

int op__spool_hash_in_use(op_spool *sp, const char *hash)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(sp->db, "SELECT COUNT(*) FROM instances WHERE hash = ?", -1, &st,
			       NULL) == SQLITE_OK) {
		op__spool_bind_text(st, 1, hash);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0) > 0;
	}
	sqlite3_finalize(st);
	return n;
}

/* Is hash pinned by a commit outside batch (renamed, row not yet queued or
 * in a later batch)? Caller holds gc_mu. Members of the batch are still
 * pinned while it runs; they are discounted. */
static int pinned_outside(op_spool *sp, struct op__spool_pending *batch, const char *hash)
{
	struct op__spool_pin *q = find_pin(sp, hash);
	int n = q ? q->n : 0;

	for (struct op__spool_pending *m = batch; m; m = m->next)
		n -= strcmp(m->hash, hash) == 0;
	return n > 0;
}

static void run_batch(op_spool *sp, struct op__spool_pending *batch)
{
	char path[PATH_MAX];
	uint64_t n = 0, bytes = 0;
	int rc = op__spool_exec(sp, "BEGIN IMMEDIATE"), began = rc == 0;

	for (struct op__spool_pending *p = batch; p; p = p->next) {
		p->rc = rc < 0 ? rc : apply_row(sp, p);
		if (p->rc == 0) {
			n++;
			bytes += p->size;
		}
	}
	/* A version replaced by one member may be put back by a later member
	 * of the same batch: only hashes no row names at the end go. */
	for (struct op__spool_pending *p = batch; rc == 0 && p; p = p->next)
		if (p->rc == 0 && p->old_hash[0] && op__spool_hash_in_use(sp, p->old_hash) != 0)
			p->old_hash[0] = '\0';
	/* Every acknowledged C-STORE counts as received, duplicates too; in
	 * the same transaction, so the count never drifts from what was
	 * acknowledged. */
	if (rc == 0 && n && (rc = op__spool_counter_add(sp, "received_instances", n)) == 0)
		rc = op__spool_counter_add(sp, "received_bytes", bytes);
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0 && began) {
		op__spool_exec(sp, "ROLLBACK");
		for (struct op__spool_pending *p = batch; p; p = p->next)
			if (p->rc == 0)
				p->rc = rc;
	}
	pthread_mutex_lock(&sp->gc_mu); /* no pin is taken while we unlink */
	for (struct op__spool_pending *p = batch; p; p = p->next) {
		if (p->rc == 0) {
			pthread_mutex_lock(&sp->mu);
			if (p->outcome == OP_SPOOL_STORED) {
				sp->usage.objects++;
				sp->usage.bytes += p->size;
			} else if (p->outcome == OP_SPOOL_REPLACED) {
				sp->usage.bytes += p->size - p->old_size;
			}
			pthread_mutex_unlock(&sp->mu);
			if (p->old_hash[0] && !pinned_outside(sp, batch, p->old_hash)) {
				op_spool_object_file(sp, p->old_hash, path, sizeof(path));
				unlink(path);
			}
			continue;
		}
		/* A file no committed row names is removed, unless a commit in
		 * flight renamed the same content into place. */
		if (p->may_unlink && op__spool_hash_in_use(sp, p->hash) == 0 &&
		    !pinned_outside(sp, batch, p->hash)) {
			op_spool_object_file(sp, p->hash, path, sizeof(path));
			unlink(path);
		}
	}
	pthread_mutex_unlock(&sp->gc_mu);
}

int op__spool_commit_row(op_spool *sp, struct op__spool_pending *p)
{
	pthread_mutex_lock(&sp->gc_mu);
	if (sp->gc_tail)
		sp->gc_tail->next = p;
	else
		sp->gc_head = p;
	sp->gc_tail = p;
	while (!p->done) {
		if (sp->gc_leader) {
			pthread_cond_wait(&sp->gc_cv, &sp->gc_mu);
			continue;
		}
		struct op__spool_pending *batch = sp->gc_head;
		sp->gc_head = sp->gc_tail = NULL;
		sp->gc_leader = 1;
		pthread_mutex_unlock(&sp->gc_mu);
		pthread_mutex_lock(&sp->tx_mu);
		run_batch(sp, batch);
		pthread_mutex_unlock(&sp->tx_mu);
		pthread_mutex_lock(&sp->gc_mu);
		for (struct op__spool_pending *q = batch; q; q = q->next)
			q->done = 1;
		sp->gc_leader = 0;
		pthread_cond_broadcast(&sp->gc_cv);
	}
	pthread_mutex_unlock(&sp->gc_mu);
	return p->rc;
}

void op__spool_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int op_spool_object_finish(op_spool_object *obj)
{
	int rc;

	if (obj->finished)
		return 0;
	if (obj->failed)
		return -EIO;
	rc = flush_buffer(obj);
	/* fdatasync writes the data and the size needed to read it back. */
	if (rc == 0 && fdatasync(obj->fd) < 0) {
		rc = errno == ENOSPC || errno == EDQUOT ? -ENOSPC : -EIO;
		op_error("spool.fsync", "path=%s error=\"%s\"", obj->path, strerror(errno));
	}
	if (rc < 0)
		obj->failed = 1;
	else
		obj->finished = 1;
	return rc;
}

int op_spool_object_commit(op_spool_object *obj, const op_instance *inst,
			   enum op_spool_outcome *outcome, char *hash_out)
{
	op_spool *sp = obj->sp;
	struct op__spool_pending p = { 0 };
	unsigned char digest[OP_HASH_BYTES];
	char hash[OP_HASH_HEX + 1], path[PATH_MAX], dir[OP_DIR_MAX + 16];
	int rc;

	rc = op_spool_object_finish(obj);
	if (rc < 0)
		goto fail;
	crypto_generichash_final(&obj->hash, digest, sizeof(digest));
	op__spool_hex(digest, sizeof(digest), hash);
	op_spool_object_file(sp, hash, path, sizeof(path));
	rc = pin_hash(sp, hash);
	if (rc < 0)
		goto fail;
	if (rename(obj->path, path) < 0) {
		rc = -errno;
		unpin_hash(sp, hash);
		op_error("spool.rename", "from=%s to=%s error=\"%s\"", obj->path, path,
			 strerror(errno));
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s/objects/%.2s", sp->dir, hash);
	rc = op_fsync_dir(dir);
	if (rc < 0) {
		op_error("spool.fsync", "path=%s error=\"%s\"", dir, strerror(-rc));
		unpin_hash(sp, hash);
		goto out; /* renamed: recovery will find it */
	}
	p.inst = inst;
	p.hash = hash;
	p.size = obj->size;
	rc = op__spool_commit_row(sp, &p);
	unpin_hash(sp, hash);
	if (rc == 0) {
		*outcome = p.outcome;
		if (hash_out)
			memcpy(hash_out, hash, sizeof(hash));
	}
	goto out;
fail:
	unlink(obj->path);
out:
	object_free(obj);
	return rc;
}
