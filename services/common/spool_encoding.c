/*
 * spool_encoding: the encoded copies of objects (spool.h, "Encoded
 * copies"): one row in `encodings` per (object, syntax) saying what the
 * uplink found - a copy beside the object, or "send the original" and why -
 * and the copy's file, DIR/objects/ab/<hash>.jls.
 *
 * Order of writes: the row is committed before the copy is renamed into
 * place, so a file in objects/ never lacks its row; a row whose file is
 * missing (a crash between the two) is found by the uplink before it sends
 * and dropped (op_spool_encoding_drop), and the copy made again.
 *
 * Nothing here is synced to disk (no fsync of the copy nor of its
 * directory, and the row committed with synchronous=NORMAL): a copy is
 * disposable. After a power cut a copy may be missing, short or damaged
 * (its hash does not match the row: dropped and made again), or lack its
 * row (recovery removes it). Syncing cost the receiver's ingest, which
 * shares the disk and the database with the encoder (docs/BENCHMARKS.md).
 */
#include "common/spool_internal.h"

#include "common/file.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const state_names[] = { "none", "copy", "original" };

void op_spool_item_send_object(op_spool_item *it)
{
	it->encoded = 0;
	memcpy(it->file_hash, it->hash, sizeof(it->file_hash));
	it->file_size = it->size;
	memcpy(it->file_syntax, it->transfer_syntax, sizeof(it->file_syntax));
}

void op_spool_encoding_file(const op_spool *sp, const char *hash, char *out, size_t size)
{
	snprintf(out, size, "%s/objects/%.2s/%s.jls", sp->dir, hash, hash);
}

int op_spool_encoding_tmp(const op_spool *sp, char *out, size_t size)
{
	int fd;

	snprintf(out, size, "%s/tmp/XXXXXX.jls.part", sp->dir);
	fd = mkostemps(out, 9, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

int op_spool_encoding_get(op_spool *sp, const char *hash, const char *syntax,
			  op_spool_encoding *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT state, reason, copy_hash, size, encode_ms FROM encodings"
				" WHERE hash = ? AND syntax = ?",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, hash);
		op__spool_bind_text(st, 2, syntax);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);
		const char *reason = (const char *)sqlite3_column_text(st, 1);
		const char *copy = (const char *)sqlite3_column_text(st, 2);

		out->state = strcmp(state, "copy") == 0 ? OP_ENCODING_COPY : OP_ENCODING_ORIGINAL;
		snprintf(out->reason, sizeof(out->reason), "%s", reason ? reason : "");
		snprintf(out->hash, sizeof(out->hash), "%s", copy ? copy : "");
		out->size = (uint64_t)sqlite3_column_int64(st, 3);
		out->encode_ms = (uint64_t)sqlite3_column_int64(st, 4);
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "encoding get", rc);
}

/* Inserts the row, if the object is still in the spool. Caller holds
 * tx_mu. -ENOENT when it is not. */
static int insert_row(op_spool *sp, const char *hash, const char *syntax,
		      const op_spool_encoding *e)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		sp->db,
		"INSERT OR REPLACE INTO encodings (hash, syntax, state, reason, copy_hash, size,"
		" encode_ms) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7"
		" WHERE EXISTS (SELECT 1 FROM instances WHERE hash = ?1)",
		-1, &st, NULL);

	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, hash);
		op__spool_bind_text(st, 2, syntax);
		op__spool_bind_text(st, 3, state_names[e->state]);
		op__spool_bind_text(st, 4, e->state == OP_ENCODING_ORIGINAL ? e->reason : NULL);
		op__spool_bind_text(st, 5, e->state == OP_ENCODING_COPY ? e->hash : NULL);
		sqlite3_bind_int64(st, 6, e->state == OP_ENCODING_COPY ? (int64_t)e->size : 0);
		sqlite3_bind_int64(st, 7, (int64_t)e->encode_ms);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return op__spool_sql_fail(sp, "encoding put", rc);
	return sqlite3_changes(sp->db) ? 0 : -ENOENT;
}

int op_spool_encoding_put(op_spool *sp, const char *hash, const char *syntax,
			  const op_spool_encoding *e, const char *tmp)
{
	char path[PATH_MAX];
	int reserved = 0, rc;

	if (e->state != OP_ENCODING_COPY && e->state != OP_ENCODING_ORIGINAL)
		return -EINVAL;
	if (e->state == OP_ENCODING_COPY) {
		rc = op__spool_reserve(sp, e->size);
		if (rc < 0)
			goto out;
		reserved = 1;
	}
	pthread_mutex_lock(&sp->tx_mu);
	/* (the connection's setting: put back before tx_mu is let go) */
	op__spool_exec(sp, "PRAGMA synchronous=NORMAL");
	rc = insert_row(sp, hash, syntax, e);
	op__spool_exec(sp, "PRAGMA synchronous=FULL");
	if (rc == 0 && e->state == OP_ENCODING_COPY) {
		op_spool_encoding_file(sp, hash, path, sizeof(path));
		if (rename(tmp, path) < 0) {
			rc = -errno;
			op_error("spool.encoding", "hash=%s path=%s error=\"%s\"", hash, path,
				 strerror(errno));
			op__spool_exec_text(sp, "DELETE FROM encodings WHERE hash = ?1", hash);
			unlink(path);
		} else {
			pthread_mutex_lock(&sp->mu);
			sp->usage.bytes += e->size;
			pthread_mutex_unlock(&sp->mu);
		}
	}
	pthread_mutex_unlock(&sp->tx_mu);
out:
	if (reserved)
		op__spool_release(sp, e->size);
	if (tmp && e->state == OP_ENCODING_COPY)
		unlink(tmp); /* (gone already when renamed) */
	return rc;
}

int op__spool_encoding_forget(op_spool *sp, const char *hash, int only_when_sent, uint64_t *freed)
{
	sqlite3_stmt *st = NULL;
	int copies = 0, rc;

	rc = sqlite3_prepare_v2(
		sp->db,
		only_when_sent ? "DELETE FROM encodings WHERE hash = ?1 AND state = 'copy' AND"
				 " NOT EXISTS (SELECT 1 FROM instances WHERE hash = ?1 AND"
				 " state != 'sent') RETURNING size"
			       : "DELETE FROM encodings WHERE hash = ?1 RETURNING size",
		-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, hash);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			*freed += (uint64_t)sqlite3_column_int64(st, 0);
			copies += sqlite3_column_int64(st, 0) > 0;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return op__spool_sql_fail(sp, "encoding forget", rc);
	return copies > 0;
}

void op__spool_encoding_unlink(op_spool *sp, const char *hash, uint64_t freed)
{
	char path[PATH_MAX];

	op_spool_encoding_file(sp, hash, path, sizeof(path));
	unlink(path);
	if (freed) {
		pthread_mutex_lock(&sp->mu);
		sp->usage.bytes -= freed;
		pthread_mutex_unlock(&sp->mu);
	}
}

int op_spool_encoding_drop(op_spool *sp, const char *hash)
{
	uint64_t freed = 0;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_encoding_forget(sp, hash, 0, &freed);
	if (rc >= 0)
		op__spool_encoding_unlink(sp, hash, freed);
	pthread_mutex_unlock(&sp->tx_mu);
	op_warn("spool.encoding.dropped", "hash=%s", hash);
	return rc < 0 ? rc : 0;
}

/* Copies an encoder was writing when the uplink stopped (only the uplink
 * makes *.jls.part; the receiver's recovery clears tmp/ as well). */
static unsigned sweep_tmp(op_spool *sp)
{
	char dir[OP_DIR_MAX + 16], path[PATH_MAX];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tmp", sp->dir);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len < 9 || strcmp(de->d_name + len - 9, ".jls.part") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n += unlink(path) == 0;
	}
	closedir(d);
	return n;
}

int op_spool_encoding_sweep(op_spool *sp, unsigned *removed)
{
	sqlite3_stmt *st = NULL;
	char(*gone)[OP_HASH_HEX + 1] = NULL;
	uint64_t freed = 0;
	size_t n = 0, cap = 0;
	int rc;

	*removed = 0;
	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(
		sp->db,
		"DELETE FROM encodings WHERE hash NOT IN (SELECT hash FROM instances)"
		" RETURNING hash, size",
		-1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			void *more = realloc(gone, (cap = cap ? cap * 2 : 16) * sizeof(*gone));

			if (!more) {
				rc = SQLITE_NOMEM;
				break;
			}
			gone = more;
		}
		snprintf(gone[n++], sizeof(*gone), "%s", sqlite3_column_text(st, 0));
		freed += (uint64_t)sqlite3_column_int64(st, 1);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rc = op__spool_sql_fail(sp, "encoding sweep", rc);
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < n; i++)
		op__spool_encoding_unlink(sp, gone[i], 0);
	*removed += (unsigned)n + sweep_tmp(sp);
	pthread_mutex_lock(&sp->mu);
	sp->usage.bytes -= freed;
	pthread_mutex_unlock(&sp->mu);
	if (*removed)
		op_info("spool.encoding.sweep", "removed=%u bytes=%" PRIu64, *removed, freed);
out:
	pthread_mutex_unlock(&sp->tx_mu);
	free(gone);
	return rc;
}

int64_t op_spool_stored_mark(op_spool *sp)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(sp->ro, "SELECT max(rowid) FROM instances", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int op__spool_encoding_known(op_spool *sp, const char *hash)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(sp->db,
			       "SELECT COUNT(*) FROM encodings WHERE hash = ? AND"
			       " state = 'copy'",
			       -1, &st, NULL) == SQLITE_OK) {
		op__spool_bind_text(st, 1, hash);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0) > 0;
	}
	sqlite3_finalize(st);
	return n;
}
