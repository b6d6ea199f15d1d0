/*
 * test_dicom: the pure functions of the DCMTK shim (services/dicom/
 * dicom.cc): when an A-ASSOCIATE-RQ is buffered, reading the indexed
 * attributes of a stored file, and which SOP classes and transfer syntaxes
 * the receiver accepts.
 *
 * Files: pydicom's samples (python3-pydicom, a test dependency), read in
 * place, and the small fixtures of tests/unit/data/ (see its README). The
 * expected UIDs of the samples were read with dcmdump.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dicom/dicom.h"

#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"

#define UID_CT_IMAGE "1.2.840.10008.5.1.4.1.1.2"
#define UID_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define UID_IMPLICIT_LE "1.2.840.10008.1.2"
#define UID_EXPLICIT_BE "1.2.840.10008.1.2.2"
#define UID_DEFLATE "1.2.840.10008.1.2.1.99"
#define UID_JPEG2000 "1.2.840.10008.1.2.4.91"
#define UID_JPEG2000_LOSSLESS "1.2.840.10008.1.2.4.90"

/* --- where the files are -------------------------------------------------------- */

static const char *sample(const char *name)
{
	static char path[PATH_MAX];
	struct stat sb;

	if (stat(PYDICOM_FILES, &sb) != 0) {
		print_message("pydicom's sample files are not installed (python3-pydicom)\n");
		skip();
	}
	snprintf(path, sizeof(path), "%s/%s", PYDICOM_FILES, name);
	return path;
}

/*
 * Reads path. DCMTK logs each oddity of pydicom's deliberately broken
 * samples on stderr (the receiver turns its logger off in
 * op_dicom_net_open); unit_stderr_off() drops that noise.
 */
static int read_inst(const char *path, op_instance *in, char *err, size_t errlen)
{
	int saved, rc;

	memset(in, 0x5a, sizeof(*in));
	err[0] = '\0';
	saved = unit_stderr_off();
	rc = op_dicom_read_instance(path, NULL, 0, NULL, in, err, errlen);
	unit_stderr_restore(saved);
	return rc;
}

static void assert_reads(const char *path, op_instance *in)
{
	char err[256];
	int rc = read_inst(path, in, err, sizeof(err));

	if (rc != 0)
		fail_msg("%s: %d: %s", path, rc, err);
}

/* Unreadable or incomplete: -EINVAL, and a reason that says what. */
static void assert_refused(const char *path, const char *reason)
{
	op_instance in;
	char err[256];
	int rc = read_inst(path, &in, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("%s: %d, want -EINVAL (err \"%s\", sop \"%.64s\")", path, rc, err,
			 rc == 0 ? in.sop_instance_uid : "");
	assert_true(strlen(err) > 0);
	if (reason && !strstr(err, reason))
		fail_msg("%s: reason \"%s\" does not say \"%s\"", path, err, reason);
}

/* --- op_dicom_pdu_ready ------------------------------------------------------------ */

/* An A-ASSOCIATE-RQ header: type 0x01, reserved, 4-byte big-endian length. */
static void pdu_header(unsigned char *buf, uint32_t len)
{
	buf[0] = 0x01;
	buf[1] = 0x00;
	buf[2] = (unsigned char)(len >> 24);
	buf[3] = (unsigned char)(len >> 16);
	buf[4] = (unsigned char)(len >> 8);
	buf[5] = (unsigned char)len;
}

static void test_dicom_pdu_ready_short(void **state)
{
	unsigned char buf[6];
	size_t need;

	(void)state;
	pdu_header(buf, 68);
	for (size_t len = 0; len < 6; len++) {
		need = 12345;
		assert_int_equal(op_dicom_pdu_ready(buf, len, &need), 0);
		assert_int_equal(need, 6); /* the header first */
	}
	need = 0;
	assert_int_equal(op_dicom_pdu_ready(buf, 6, &need), 0);
	assert_int_equal(need, 6 + 68);
}

static void test_dicom_pdu_ready_wrong_type(void **state)
{
	/* A-ASSOCIATE-AC, -RJ, P-DATA-TF, A-RELEASE-RQ, -RP, A-ABORT, junk, TLS. */
	const unsigned char types[] = { 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0xff, 0x16, 'G' };
	unsigned char buf[16];
	size_t need;

	(void)state;
	for (size_t i = 0; i < sizeof(types); i++) {
		pdu_header(buf, 10);
		buf[0] = types[i];
		for (size_t len = 1; len <= sizeof(buf); len++)
			assert_int_equal(op_dicom_pdu_ready(buf, len, &need), -EPROTO);
	}
	/* An HTTP request on the DICOM port. */
	assert_int_equal(op_dicom_pdu_ready((const unsigned char *)"GET / HTTP/1.1\r\n", 16, &need),
			 -EPROTO);
}

static void test_dicom_pdu_ready_lengths(void **state)
{
	static unsigned char buf[70000];
	size_t need;

	(void)state;
	/* Exactly the PDU, one byte short, and more (the next PDU behind it). */
	pdu_header(buf, 200);
	assert_int_equal(op_dicom_pdu_ready(buf, 205, &need), 0);
	assert_int_equal(need, 206);
	assert_int_equal(op_dicom_pdu_ready(buf, 206, &need), 1);
	assert_int_equal(op_dicom_pdu_ready(buf, 300, &need), 1);

	/* The reserved byte does not matter; the length is big-endian. */
	pdu_header(buf, 0x0102);
	buf[1] = 0xee;
	assert_int_equal(op_dicom_pdu_ready(buf, 6, &need), 0);
	assert_int_equal(need, 6 + 0x0102);
	assert_int_equal(op_dicom_pdu_ready(buf, 6 + 0x0102, &need), 1);

	/* A zero-length body: the header is the whole PDU (DCMTK refuses it). */
	pdu_header(buf, 0);
	assert_int_equal(op_dicom_pdu_ready(buf, 6, &need), 1);

	/* Up to 64 KiB: the whole PDU. */
	pdu_header(buf, 65536 - 6);
	assert_int_equal(op_dicom_pdu_ready(buf, 65535, &need), 0);
	assert_int_equal(need, 65536);
	assert_int_equal(op_dicom_pdu_ready(buf, 65536, &need), 1);

	/* Larger: its first 64 KiB are enough. */
	pdu_header(buf, 65536);
	assert_int_equal(op_dicom_pdu_ready(buf, 6, &need), 0);
	assert_int_equal(need, 65536);
	assert_int_equal(op_dicom_pdu_ready(buf, 65535, &need), 0);
	assert_int_equal(need, 65536);
	assert_int_equal(op_dicom_pdu_ready(buf, 65536, &need), 1);
	assert_int_equal(op_dicom_pdu_ready(buf, sizeof(buf), &need), 1);

	/* The largest length a PDU can state. */
	pdu_header(buf, 0xffffffffu);
	assert_int_equal(op_dicom_pdu_ready(buf, 6, &need), 0);
	assert_int_equal(need, 65536);
	assert_int_equal(op_dicom_pdu_ready(buf, 65536, &need), 1);
	pdu_header(buf, 0x80000000u);
	assert_int_equal(op_dicom_pdu_ready(buf, 100, &need), 0);
	assert_int_equal(need, 65536);
}

/* --- op_dicom_read_instance ------------------------------------------------------------ */

static void test_dicom_read_ct_small(void **state)
{
	op_instance in;

	(void)state;
	assert_reads(sample("CT_small.dcm"), &in);
	assert_string_equal(in.sop_instance_uid, "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322");
	assert_string_equal(in.sop_class_uid, UID_CT_IMAGE);
	assert_string_equal(in.study_uid, "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322");
	assert_string_equal(in.series_uid, "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322");
	assert_string_equal(in.transfer_syntax, UID_EXPLICIT_LE);
	/* The top-level Patient ID, not one from OtherPatientIDsSequence. */
	assert_string_equal(in.patient_id, "1CT1");
	assert_string_equal(in.modality, "CT");
}

/* Other encodings: the transfer syntax is the file's. */
static void test_dicom_read_encodings(void **state)
{
	const struct {
		const char *file, *sop, *ts, *modality;
	} cases[] = {
		{ "MR_small_bigendian.dcm", "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457",
		  UID_EXPLICIT_BE, "MR" },
		{ "MR_small_implicit.dcm", "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457",
		  UID_IMPLICIT_LE, "MR" },
		{ "image_dfl.dcm", "1.3.6.1.4.1.5962.1.1.0.0.0.977067309.6001.0", UID_DEFLATE,
		  "OT" },
		{ "JPEG2000.dcm", "1.3.6.1.4.1.5962.1.1.8.1.3.20040826185059.5457", UID_JPEG2000,
		  "NM" },
		{ "MR_small_jp2klossless.dcm", "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457",
		  UID_JPEG2000_LOSSLESS, "MR" },
		{ "ExplVR_BigEnd.dcm", "1.2.840.1136190195280574824680000700.3.0.1.19970424140438",
		  UID_EXPLICIT_BE, "US" },
	};
	op_instance in;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_reads(sample(cases[i].file), &in);
		assert_string_equal(in.sop_instance_uid, cases[i].sop);
		assert_string_equal(in.transfer_syntax, cases[i].ts);
		assert_string_equal(in.modality, cases[i].modality);
	}
	/* An empty Patient ID reads as "". */
	assert_reads(sample("image_dfl.dcm"), &in);
	assert_string_equal(in.patient_id, "");
}

/* A dataset without File Meta Information: the encoding is detected. */
static void test_dicom_read_without_meta(void **state)
{
	op_instance in;

	(void)state;
	assert_reads(sample("ExplVR_LitEndNoMeta.dcm"), &in);
	assert_string_equal(in.sop_instance_uid, "1.2.333.4444.5.6.7.8");
	assert_string_equal(in.sop_class_uid, "1.2.840.10008.5.1.4.1.1.481.8"); /* RT Ion Plan */
	assert_string_equal(in.study_uid, "1.2.333.4444.5.6.7.8.9");
	assert_string_equal(in.series_uid, "1.2.333.4444.5.6.7.8.99");
	assert_string_equal(in.transfer_syntax, UID_EXPLICIT_LE);
	assert_string_equal(in.modality, "RTPLAN");

	assert_reads(sample("ExplVR_BigEndNoMeta.dcm"), &in);
	assert_string_equal(in.sop_instance_uid, "1.2.333.4444.5.6.7.8");
	assert_string_equal(in.transfer_syntax, UID_EXPLICIT_BE);

	/* no_meta.dcm begins with a stray byte: neither dcmdump nor pydicom
	 * finds a UID in it. */
	assert_refused(sample("no_meta.dcm"), NULL);
}

static void test_dicom_read_truncated(void **state)
{
	(void)state;
	/* Pixel Data says 8192 bytes; the file ends before them. */
	assert_refused(sample("MR_truncated.dcm"), NULL);
	assert_refused(sample("rtplan_truncated.dcm"), NULL);
}

static void test_dicom_read_fixtures(void **state)
{
	op_instance in;

	(void)state;
	assert_reads(unit_data("valid_minimal.dcm"), &in);
	assert_string_equal(in.sop_instance_uid, "1.2.826.0.1.3680043.8.498.1");
	assert_string_equal(in.sop_class_uid, "1.2.840.10008.5.1.4.1.1.7");
	assert_string_equal(in.study_uid, "1.2.826.0.1.3680043.8.498.2");
	assert_string_equal(in.series_uid, "1.2.826.0.1.3680043.8.498.3");
	assert_string_equal(in.transfer_syntax, UID_EXPLICIT_LE);
	assert_string_equal(in.patient_id, "FIXTURE");
	assert_string_equal(in.modality, "OT");

	assert_refused(unit_data("no_sop_instance_uid.dcm"), "SOPInstanceUID");
	assert_refused(unit_data("no_sop_instance_uid.dcm"), "missing");
	assert_refused(unit_data("no_series_uid.dcm"), "SeriesInstanceUID");
	assert_refused(unit_data("bad_sop_instance_uid.dcm"), "SOPInstanceUID");
	assert_refused(unit_data("bad_sop_instance_uid.dcm"), "not a valid UID");
	/* 71 characters: longer than a UID may be, refused rather than cut. */
	assert_refused(unit_data("long_study_uid.dcm"), "StudyInstanceUID");
}

static void test_dicom_read_not_dicom(void **state)
{
	struct unit_tmp *t = *state;
	unsigned char preamble[132] = { 0 };
	const char *path;

	path = unit_path(t->dir, "empty.dcm");
	unit_write_bytes(path, "", 0);
	assert_refused(path, NULL);

	path = unit_path(t->dir, "text.dcm");
	unit_write_bytes(path, "hello, this is not DICOM\n", 25);
	assert_refused(path, NULL);

	/* A preamble and "DICM", then nothing. */
	memcpy(preamble + 128, "DICM", 4);
	path = unit_path(t->dir, "preamble.dcm");
	unit_write_bytes(path, preamble, sizeof(preamble));
	assert_refused(path, NULL);

	assert_refused(unit_path(t->dir, "absent.dcm"), NULL);
	assert_refused(t->dir, NULL);
}

/* The reason is cut to fit a short buffer, and terminated. */
static void test_dicom_read_short_err(void **state)
{
	op_instance in;
	char err[16];

	(void)state;
	memset(err, 'Z', sizeof(err));
	assert_int_equal(read_inst(unit_data("no_sop_instance_uid.dcm"), &in, err, 8), -EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(err[8], 'Z');
}

/* --- what the receiver accepts ------------------------------------------------------------- */

static void test_dicom_sop_class_accepted(void **state)
{
	const char *yes[] = {
		"1.2.840.10008.1.1",                /* Verification */
		UID_CT_IMAGE,                       /* CT Image Storage */
		"1.2.840.10008.5.1.4.1.1.2.1",      /* Enhanced CT */
		"1.2.840.10008.5.1.4.1.1.4",        /* MR Image */
		"1.2.840.10008.5.1.4.1.1.1",        /* Computed Radiography */
		"1.2.840.10008.5.1.4.1.1.1.1",      /* Digital X-Ray, presentation */
		"1.2.840.10008.5.1.4.1.1.1.2",      /* Digital Mammography */
		"1.2.840.10008.5.1.4.1.1.13.1.3",   /* Breast Tomosynthesis */
		"1.2.840.10008.5.1.4.1.1.6.1",      /* Ultrasound Image */
		"1.2.840.10008.5.1.4.1.1.3.1",      /* Ultrasound Multi-frame */
		"1.2.840.10008.5.1.4.1.1.7",        /* Secondary Capture */
		"1.2.840.10008.5.1.4.1.1.128",      /* PET */
		"1.2.840.10008.5.1.4.1.1.20",       /* NM */
		"1.2.840.10008.5.1.4.1.1.9.1.1",    /* 12-lead ECG */
		"1.2.840.10008.5.1.4.1.1.66.4",     /* Segmentation */
		"1.2.840.10008.5.1.4.1.1.481.5",    /* RT Plan */
		"1.2.840.10008.5.1.4.1.1.88.11",    /* Basic Text SR */
		"1.2.840.10008.5.1.4.1.1.88.67",    /* X-Ray Radiation Dose SR */
		"1.2.840.10008.5.1.4.1.1.104.1",    /* Encapsulated PDF */
		"1.2.840.10008.5.1.4.1.1.77.1.6",   /* VL Whole Slide Microscopy */
		"1.2.840.10008.5.1.4.1.1.11.1",     /* Grayscale Softcopy Presentation State */
		"1.2.840.10008.5.1.4.1.1.12.1",     /* X-Ray Angiographic */
		"1.2.840.10008.5.1.4.1.1.77.1.5.1", /* Ophthalmic Photography 8 bit */
	};
	const char *no[] = {
		"1.2.3",
		"1.2.3.4.5.6.7.8.9",
		"",
		"1.2.840.10008.5.1.4.1.1",       /* the storage root, not a class */
		"1.2.840.10008.5.1.4.1.1.2 ",    /* CT with a trailing space */
		"1.2.840.10008.5.1.4.1.1.2.999", /* not a class */
		"1.2.840.10008.5.1.4.1.2.1.1",   /* Patient Root Q/R FIND */
		"1.2.840.10008.5.1.4.1.2.2.3",   /* Study Root Q/R GET */
		"1.2.840.10008.5.1.4.31",        /* Modality Worklist FIND */
		"1.2.840.10008.1.20.1",          /* Storage Commitment Push */
		"1.2.840.10008.3.1.2.3.3",       /* Modality Performed Procedure Step */
		"1.2.840.10008.1.2.1",           /* a transfer syntax */
		"CT Image Storage",              /* a name, not a UID */
		"CTImageStorage",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!op_dicom_sop_class_accepted(yes[i]))
			fail_msg("SOP class %s refused", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (op_dicom_sop_class_accepted(no[i]))
			fail_msg("\"%s\" accepted as a SOP class", no[i]);
}

static void test_dicom_transfer_syntax_accepted(void **state)
{
	const char *yes[] = {
		UID_IMPLICIT_LE,
		UID_EXPLICIT_LE,
		UID_EXPLICIT_BE, /* retired, still sent by old modalities */
		UID_DEFLATE,
		"1.2.840.10008.1.2.4.50", /* JPEG Baseline */
		"1.2.840.10008.1.2.4.51", /* JPEG Extended */
		"1.2.840.10008.1.2.4.57", /* JPEG Lossless */
		"1.2.840.10008.1.2.4.70", /* JPEG Lossless SV1 */
		"1.2.840.10008.1.2.4.80", /* JPEG-LS Lossless */
		"1.2.840.10008.1.2.4.81", /* JPEG-LS Near-lossless */
		UID_JPEG2000_LOSSLESS,
		UID_JPEG2000,
		"1.2.840.10008.1.2.4.92", /* JPEG 2000 Part 2 lossless */
		"1.2.840.10008.1.2.4.93",
		"1.2.840.10008.1.2.5",     /* RLE Lossless */
		"1.2.840.10008.1.2.4.100", /* MPEG2 */
		"1.2.840.10008.1.2.4.102", /* H.264 */
		"1.2.840.10008.1.2.4.107", /* HEVC */
	};
	const char *no[] = {
		"1.2.3",
		"",
		"1.2.840.10008.1.2.4",
		"1.2.840.10008.1.2.1 ",
		"1.2.840.10008.1.2.999",
		UID_CT_IMAGE,
		/* DCMTK's names for transfer syntaxes are not UIDs: a peer that
		 * proposes one must not get it accepted. */
		"Little Endian Explicit",
		"Little Endian Implicit",
		"JPEG 2000 (Lossless or Lossy)",
		"Deflated Explicit VR Little Endian",
		/* DCMTK's internal "virtual" syntax: no UID at all. */
		"Virtual Big Endian Implicit",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!op_dicom_transfer_syntax_accepted(yes[i]))
			fail_msg("transfer syntax %s refused", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (op_dicom_transfer_syntax_accepted(no[i]))
			fail_msg("\"%s\" accepted as a transfer syntax", no[i]);
}

/* Every pydicom sample that reads is of a class and encoding the receiver
 * accepts (they cover every transfer syntax, SR, RT, SEG, ECG). */
static void test_dicom_samples_accepted(void **state)
{
	const char *dir = sample("");
	struct dirent *de;
	DIR *d;
	int read_ok = 0;

	(void)state;
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX + 256], err[256];
		size_t n = strlen(de->d_name);
		op_instance in;

		if (n < 4 || strcmp(de->d_name + n - 4, ".dcm") != 0)
			continue;
		snprintf(path, sizeof(path), "%s%s", dir, de->d_name);
		if (read_inst(path, &in, err, sizeof(err)) != 0)
			continue;
		read_ok++;
		if (!op_dicom_sop_class_accepted(in.sop_class_uid))
			fail_msg("%s: SOP class %s refused", de->d_name, in.sop_class_uid);
		if (!op_dicom_transfer_syntax_accepted(in.transfer_syntax))
			fail_msg("%s: transfer syntax %s refused", de->d_name, in.transfer_syntax);
	}
	closedir(d);
	assert_true(read_ok >= 40);
}

static void test_dicom_print_conformance(void **state)
{
	char *text = NULL;
	size_t size = 0;
	FILE *out = open_memstream(&text, &size);

	(void)state;
	assert_non_null(out);
	op_dicom_print_conformance(out);
	assert_int_equal(fclose(out), 0);
	/* Judged before asserting, so that a failure leaks nothing. */
	int ct = strstr(text, "| " UID_CT_IMAGE " |") != NULL;
	int verification = strstr(text, "| 1.2.840.10008.1.1 |") != NULL;
	int j2k = strstr(text, "| " UID_JPEG2000 " |") != NULL;
	int deflate = strstr(text, "| " UID_DEFLATE " |") != NULL;
	int empty_uid = strstr(text, "|  |") != NULL;
	int virtual_be = strstr(text, "Virtual Big Endian") != NULL;
	free(text);
	assert_true(ct);
	assert_true(verification);
	assert_true(j2k);
	assert_true(deflate);
	/* Only real transfer syntaxes: no row without a UID. */
	assert_false(empty_uid);
	assert_false(virtual_be);
}

/* --- matching ([priority] urgent_match, routes) ---------------------------------------- */

static int matches(const char *text, enum op_dicom_match_mode mode)
{
	op_dicom_match *m = NULL;
	const op_dicom_match *list[1];
	op_instance in;
	char err[256];
	int matched = -1;

	assert_int_equal(op_dicom_match_compile(text, mode, &m, err, sizeof(err)), 0);
	list[0] = m;
	assert_int_equal(op_dicom_read_instance(PYDICOM_FILES "/CT_small.dcm", list, 1, &matched,
						&in, err, sizeof(err)),
			 0);
	op_dicom_match_free(m);
	return matched;
}

/* CT_small.dcm: Modality CT, PatientName CompressedSamples^CT1, ImageType
 * ORIGINAL\PRIMARY\AXIAL, no BodyPartExamined. */
static void test_dicom_match_modes_and_wildcards(void **state)
{
	char err[256];
	op_dicom_match *m = NULL;

	(void)state;
	assert_true(matches("Modality=CT", OP_MATCH_ANY));
	assert_true(matches("Modality=ct", OP_MATCH_ALL));
	assert_true(matches("PatientName=compressed*^CT?", OP_MATCH_ALL));
	assert_false(matches("PatientName=compressed", OP_MATCH_ALL));
	assert_true(matches("ImageType=AX*", OP_MATCH_ANY)); /* any value of several */
	assert_true(matches("Modality=MR, ImageType=PRIMARY", OP_MATCH_ANY));
	assert_false(matches("Modality=MR, ImageType=PRIMARY", OP_MATCH_ALL));
	assert_true(matches("Modality=C?, ImageType=PRIMARY", OP_MATCH_ALL));
	assert_false(matches("BodyPartExamined=*", OP_MATCH_ALL)); /* absent */
	/* NULL (an empty text) holds for nothing. */
	assert_int_equal(op_dicom_match_compile("", OP_MATCH_ALL, &m, err, sizeof(err)), 0);
	assert_null(m);
	assert_int_equal(op_dicom_match_compile("Modalty=CT", OP_MATCH_ALL, &m, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'Modalty' is not a DICOM attribute keyword"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dicom_match_modes_and_wildcards),
		cmocka_unit_test(test_dicom_pdu_ready_short),
		cmocka_unit_test(test_dicom_pdu_ready_wrong_type),
		cmocka_unit_test(test_dicom_pdu_ready_lengths),
		cmocka_unit_test(test_dicom_read_ct_small),
		cmocka_unit_test(test_dicom_read_encodings),
		cmocka_unit_test(test_dicom_read_without_meta),
		cmocka_unit_test(test_dicom_read_truncated),
		cmocka_unit_test(test_dicom_read_fixtures),
		cmocka_unit_test_setup_teardown(test_dicom_read_not_dicom, unit_tmp_setup,
						unit_tmp_teardown),
		cmocka_unit_test(test_dicom_read_short_err),
		cmocka_unit_test(test_dicom_sop_class_accepted),
		cmocka_unit_test(test_dicom_transfer_syntax_accepted),
		cmocka_unit_test(test_dicom_samples_accepted),
		cmocka_unit_test(test_dicom_print_conformance),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
