/*
 * spool_store: the receiver's side of the spool (see spool.h): writing an
 * object and committing its row.
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
	/* (mkostemps makes it 0600: the uplink, another user on the
	 * appliance, reads it through the spool's group) */
	if (fchmod(obj->fd, 0640) < 0) {
		rc = -errno;
		op_error("spool.create", "path=%s error=\"%s\"", obj->path, strerror(errno));
		close(obj->fd);
		unlink(obj->path);
		free(obj);
		return rc;
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

/* Where the dataset starts in a file the receiver wrote: after the 128-byte
 * preamble, "DICM" and the File Meta Information, whose group length is the
 * value of its first element, (0002,0000) UL, at offset 140 (PS3.10 7.1).
 * 0 for a file without a meta header. */
static off_t dataset_offset(int fd)
{
	unsigned char h[144];
	uint32_t glen;

	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h + 128, "DICM", 4) != 0 ||
	    memcmp(h + 132, "\x02\x00\x00\x00UL", 6) != 0)
		return 0;
	glen = (uint32_t)h[140] | (uint32_t)h[141] << 8 | (uint32_t)h[142] << 16 |
	       (uint32_t)h[143] << 24;
	return (off_t)sizeof(h) + glen;
}

/*
 * Do the stored objects a and b (hex hashes) hold the same dataset? Their
 * meta headers differ when two calling AEs send one dataset (it names the
 * sender), and that is no replacement. Any failure to read counts as
 * different.
 */
static int same_dataset(op_spool *sp, const char *a, const char *b)
{
	char path[PATH_MAX];
	unsigned char ba[8192], bb[8192];
	int fa, fb, same = 0;
	off_t oa, ob;

	op_spool_object_file(sp, a, path, sizeof(path));
	fa = open(path, O_RDONLY | O_CLOEXEC);
	op_spool_object_file(sp, b, path, sizeof(path));
	fb = open(path, O_RDONLY | O_CLOEXEC);
	if (fa < 0 || fb < 0)
		goto out;
	oa = dataset_offset(fa);
	ob = dataset_offset(fb);
	for (;;) {
		ssize_t na = pread(fa, ba, sizeof(ba), oa), nb = pread(fb, bb, sizeof(bb), ob);

		if (na < 0 || na != nb || memcmp(ba, bb, (size_t)na) != 0)
			break;
		if (na == 0) {
			same = 1;
			break;
		}
		oa += na;
		ob += nb;
	}
out:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	return same;
}

/* Inserts or updates one row inside the leader's transaction. */
static int apply_row(op_spool *sp, struct op__spool_pending *p)
{
	const op_instance *in = p->inst;
	sqlite3_stmt *st = NULL;
	char old_hash[OP_HASH_HEX + 1] = "";
	uint64_t old_size = 0;
	int64_t now = op_clock_wall_ms(), id = 0;
	int found = 0, foreign = 0, rc;

	rc = op__spool_prepare(sp,
			       "SELECT hash, size, state != 'sent' AND calling_aet != ?2, id"
			       " FROM instances WHERE sop_instance_uid = ?1",
			       &st);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, in->sop_instance_uid);
		op__spool_bind_text(st, 2, in->calling_aet);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			found = 1;
			snprintf(old_hash, sizeof(old_hash), "%s", sqlite3_column_text(st, 0));
			old_size = (uint64_t)sqlite3_column_int64(st, 1);
			foreign = sqlite3_column_int(st, 2);
			id = sqlite3_column_int64(st, 3);
			rc = SQLITE_DONE;
		}
	}
	op__spool_done(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		goto out;
	if (found && strcmp(old_hash, p->hash) == 0) {
		/* The file is back (it was just renamed into place): a row
		 * quarantined because its file was missing is queued again. */
		rc = sqlite3_prepare_v2(
			sp->db,
			"UPDATE deliveries SET state = 'queued', attempts = 0,"
			" next_attempt_at = 0, last_error = NULL, state_changed_at = ?2"
			" WHERE instance_id = ?1 AND state = 'quarantined'"
			" AND last_error = '" OP__SPOOL_MISSING_REASON "'",
			-1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_int64(st, 2, now);
			rc = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			goto out;
		if (sqlite3_changes(sp->db) > 0 && (rc = op__spool_refresh(sp, id, now)) < 0)
			return rc;
		p->outcome = OP_SPOOL_DUPLICATE;
		return 0;
	}
	p->may_unlink = 1;
	/* Another modality's instance the cloud does not hold yet is not
	 * replaced: re-using its SOP Instance UID must not swap what is sent
	 * (issue 15). The caller answers a failure; nothing changed here. */
	if (found && foreign && p->refuse_foreign) {
		if (!same_dataset(sp, old_hash, p->hash))
			return -EPERM;
		/* Another sender of the same dataset: a duplicate; its file,
		 * which no row names, goes like a replaced version. */
		snprintf(p->old_hash, sizeof(p->old_hash), "%s", p->hash);
		p->outcome = OP_SPOOL_DUPLICATE;
		return 0;
	}
	if (found) {
		rc = op__spool_prepare(
			sp,
			"UPDATE instances SET sop_class_uid = ?2, study_uid = ?3, series_uid = ?4,"
			" transfer_syntax = ?5, patient_id = ?6, modality = ?7, calling_aet = ?8,"
			" size = ?9, hash = ?10, received_at = ?11, priority = ?12,"
			/* A version being sent stays 'sending' (with the new hash)
			 * until the uplink settles the old one and queues the new:
			 * two versions of one instance are never in flight at once. */
			" state = CASE state WHEN 'sending' THEN 'sending' ELSE 'queued' END,"
			" attempts = 0, next_attempt_at = 0, last_error = NULL,"
			" state_changed_at = ?11 WHERE sop_instance_uid = ?1",
			&st);
	} else {
		rc = op__spool_prepare(
			sp,
			"INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid,"
			" series_uid, transfer_syntax, patient_id, modality, calling_aet, size,"
			" hash, received_at, priority, state_changed_at)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11)",
			&st);
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
	op__spool_done(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		goto out;
	p->outcome = found ? OP_SPOOL_REPLACED : OP_SPOOL_STORED;
	if (!found) {
		id = sqlite3_last_insert_rowid(sp->db);
	} else {
		/* The new version goes again to every destination the old one
		 * was routed to (a correction reaches whoever had the
		 * original), and to those its own routes add. */
		rc = sqlite3_prepare_v2(
			sp->db,
			"UPDATE deliveries SET study_uid = ?2, priority = ?3, received_at = ?4,"
			" state = CASE state WHEN 'sending' THEN 'sending' ELSE 'queued' END,"
			" attempts = 0, next_attempt_at = 0, last_error = NULL,"
			" state_changed_at = ?4 WHERE instance_id = ?1",
			-1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, id);
			op__spool_bind_text(st, 2, in->study_uid);
			sqlite3_bind_int(st, 3, in->priority);
			sqlite3_bind_int64(st, 4, now);
			rc = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			goto out;
	}
	if ((rc = op__spool_add_deliveries(sp, id, in, now)) < 0 ||
	    (rc = op__spool_refresh(sp, id, now)) < 0 || (rc = op__spool_qr_put(sp, id, in)) < 0)
		return rc;
	rc = SQLITE_DONE;
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
		char q[OP_LOG_QUOTED(OP_UID_MAX)];

		op_error("spool.index", "db=%s sop=%s error=\"%s\"", sp->db_path,
			 op_log_quote(q, sizeof(q), in->sop_instance_uid), sqlite3_errmsg(sp->db));
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
	p.refuse_foreign = 1;
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
