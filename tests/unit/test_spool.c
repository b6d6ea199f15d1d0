/*
 * test_spool: services/common/spool.c, opening the spool (its tree, its
 * schema, a newer schema refused, two processes opening a new spool at
 * once, rows kept across a reopen) and its limits (max_bytes,
 * min_free_bytes). The other test_spool_*.c test the other spool_*.c; the
 * helpers they share are in spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/spool.h"
#include "spool_fixture.h"

/* A non-NULL pointer never dereferenced: shows that a failed call sets its
 * out-parameter to NULL. */
static char sentinel;
#define NOT_NULL_SPOOL ((op_spool *)(void *)&sentinel)
#define NOT_NULL_OBJECT ((op_spool_object *)(void *)&sentinel)

/* --- open, tree, schema ---------------------------------------------------------------- */

static void test_spool_open_creates_tree(void **state)
{
	struct spool_fx *f = *state;
	char path[256], text[64];
	struct stat sb;
	sqlite3 *db;

	for (const char *sub = "tmp\0objects\0damaged\0objects/00\0objects/ab\0objects/ff\0"; *sub;
	     sub += strlen(sub) + 1) {
		snprintf(path, sizeof(path), "%s/%s", f->t.dir, sub);
		assert_int_equal(stat(path, &sb), 0);
		assert_true(S_ISDIR(sb.st_mode));
	}
	snprintf(path, sizeof(path), "%s/spool.db", f->t.dir);
	assert_true(spool_fx_exists(path));
	assert_string_equal(op_spool_db_path(f->sp), path);

	db = spool_fx_db_open(f);
	assert_int_equal(spool_fx_db_int(db, "PRAGMA user_version", NULL), OP_SPOOL_SCHEMA_VERSION);
	assert_int_equal(OP_SPOOL_SCHEMA_VERSION, 2);
	spool_fx_db_text(db, "PRAGMA journal_mode", NULL, text, sizeof(text));
	assert_string_equal(text, "wal");
	assert_int_equal(spool_fx_db_int(db, "SELECT COUNT(*) FROM instances", NULL), 0);
	sqlite3_close(db);
	spool_fx_assert_usage(f, 0, 0, 0);
	assert_int_equal(spool_fx_files_in(f, "objects"), 0);
}

static void test_spool_open_errors(void **state)
{
	struct spool_fx *f = *state;
	op_spool_limits lim = { 0, 0, 0, 0 };
	op_spool *sp = NOT_NULL_SPOOL;
	char path[OP_DIR_MAX + 64];

	/* A path that does not fit. */
	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(op_spool_open(path, &lim, &sp), -ENAMETOOLONG);
	assert_null(sp);

	/* A regular file where the directory should be. */
	snprintf(path, sizeof(path), "%s/file", f->t.dir);
	spool_fx_put_file(f, "file", "x", 1);
	sp = NOT_NULL_SPOOL;
	assert_true(op_spool_open(path, &lim, &sp) < 0);
	assert_null(sp);

	/* A parent that does not exist. */
	snprintf(path, sizeof(path), "%s/no/such/parent", f->t.dir);
	sp = NOT_NULL_SPOOL;
	assert_int_equal(op_spool_open(path, &lim, &sp), -ENOENT);
	assert_null(sp);

	/* Two spools in one process (no hidden globals). */
	snprintf(path, sizeof(path), "%s/second", f->t.dir);
	assert_int_equal(op_spool_open(path, &lim, &sp), 0);
	assert_non_null(sp);
	op_spool_close(sp);
	op_spool_close(NULL);
}

/* A database written by a newer release is refused, not "upgraded". */
static void test_spool_newer_schema(void **state)
{
	struct spool_fx *f = *state;
	op_spool *sp = NULL;

	op_spool_close(f->sp);
	f->sp = NULL;
	spool_fx_db_exec(f, "PRAGMA user_version = 99");
	sp = NOT_NULL_SPOOL;
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &sp), -EPROTO);
	assert_null(sp);
	/* It was left as found. */
	sqlite3 *db = spool_fx_db_open(f);
	assert_int_equal(spool_fx_db_int(db, "PRAGMA user_version", NULL), 99);
	sqlite3_close(db);

	/* The current version opens. */
	spool_fx_db_exec(f, "PRAGMA user_version = 2");
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
}

/* Schema 1 (one queue, the cloud's) becomes schema 2 at open: each
 * instance's row becomes its delivery to "cloud", in its state. (The
 * integration test opens a spool that the 0.1.0 binaries wrote.) */
static void test_spool_upgrade_from_1(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.80", 800, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.81", 900, 2);
	sqlite3 *db;

	spool_fx_store_ok(f, a, 800, "1.2.3.80", OP_SPOOL_STORED, NULL);
	spool_fx_store_ok(f, b, 900, "1.2.3.81", OP_SPOOL_STORED, NULL);
	op_spool_close(f->sp);
	f->sp = NULL;
	/* As release 0.1.0 left it: no deliveries, nor the triggers of the
	 * status tallies (which name them). */
	spool_fx_db_exec(f, "DROP TRIGGER tally_instance_in; DROP TRIGGER tally_instance_out;"
			    " DROP TRIGGER tally_instance_change; DROP TRIGGER tally_delivery_in;"
			    " DROP TRIGGER tally_delivery_out; DROP TRIGGER tally_delivery_change;"
			    " DROP TABLE tallies; DROP TABLE waiting_studies");
	spool_fx_db_exec(f, "DROP TABLE deliveries");
	spool_fx_db_exec(f, "UPDATE instances SET state = 'quarantined', attempts = 3,"
			    " last_error = 'refused' WHERE sop_instance_uid = '1.2.3.81'");
	spool_fx_db_exec(f, "PRAGMA user_version = 1");
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	db = spool_fx_db_open(f);
	assert_int_equal(spool_fx_db_int(db, "PRAGMA user_version", NULL), 2);
	assert_int_equal(spool_fx_db_int(db,
					 "SELECT COUNT(*) FROM deliveries d JOIN instances i"
					 " ON i.id = d.instance_id WHERE d.destination = 'cloud'"
					 " AND d.state = i.state AND d.attempts = i.attempts"
					 " AND d.last_error IS i.last_error",
					 NULL),
			 2);
	sqlite3_close(db);
}

/* Rows, usage and files survive close and open. */
static void test_spool_reopen_keeps_rows(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.1", 1000, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.2", 70000, 2);
	unsigned char *c = spool_fx_content(f, "1.2.3.3", 15, 3);
	char hb[OP_HASH_HEX + 1], path[256];

	spool_fx_store_ok(f, a, 1000, "1.2.3.1", OP_SPOOL_STORED, NULL);
	spool_fx_store_ok(f, b, 70000, "1.2.3.2", OP_SPOOL_STORED, hb);
	spool_fx_store_ok(f, c, 15, "1.2.3.3", OP_SPOOL_STORED, NULL);
	op_spool_close(f->sp);
	f->sp = NULL;

	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	spool_fx_assert_usage(f, 3, 71015, 0);
	assert_int_equal(spool_fx_rows(f), 3);
	spool_fx_object_path(f, hb, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, b, 70000));
	/* The index is live: the same bytes again are a duplicate. */
	spool_fx_store_ok(f, b, 70000, "1.2.3.2", OP_SPOOL_DUPLICATE, NULL);
	spool_fx_assert_usage(f, 3, 71015, 0);
	spool_fx_assert_rows_have_files(f);
}

struct open_arg {
	const char *dir;
	int rc;
};

static void *open_thread(void *p)
{
	struct open_arg *a = p;
	op_spool_limits limits = { 0, 0, 0, 0 };
	op_spool *sp = NULL;

	a->rc = op_spool_open(a->dir, &limits, &sp);
	op_spool_close(sp);
	return NULL;
}

/* The receiver and the uplink may open a new spool at the same moment:
 * one creates the schema, both succeed. */
static void test_spool_concurrent_first_open(void **state)
{
	struct spool_fx *f = *state;
	struct open_arg args[6];
	pthread_t t[6];
	char dir[128];

	snprintf(dir, sizeof(dir), "%s/fresh", f->t.dir);
	for (int i = 0; i < 6; i++) {
		args[i].dir = dir;
		args[i].rc = -1;
		assert_int_equal(pthread_create(&t[i], NULL, open_thread, &args[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(args[i].rc, 0);
	}
}

/* --- limits ---------------------------------------------------------------------------- */

static void test_spool_max_bytes_at_write(void **state)
{
	struct spool_fx *f = *state;
	unsigned char buf[1000];
	op_spool_object *obj = NULL;

	memset(buf, 'm', sizeof(buf));
	f->limits.max_bytes = 1000;
	op_spool_set_limits(f->sp, &f->limits);

	/* Exactly up to the limit is fine. */
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 600), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 400), 0);
	spool_fx_assert_usage(f, 0, 0, 1000);
	/* One byte more is not, and leaves the reservation as it was. */
	assert_int_equal(op_spool_object_write(obj, buf, 1), -EDQUOT);
	spool_fx_assert_usage(f, 0, 0, 1000);
	/* After an error the object can only be aborted, even with room again. */
	f->limits.max_bytes = 5000;
	op_spool_set_limits(f->sp, &f->limits);
	assert_true(op_spool_object_write(obj, buf, 1) < 0);
	assert_true(op_spool_object_finish(obj) < 0);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 0, 0, 0);
	f->limits.max_bytes = 1000;
	op_spool_set_limits(f->sp, &f->limits);

	/* A write that would cross the limit in one piece. */
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 600), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 500), -EDQUOT);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 0, 0, 0);

	/* Raising the limit lets the same object through. */
	f->limits.max_bytes = 2000;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 600), 0);
	assert_int_equal(op_spool_object_write(obj, buf, 500), 0);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 0, 0, 0);
}

static void test_spool_max_bytes_at_begin(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.20", 1000, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.21", 500, 2);
	op_spool_object *obj = NOT_NULL_OBJECT, *o2 = NULL;

	f->limits.max_bytes = 1000;
	op_spool_set_limits(f->sp, &f->limits);
	spool_fx_store_ok(f, a, 1000, "1.2.3.20", OP_SPOOL_STORED, NULL);
	spool_fx_assert_usage(f, 1, 1000, 0);

	/* Full: begin is refused at once. */
	assert_int_equal(op_spool_object_begin(f->sp, &obj), -EDQUOT);
	assert_null(obj);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 1, 1000, 0);

	/* Raising the limit accepts again. */
	f->limits.max_bytes = 1500;
	op_spool_set_limits(f->sp, &f->limits);
	spool_fx_store_ok(f, b, 500, "1.2.3.21", OP_SPOOL_STORED, NULL);
	spool_fx_assert_usage(f, 2, 1500, 0);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), -EDQUOT);

	/* Bytes of objects in flight count too. */
	f->limits.max_bytes = 2000;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, a, 400), 0);
	assert_int_equal(op_spool_object_begin(f->sp, &o2), 0);
	assert_int_equal(op_spool_object_write(o2, a, 101), -EDQUOT);
	op_spool_object_abort(o2);
	assert_int_equal(op_spool_object_write(obj, a, 100), 0);
	spool_fx_assert_usage(f, 2, 1500, 500);
	assert_int_equal(op_spool_object_begin(f->sp, &o2), -EDQUOT);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 2, 1500, 0);

	/* 0 means no limit. */
	f->limits.max_bytes = 0;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	op_spool_object_abort(obj);
}

static void test_spool_min_free_bytes(void **state)
{
	struct spool_fx *f = *state;
	op_spool_object *obj = NOT_NULL_OBJECT;
	unsigned char buf[100] = { 0 };

	/* No disk has this much free. */
	f->limits.min_free_bytes = UINT64_MAX / 2;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), -EDQUOT);
	assert_null(obj);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);

	f->limits.min_free_bytes = 0;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, buf, sizeof(buf)), 0);

	/* The limit rises while an object is being received. */
	f->limits.min_free_bytes = UINT64_MAX / 2;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_write(obj, buf, sizeof(buf)), -EDQUOT);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 0, 0, 0);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* open, tree, schema */
		SPOOL_FX_TEST(test_spool_open_creates_tree),
		SPOOL_FX_TEST(test_spool_open_errors),
		SPOOL_FX_TEST(test_spool_newer_schema),
		SPOOL_FX_TEST(test_spool_upgrade_from_1),
		SPOOL_FX_TEST(test_spool_reopen_keeps_rows),
		SPOOL_FX_TEST(test_spool_concurrent_first_open),
		/* limits */
		SPOOL_FX_TEST(test_spool_max_bytes_at_write),
		SPOOL_FX_TEST(test_spool_max_bytes_at_begin),
		SPOOL_FX_TEST(test_spool_min_free_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
