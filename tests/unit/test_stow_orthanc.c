/*
 * test_stow_orthanc: services/uplink/stow.c, what op_stow_interpret makes of
 * the bodies Orthanc 1.10.1 + DICOMweb 1.7 really sends (unit_cloud.h,
 * from docs/notes-orthanc.md, verbatim: the placeholders <SOP-n> serve as
 * the batch's SOP Instance UIDs, as any string would), whatever the
 * Content-Type says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_stow.h"
#include "unit_cloud.h"

/* --- interpretation: Orthanc's answers ---------------------------------------------- */

static char *pretty(const char *compact)
{
	cJSON *root = cJSON_Parse(compact);
	char *text;

	assert_non_null(root);
	text = cJSON_Print(root); /* tabs and newlines, as Orthanc writes it */
	cJSON_Delete(root);
	return unit_hold(text, NULL);
}

static void test_stow_orthanc_all_good(void **state)
{
	static const char *const uids[] = { "<SOP-1>", "<SOP-2>" };
	static const char *const reversed[] = { "<SOP-2>", "<SOP-1>" };
	static const char *const one[] = { "<SOP-2>" };
	char *tabs = pretty(ORTHANC_200_ALL_GOOD);
	const char *bodies[] = {
		ORTHANC_200_ALL_GOOD,
		"[" ORTHANC_200_ALL_GOOD "]", /* some servers wrap the dataset in an array */
		ORTHANC_200_ALL_GOOD "\n",
		tabs,
	};
	op_stow_result out[2];

	(void)state;
	assert_non_null(strchr(tabs, '\t'));
	for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
		assert_int_equal(interpret(200, bodies[b], uids, 2, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
		expect_result(bodies[b], out, 1, SENT, 0, NULL);
		assert_int_equal(interpret(200, bodies[b], reversed, 2, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
		expect_result(bodies[b], out, 1, SENT, 0, NULL);
		/* A batch of one, the other listed: ignored. */
		assert_int_equal(interpret(200, bodies[b], one, 1, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
	}
	unit_release(tabs);
}

/* One good part and one of garbage: 400; the good one referenced, the
 * garbage nowhere (Orthanc could read no UID from it). Either order. */
static void test_stow_orthanc_400_garbage_part(void **state)
{
	static const char *const good_first[] = { "<SOP-3>", "1.2.826.0.1.3680043.2.1125.7" };
	static const char *const bad_first[] = { "1.2.826.0.1.3680043.2.1125.7", "<SOP-3>" };
	op_stow_result out[2];

	(void)state;
	assert_int_equal(interpret(400, ORTHANC_400_GARBAGE_PART, good_first, 2, out), OP_STOW_OK);
	expect_result("good first", out, 0, SENT, 0, NULL);
	expect_result("good first", out, 1, RETRY, 0, "HTTP 400");
	assert_int_equal(interpret(400, ORTHANC_400_GARBAGE_PART, bad_first, 2, out), OP_STOW_OK);
	expect_result("garbage first", out, 0, RETRY, 0, "HTTP 400");
	expect_result("garbage first", out, 1, SENT, 0, NULL);
}

/* An instance without SeriesInstanceUID: FailureReason 49152 (C000). */
static void test_stow_orthanc_400_cannot_understand(void **state)
{
	static const char *const uids[] = { "<SOP-5>", "<SOP-6>" };
	op_stow_result out[2];

	(void)state;
	assert_int_equal(interpret(400, ORTHANC_400_NO_SERIES_UID, uids, 2, out), OP_STOW_OK);
	expect_result("400 C000", out, 0, QUARANTINE, 0, "C000");
	expect_result("400 C000", out, 1, SENT, 0, NULL);
}

/* A study UID in the URL that one instance does not match: 409 with
 * FailureReason 272 (0110, processing failure: retried), the other stored.
 * An instance of the batch listed nowhere takes 409's verdict. */
static void test_stow_orthanc_409_processing_failure(void **state)
{
	static const char *const uids[] = { "<SOP-9>", "<SOP-10>", "<SOP-11>" };
	op_stow_result out[3];

	(void)state;
	assert_int_equal(interpret(409, ORTHANC_409_STUDY_MISMATCH, uids, 3, out), OP_STOW_OK);
	expect_result("409 0110", out, 0, RETRY, 0, "0110");
	expect_result("409 0110", out, 1, SENT, 0, NULL);
	expect_result("409 0110", out, 2, QUARANTINE, 0, "HTTP 409");
}

/* 200 with both sequences empty ({"vr":"SQ"}, no Value), or naming only
 * some: the others were not stored (a Lua filter's error, a part of the
 * wrong type, and everything after it). */
static void test_stow_orthanc_200_unconfirmed(void **state)
{
	static const char *const alone[] = { "<SOP-4>" };
	static const char *const three[] = { "<SOP-7>", "<SOP-R>", "<SOP-G>" };
	static const char *const dropped[] = { "<SOP-8>" };
	op_stow_result out[3];

	(void)state;
	assert_int_equal(interpret(200, ORTHANC_200_REFUSED_ALONE, alone, 1, out), OP_STOW_OK);
	expect_result("refused alone", out, 0, RETRY, 1, "HTTP 200");
	assert_int_equal(interpret(200, ORTHANC_200_WRONG_PART_TYPE, three, 3, out), OP_STOW_OK);
	for (unsigned i = 0; i < 3; i++)
		expect_result("wrong part type", out, i, RETRY, 1, "HTTP 200");
	assert_int_equal(interpret(200, ORTHANC_200_GOOD_REFUSED_GOOD, three, 3, out), OP_STOW_OK);
	expect_result("good, refused, good", out, 0, SENT, 0, NULL);
	expect_result("good, refused, good", out, 1, RETRY, 1, "HTTP 200");
	expect_result("good, refused, good", out, 2, RETRY, 1, "HTTP 200");
	/* Dropped by a filter returning false: referenced, not stored. Only a
	 * check of the cloud's contents can tell (docs/notes-orthanc.md). */
	assert_int_equal(interpret(200, ORTHANC_200_DROPPED, dropped, 1, out), OP_STOW_OK);
	expect_result("dropped", out, 0, SENT, 0, NULL);
}

/* Errors that are not DICOM JSON: Orthanc's own, nginx's HTML. */
static void test_stow_orthanc_errors(void **state)
{
	static const char *const uids[] = { "<SOP-1>", "<SOP-2>" };
	op_stow_result out[2];

	(void)state;
	assert_int_equal(interpret(415, ORTHANC_415, uids, 2, out), OP_STOW_OK);
	expect_result("415", out, 0, RETRY, 0, "HTTP 415");
	expect_result("415", out, 1, RETRY, 0, "HTTP 415");
	assert_int_equal(
		interpret_len(502, "text/html", NGINX_502, strlen(NGINX_502), uids, 2, out),
		OP_STOW_LINK_DOWN);
	expect_result("502", out, 0, RETRY, 0, "HTTP 502");
	expect_result("502", out, 1, RETRY, 0, "HTTP 502");
	assert_int_equal(interpret(500, ORTHANC_REST_500, uids, 2, out), OP_STOW_LINK_DOWN);
	expect_result("500", out, 0, RETRY, 0, "HTTP 500");
	assert_int_equal(interpret_len(401, "text/html", "<html>401</html>", 16, uids, 2, out),
			 OP_STOW_PAUSE);
	expect_result("401", out, 0, REQUEUE, 0, "HTTP 401");
	expect_result("401", out, 1, REQUEUE, 0, "HTTP 401");
}

/* The body is read whatever its Content-Type says. */
static void test_stow_content_type_ignored(void **state)
{
	static const char *const types[] = {
		NULL,
		"",
		"application/dicom+json",
		"application/json",
		"text/html",
		"text/plain",
		"application/dicom+json; charset=utf-8",
	};
	static const char *const uids[] = { "<SOP-9>", "<SOP-10>" };
	const char *body = ORTHANC_409_STUDY_MISMATCH;
	op_stow_result out[2];

	(void)state;
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const char *ctx = types[t] ? types[t] : "(none)";

		assert_int_equal(interpret_len(409, types[t], body, strlen(body), uids, 2, out),
				 OP_STOW_OK);
		expect_result(ctx, out, 0, RETRY, 0, "0110");
		expect_result(ctx, out, 1, SENT, 0, NULL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stow_orthanc_all_good, unit_release_all),
		cmocka_unit_test_teardown(test_stow_orthanc_400_garbage_part, unit_release_all),
		cmocka_unit_test_teardown(test_stow_orthanc_400_cannot_understand,
					  unit_release_all),
		cmocka_unit_test_teardown(test_stow_orthanc_409_processing_failure,
					  unit_release_all),
		cmocka_unit_test_teardown(test_stow_orthanc_200_unconfirmed, unit_release_all),
		cmocka_unit_test_teardown(test_stow_orthanc_errors, unit_release_all),
		cmocka_unit_test_teardown(test_stow_content_type_ignored, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
