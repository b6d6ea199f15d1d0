/*
 * test_spool_store: services/common/spool_store.c, the receiver's side:
 * objects written, committed, found again (duplicates), replaced, shared,
 * aborted and misused; a row the index refuses or has to wait for; and
 * concurrent commits (group commit). The helpers are in spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/spool.h"
#include "spool_fixture.h"

/* --- storing ------------------------------------------------------------------------ */

static void test_spool_commit_stores_object(void **state)
{
	struct spool_fx *f = *state;
	const size_t len = 100000;
	unsigned char *data = spool_fx_content(f, "1.2.826.0.1.3680043.2.1", len, 42);
	char hash[OP_HASH_HEX + 1], path[256], text[128];
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;

	spool_fx_hash_hex(data, len, hash);
	spool_fx_fill_inst(&in, "1.2.826.0.1.3680043.2.1");
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_non_null(obj);
	/* The temporary file is in tmp/ while it is written. */
	snprintf(path, sizeof(path), "%s/tmp/", f->t.dir);
	assert_memory_equal(op_spool_object_path(obj), path, strlen(path));
	assert_true(spool_fx_exists(op_spool_object_path(obj)));
	assert_int_equal(spool_fx_write_pieces(obj, data, len), 0);
	assert_int_equal(op_spool_object_size(obj), len);
	spool_fx_assert_usage(f, 0, 0, len);
	/* finish makes the temporary file complete for a parser; commit after
	 * finish is allowed. */
	assert_int_equal(op_spool_object_finish(obj), 0);
	assert_true(spool_fx_file_equals(op_spool_object_path(obj), data, len));
	assert_int_equal(op_spool_object_finish(obj), 0);
	char got[OP_HASH_HEX + 1];
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, got), 0);
	assert_int_equal(outcome, OP_SPOOL_STORED);
	assert_string_equal(got, hash);

	/* The file, named by its content. */
	spool_fx_object_path(f, hash, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, data, len));
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	assert_int_equal(spool_fx_files_in(f, "damaged"), 0);

	/* One row, with everything the instance said. */
	assert_int_equal(spool_fx_rows(f), 1);
	const char *sop = "1.2.826.0.1.3680043.2.1";
	spool_fx_row_text(f, sop, "hash", text, sizeof(text));
	assert_string_equal(text, hash);
	assert_int_equal(spool_fx_row_int(f, sop, "size"), (long long)len);
	spool_fx_row_text(f, sop, "sop_class_uid", text, sizeof(text));
	assert_string_equal(text, in.sop_class_uid);
	spool_fx_row_text(f, sop, "study_uid", text, sizeof(text));
	assert_string_equal(text, in.study_uid);
	spool_fx_row_text(f, sop, "series_uid", text, sizeof(text));
	assert_string_equal(text, in.series_uid);
	spool_fx_row_text(f, sop, "transfer_syntax", text, sizeof(text));
	assert_string_equal(text, in.transfer_syntax);
	spool_fx_row_text(f, sop, "patient_id", text, sizeof(text));
	assert_string_equal(text, "PID-7");
	spool_fx_row_text(f, sop, "modality", text, sizeof(text));
	assert_string_equal(text, "CT");
	spool_fx_row_text(f, sop, "calling_aet", text, sizeof(text));
	assert_string_equal(text, "STORESCU");
	spool_fx_row_text(f, sop, "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	assert_int_equal(spool_fx_row_int(f, sop, "priority"), 2);
	assert_int_equal(spool_fx_row_int(f, sop, "attempts"), 0);
	assert_true(spool_fx_row_int(f, sop, "received_at") > 1600000000000LL); /* ms since 1970 */
	spool_fx_row_text(f, sop, "last_error", text, sizeof(text));
	assert_string_equal(text, "");

	spool_fx_assert_usage(f, 1, len, 0);
}

/* Empty and tiny objects, and commit without hash_out. */
static void test_spool_commit_small_objects(void **state)
{
	struct spool_fx *f = *state;
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	char hash[OP_HASH_HEX + 1], path[256];
	op_instance in;

	spool_fx_fill_inst(&in, "1.2.3.0");
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, NULL), 0);
	assert_int_equal(outcome, OP_SPOOL_STORED);
	spool_fx_hash_hex("", 0, hash);
	spool_fx_object_path(f, hash, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, (const unsigned char *)"", 0));

	spool_fx_store_ok(f, (const unsigned char *)"x", 1, "1.2.3.1", OP_SPOOL_STORED, NULL);
	spool_fx_assert_usage(f, 2, 1, 0);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
}

static void test_spool_commit_duplicate(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *data = spool_fx_content(f, "1.2.3.4", 20000, 7);
	char h1[OP_HASH_HEX + 1], h2[OP_HASH_HEX + 1], path[256];

	spool_fx_store_ok(f, data, 20000, "1.2.3.4", OP_SPOOL_STORED, h1);
	spool_fx_store_ok(f, data, 20000, "1.2.3.4", OP_SPOOL_DUPLICATE, h2);
	spool_fx_store_ok(f, data, 20000, "1.2.3.4", OP_SPOOL_DUPLICATE, NULL);
	assert_string_equal(h1, h2);
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_object_path(f, h1, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, data, 20000));
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 1, 20000, 0);
}

static void test_spool_commit_replaced(void **state)
{
	struct spool_fx *f = *state;
	const char *sop = "1.2.3.5";
	unsigned char *v1 = spool_fx_content(f, sop, 3000, 1);
	unsigned char *v2 = spool_fx_content(f, sop, 50000, 2);
	unsigned char *v3 = spool_fx_content(f, sop, 100, 3);
	char h1[OP_HASH_HEX + 1], h2[OP_HASH_HEX + 1], h3[OP_HASH_HEX + 1], path[256], text[128];

	spool_fx_store_ok(f, v1, 3000, sop, OP_SPOOL_STORED, h1);
	spool_fx_store_ok(f, v2, 50000, sop, OP_SPOOL_REPLACED, h2);
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_row_text(f, sop, "hash", text, sizeof(text));
	assert_string_equal(text, h2);
	assert_int_equal(spool_fx_row_int(f, sop, "size"), 50000);
	spool_fx_object_path(f, h1, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	spool_fx_object_path(f, h2, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, v2, 50000));
	spool_fx_assert_usage(f, 1, 50000, 0);

	/* A version that was sent, retried or quarantined is queued again. */
	spool_fx_db_exec(f, "UPDATE instances SET state = 'quarantined', attempts = 5,"
			    " last_error = 'rejected' WHERE sop_instance_uid = '1.2.3.5'");
	spool_fx_store_ok(f, v3, 100, sop, OP_SPOOL_REPLACED, h3);
	spool_fx_row_text(f, sop, "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	assert_int_equal(spool_fx_row_int(f, sop, "attempts"), 0);
	spool_fx_row_text(f, sop, "last_error", text, sizeof(text));
	assert_string_equal(text, "");
	spool_fx_row_text(f, sop, "hash", text, sizeof(text));
	assert_string_equal(text, h3);
	spool_fx_object_path(f, h2, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	/* A smaller version: usage goes down. */
	spool_fx_assert_usage(f, 1, 100, 0);

	/* The first version again replaces the third. */
	spool_fx_store_ok(f, v1, 3000, sop, OP_SPOOL_REPLACED, NULL);
	spool_fx_assert_usage(f, 1, 3000, 0);
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_rows_have_files(f);
}

/* Stores data as sop from calling AE title aet; returns the commit's code. */
static int store_from(struct spool_fx *f, const char *aet, const void *data, size_t len,
		      const char *sop, enum op_spool_outcome *outcome)
{
	op_spool_object *obj = NULL;
	op_instance in;

	spool_fx_fill_inst(&in, sop);
	snprintf(in.calling_aet, sizeof(in.calling_aet), "%s", aet);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, len), 0);
	return op_spool_object_commit(obj, &in, outcome, NULL);
}

/* Part 10 bytes: preamble, DICM, a meta group of one (0002,0016) naming
 * aet, then dataset. */
static size_t part10(unsigned char *out, const char *aet, const char *dataset)
{
	size_t n = 128, alen = strlen(aet) + strlen(aet) % 2;

	memset(out, 0, sizeof(unsigned char) * 128);
	memcpy(out + n, "DICM\x02\x00\x00\x00UL\x04\x00", 12);
	n += 12;
	uint32_t glen = (uint32_t)(8 + alen);
	memcpy(out + n, &glen, 4); /* little endian here */
	n += 4;
	memcpy(out + n,
	       "\x02\x00\x16\x00"
	       "AE",
	       6);
	out[n + 6] = (unsigned char)alen;
	out[n + 7] = 0;
	memset(out + n + 8, ' ', alen);
	memcpy(out + n + 8, aet, strlen(aet));
	n += 8 + alen;
	memcpy(out + n, dataset, strlen(dataset));
	return n + strlen(dataset);
}

/* Issue 15: another calling AE's other bytes do not replace an unsent
 * instance; the same AE's do, and so do anyone's once it was sent. */
static void test_spool_commit_foreign_replacement_refused(void **state)
{
	struct spool_fx *f = *state;
	const char *sop = "1.2.3.9";
	unsigned char *v1 = spool_fx_content(f, sop, 4000, 1);
	unsigned char *v2 = spool_fx_content(f, sop, 5000, 2);
	unsigned char a[512], b[512];
	enum op_spool_outcome outcome;
	char h1[OP_HASH_HEX + 1], text[128];

	spool_fx_store_ok(f, v1, 4000, sop, OP_SPOOL_STORED, h1); /* from STORESCU */
	for (int i = 0; i < 2; i++) {
		spool_fx_db_exec(f, i ? "UPDATE instances SET state = 'quarantined'"
				      : "UPDATE instances SET state = 'sending'");
		assert_int_equal(store_from(f, "INTRUDER", v2, 5000, sop, &outcome), -EPERM);
		spool_fx_row_text(f, sop, "hash", text, sizeof(text));
		assert_string_equal(text, h1);
		spool_fx_row_text(f, sop, "calling_aet", text, sizeof(text));
		assert_string_equal(text, "STORESCU");
		assert_int_equal(spool_fx_files_in(f, "objects"), 1);
		assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
		spool_fx_assert_usage(f, 1, 4000, 0);
	}
	spool_fx_db_exec(f, "UPDATE instances SET state = 'queued'");
	assert_int_equal(store_from(f, "STORESCU", v2, 5000, sop, &outcome), 0);
	assert_int_equal(outcome, OP_SPOOL_REPLACED);
	spool_fx_db_exec(f, "UPDATE instances SET state = 'sent'");
	assert_int_equal(store_from(f, "INTRUDER", v1, 4000, sop, &outcome), 0);
	assert_int_equal(outcome, OP_SPOOL_REPLACED);
	spool_fx_assert_usage(f, 1, 4000, 0);

	/* One dataset from two senders: the files differ only in the meta
	 * header, which names the sender. A duplicate; the first file stays. */
	size_t na = part10(a, "MOD_A", "SOP=1.2.3.10\ndataset");
	size_t nb = part10(b, "MOD_BB", "SOP=1.2.3.10\ndataset");
	assert_int_equal(store_from(f, "MOD_A", a, na, "1.2.3.10", &outcome), 0);
	assert_int_equal(store_from(f, "MOD_BB", b, nb, "1.2.3.10", &outcome), 0);
	assert_int_equal(outcome, OP_SPOOL_DUPLICATE);
	spool_fx_row_text(f, "1.2.3.10", "calling_aet", text, sizeof(text));
	assert_string_equal(text, "MOD_A");
	assert_int_equal(spool_fx_files_in(f, "objects"), 2);
	b[nb - 1] = 'X'; /* the dataset itself differs */
	assert_int_equal(store_from(f, "MOD_BB", b, nb, "1.2.3.10", &outcome), -EPERM);
	assert_int_equal(spool_fx_files_in(f, "objects"), 2);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_rows_have_files(f);
}

/* Two instances whose bytes are equal share one file; replacing one keeps
 * the file the other still names. */
static void test_spool_shared_content(void **state)
{
	struct spool_fx *f = *state;
	const unsigned char same[] = "identical bytes, two SOP Instance UIDs";
	const unsigned char other[] = "another version";
	char h[OP_HASH_HEX + 1], path[256];

	spool_fx_store_ok(f, same, sizeof(same), "1.2.3.10", OP_SPOOL_STORED, h);
	spool_fx_store_ok(f, same, sizeof(same), "1.2.3.11", OP_SPOOL_STORED, NULL);
	assert_int_equal(spool_fx_rows(f), 2);
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	spool_fx_assert_usage(f, 2, 2 * sizeof(same), 0);

	spool_fx_store_ok(f, other, sizeof(other), "1.2.3.10", OP_SPOOL_REPLACED, NULL);
	spool_fx_object_path(f, h, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, same, sizeof(same)));
	spool_fx_assert_rows_have_files(f);

	spool_fx_store_ok(f, other, sizeof(other), "1.2.3.11", OP_SPOOL_REPLACED, NULL);
	assert_false(spool_fx_exists(path));
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	spool_fx_assert_usage(f, 2, 2 * sizeof(other), 0);
	spool_fx_assert_rows_have_files(f);
}

static void test_spool_abort(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *data = spool_fx_content(f, "1.2.3.6", 30000, 9);
	op_spool_object *obj = NULL;
	char tmp[PATH_MAX];

	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	snprintf(tmp, sizeof(tmp), "%s", op_spool_object_path(obj));
	assert_int_equal(spool_fx_write_pieces(obj, data, 30000), 0);
	spool_fx_assert_usage(f, 0, 0, 30000);
	op_spool_object_abort(obj);
	assert_false(spool_fx_exists(tmp));
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	assert_int_equal(spool_fx_files_in(f, "objects"), 0);
	assert_int_equal(spool_fx_rows(f), 0);
	spool_fx_assert_usage(f, 0, 0, 0);

	/* Abort after finish, and abort right after begin. */
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, 10), 0);
	assert_int_equal(op_spool_object_finish(obj), 0);
	op_spool_object_abort(obj);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	op_spool_object_abort(obj);
	op_spool_object_abort(NULL);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 0, 0, 0);
}

/* No writes after finish; a failed object never becomes a committed one. */
static void test_spool_object_misuse(void **state)
{
	struct spool_fx *f = *state;
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;

	spool_fx_fill_inst(&in, "1.2.3.7");
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, "abc", 3), 0);
	assert_int_equal(op_spool_object_finish(obj), 0);
	assert_true(op_spool_object_write(obj, "def", 3) < 0);
	assert_int_equal(op_spool_object_size(obj), 3);
	op_spool_object_abort(obj);
	spool_fx_assert_usage(f, 0, 0, 0);

	/* A write refused for space, then commit anyway: the truncated object
	 * must not be stored. */
	f->limits.max_bytes = 100;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, "SOP=1.2.3.7\n", 12), 0);
	unsigned char big[200] = { 0 };
	assert_int_equal(op_spool_object_write(obj, big, sizeof(big)), -EDQUOT);
	assert_true(op_spool_object_finish(obj) < 0);
	assert_true(op_spool_object_commit(obj, &in, &outcome, NULL) < 0);
	assert_int_equal(spool_fx_rows(f), 0);
	assert_int_equal(spool_fx_files_in(f, "objects"), 0);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 0, 0, 0);
}

/* --- failures of the index --------------------------------------------------------------- */

/*
 * One row the database refuses (a trigger stands in for a constraint or I/O
 * error) fails only its own commit: the rows committed with it are kept,
 * its file is not left behind, its bytes are no longer reserved.
 */
static void test_spool_commit_failure_isolated(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *good = spool_fx_content(f, "1.2.3.300", 2000, 1);
	unsigned char *bad = spool_fx_content(f, "1.2.3.666", 3000, 2);
	unsigned char *bad2 = spool_fx_content(f, "1.2.3.300", 2100, 3);
	char hb[OP_HASH_HEX + 1], hg[OP_HASH_HEX + 1], path[256], text[128];
	enum op_spool_outcome outcome;

	spool_fx_db_exec(f, "CREATE TRIGGER refuse BEFORE INSERT ON instances"
			    " WHEN NEW.sop_instance_uid = '1.2.3.666'"
			    " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
			    "CREATE TRIGGER refuse_update BEFORE UPDATE ON instances"
			    " WHEN NEW.size = 2100"
			    " BEGIN SELECT RAISE(ABORT, 'injected failure'); END;");
	spool_fx_store_ok(f, good, 2000, "1.2.3.300", OP_SPOOL_STORED, hg);
	assert_true(spool_fx_store(f->sp, bad, 3000, "1.2.3.666", &outcome, NULL) < 0);
	spool_fx_hash_hex(bad, 3000, hb);
	spool_fx_object_path(f, hb, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_assert_usage(f, 1, 2000, 0);

	/* A replacement the index refuses leaves the stored version in place. */
	assert_true(spool_fx_store(f->sp, bad2, 2100, "1.2.3.300", &outcome, NULL) < 0);
	spool_fx_row_text(f, "1.2.3.300", "hash", text, sizeof(text));
	assert_string_equal(text, hg);
	spool_fx_assert_rows_have_files(f);
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 1, 2000, 0);
}

/* The uplink writes the same database (state changes): a commit waits for
 * its transaction instead of failing. */
struct wait_arg {
	struct spool_fx *f;
	const unsigned char *data;
	int rc;
	int done;
};

static void *wait_thread(void *p)
{
	struct wait_arg *a = p;
	enum op_spool_outcome outcome;

	a->rc = spool_fx_store(a->f->sp, a->data, 1000, "1.2.3.301", &outcome, NULL);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_spool_waits_for_other_writer(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *data = spool_fx_content(f, "1.2.3.301", 1000, 1);
	struct wait_arg a = { f, data, -1, 0 };
	sqlite3 *db = spool_fx_db_open(f);
	pthread_t th;

	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(pthread_create(&th, NULL, wait_thread, &a), 0);
	usleep(300 * 1000);
	assert_false(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST));
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	pthread_join(th, NULL);
	sqlite3_close(db);
	assert_int_equal(a.rc, 0);
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_assert_rows_have_files(f);
}

/* --- concurrency ---------------------------------------------------------------------------- */

#define GC_THREADS 8
#define GC_OBJECTS 50

struct gc_arg {
	struct spool_fx *f;
	int id;
	int failures;
	int not_stored;
};

static size_t gc_size(int t, int i)
{
	return 200 + (size_t)((t * 7919 + i * 104729) % 30000);
}

static void gc_sop(char *out, size_t size, int t, int i)
{
	snprintf(out, size, "1.2.826.0.1.3680043.9.%d.%d", t, i);
}

static void *gc_thread(void *p)
{
	struct gc_arg *a = p;

	for (int i = 0; i < GC_OBJECTS; i++) {
		char sop[64];
		size_t len = gc_size(a->id, i);
		enum op_spool_outcome outcome;
		unsigned char *data;

		gc_sop(sop, sizeof(sop), a->id, i);
		data = spool_fx_make_content(sop, len, (unsigned)(a->id * 1000 + i));
		if (spool_fx_store(a->f->sp, data, len, sop, &outcome, NULL) != 0)
			a->failures++;
		else if (outcome != OP_SPOOL_STORED)
			a->not_stored++;
		free(data);
	}
	return NULL;
}

static void test_spool_group_commit(void **state)
{
	struct spool_fx *f = *state;
	pthread_t th[GC_THREADS];
	struct gc_arg args[GC_THREADS];
	uint64_t total = 0;
	char sop[64], text[128], h[OP_HASH_HEX + 1];

	for (int t = 0; t < GC_THREADS; t++) {
		args[t] = (struct gc_arg){ f, t, 0, 0 };
		assert_int_equal(pthread_create(&th[t], NULL, gc_thread, &args[t]), 0);
	}
	for (int t = 0; t < GC_THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < GC_THREADS; t++) {
		assert_int_equal(args[t].failures, 0);
		assert_int_equal(args[t].not_stored, 0);
	}

	assert_int_equal(spool_fx_rows(f), GC_THREADS * GC_OBJECTS);
	assert_int_equal(spool_fx_files_in(f, "objects"), GC_THREADS * GC_OBJECTS);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	for (int t = 0; t < GC_THREADS; t++) {
		for (int i = 0; i < GC_OBJECTS; i++) {
			size_t len = gc_size(t, i);
			unsigned char *data;

			gc_sop(sop, sizeof(sop), t, i);
			data = spool_fx_make_content(sop, len, (unsigned)(t * 1000 + i));
			spool_fx_hash_hex(data, len, h);
			free(data);
			spool_fx_row_text(f, sop, "hash", text, sizeof(text));
			assert_string_equal(text, h);
			total += len;
		}
	}
	spool_fx_assert_usage(f, GC_THREADS * GC_OBJECTS, total, 0);
	spool_fx_assert_usage_matches_index(f);
	spool_fx_assert_rows_have_files(f);
}

/* Several associations deliver the same instance with the same bytes at
 * once: one row, one STORED, the rest DUPLICATE. */
struct same_arg {
	struct spool_fx *f;
	const unsigned char *data;
	size_t len;
	int rc;
	enum op_spool_outcome outcome;
};

static void *same_thread(void *p)
{
	struct same_arg *a = p;

	a->rc = spool_fx_store(a->f->sp, a->data, a->len, "1.2.3.100", &a->outcome, NULL);
	return NULL;
}

static void test_spool_concurrent_duplicates(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *data = spool_fx_content(f, "1.2.3.100", 25000, 5);
	pthread_t th[GC_THREADS];
	struct same_arg args[GC_THREADS];
	int stored = 0, dup = 0;

	for (int t = 0; t < GC_THREADS; t++) {
		args[t] = (struct same_arg){ f, data, 25000, -1, (enum op_spool_outcome) - 1 };
		assert_int_equal(pthread_create(&th[t], NULL, same_thread, &args[t]), 0);
	}
	for (int t = 0; t < GC_THREADS; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; t < GC_THREADS; t++) {
		assert_int_equal(args[t].rc, 0);
		stored += args[t].outcome == OP_SPOOL_STORED;
		dup += args[t].outcome == OP_SPOOL_DUPLICATE;
	}
	assert_int_equal(stored, 1);
	assert_int_equal(dup, GC_THREADS - 1);
	assert_int_equal(spool_fx_rows(f), 1);
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	spool_fx_assert_usage(f, 1, 25000, 0);
	spool_fx_assert_rows_have_files(f);
}

/*
 * Two versions of one instance arrive at once on several associations (a
 * modality and a router both re-sending), round after round. Every commit
 * that returned 0 was acknowledged, so whenever the commits of a round are
 * done, the row must name a file that exists and holds one of the versions.
 * A barrier makes each round's commits meet in one group-commit batch.
 */
#define RACE_THREADS 4
#define RACE_ROUNDS 40

struct race {
	struct spool_fx *f;
	const unsigned char *v[2];
	size_t len[2];
	pthread_barrier_t start, done;
	int failures;
	int broken_round; /* first round after which the row had no file; -1 */
	pthread_mutex_t mu;
};

struct race_arg {
	struct race *r;
	int id;
};

/* Does the row's file exist with the row's size? Runs on a worker thread
 * while no commit runs, so it uses no cmocka asserts. */
static int row_file_ok(struct spool_fx *f, const char *sop)
{
	char path[256];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct stat sb;
	int ok = 0;

	snprintf(path, sizeof(path), "%s/spool.db", f->t.dir);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT hash, size FROM instances WHERE sop_instance_uid = ?",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, sop, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			spool_fx_object_path(f, (const char *)sqlite3_column_text(st, 0), path,
					     sizeof(path));
			ok = stat(path, &sb) == 0 && sb.st_size == sqlite3_column_int64(st, 1);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return ok;
}

static void *race_thread(void *p)
{
	struct race_arg *a = p;
	struct race *r = a->r;

	for (int i = 0; i < RACE_ROUNDS; i++) {
		int k = (a->id + i) & 1;
		enum op_spool_outcome outcome;
		int rc;

		pthread_barrier_wait(&r->start);
		rc = spool_fx_store(r->f->sp, r->v[k], r->len[k], "1.2.3.200", &outcome, NULL);
		pthread_mutex_lock(&r->mu);
		r->failures += rc != 0;
		pthread_mutex_unlock(&r->mu);
		if (pthread_barrier_wait(&r->done) == PTHREAD_BARRIER_SERIAL_THREAD &&
		    r->broken_round < 0 && !row_file_ok(r->f, "1.2.3.200"))
			r->broken_round = i;
	}
	return NULL;
}

static void test_spool_concurrent_versions(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *v0 = spool_fx_content(f, "1.2.3.200", 3000, 1);
	unsigned char *v1 = spool_fx_content(f, "1.2.3.200", 3100, 2);
	pthread_t th[RACE_THREADS];
	struct race_arg args[RACE_THREADS];
	struct race r = { .f = f, .v = { v0, v1 }, .len = { 3000, 3100 }, .broken_round = -1 };

	pthread_mutex_init(&r.mu, NULL);
	pthread_barrier_init(&r.start, NULL, RACE_THREADS);
	pthread_barrier_init(&r.done, NULL, RACE_THREADS);
	for (int t = 0; t < RACE_THREADS; t++) {
		args[t] = (struct race_arg){ &r, t };
		assert_int_equal(pthread_create(&th[t], NULL, race_thread, &args[t]), 0);
	}
	for (int t = 0; t < RACE_THREADS; t++)
		pthread_join(th[t], NULL);
	pthread_barrier_destroy(&r.start);
	pthread_barrier_destroy(&r.done);
	pthread_mutex_destroy(&r.mu);
	assert_int_equal(r.failures, 0);
	if (r.broken_round >= 0)
		fail_msg("after round %d the row named a file that was gone", r.broken_round);
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_assert_rows_have_files(f);
	spool_fx_assert_usage_matches_index(f);
	assert_int_equal(spool_fx_files_in(f, "objects"), 1);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* storing */
		SPOOL_FX_TEST(test_spool_commit_stores_object),
		SPOOL_FX_TEST(test_spool_commit_small_objects),
		SPOOL_FX_TEST(test_spool_commit_duplicate),
		SPOOL_FX_TEST(test_spool_commit_replaced),
		SPOOL_FX_TEST(test_spool_commit_foreign_replacement_refused),
		SPOOL_FX_TEST(test_spool_shared_content),
		SPOOL_FX_TEST(test_spool_abort),
		SPOOL_FX_TEST(test_spool_object_misuse),
		/* failures of the index */
		SPOOL_FX_TEST(test_spool_commit_failure_isolated),
		SPOOL_FX_TEST(test_spool_waits_for_other_writer),
		/* concurrency */
		SPOOL_FX_TEST(test_spool_group_commit),
		SPOOL_FX_TEST(test_spool_concurrent_duplicates),
		SPOOL_FX_TEST(test_spool_concurrent_versions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
