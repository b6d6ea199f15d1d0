/*
 * test_spool_recover: services/common/spool_recover.c, the reconciling of
 * files and rows at start-up: every kind of leftover, each alone and all at
 * once. Recovery reads orphans with a reader of the test's own (the
 * parser it is given). The helpers are in spool_fixture.h.
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

/* --- the reader recovery calls ------------------------------------------------------ */

struct reader_ctx {
	int calls;
};

/* Reads "SOP=<uid>\n" at the start of the file, like a parser would read
 * the SOP Instance UID. */
static int test_reader(void *ctx, const char *path, op_instance *inst, char *err, size_t errlen)
{
	struct reader_ctx *rc = ctx;
	char line[128] = "";
	FILE *f;

	if (rc)
		rc->calls++;
	f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open %s", path);
		return -errno;
	}
	if (!fgets(line, sizeof(line), f) || strncmp(line, "SOP=", 4) != 0) {
		fclose(f);
		snprintf(err, errlen, "no SOP= line");
		return -EINVAL;
	}
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	spool_fx_fill_inst(inst, line + 4);
	snprintf(inst->calling_aet, sizeof(inst->calling_aet), "RECOVERED");
	inst->priority = 1;
	return 0;
}

/* --- recovery ------------------------------------------------------------------------------ */

static void assert_report(const op_spool_recovery *r, unsigned tmp, unsigned indexed,
			  unsigned removed, unsigned damaged, unsigned missing)
{
	if (r->tmp_removed != tmp || r->orphans_indexed != indexed ||
	    r->orphans_removed != removed || r->damaged != damaged || r->missing != missing)
		fail_msg("recovery: tmp=%u indexed=%u removed=%u damaged=%u missing=%u, "
			 "want %u %u %u %u %u",
			 r->tmp_removed, r->orphans_indexed, r->orphans_removed, r->damaged,
			 r->missing, tmp, indexed, removed, damaged, missing);
}

/* Writes data as objects/<aa>/<hash>.dcm, as a commit interrupted before its
 * row would have left it. */
static void put_orphan(const struct spool_fx *f, const unsigned char *data, size_t len, char *hash)
{
	char rel[128];

	spool_fx_hash_hex(data, len, hash);
	snprintf(rel, sizeof(rel), "objects/%.2s/%s.dcm", hash, hash);
	spool_fx_put_file(f, rel, data, len);
}

static void test_spool_recover_clean(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.30", 500, 1);
	struct reader_ctx ctx = { 0 };
	op_spool_recovery rep;

	memset(&rep, 0xff, sizeof(rep));
	assert_int_equal(op_spool_recover(f->sp, test_reader, &ctx, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 0);

	/* Indexed objects are left alone; the reader is not needed for them. */
	spool_fx_store_ok(f, a, 500, "1.2.3.30", OP_SPOOL_STORED, NULL);
	assert_int_equal(op_spool_recover(f->sp, test_reader, &ctx, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 0);
	assert_int_equal(ctx.calls, 0);
	spool_fx_assert_usage(f, 1, 500, 0);
	spool_fx_assert_rows_have_files(f);
}

static void test_spool_recover_tmp(void **state)
{
	struct spool_fx *f = *state;
	op_spool_recovery rep;

	spool_fx_put_file(f, "tmp/abc123.part", "partial", 7);
	spool_fx_put_file(f, "tmp/other", "x", 1);
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 2, 0, 0, 0, 0);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
	assert_int_equal(spool_fx_rows(f), 0);
}

static void test_spool_recover_orphan_indexed(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.40", 4000, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.41", 300, 2);
	char ha[OP_HASH_HEX + 1], hb[OP_HASH_HEX + 1], path[256], text[128];
	struct reader_ctx ctx = { 0 };
	op_spool_recovery rep;

	spool_fx_store_ok(f, b, 300, "1.2.3.41", OP_SPOOL_STORED, hb);
	put_orphan(f, a, 4000, ha);
	assert_int_equal(op_spool_recover(f->sp, test_reader, &ctx, &rep), 0);
	assert_report(&rep, 0, 1, 0, 0, 0);
	assert_int_equal(ctx.calls, 1); /* ctx is passed through */

	assert_int_equal(spool_fx_rows(f), 2);
	spool_fx_row_text(f, "1.2.3.40", "hash", text, sizeof(text));
	assert_string_equal(text, ha);
	assert_int_equal(spool_fx_row_int(f, "1.2.3.40", "size"), 4000);
	spool_fx_row_text(f, "1.2.3.40", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	spool_fx_row_text(f, "1.2.3.40", "calling_aet", text, sizeof(text));
	assert_string_equal(text, "RECOVERED");
	spool_fx_object_path(f, ha, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, a, 4000));
	spool_fx_assert_usage(f, 2, 4300, 0);
	spool_fx_assert_rows_have_files(f);

	/* Indexed now: a second recovery has nothing to do. */
	assert_int_equal(op_spool_recover(f->sp, test_reader, &ctx, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 0);
	/* And the same bytes are a duplicate. */
	spool_fx_store_ok(f, a, 4000, "1.2.3.40", OP_SPOOL_DUPLICATE, NULL);
}

/* An orphan whose instance has a row is a superseded (or never
 * acknowledged) version: removed, the row untouched. */
static void test_spool_recover_orphan_superseded(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *v1 = spool_fx_content(f, "1.2.3.50", 2000, 1);
	unsigned char *v2 = spool_fx_content(f, "1.2.3.50", 2500, 2);
	char h1[OP_HASH_HEX + 1], h2[OP_HASH_HEX + 1], path[256], text[128];
	op_spool_recovery rep;

	spool_fx_store_ok(f, v1, 2000, "1.2.3.50", OP_SPOOL_STORED, h1);
	put_orphan(f, v2, 2500, h2);
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 0, 0, 1, 0, 0);
	spool_fx_object_path(f, h2, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	spool_fx_row_text(f, "1.2.3.50", "hash", text, sizeof(text));
	assert_string_equal(text, h1);
	assert_int_equal(spool_fx_rows(f), 1);
	spool_fx_assert_usage(f, 1, 2000, 0);
	spool_fx_assert_rows_have_files(f);
}

/* A file whose name is not its content's hash, or which the reader cannot
 * read, goes to damaged/ and gets no row. */
static void test_spool_recover_damaged(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.60", 1000, 1);
	const char junk[] = "not an object the reader understands";
	char ha[OP_HASH_HEX + 1], hj[OP_HASH_HEX + 1], rel[160], path[256];
	op_spool_recovery rep;

	/* Named after a's hash, holding other bytes (bit rot, a torn copy). */
	spool_fx_hash_hex(a, 1000, ha);
	snprintf(rel, sizeof(rel), "objects/%.2s/%s.dcm", ha, ha);
	spool_fx_put_file(f, rel, a, 999);
	/* A name that is no hash at all. */
	spool_fx_put_file(f, "objects/12/notahash.dcm", "abc", 3);
	/* Hash right, content unreadable. */
	put_orphan(f, (const unsigned char *)junk, sizeof(junk), hj);

	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 0, 0, 0, 3, 0);
	assert_int_equal(spool_fx_rows(f), 0);
	assert_int_equal(spool_fx_files_in(f, "objects"), 0);
	assert_int_equal(spool_fx_files_in(f, "damaged"), 3);
	snprintf(path, sizeof(path), "%s/damaged/%s.dcm", f->t.dir, ha);
	assert_true(spool_fx_file_equals(path, a, 999)); /* kept, for the operator */
	snprintf(path, sizeof(path), "%s/damaged/notahash.dcm", f->t.dir);
	assert_true(spool_fx_exists(path));
	snprintf(path, sizeof(path), "%s/damaged/%s.dcm", f->t.dir, hj);
	assert_true(spool_fx_exists(path));
	spool_fx_assert_usage(f, 0, 0, 0);
}

static void test_spool_recover_missing(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.70", 800, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.71", 900, 2);
	char ha[OP_HASH_HEX + 1], path[256], text[256];
	op_spool_recovery rep;

	spool_fx_store_ok(f, a, 800, "1.2.3.70", OP_SPOOL_STORED, ha);
	spool_fx_store_ok(f, b, 900, "1.2.3.71", OP_SPOOL_STORED, NULL);
	spool_fx_object_path(f, ha, path, sizeof(path));
	assert_int_equal(unlink(path), 0);

	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 1);
	spool_fx_row_text(f, "1.2.3.70", "state", text, sizeof(text));
	assert_string_equal(text, "quarantined");
	spool_fx_row_text(f, "1.2.3.70", "last_error", text, sizeof(text));
	assert_true(strlen(text) > 0);
	spool_fx_row_text(f, "1.2.3.71", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	assert_int_equal(spool_fx_rows(f), 2);

	/* Reported once, not at every start. */
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 0);

	spool_fx_store_ok(f, b, 900, "1.2.3.71", OP_SPOOL_DUPLICATE, NULL);
}

/*
 * An instance quarantined because its file was lost is sent again by the
 * modality (what an operator asks for): the file is back, so the row must
 * not stay quarantined for "file missing", or the re-send was acknowledged
 * and will never be forwarded.
 */
static void test_spool_resend_heals_missing(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.72", 800, 1);
	char ha[OP_HASH_HEX + 1], path[256], text[256];
	enum op_spool_outcome outcome;
	op_spool_recovery rep;

	spool_fx_store_ok(f, a, 800, "1.2.3.72", OP_SPOOL_STORED, ha);
	spool_fx_object_path(f, ha, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 0, 0, 0, 0, 1);

	assert_int_equal(spool_fx_store(f->sp, a, 800, "1.2.3.72", &outcome, NULL), 0);
	assert_true(spool_fx_file_equals(path, a, 800));
	spool_fx_row_text(f, "1.2.3.72", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	spool_fx_assert_rows_have_files(f);
}

/* Everything at once, then a restart: counts add up and the spool works. */
static void test_spool_recover_all_kinds(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *keep = spool_fx_content(f, "1.2.3.80", 1200, 1);
	unsigned char *gone = spool_fx_content(f, "1.2.3.81", 1300, 2);
	unsigned char *orphan = spool_fx_content(f, "1.2.3.82", 1400, 3);
	unsigned char *old = spool_fx_content(f, "1.2.3.80", 1500, 4);
	char h[OP_HASH_HEX + 1], path[256];
	op_spool_recovery rep;

	spool_fx_store_ok(f, keep, 1200, "1.2.3.80", OP_SPOOL_STORED, NULL);
	spool_fx_store_ok(f, gone, 1300, "1.2.3.81", OP_SPOOL_STORED, h);
	spool_fx_object_path(f, h, path, sizeof(path));
	unlink(path);
	put_orphan(f, orphan, 1400, h);
	put_orphan(f, old, 1500, h);
	spool_fx_put_file(f, "tmp/XXXX.part", "p", 1);
	spool_fx_put_file(f, "objects/00/0000.dcm", "d", 1);
	op_spool_close(f->sp);
	f->sp = NULL;

	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_report(&rep, 1, 1, 1, 1, 1);
	assert_int_equal(spool_fx_rows(f), 3);
	spool_fx_assert_usage_matches_index(f);
	spool_fx_assert_rows_have_files(f);
	assert_int_equal(spool_fx_files_in(f, "tmp"), 0);
}

/* A complete object in the wrong fan-out directory (copied back by hand,
 * or by fsck): whatever recovery does with it, it must not index a row
 * whose file is not where the row says, nor lose the file. */
static void test_spool_recover_orphan_in_wrong_directory(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.90", 600, 1);
	char h[OP_HASH_HEX + 1], rel[160], text[64], path[256];
	op_spool_recovery rep;

	spool_fx_hash_hex(a, 600, h);
	snprintf(rel, sizeof(rel), "objects/%s/%s.dcm", strncmp(h, "00", 2) ? "00" : "01", h);
	spool_fx_put_file(f, rel, a, 600);
	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	spool_fx_row_text(f, "1.2.3.90", "state", text, sizeof(text));
	assert_string_not_equal(text, "quarantined");
	spool_fx_assert_rows_have_files(f);
	/* The bytes are somewhere: indexed in place, or kept in damaged/. */
	spool_fx_object_path(f, h, path, sizeof(path));
	snprintf(rel, sizeof(rel), "%s/damaged/%s.dcm", f->t.dir, h);
	assert_true(spool_fx_file_equals(path, a, 600) || spool_fx_file_equals(rel, a, 600));
}

/* An indexed object whose file was moved to the wrong fan-out directory
 * (by hand, or by fsck): it goes back to its place and stays queued, not
 * quarantined as missing; a second copy of one in place is removed. The
 * rows are looked up a directory at a time, by their hashes' first digits. */
static void test_spool_recover_indexed_file_in_wrong_directory(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.3.91", 700, 1);
	unsigned char *b = spool_fx_content(f, "1.2.3.92", 800, 2);
	char ha[OP_HASH_HEX + 1], hb[OP_HASH_HEX + 1], path[256], wrong[256], text[64];
	op_spool_recovery rep;

	spool_fx_store_ok(f, a, 700, "1.2.3.91", OP_SPOOL_STORED, ha);
	spool_fx_store_ok(f, b, 800, "1.2.3.92", OP_SPOOL_STORED, hb);
	spool_fx_object_path(f, ha, path, sizeof(path));
	snprintf(wrong, sizeof(wrong), "objects/%s/%s.dcm", strncmp(ha, "00", 2) ? "00" : "01", ha);
	spool_fx_put_file(f, wrong, a, 700);
	assert_int_equal(unlink(path), 0);
	snprintf(wrong, sizeof(wrong), "objects/%s/%s.dcm", strncmp(hb, "ff", 2) ? "ff" : "fe", hb);
	spool_fx_put_file(f, wrong, b, 800);

	assert_int_equal(op_spool_recover(f->sp, test_reader, NULL, &rep), 0);
	assert_int_equal(rep.missing, 0);
	assert_int_equal(rep.orphans_removed, 1);
	spool_fx_row_text(f, "1.2.3.91", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	assert_true(spool_fx_file_equals(path, a, 700));
	spool_fx_assert_rows_have_files(f);
	assert_int_equal(spool_fx_rows(f), 2);
	spool_fx_assert_usage_matches_index(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SPOOL_FX_TEST(test_spool_recover_clean),
		SPOOL_FX_TEST(test_spool_recover_tmp),
		SPOOL_FX_TEST(test_spool_recover_orphan_indexed),
		SPOOL_FX_TEST(test_spool_recover_orphan_superseded),
		SPOOL_FX_TEST(test_spool_recover_damaged),
		SPOOL_FX_TEST(test_spool_recover_missing),
		SPOOL_FX_TEST(test_spool_resend_heals_missing),
		SPOOL_FX_TEST(test_spool_recover_all_kinds),
		SPOOL_FX_TEST(test_spool_recover_orphan_in_wrong_directory),
		SPOOL_FX_TEST(test_spool_recover_indexed_file_in_wrong_directory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
