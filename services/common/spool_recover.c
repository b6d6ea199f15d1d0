/*
 * spool_recover: reconciles files and rows at start-up (op_spool_recover;
 * what it finds is counted in op_spool_recovery, spool.h). The receiver
 * runs it before it accepts anything.
 */
#include "common/clock.h"
#include "common/file.h"
#include "common/spool.h"
#include "common/spool_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/*
 * The hashes of the rows whose files live in one fan-out directory (their
 * first two hex digits), in order, from the hash index: a directory's
 * worth at a time, so that recovery's memory does not grow with the spool
 * (about 4000 rows a directory at a million instances).
 */
struct dir_hashes {
	char (*v)[OP_HASH_HEX + 1];
	size_t n, cap;
};

/* st: SELECT hash ... WHERE hash >= ?1 AND hash < ?2 ORDER BY hash. */
static int load_dir_hashes(sqlite3_stmt *st, int dir, struct dir_hashes *h)
{
	char lo[8], hi[8];
	int rc = SQLITE_OK;

	/* Hex digits are lower case: "ff" ends below "g". */
	snprintf(lo, sizeof(lo), "%02x", dir);
	if (dir == 255)
		snprintf(hi, sizeof(hi), "g");
	else
		snprintf(hi, sizeof(hi), "%02x", dir + 1);
	h->n = 0;
	sqlite3_reset(st);
	op__spool_bind_text(st, 1, lo);
	op__spool_bind_text(st, 2, hi);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (h->n == h->cap) {
			size_t cap = h->cap ? 2 * h->cap : 1024;
			void *nv = realloc(h->v, cap * sizeof(*h->v));

			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			h->v = nv;
			h->cap = cap;
		}
		snprintf(h->v[h->n++], sizeof(*h->v), "%s", sqlite3_column_text(st, 0));
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		return op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
	return 0;
}

static int cmp_hash(const void *a, const void *b)
{
	return strncmp(a, b, OP_HASH_HEX);
}

int op_spool_hash_file(const char *path, char *hash, uint64_t *size)
{
	crypto_generichash_state ctx;
	unsigned char buf[65536], digest[OP_HASH_BYTES];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	*size = 0;
	crypto_generichash_init(&ctx, NULL, 0, sizeof(digest));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		crypto_generichash_update(&ctx, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	crypto_generichash_final(&ctx, digest, sizeof(digest));
	close(fd);
	op__spool_hex(digest, sizeof(digest), hash);
	return rc;
}

static void move_to_damaged(op_spool *sp, const char *path, const char *name, const char *why)
{
	char to[PATH_MAX], dir[OP_DIR_MAX + 16];

	snprintf(dir, sizeof(dir), "%s/damaged", sp->dir);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	if (rename(path, to) == 0)
		op_fsync_dir(dir);
	op_error("spool.recover.damaged", "path=%s moved_to=%s reason=\"%s\"", path, to, why);
}

/* A complete file without a row: index it, unless its instance already has
 * a row (then it is a superseded or never-acknowledged version). */
static int adopt_orphan(op_spool *sp, const char *path, const char *name, op_spool_reader read,
			void *ctx, op_spool_recovery *rep)
{
	op_instance inst;
	struct op__spool_pending p = { 0 };
	char hash[OP_HASH_HEX + 1], err[256] = "", why[320], right[PATH_MAX];
	char row_hash[OP_HASH_HEX + 1] = "";
	uint64_t size = 0;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int exists = 0, rc;

	rc = op_spool_hash_file(path, hash, &size);
	if (rc < 0 || strncmp(hash, name, OP_HASH_HEX) != 0) {
		move_to_damaged(sp, path, name, "content does not match its name");
		rep->damaged++;
		return 0;
	}
	/* Rows name files by hash alone: a file elsewhere (another fan-out
	 * directory, another suffix) is moved to where its row will look. */
	op_spool_object_file(sp, hash, right, sizeof(right));
	if (strcmp(path, right) != 0) {
		if (stat(right, &sb) == 0) { /* the same bytes are in place */
			unlink(path);
			rep->orphans_removed++;
			return 0;
		}
		if (rename(path, right) < 0) {
			move_to_damaged(sp, path, name, "cannot be moved to its place");
			rep->damaged++;
			return 0;
		}
		snprintf(right, sizeof(right), "%s/objects/%.2s", sp->dir, hash);
		op_fsync_dir(right);
		op_spool_object_file(sp, hash, right, sizeof(right));
		path = right;
	}
	memset(&inst, 0, sizeof(inst));
	rc = read(ctx, path, &inst, err, sizeof(err));
	if (rc < 0) {
		snprintf(why, sizeof(why), "unreadable: %s", err);
		move_to_damaged(sp, path, name, why);
		rep->damaged++;
		return 0;
	}
	rc = sqlite3_prepare_v2(sp->db, "SELECT hash FROM instances WHERE sop_instance_uid = ?", -1,
				&st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, inst.sop_instance_uid);
		rc = sqlite3_step(st);
		exists = rc == SQLITE_ROW;
		if (exists)
			snprintf(row_hash, sizeof(row_hash), "%s", sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
	if (exists && strcmp(row_hash, hash) == 0)
		return 0; /* its own row (indexed earlier in this walk) */
	if (exists) {
		unlink(path);
		rep->orphans_removed++;
		op_info("spool.recover.superseded", "sop=%s hash=%s", inst.sop_instance_uid, hash);
		return 0;
	}
	p.inst = &inst;
	p.hash = hash;
	p.size = size;
	rc = op__spool_commit_row(sp, &p);
	if (rc == 0) {
		rep->orphans_indexed++;
		op_info("spool.recover.indexed", "sop=%s hash=%s bytes=%" PRIu64,
			inst.sop_instance_uid, hash, size);
	}
	return rc;
}

static int walk_objects(op_spool *sp, op_spool_reader read, void *ctx, op_spool_recovery *rep)
{
	char dir[OP_DIR_MAX + 16], path[PATH_MAX];
	struct dir_hashes h = { 0 };
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db,
				    "SELECT hash FROM instances WHERE hash >= ?1 AND hash < ?2"
				    " ORDER BY hash",
				    -1, &st, NULL);

	rc = op__spool_sql_err(rc);
	for (int i = 0; i < 256 && rc == 0; i++) {
		struct dirent *de;
		DIR *d;

		snprintf(dir, sizeof(dir), "%s/objects/%02x", sp->dir, i);
		d = opendir(dir);
		if (!d)
			continue;
		rc = load_dir_hashes(st, i, &h);
		while (rc == 0 && (de = readdir(d)) != NULL) {
			char name[OP_HASH_HEX + 1];

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			memcpy(name, de->d_name, sizeof(name) - 1); /* d_name is 256 bytes */
			name[OP_HASH_HEX] = '\0';
			if (strlen(de->d_name) == OP_HASH_HEX + 4 &&
			    strcmp(de->d_name + OP_HASH_HEX, ".jls") == 0) {
				/* An encoded copy: kept with its row (written
				 * first), else a crash's leftover. */
				if (op__spool_encoding_known(sp, name) == 0 && unlink(path) == 0)
					rep->orphans_removed++;
				continue;
			}
			/* A file of another directory's range is not found
			 * here: adopt_orphan() moves it to its place. */
			if (strlen(de->d_name) == OP_HASH_HEX + 4 && h.n &&
			    bsearch(name, h.v, h.n, sizeof(*h.v), cmp_hash))
				continue;
			rc = adopt_orphan(sp, path, de->d_name, read, ctx, rep);
		}
		closedir(d);
	}
	sqlite3_finalize(st);
	free(h.v);
	return rc;
}

static int clear_tmp(op_spool *sp, op_spool_recovery *rep)
{
	char dir[OP_DIR_MAX + 16], path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tmp", sp->dir);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) == 0)
			rep->tmp_removed++;
	}
	closedir(d);
	return 0;
}

/* Rows whose file is gone cannot be sent: quarantine them with a reason an
 * operator can read, rather than retrying them forever. */
static int quarantine_missing(op_spool *sp, op_spool_recovery *rep)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 *ids = NULL;
	size_t n = 0, cap = 0;
	char path[PATH_MAX];
	int rc;

	rc = sqlite3_prepare_v2(sp->db,
				"SELECT id, hash, sop_instance_uid FROM instances"
				" WHERE state IN ('queued', 'sending')",
				-1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct stat sb;

		rc = SQLITE_OK;
		op_spool_object_file(sp, (const char *)sqlite3_column_text(st, 1), path,
				     sizeof(path));
		if (stat(path, &sb) == 0)
			continue;
		op_error("spool.recover.missing", "sop=%s path=%s", sqlite3_column_text(st, 2),
			 path);
		if (n == cap) {
			sqlite3_int64 *nv = realloc(ids, (cap = cap ? 2 * cap : 64) * sizeof(*ids));
			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			ids = nv;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		goto out;
	/* Every delivery not yet sent is quarantined; an instance routed
	 * nowhere keeps its row (as the sent cache would) until evicted. */
	rc = sqlite3_prepare_v2(sp->db,
				"UPDATE deliveries SET state = 'quarantined',"
				" last_error = '" OP__SPOOL_MISSING_REASON "', state_changed_at = ?"
				" WHERE instance_id = ? AND state != 'sent'",
				-1, &st, NULL);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		int64_t now = op_clock_wall_ms();

		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, ids[i]);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
		if (rc == SQLITE_OK && op__spool_refresh(sp, ids[i], now) < 0)
			rc = SQLITE_IOERR;
		rep->missing++;
	}
	if (rc == SQLITE_OK)
		rc = SQLITE_DONE;
out:
	sqlite3_finalize(st);
	free(ids);
	return rc == SQLITE_DONE ? 0 : (op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO);
}

int op_spool_recover(op_spool *sp, op_spool_reader read, void *ctx, op_spool_recovery *rep)
{
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = clear_tmp(sp, rep);
	if (rc == 0)
		rc = walk_objects(sp, read, ctx, rep);
	if (rc == 0)
		rc = quarantine_missing(sp, rep);
	if (rc == 0)
		rc = op__spool_qr_backfill(sp, read, ctx, &rep->qr_indexed);
	if (rc == 0)
		rc = op__spool_load_usage(sp);
	if (rc < 0)
		op_error("spool.recover", "dir=%s error=\"%s\"", sp->dir, strerror(-rc));
	else
		op_info("spool.recover",
			"dir=%s tmp_removed=%u orphans_indexed=%u "
			"orphans_removed=%u qr_indexed=%u damaged=%u missing=%u",
			sp->dir, rep->tmp_removed, rep->orphans_indexed, rep->orphans_removed,
			rep->qr_indexed, rep->damaged, rep->missing);
	return rc;
}
