/*
 * test_jpls: JPEG-LS Lossless compression with its proof (services/dicom/
 * jpls.cc): what encodes and is proven, what is refused and why, what
 * the proof catches (a flipped bit, a changed pixel, a changed attribute),
 * the output file's life, several threads at once, and every pydicom
 * sample.
 *
 * DCMTK logs the oddities of broken files and flipped bits on stderr:
 * dropped (unit_stderr_off) unless OUTPOST_TEST_VERBOSE is set.
 *
 * Files: the small synthetic instances of tests/unit/data/jpls_*.dcm
 * (made by make-jpls-samples.py there, see its README) and pydicom's
 * samples, read in place.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dicom/dicom.h"
#include "dicom/jpls.h"

#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"
#define UID_JPLS_LOSSLESS "1.2.840.10008.1.2.4.80"

/* The synthetic samples that encode and are proven (make-jpls-samples.py). */
static const char *const CODABLE[] = {
	"jpls_mono8.dcm",           /* 8 bits, 64 x 64, a sequence, a private tag */
	"jpls_mono12.dcm",          /* 12 in 16, unsigned, 17 x 13 */
	"jpls_mono16u.dcm",         /* 16 bits unsigned */
	"jpls_mono16s.dcm",         /* 16 bits signed */
	"jpls_mono12s_signext.dcm", /* 12 in 16 signed, sign-extended */
	"jpls_mono12u_junk.dcm",    /* 12 in 16 unsigned, junk high bits */
	"jpls_multiframe.dcm",      /* 3 frames, 10 in 16 */
	"jpls_rgb_planar0.dcm",     /* RGB colour-by-pixel, 17 x 13 */
	"jpls_rgb_planar1.dcm",     /* RGB colour-by-plane */
	"jpls_ybr_full.dcm",        /* YBR_FULL */
	"jpls_big_endian.dcm",      /* explicit VR big endian, 16 bits signed */
	"jpls_big_endian8.dcm",     /* explicit VR big endian, 8 bits, odd size */
	"jpls_implicit.dcm",        /* implicit VR little endian */
};

/* --- helpers ---------------------------------------------------------------------- */

static int encode(const char *src, const char *out, char *err, size_t errlen)
{
	int saved = unit_stderr_off();
	int rc = op_jpls_encode(src, out, err, errlen);

	unit_stderr_restore(saved);
	return rc;
}

static int verify(const char *original, const char *compressed, char *err, size_t errlen)
{
	int saved = unit_stderr_off();
	int rc = op_jpls_verify(original, compressed, err, errlen);

	unit_stderr_restore(saved);
	return rc;
}

static int exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0;
}

static long long size_of(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static const char *pydicom_sample(const char *name)
{
	static char path[PATH_MAX];

	if (!exists(PYDICOM_FILES)) {
		print_message("pydicom's sample files are not installed (python3-pydicom)\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/%s", PYDICOM_FILES, name);
	return path;
}

/* Encodes src to out and fails the test unless it is OP_JPLS_OK, out is a
 * JPEG-LS Lossless instance with src's identity, and the proof holds on
 * a second look. */
static void assert_encodes(const char *src, const char *out)
{
	op_instance a, b;
	char err[512];
	int rc = encode(src, out, err, sizeof(err));

	if (rc != OP_JPLS_OK)
		fail_msg("%s: %d (%s), want OP_JPLS_OK", src, rc, err);
	assert_int_equal(op_dicom_read_instance(src, NULL, 0, NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(op_dicom_read_instance(out, NULL, 0, NULL, &b, err, sizeof(err)), 0);
	assert_string_equal(b.transfer_syntax, UID_JPLS_LOSSLESS);
	assert_string_equal(a.sop_instance_uid, b.sop_instance_uid);
	assert_string_equal(a.sop_class_uid, b.sop_class_uid);
	assert_string_equal(a.study_uid, b.study_uid);
	assert_string_equal(a.series_uid, b.series_uid);
	assert_string_equal(a.patient_id, b.patient_id);
	rc = verify(src, out, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: verify %d (%s)", src, rc, err);
}

/* Encodes src and fails the test unless the result is want, err says
 * reason, and out does not exist. */
static void assert_refused(const char *src, const char *out, int want, const char *reason)
{
	char err[512];
	int rc = encode(src, out, err, sizeof(err));

	if (rc != want)
		fail_msg("%s: %d (%s), want %d", src, rc, err, want);
	if (reason && !strstr(err, reason))
		fail_msg("%s: reason \"%s\" does not say \"%s\"", src, err, reason);
	assert_true(strlen(err) > 0);
	assert_false(exists(out));
}

/* --- what encodes ---------------------------------------------------------------- */

static void test_jpls_encodes_samples(void **state)
{
	struct unit_tmp *t = *state;

	for (size_t i = 0; i < sizeof(CODABLE) / sizeof(CODABLE[0]); i++) {
		const char *out = unit_path(t->dir, CODABLE[i]);
		assert_encodes(unit_data(CODABLE[i]), out);
	}
	/* A smooth 8-bit picture: well under two thirds of its size. */
	const char *out = unit_path(t->dir, "mono8.jls");
	assert_encodes(unit_data("jpls_mono8.dcm"), out);
	assert_true(size_of(out) * 3 < size_of(unit_data("jpls_mono8.dcm")) * 2);
}

/*
 * Bits above High Bit. DCMTK's raw encoder codes all 16 allocated bits, so
 * sign-extended signed values and junk in the unused high bits come back
 * bit for bit: OP_JPLS_OK, and the proof (which compares all allocated
 * bits) agrees. Were they lost, the result would be OP_JPLS_MISMATCH,
 * never a false OK.
 */
static void test_jpls_high_bits(void **state)
{
	struct unit_tmp *t = *state;

	assert_encodes(unit_data("jpls_mono12s_signext.dcm"), unit_path(t->dir, "signext.jls"));
	assert_encodes(unit_data("jpls_mono12u_junk.dcm"), unit_path(t->dir, "junk.jls"));
}

/* --- what is refused ------------------------------------------------------------ */

static void test_jpls_not_codable(void **state)
{
	struct unit_tmp *t = *state;
	const char *out = unit_path(t->dir, "out.jls");
	const struct {
		const char *name, *reason;
	} cases[] = {
		{ "jpls_bits32.dcm", "32 bits allocated: JPEG-LS takes 2 to 16 bits" },
		{ "jpls_float.dcm", "floating point pixel data" },
		{ "jpls_ybr_full_422.dcm", "YBR_FULL_422" },
		{ "jpls_short.dcm", "pixel data holds 200 bytes" },
		{ "valid_minimal.dcm", "no pixel data" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_refused(unit_data(cases[i].name), out, OP_JPLS_NOT_CODABLE, cases[i].reason);
	assert_refused(pydicom_sample("MR_small_jpeg_ls_lossless.dcm"), out, OP_JPLS_NOT_CODABLE,
		       "transfer syntax 1.2.840.10008.1.2.4.80 is already compressed");
	assert_refused(pydicom_sample("JPEG2000.dcm"), out, OP_JPLS_NOT_CODABLE,
		       "transfer syntax 1.2.840.10008.1.2.4.91 is already compressed");
	assert_refused(pydicom_sample("image_dfl.dcm"), out, OP_JPLS_NOT_CODABLE,
		       "is already compressed");
	assert_refused(pydicom_sample("liver_1frame.dcm"), out, OP_JPLS_NOT_CODABLE,
		       "1 bit allocated");
}

static void test_jpls_not_dicom(void **state)
{
	struct unit_tmp *t = *state;
	const char *out = unit_path(t->dir, "out.jls");
	unsigned char junk[4096];
	const char *path;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 7919 >> 3);
	path = unit_path(t->dir, "garbage.dcm");
	unit_write_bytes(path, junk, sizeof(junk));
	assert_refused(path, out, -EINVAL, "not a readable DICOM Part 10 file");

	path = unit_path(t->dir, "empty.dcm");
	unit_write_bytes(path, "", 0);
	assert_refused(path, out, -EINVAL, NULL);

	assert_refused(unit_path(t->dir, "absent.dcm"), out, -ENOENT, "cannot open");
	assert_refused(t->dir, out, -EINVAL, "not a regular file");
	assert_refused(pydicom_sample("MR_truncated.dcm"), out, -EINVAL, NULL);
	assert_refused(pydicom_sample("no_meta.dcm"), out, -EINVAL, NULL);
}

/* --- the proof -------------------------------------------------------------------- */

/* The test hook flips one bit of the JPEG-LS data: the proof fails, the
 * file is removed. */
static void test_jpls_corrupt_hook(void **state)
{
	struct unit_tmp *t = *state;
	const char *out = unit_path(t->dir, "out.jls");
	char err[512];
	int rc;

	for (size_t i = 0; i < sizeof(CODABLE) / sizeof(CODABLE[0]); i++) {
		op_jpls_test_corrupt(1);
		rc = encode(unit_data(CODABLE[i]), out, err, sizeof(err));
		op_jpls_test_corrupt(0);
		if (rc != OP_JPLS_MISMATCH)
			fail_msg("%s: %d (%s), want OP_JPLS_MISMATCH", CODABLE[i], rc, err);
		assert_non_null(strstr(err, "(7FE0,0010) PixelData"));
		assert_false(exists(out));
	}
	assert_encodes(unit_data("jpls_mono8.dcm"), out);
}

static void assert_mismatch(const char *original, const char *compressed, const char *what)
{
	char err[512];
	int rc = verify(original, compressed, err, sizeof(err));

	if (rc != OP_JPLS_MISMATCH)
		fail_msg("%s: %d (%s), want OP_JPLS_MISMATCH", original, rc, err);
	if (!strstr(err, what))
		fail_msg("%s: \"%s\" does not say \"%s\"", original, err, what);
}

/* The proof against originals that differ from what was compressed. */
static void test_jpls_verify_differences(void **state)
{
	struct unit_tmp *t = *state;
	const char *out = unit_path(t->dir, "mono8.jls");
	const char *src = unit_data("jpls_mono8.dcm");
	char err[512];

	assert_encodes(src, out);
	/* make-jpls-samples.py flipped bit 4 of the sample at row 40, column 7. */
	assert_mismatch(unit_data("jpls_mono8_pixel.dcm"), out,
			"(7FE0,0010) PixelData differs at frame 0, row 40, column 7, sample 0 "
			"(byte offset 2567");
	assert_mismatch(unit_data("jpls_mono8_patient.dcm"), out,
			"(0010,0020) PatientID differs: \"OTHER\" in the original, \"JPLS\"");
	/* Another instance altogether: its SOP Instance UID (meta header
	 * first). */
	assert_mismatch(unit_data("jpls_mono16u.dcm"), out, "(0002,0003)");
	/* Not JPEG-LS: the original against itself. */
	assert_mismatch(src, src, "not JPEG-LS Lossless");
	/* The original must be uncompressed. */
	assert_int_equal(verify(out, out, err, sizeof(err)), -EINVAL);
	assert_int_equal(verify(unit_path(t->dir, "absent.dcm"), out, err, sizeof(err)), -ENOENT);
}

/* --- the output file -------------------------------------------------------------- */

static void test_jpls_output_file(void **state)
{
	struct unit_tmp *t = *state;
	const char *src = unit_data("jpls_mono12.dcm");
	const char *copy = unit_path(t->dir, "copy.dcm");
	const char *out = unit_path(t->dir, "out.jls");
	char err[512];
	size_t len;
	char *bytes = unit_read_file(src, &len);
	struct stat sb;

	/* out naming src: refused, src untouched. */
	unit_write_bytes(copy, bytes, len);
	assert_int_equal(encode(copy, copy, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is the source file"));
	assert_int_equal(size_of(copy), (long long)len);
	test_free(bytes);

	/* An existing out is truncated and replaced. */
	unit_write_bytes(out, "stale", 5);
	assert_encodes(src, out);
	assert_int_equal(stat(out, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0640);

	/* A folder that does not exist. */
	assert_int_equal(encode(src, unit_path(t->dir, "no/such/dir.jls"), err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "cannot create"));
}

/* --- threads ---------------------------------------------------------------------- */

#define NCODABLE (sizeof(CODABLE) / sizeof(CODABLE[0]))

struct worker {
	const char *dir;
	char (*src)[PATH_MAX]; /* the paths of CODABLE */
	int id;
	int failures;
	char err[512];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char out[PATH_MAX];

	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < NCODABLE; i++) {
			snprintf(out, sizeof(out), "%s/t%d-%zu.jls", w->dir, w->id, i);
			int rc = op_jpls_encode(w->src[i], out, w->err, sizeof(w->err));
			if (rc != OP_JPLS_OK)
				w->failures++;
			unlink(out);
		}
	return NULL;
}

/* Four threads encoding and proving different files at once, the codecs
 * registered by whichever comes first. */
static void test_jpls_threads(void **state)
{
	struct unit_tmp *t = *state;
	static char src[NCODABLE][PATH_MAX];
	struct worker w[4];
	pthread_t th[4];

	/* unit_data() is not for threads: the paths are found here. */
	for (size_t i = 0; i < NCODABLE; i++)
		snprintf(src[i], sizeof(src[i]), "%s", unit_data(CODABLE[i]));
	for (int i = 0; i < 4; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].dir = t->dir;
		w[i].src = src;
		w[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (w[i].failures)
			fail_msg("thread %d: %d failures (last: %s)", i, w[i].failures, w[i].err);
	}
}

/* --- pydicom's samples ---------------------------------------------------------------- */

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int dcm(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 4 && strcmp(d->d_name + n - 4, ".dcm") == 0;
}

/* Every pydicom sample: no crash, no OK the proof does not confirm, broken
 * files a negative errno; the table of results in the test's output. */
static void test_jpls_pydicom_samples(void **state)
{
	struct unit_tmp *t = *state;
	const char *out = unit_path(t->dir, "out.jls");
	const char *must_encode[] = { "CT_small.dcm",         "ExplVR_BigEnd.dcm",
				      "MR_small.dcm",         "MR_small_bigendian.dcm",
				      "MR_small_expb.dcm",    "MR_small_implicit.dcm",
				      "SC_rgb_small_odd.dcm", "SC_rgb_jpeg_dcmd.dcm" };
	const char *broken[] = { "MR_truncated.dcm", "rtplan_truncated.dcm", "no_meta.dcm" };
	struct dirent **list = NULL;
	char err[512], path[PATH_MAX];
	int n, ok = 0;

	n = scandir(pydicom_sample(""), &list, dcm, by_name);
	assert_true(n > 50);
	print_message("%-42s %-7s %s\n", "pydicom sample", "result", "reason");
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		snprintf(path, sizeof(path), "%s/%s", PYDICOM_FILES, name);
		int rc = encode(path, out, err, sizeof(err));
		const char *what = rc == OP_JPLS_OK            ? "OK"
				   : rc == OP_JPLS_NOT_CODABLE ? "NOT"
				   : rc == OP_JPLS_MISMATCH    ? "MISMATCH"
							       : "errno";
		print_message("%-42s %-7s %d %s\n", name, what, rc, err);
		if (rc == OP_JPLS_OK) {
			ok++;
			if (verify(path, out, err, sizeof(err)) != 0)
				fail_msg("%s: OK, but verify says: %s", name, err);
			unlink(out);
		} else {
			assert_false(exists(out));
		}
		for (size_t j = 0; j < sizeof(must_encode) / sizeof(must_encode[0]); j++)
			if (strcmp(name, must_encode[j]) == 0 && rc != OP_JPLS_OK)
				fail_msg("%s: %d (%s), want OP_JPLS_OK", name, rc, err);
		for (size_t j = 0; j < sizeof(broken) / sizeof(broken[0]); j++)
			if (strcmp(name, broken[j]) == 0 && rc >= 0)
				fail_msg("%s: %d, want a negative errno", name, rc);
		free(list[i]);
	}
	free(list);
	assert_true(ok >= (int)(sizeof(must_encode) / sizeof(must_encode[0])));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_tmp_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_jpls_encodes_samples), T(test_jpls_high_bits),
		T(test_jpls_not_codable),     T(test_jpls_not_dicom),
		T(test_jpls_corrupt_hook),    T(test_jpls_verify_differences),
		T(test_jpls_output_file),     T(test_jpls_threads),
		T(test_jpls_pydicom_samples),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
