/*
 * spool_fixture: what the spool's unit tests (test_spool*.c) share; see
 * spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/spool.h"
#include "spool_fixture.h"

int spool_fx_setup(void **state)
{
	struct spool_fx *f;

	/* The spool logs each recovery step at info; failures stay visible. */
	if (!getenv("OUTPOST_TEST_VERBOSE"))
		op_log_set_level(OP_LOG_WARN);
	if (sodium_init() < 0 || !(f = unit_tmp_new(sizeof(*f))))
		return -1;
	if (op_spool_open(f->t.dir, &f->limits, &f->sp) != 0) {
		unit_tmp_free(f);
		return -1;
	}
	*state = f;
	return 0;
}

int spool_fx_teardown(void **state)
{
	struct spool_fx *f = *state;

	op_spool_close(f->sp);
	return unit_tmp_teardown(state);
}

void spool_fx_hash_hex(const void *data, size_t len, char out[OP_HASH_HEX + 1])
{
	unsigned char d[OP_HASH_BYTES];

	assert_int_equal(crypto_generichash(d, sizeof(d), data, len, NULL, 0), 0);
	sodium_bin2hex(out, OP_HASH_HEX + 1, d, sizeof(d));
}

void spool_fx_object_path(const struct spool_fx *f, const char *hash, char *out, size_t size)
{
	snprintf(out, size, "%s/objects/%.2s/%s.dcm", f->t.dir, hash, hash);
}

unsigned char *spool_fx_make_content(const char *sop, size_t len, unsigned seed)
{
	unsigned char *buf = malloc(len);
	int n;

	if (!buf)
		abort();
	n = snprintf((char *)buf, len, "SOP=%s\n", sop);
	if (n <= 0 || (size_t)n >= len)
		abort();
	for (size_t i = (size_t)n; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	return buf;
}

unsigned char *spool_fx_content(struct spool_fx *f, const char *sop, size_t len, unsigned seed)
{
	(void)f;
	return unit_hold(spool_fx_make_content(sop, len, seed), NULL);
}

void spool_fx_fill_inst(op_instance *in, const char *sop)
{
	memset(in, 0, sizeof(*in));
	snprintf(in->sop_instance_uid, sizeof(in->sop_instance_uid), "%s", sop);
	snprintf(in->sop_class_uid, sizeof(in->sop_class_uid), "1.2.840.10008.5.1.4.1.1.2");
	snprintf(in->study_uid, sizeof(in->study_uid), "1.2.826.0.1.1");
	snprintf(in->series_uid, sizeof(in->series_uid), "1.2.826.0.1.1.1");
	snprintf(in->transfer_syntax, sizeof(in->transfer_syntax), "1.2.840.10008.1.2.1");
	snprintf(in->patient_id, sizeof(in->patient_id), "PID-7");
	snprintf(in->modality, sizeof(in->modality), "CT");
	snprintf(in->calling_aet, sizeof(in->calling_aet), "STORESCU");
	in->priority = 2;
}

int spool_fx_write_pieces(op_spool_object *obj, const unsigned char *data, size_t len)
{
	static const size_t pieces[] = { 1, 7, 132, 16384, 40000 };
	size_t o = 0;
	int i = 0, rc;

	while (o < len) {
		size_t n = pieces[i < 4 ? i : 4];
		if (n > len - o)
			n = len - o;
		rc = op_spool_object_write(obj, data + o, n);
		if (rc < 0)
			return rc;
		o += n;
		i++;
	}
	return 0;
}

int spool_fx_store(op_spool *sp, const unsigned char *data, size_t len, const char *sop,
		   enum op_spool_outcome *outcome, char *hash)
{
	op_spool_object *obj = NULL;
	op_instance in;
	int rc;

	spool_fx_fill_inst(&in, sop);
	rc = op_spool_object_begin(sp, &obj);
	if (rc < 0)
		return rc;
	rc = spool_fx_write_pieces(obj, data, len);
	if (rc < 0) {
		op_spool_object_abort(obj);
		return rc;
	}
	if (op_spool_object_size(obj) != len) { /* no cmocka asserts off the main thread */
		op_spool_object_abort(obj);
		return -EBADMSG;
	}
	return op_spool_object_commit(obj, &in, outcome, hash);
}

void spool_fx_store_ok(struct spool_fx *f, const unsigned char *data, size_t len, const char *sop,
		       enum op_spool_outcome want, char *hash)
{
	enum op_spool_outcome outcome = (enum op_spool_outcome) - 1;
	char h[OP_HASH_HEX + 1], expect[OP_HASH_HEX + 1];
	int rc = spool_fx_store(f->sp, data, len, sop, &outcome, h);

	if (rc != 0)
		fail_msg("store %s: %d (%s)", sop, rc, strerror(-rc));
	assert_int_equal(outcome, want);
	spool_fx_hash_hex(data, len, expect);
	assert_string_equal(h, expect);
	if (hash)
		memcpy(hash, h, sizeof(h));
}

int spool_fx_file_equals(const char *path, const unsigned char *data, size_t len)
{
	struct stat sb;
	unsigned char *buf;
	int fd, same;

	if (stat(path, &sb) != 0 || (size_t)sb.st_size != len)
		return 0;
	buf = malloc(len + 1);
	fd = open(path, O_RDONLY);
	same = buf && fd >= 0 && read(fd, buf, len + 1) == (ssize_t)len &&
	       memcmp(buf, data, len) == 0;
	if (fd >= 0)
		close(fd);
	free(buf);
	return same;
}

int spool_fx_exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

/* --- the index, read with the test's own connection ---------------------- */

sqlite3 *spool_fx_db_open(const struct spool_fx *f)
{
	char path[128];
	sqlite3 *db = NULL;

	snprintf(path, sizeof(path), "%s/spool.db", f->t.dir);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	return db;
}

long long spool_fx_db_int(sqlite3 *db, const char *sql, const char *arg)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

void spool_fx_db_text(sqlite3 *db, const char *sql, const char *arg, char *out, size_t size)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	if (arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(out, size, "%s", t ? (const char *)t : "");
	} else {
		snprintf(out, size, "(no row)");
	}
	sqlite3_finalize(st);
}

long long spool_fx_rows(const struct spool_fx *f)
{
	sqlite3 *db = spool_fx_db_open(f);
	long long n = spool_fx_db_int(db, "SELECT COUNT(*) FROM instances", NULL);

	sqlite3_close(db);
	return n;
}

void spool_fx_row_text(const struct spool_fx *f, const char *sop, const char *column, char *out,
		       size_t size)
{
	char sql[128];
	sqlite3 *db = spool_fx_db_open(f);

	snprintf(sql, sizeof(sql), "SELECT %s FROM instances WHERE sop_instance_uid = ?", column);
	spool_fx_db_text(db, sql, sop, out, size);
	sqlite3_close(db);
}

long long spool_fx_row_int(const struct spool_fx *f, const char *sop, const char *column)
{
	char sql[128];
	sqlite3 *db = spool_fx_db_open(f);
	long long v;

	snprintf(sql, sizeof(sql), "SELECT %s FROM instances WHERE sop_instance_uid = ?", column);
	v = spool_fx_db_int(db, sql, sop);
	sqlite3_close(db);
	return v;
}

void spool_fx_db_exec(const struct spool_fx *f, const char *sql)
{
	sqlite3 *db = spool_fx_db_open(f);
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

void spool_fx_assert_usage(struct spool_fx *f, uint64_t objects, uint64_t bytes, uint64_t reserved)
{
	op_spool_usage u;

	op_spool_get_usage(f->sp, &u);
	if (u.objects != objects || u.bytes != bytes || u.reserved != reserved)
		fail_msg("usage: objects=%llu bytes=%llu reserved=%llu, want %llu %llu %llu",
			 (unsigned long long)u.objects, (unsigned long long)u.bytes,
			 (unsigned long long)u.reserved, (unsigned long long)objects,
			 (unsigned long long)bytes, (unsigned long long)reserved);
}

void spool_fx_assert_usage_matches_index(struct spool_fx *f)
{
	sqlite3 *db = spool_fx_db_open(f);
	long long n = spool_fx_db_int(db, "SELECT COUNT(*) FROM instances", NULL);
	long long bytes =
		spool_fx_db_int(db,
				"SELECT COALESCE(SUM(size), 0) + (SELECT COALESCE(SUM(size),"
				" 0) FROM encodings) FROM instances",
				NULL);

	sqlite3_close(db);
	spool_fx_assert_usage(f, (uint64_t)n, (uint64_t)bytes, 0);
}

void spool_fx_assert_rows_have_files(struct spool_fx *f)
{
	sqlite3 *db = spool_fx_db_open(f);
	sqlite3_stmt *st = NULL;
	char path[256], h[OP_HASH_HEX + 1];

	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT sop_instance_uid, hash, size FROM instances"
					    " WHERE state != 'quarantined'",
					    -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *sop = (const char *)sqlite3_column_text(st, 0);
		const char *hash = (const char *)sqlite3_column_text(st, 1);
		long long size = sqlite3_column_int64(st, 2);
		struct stat sb;
		unsigned char *buf;
		int fd;

		spool_fx_object_path(f, hash, path, sizeof(path));
		if (stat(path, &sb) != 0)
			fail_msg("row %s: its file %s is missing", sop, path);
		if (sb.st_size != size)
			fail_msg("row %s: size %lld, file %lld", sop, size, (long long)sb.st_size);
		buf = malloc((size_t)size + 1);
		fd = open(path, O_RDONLY);
		h[0] = '\0';
		if (buf && fd >= 0 && read(fd, buf, (size_t)size + 1) == size)
			spool_fx_hash_hex(buf, (size_t)size, h);
		if (fd >= 0)
			close(fd);
		free(buf);
		if (strcmp(h, hash) != 0)
			fail_msg("row %s: file %s hashes to \"%s\"", sop, path, h);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* --- files --------------------------------------------------------------- */

static size_t n_counted;

static int count_one(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)p;
	(void)sb;
	(void)ftw;
	if (type == FTW_F)
		n_counted++;
	return 0;
}

size_t spool_fx_files_in(const struct spool_fx *f, const char *sub)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", f->t.dir, sub);
	n_counted = 0;
	assert_int_equal(nftw(path, count_one, 16, FTW_PHYS), 0);
	return n_counted;
}

void spool_fx_put_file(const struct spool_fx *f, const char *rel, const void *data, size_t len)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", f->t.dir, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* --- the uplink's side --------------------------------------------------- */

void spool_fx_store_study(struct spool_fx *f, const char *sop, const char *study, int priority,
			  size_t len, char *hash)
{
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;
	unsigned char *data = spool_fx_content(f, sop, len, (unsigned)len ^ (unsigned)strlen(sop));

	spool_fx_fill_inst(&in, sop);
	snprintf(in.study_uid, sizeof(in.study_uid), "%s", study);
	in.priority = priority;
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, len), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, hash), 0);
	/* Rows received in the same millisecond would tie on received_at. */
	usleep(2000);
}

void spool_fx_claim(struct spool_fx *f, unsigned max_items, uint64_t max_bytes,
		    op_spool_item *items, unsigned *n)
{
	assert_int_equal(
		op_spool_claim(f->sp, "cloud", INT64_MAX / 2, max_items, max_bytes, 0, items, n),
		0);
}

void spool_fx_settle_one(struct spool_fx *f, const op_spool_item *it, enum op_spool_verdict v,
			 int64_t next, const char *error, int64_t now)
{
	op_spool_settlement s = { it->id, it->hash, v, next, error };

	assert_int_equal(op_spool_settle(f->sp, "cloud", &s, 1, now), 0);
}
