/*
 * test_spool_encoding: services/common/spool_encoding.c, the encoded
 * copies of objects: what is recorded, where the copy goes, that it counts
 * in the usage, and when it goes - every delivery sent, the object evicted
 * or replaced, a crash's leftovers at the next start. The helpers are in
 * spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/spool.h"
#include "spool_fixture.h"

#define SYNTAX OP_SYNTAX_JPEG_LS

/* A copy of len bytes in a tmp file, recorded for hash. */
static void put_copy(struct spool_fx *f, const char *hash, size_t len, int want)
{
	char tmp[512];
	op_spool_encoding e = { .state = OP_ENCODING_COPY, .size = len, .encode_ms = 7 };
	unsigned char *data = spool_fx_content(f, "copy", len, 9);
	FILE *out;

	assert_int_equal(op_spool_encoding_tmp(f->sp, tmp, sizeof(tmp)), 0);
	out = fopen(tmp, "wb");
	assert_non_null(out);
	assert_int_equal(fwrite(data, 1, len, out), len);
	fclose(out);
	assert_int_equal(op_spool_hash_file(tmp, e.hash, &e.size), 0);
	assert_int_equal(op_spool_encoding_put(f->sp, hash, SYNTAX, &e, tmp), want);
	assert_false(spool_fx_exists(tmp)); /* moved into place, or removed */
}

static int copy_exists(struct spool_fx *f, const char *hash)
{
	char path[512];

	op_spool_encoding_file(f->sp, hash, path, sizeof(path));
	return spool_fx_exists(path);
}

/* A copy is recorded, found, counted; "original" is recorded with why. */
static void test_spool_encoding_put_get(void **state)
{
	struct spool_fx *f = *state;
	char a[OP_HASH_HEX + 1], b[OP_HASH_HEX + 1];
	op_spool_encoding e;

	spool_fx_store_study(f, "1.1", "9.1", 1, 3000, a);
	spool_fx_store_study(f, "1.2", "9.1", 1, 3000, b);
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_NONE);

	put_copy(f, a, 1000, 0);
	assert_true(copy_exists(f, a));
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_COPY);
	assert_int_equal(e.size, 1000);
	assert_int_equal(e.encode_ms, 7);
	spool_fx_assert_usage(f, 2, 7000, 0);
	spool_fx_assert_usage_matches_index(f);

	e = (op_spool_encoding){ .state = OP_ENCODING_ORIGINAL };
	snprintf(e.reason, sizeof(e.reason), "no pixel data");
	assert_int_equal(op_spool_encoding_put(f->sp, b, SYNTAX, &e, NULL), 0);
	assert_int_equal(op_spool_encoding_get(f->sp, b, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_ORIGINAL);
	assert_string_equal(e.reason, "no pixel data");
	assert_false(copy_exists(f, b));
	spool_fx_assert_usage(f, 2, 7000, 0);

	/* An object no longer in the spool: nothing recorded, tmp removed. */
	put_copy(f, "0000000000000000000000000000000000000000000000000000000000000000", 10,
		 -ENOENT);
}

/* The copy counts against max_bytes: -EDQUOT when it does not fit. */
static void test_spool_encoding_limits(void **state)
{
	struct spool_fx *f = *state;
	char a[OP_HASH_HEX + 1];
	op_spool_encoding e;

	spool_fx_store_study(f, "1.1", "9.1", 1, 3000, a);
	f->limits.max_bytes = 3500;
	op_spool_set_limits(f->sp, &f->limits);
	put_copy(f, a, 1000, -EDQUOT);
	assert_false(copy_exists(f, a));
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_NONE);
	put_copy(f, a, 400, 0);
	spool_fx_assert_usage(f, 1, 3400, 0);
}

/* Sent to every destination: the copy goes (the row saying "original"
 * stays with the object); the object's eviction takes the rest. */
static void test_spool_encoding_gone_when_sent(void **state)
{
	struct spool_fx *f = *state;
	char a[OP_HASH_HEX + 1];
	op_spool_item it[2];
	unsigned n, evicted;
	uint64_t freed;
	op_spool_encoding e;

	spool_fx_store_study(f, "1.1", "9.1", 1, 3000, a);
	put_copy(f, a, 1000, 0);
	spool_fx_claim(f, 2, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].file_hash, it[0].hash); /* as claimed: the object */
	assert_int_equal(it[0].file_size, 3000);
	assert_int_equal(it[0].encoded, 0);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_RETRY, 0, "later", 1);
	assert_true(copy_exists(f, a)); /* still needed */
	spool_fx_claim(f, 2, 1 << 20, it, &n);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 2);
	assert_false(copy_exists(f, a));
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_NONE);
	spool_fx_assert_usage(f, 1, 3000, 0);
	spool_fx_assert_usage_matches_index(f);

	e = (op_spool_encoding){ .state = OP_ENCODING_ORIGINAL };
	assert_int_equal(op_spool_encoding_put(f->sp, a, SYNTAX, &e, NULL), 0);
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 1);
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_NONE);
	spool_fx_assert_usage(f, 0, 0, 0);
}

/* A copy found missing is dropped; the sweep removes what names no object
 * any more and the half-written copies in tmp/; recovery removes a copy
 * without its row and keeps one with it. */
static void test_spool_encoding_drop_sweep_recover(void **state)
{
	struct spool_fx *f = *state;
	char a[OP_HASH_HEX + 1], b[OP_HASH_HEX + 1], rel[512];
	op_spool_recovery rep;
	op_spool_encoding e;
	unsigned removed;

	spool_fx_store_study(f, "1.1", "9.1", 1, 3000, a);
	spool_fx_store_study(f, "1.2", "9.1", 1, 3000, b);
	put_copy(f, a, 1000, 0);
	assert_int_equal(op_spool_encoding_drop(f->sp, a), 0);
	assert_false(copy_exists(f, a));
	assert_int_equal(op_spool_encoding_get(f->sp, a, SYNTAX, &e), 0);
	assert_int_equal(e.state, OP_ENCODING_NONE);
	spool_fx_assert_usage(f, 2, 6000, 0);

	put_copy(f, a, 1000, 0);
	put_copy(f, b, 500, 0);
	spool_fx_db_exec(f, "DELETE FROM deliveries WHERE instance_id ="
			    " (SELECT id FROM instances WHERE sop_instance_uid = '1.2')");
	spool_fx_db_exec(f, "DELETE FROM instances WHERE sop_instance_uid = '1.2'");
	spool_fx_object_path(f, b, rel, sizeof(rel));
	assert_int_equal(unlink(rel), 0); /* b has left the spool */
	spool_fx_put_file(f, "tmp/abcdef.jls.part", "half", 4);
	assert_int_equal(op_spool_encoding_sweep(f->sp, &removed), 0);
	assert_int_equal(removed, 2); /* b's row and copy, the half-written one */
	assert_false(copy_exists(f, b));
	assert_true(copy_exists(f, a));
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);

	/* A copy without its row (written by hand here) goes at recovery. */
	snprintf(rel, sizeof(rel), "objects/%.2s/%s.jls", b, b);
	spool_fx_put_file(f, rel, "x", 1);
	assert_int_equal(op_spool_recover(f->sp, NULL, NULL, &rep), 0);
	assert_int_equal(rep.orphans_removed, 1);
	assert_int_equal(rep.damaged, 0);
	assert_false(copy_exists(f, b));
	assert_true(copy_exists(f, a));
}

/* The mark the encoder watches moves when an instance is stored, not when
 * the uplink claims, settles or records a copy. */
static void test_spool_stored_mark(void **state)
{
	struct spool_fx *f = *state;
	char a[OP_HASH_HEX + 1], b[OP_HASH_HEX + 1];
	op_spool_item it[2];
	int64_t empty, one, two;
	unsigned n;

	empty = op_spool_stored_mark(f->sp);
	assert_true(empty >= 0);
	spool_fx_store_study(f, "1.1", "9.1", 1, 3000, a);
	one = op_spool_stored_mark(f->sp);
	assert_true(one != empty);
	spool_fx_claim(f, 2, 1 << 20, it, &n);
	put_copy(f, a, 1000, 0);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_RETRY, 0, "later", 1);
	assert_true(op_spool_stored_mark(f->sp) == one);
	spool_fx_store_study(f, "1.2", "9.1", 1, 2000, b);
	two = op_spool_stored_mark(f->sp);
	assert_true(two != one);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SPOOL_FX_TEST(test_spool_encoding_put_get),
		SPOOL_FX_TEST(test_spool_encoding_limits),
		SPOOL_FX_TEST(test_spool_encoding_gone_when_sent),
		SPOOL_FX_TEST(test_spool_encoding_drop_sweep_recover),
		SPOOL_FX_TEST(test_spool_stored_mark),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
