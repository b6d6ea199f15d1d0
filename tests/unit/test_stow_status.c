/*
 * test_stow_status: services/uplink/stow.c, the table of stow.h: what
 * op_stow_interpret makes of each HTTP status for the instances a body does
 * not name, the statuses whose body is not read, every FailureReason, a
 * request without instances, and statuses no server should send.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include "unit_stow.h"
#include "unit_cloud.h"

/* --- interpretation: the table of stow.h ------------------------------------------ */

static void test_stow_by_status(void **state)
{
	/* Bodies that name none of the batch. */
	static const char *const bodies[] = {
		NULL,
		"",
		"{}",
		"not JSON",
		ORTHANC_200_REFUSED_ALONE,
		RESPONSE(REF("9.9.9"), FAIL("8.8.8", "272")),
	};
	static const char *const uids[] = { "1.2.3", "1.2.4", "1.2.5" };
	op_stow_result out[3];
	char ctx[96], says[16];

	(void)state;
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
		for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
			struct row want = rows[r];
			const char *body = bodies[b];
			int refused =
				request_refused(want.status, body, body ? strlen(body) : 0, &want);

			snprintf(ctx, sizeof(ctx), "HTTP %d, body %zu", rows[r].status, b);
			snprintf(says, sizeof(says), "HTTP %d", rows[r].status);
			assert_int_equal(interpret(rows[r].status, body, uids, 3, out),
					 want.action);
			for (unsigned i = 0; i < 3; i++)
				expect_result(ctx, out, i, want.verdict, want.unconfirmed,
					      refused ? "the cloud" : says);
		}
}

/*
 * 5xx: the cloud is unwell, and a proxy's page says nothing per instance.
 * 401, 403, 413: the request was refused as a whole. So the body is not
 * read, even when it names every instance.
 */
static void test_stow_body_ignored(void **state)
{
	static const int statuses[] = { 401, 403, 413, 500, 502, 503, 504, 599 };
	static const char *const bodies[] = {
		ORTHANC_200_ALL_GOOD,
		RESPONSE(REF("<SOP-1>") "," REF("<SOP-2>"), ""),
		RESPONSE("", FAIL("<SOP-1>", "49152") "," FAIL("<SOP-2>", "49152")),
	};
	static const char *const uids[] = { "<SOP-1>", "<SOP-2>" };
	op_stow_result out[2];
	char ctx[64];

	(void)state;
	for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++) {
		const struct row *row = NULL;

		for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
			if (rows[r].status == statuses[s])
				row = &rows[r];
		assert_non_null(row);
		for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
			snprintf(ctx, sizeof(ctx), "HTTP %d, body %zu", row->status, b);
			assert_int_equal(interpret(row->status, bodies[b], uids, 2, out),
					 row->action);
			expect_result(ctx, out, 0, row->verdict, 0, NULL);
			expect_result(ctx, out, 1, row->verdict, 0, NULL);
		}
	}
}

/* FailureReason (0008,1197): A7xx, 0110, 0213 are retried; anything else,
 * including what is not a US value at all, is a refusal for good. */
static void test_stow_failure_reasons(void **state)
{
#define REASON(json, verdict, says)                                                                \
	{                                                                                          \
		RESPONSE("", FAIL("1.2.3", json)), verdict, says                                   \
	}
	static const struct {
		const char *body;
		enum op_spool_verdict verdict;
		const char *says;
	} cases[] = {
		REASON("272", RETRY, "0110"),
		REASON("531", RETRY, "0213"),
		REASON("42752", RETRY, "A700"),
		REASON("42753", RETRY, "A701"),
		REASON("43007", RETRY, "A7FF"),
		REASON("2.72e2", RETRY, "0110"),
		REASON("42751", QUARANTINE, "A6FF"),
		REASON("43008", QUARANTINE, "A800"),
		REASON("49152", QUARANTINE, "C000"),
		REASON("290", QUARANTINE, "0122"),
		REASON("292", QUARANTINE, "0124"),
		REASON("49442", QUARANTINE, "C122"),
		REASON("273", QUARANTINE, "0111"),
		REASON("0", QUARANTINE, "0000"),
		REASON("65535", QUARANTINE, "FFFF"),
		/* Not a US value, whatever it resembles. */
		REASON("\"272\"", QUARANTINE, NULL),
		REASON("\"0110\"", QUARANTINE, NULL),
		REASON("-272", QUARANTINE, NULL),
		REASON("-1", QUARANTINE, NULL),
		REASON("65808", QUARANTINE, NULL),      /* 0x10110 */
		REASON("4294967568", QUARANTINE, NULL), /* 0x100000110 */
		REASON("1e300", QUARANTINE, NULL),
		REASON("-1e300", QUARANTINE, NULL),
		REASON("null", QUARANTINE, NULL),
		REASON("true", QUARANTINE, NULL),
		REASON("[272]", QUARANTINE, NULL),
		REASON("{\"Value\":[272]}", QUARANTINE, NULL),
		{ RESPONSE("", FAIL("1.2.3", "")), QUARANTINE, NULL },
		/* No FailureReason, or one without a usable Value. */
		{ RESPONSE("", REF("1.2.3")), QUARANTINE, NULL },
		{ RESPONSE("", "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]},"
			       "\"00081197\":{\"vr\":\"US\"}}"),
		  QUARANTINE, NULL },
		{ RESPONSE("", "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]},"
			       "\"00081197\":{\"vr\":\"US\",\"Value\":272}}"),
		  QUARANTINE, NULL },
		{ RESPONSE("", "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]},"
			       "\"00081197\":272}"),
		  QUARANTINE, NULL },
	};
#undef REASON
	static const int statuses[] = { 200, 202, 400, 409, 404, 422 };
	static const char *const uids[] = { "1.2.3" };
	op_stow_result out[1];
	char ctx[300];

	(void)state;
	for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++)
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			snprintf(ctx, sizeof(ctx), "HTTP %d, %s", statuses[s], cases[c].body);
			assert_int_equal(interpret(statuses[s], cases[c].body, uids, 1, out),
					 OP_STOW_OK);
			expect_result(ctx, out, 0, cases[c].verdict, 0, cases[c].says);
		}
}

/* The transfer syntax refused (C122, 0122; HTTP 415 for the request):
 * flagged, so that the uplink sends the original of a copy instead; no
 * other reason is. */
static void test_stow_syntax_refused(void **state)
{
	static const char *const uids[] = { "1.2.3" };
	static const struct {
		const char *body;
		int refused;
	} cases[] = {
		{ RESPONSE("", FAIL("1.2.3", "49442")), 1 }, /* C122 */
		{ RESPONSE("", FAIL("1.2.3", "290")), 1 },   /* 0122 */
		{ RESPONSE("", FAIL("1.2.3", "49152")), 0 }, /* C000 */
		{ RESPONSE("", FAIL("1.2.3", "272")), 0 },   /* 0110 */
		{ RESPONSE("", FAIL("1.2.3", "292")), 0 },   /* 0124 */
	};
	op_stow_result out[1];

	(void)state;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		interpret(409, cases[c].body, uids, 1, out);
		assert_int_equal(out[0].syntax_refused, cases[c].refused);
	}
	assert_int_equal(interpret(415, "Unsupported Media Type", uids, 1, out), OP_STOW_PAUSE);
	assert_int_equal(out[0].syntax_refused, 1);
	assert_int_equal(out[0].verdict, OP_VERDICT_REQUEUE);
	interpret(400, "Bad Request", uids, 1, out);
	assert_int_equal(out[0].syntax_refused, 0);
}

/* A fraction is no US value either, even one that truncates to 0110. */
static void test_stow_failure_reason_fraction(void **state)
{
	static const char *const uids[] = { "1.2.3", "1.2.4" };
	op_stow_result out[2];

	(void)state;
	assert_int_equal(interpret(400,
				   RESPONSE("", FAIL("1.2.3", "272.5") "," FAIL("1.2.4", "531.9")),
				   uids, 2, out),
			 OP_STOW_OK);
	expect_result("272.5", out, 0, QUARANTINE, 0, NULL);
	expect_result("531.9", out, 1, QUARANTINE, 0, NULL);
}

/*
 * No instances: nothing to fill, and out is not touched. What to do next
 * still follows from the status, as OP_STOW_* say: a 5xx means the cloud
 * is unwell and 401/403 that the credentials were refused, however many
 * instances the request held.
 */
static void test_stow_no_instances(void **state)
{
	static const char *const bodies[] = { NULL, "", ORTHANC_200_ALL_GOOD };
	static const char *const names[] = { "OK", "LINK_DOWN", "PAUSE", "SPLIT" };
	op_stow_result sentinel[1];
	op_stow_result untouched[1];
	int wrong = 0;

	(void)state;
	memset(sentinel, 0x5a, sizeof(sentinel));
	memcpy(untouched, sentinel, sizeof(sentinel));
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
		for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
			size_t len = bodies[b] ? strlen(bodies[b]) : 0;
			enum op_stow_action action = op_stow_interpret(
				rows[r].status, "", bodies[b], len, NULL, 0, sentinel);
			struct row want = rows[r];

			request_refused(want.status, bodies[b], len, &want);
			assert_memory_equal(sentinel, untouched, sizeof(sentinel));
			assert_in_range(action, OP_STOW_OK, OP_STOW_SPLIT);
			if (action != want.action) {
				print_error("HTTP %d, no instances, body %zu: %s, expected %s\n",
					    rows[r].status, b, names[action], names[want.action]);
				wrong++;
			}
		}
	assert_int_equal(wrong, 0);
}

/* Statuses no server should send: valid verdicts, bounded reasons. */
static void test_stow_odd_statuses(void **state)
{
	static const int statuses[] = { INT_MIN, -1,  0,   1,   99,  100,  101,       199,
					300,     302, 304, 600, 999, 1000, 123456789, INT_MAX };
	static const char *const bodies[] = { NULL, RESPONSE(REF("1.2.3"), FAIL("1.2.4", "272")) };
	static const char *const uids[] = { "1.2.3", "1.2.4", "1.2.5" };
	op_stow_result out[3];
	char number[16];

	(void)state;
	for (size_t s = 0; s < sizeof(statuses) / sizeof(statuses[0]); s++)
		for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
			interpret(statuses[s], bodies[b], uids, 3, out);
			snprintf(number, sizeof(number), "%d", statuses[s]);
			for (unsigned i = 0; i < 3; i++)
				if (out[i].verdict != SENT)
					assert_non_null(strstr(out[i].reason, number));
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stow_by_status, unit_release_all),
		cmocka_unit_test_teardown(test_stow_body_ignored, unit_release_all),
		cmocka_unit_test_teardown(test_stow_failure_reasons, unit_release_all),
		cmocka_unit_test_teardown(test_stow_failure_reason_fraction, unit_release_all),
		cmocka_unit_test_teardown(test_stow_syntax_refused, unit_release_all),
		cmocka_unit_test_teardown(test_stow_no_instances, unit_release_all),
		cmocka_unit_test_teardown(test_stow_odd_statuses, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
