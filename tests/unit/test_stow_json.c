/*
 * test_stow_json: services/uplink/stow.c, the JSON a broken or hostile
 * server could send: bodies that say nothing usable, cut short, nested
 * deep; an instance both referenced and failed, listed twice, or not of
 * the batch; and a batch of 1000 answered in another order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_stow.h"
#include "unit_cloud.h"

/* --- interpretation: JSON that says nothing usable --------------------------------- */

#define SEQ(tag, value) "{\"" tag "\":{\"vr\":\"SQ\",\"Value\":" value "}}"
#define UIDV(value) "{\"00081155\":{\"vr\":\"UI\",\"Value\":" value "}}"

/* Bodies that confirm nothing about the batch {1.2.3, 123}: each instance
 * takes the status's verdict, as if the body were absent. */
static const char *const says_nothing[] = {
	" ",
	"null",
	"true",
	"42",
	"\"1.2.3\"",
	"[]",
	"{}",
	"[{}]",
	"[[]]",
	"[\"1.2.3\"]",
	/* Two datasets: not a STOW-RS response. */
	"[" RESPONSE(REF("1.2.3"), "") "," RESPONSE(REF("1.2.3"), "") "]",
	"{\"00081199\":\"1.2.3\"}",
	"{\"00081199\":{\"vr\":\"SQ\"}}",
	SEQ("00081199", "[]"),
	SEQ("00081199", "\"1.2.3\""),
	SEQ("00081199", "null"),
	SEQ("00081199", "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]}}"),
	SEQ("00081199", "[\"1.2.3\"]"),
	SEQ("00081199", "[[\"1.2.3\"]]"),
	SEQ("00081199", "[null]"),
	/* ReferencedSOPInstanceUID without a usable value. */
	SEQ("00081199", "[{\"00081155\":{\"vr\":\"UI\"}}]"),
	SEQ("00081199", "[" UIDV("[]") "]"),
	SEQ("00081199", "[" UIDV("\"1.2.3\"") "]"),
	SEQ("00081199", "[" UIDV("null") "]"),
	SEQ("00081199", "[" UIDV("[123]") "]"), /* a number, not the UID "123" */
	SEQ("00081199", "[" UIDV("[1.23]") "]"),
	SEQ("00081199", "[" UIDV("[null,\"1.2.3\"]") "]"),
	SEQ("00081199", "[" UIDV("[[\"1.2.3\"]]") "]"),
	SEQ("00081199", "[" UIDV("[{\"Alphabetic\":\"1.2.3\"}]") "]"),
	SEQ("00081199", "[{\"00081155\":\"1.2.3\"}]"),
	SEQ("00081199", "[{\"00081155\":[\"1.2.3\"]}]"),
	/* Other UIDs: not ours, however close. */
	SEQ("00081199", "[" UIDV("[\"1.2.34\"]") "]"),
	SEQ("00081199", "[" UIDV("[\"1.2\"]") "]"),
	SEQ("00081199", "[" UIDV("[\"12\"]") "]"),
	SEQ("00081199", "[" UIDV("[\"1230\"]") "]"),
	SEQ("00081199", "[" UIDV("[\"\"]") "]"),
	SEQ("00081199", "[{\"00081150\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]}}]"),
	SEQ("00081198", "[{\"00081150\":{\"vr\":\"UI\",\"Value\":[\"1.2.3\"]},"
			"\"00081197\":{\"vr\":\"US\",\"Value\":[49152]}}]"),
	/* Tags spelt otherwise. */
	SEQ("0008,1199", "[" REF("1.2.3") "]"),
	SEQ("(0008,1199)", "[" REF("1.2.3") "]"),
	SEQ("ReferencedSOPSequence", "[" REF("1.2.3") "]"),
	SEQ("00081199 ", "[" REF("1.2.3") "]"),
	/* Malformed JSON. */
	"{",
	"{\"00081199\":{\"vr\":\"SQ\",\"Value\":[" REF("1.2.3") "]}",
	"{\"00081199\":{\"vr\":\"SQ\",\"Value\":[" REF("1.2.3") ",]}}",
	"{\"00081199\":{\"vr\":\"SQ\",\"Value\":[{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"1.2.3",
	"{'00081199':{'vr':'SQ','Value':[{'00081155':{'vr':'UI','Value':['1.2.3']}}]}}",
	"{00081199:{\"vr\":\"SQ\",\"Value\":[" REF("1.2.3") "]}}",
	"\"\\ud800\"",
	"not JSON at all",
	NGINX_502,
	ORTHANC_415,
};

static void test_stow_says_nothing(void **state)
{
	static const char *const uids[] = { "1.2.3", "123" };
	op_stow_result out[2];

	(void)state;
	for (size_t b = 0; b < sizeof(says_nothing) / sizeof(says_nothing[0]); b++) {
		assert_int_equal(interpret(200, says_nothing[b], uids, 2, out), OP_STOW_OK);
		expect_result(says_nothing[b], out, 0, RETRY, 1, "HTTP 200");
		expect_result(says_nothing[b], out, 1, RETRY, 1, "HTTP 200");
		struct row want = { 400, RETRY, 0, OP_STOW_OK };
		int refused = request_refused(400, says_nothing[b], strlen(says_nothing[b]), &want);

		assert_int_equal(interpret(400, says_nothing[b], uids, 2, out), want.action);
		expect_result(says_nothing[b], out, 0, want.verdict, 0,
			      refused ? "the cloud" : "HTTP 400");
		expect_result(says_nothing[b], out, 1, want.verdict, 0,
			      refused ? "the cloud" : "HTTP 400");
		assert_int_equal(interpret(409, says_nothing[b], uids, 2, out), OP_STOW_OK);
		expect_result(says_nothing[b], out, 0, QUARANTINE, 0, "HTTP 409");
	}
}

/* body_len, not a NUL, ends the body: a good response cut short by one
 * byte is malformed, and a NULL body is no body. */
static void test_stow_body_len(void **state)
{
	static const char *const uids[] = { "<SOP-1>", "<SOP-2>" };
	const char *body = ORTHANC_200_ALL_GOOD;
	op_stow_result out[2];

	(void)state;
	for (size_t len = 0; len < strlen(body); len += len < 16 ? 1 : 97) {
		assert_int_equal(interpret_len(200, "", body, len, uids, 2, out), OP_STOW_OK);
		expect_result("cut", out, 0, RETRY, 1, "HTTP 200");
		expect_result("cut", out, 1, RETRY, 1, "HTTP 200");
	}
	assert_int_equal(interpret_len(200, "", body, strlen(body) - 1, uids, 2, out), OP_STOW_OK);
	expect_result("one byte short", out, 0, RETRY, 1, "HTTP 200");
	assert_int_equal(op_stow_interpret(200, "", NULL, 1000, uids, 2, out), OP_STOW_OK);
	expect_result("NULL body", out, 0, RETRY, 1, "HTTP 200");
}

/* Nesting far deeper than any response: parsed without exhausting the stack. */
static void test_stow_deep_nesting(void **state)
{
	enum { DEPTH = 200000 };
	static const char *const uids[] = { "1.2.3" };
	char *body = unit_hold(malloc(2 * DEPTH), NULL);
	op_stow_result out[1];

	(void)state;
	assert_non_null(body);
	memset(body, '[', DEPTH);
	memset(body + DEPTH, ']', DEPTH);
	assert_int_equal(interpret_len(200, "", body, 2 * DEPTH, uids, 1, out), OP_STOW_OK);
	expect_result("[[[...]]]", out, 0, RETRY, 1, "HTTP 200");
	for (size_t i = 0; i < DEPTH; i++)
		memcpy(body + 2 * i, "{\"", 2);
	assert_int_equal(interpret_len(200, "", body, 2 * DEPTH, uids, 1, out), OP_STOW_OK);
	expect_result("{\"{\"...", out, 0, RETRY, 1, "HTTP 200");
	unit_release(body);
}

/* --- interpretation: overlaps, duplicates, strangers -------------------------------- */

static void test_stow_referenced_wins(void **state)
{
	static const char *const bodies[] = {
		RESPONSE(REF("1.2.3"), FAIL("1.2.3", "272")),
		RESPONSE(REF("1.2.3"), FAIL("1.2.3", "49152")),
		/* FailedSOPSequence after ReferencedSOPSequence in the object. */
		"{\"00081199\":{\"vr\":\"SQ\",\"Value\":[" REF(
			"1.2.3") "]},"
				 "\"00081198\":{\"vr\":\"SQ\",\"Value\":[" FAIL("1.2.3",
										"49152") "]}}",
	};
	static const char *const uids[] = { "1.2.3" };
	op_stow_result out[1];

	(void)state;
	for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
		assert_int_equal(interpret(200, bodies[b], uids, 1, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
		assert_int_equal(interpret(409, bodies[b], uids, 1, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
		assert_int_equal(interpret(400, bodies[b], uids, 1, out), OP_STOW_OK);
		expect_result(bodies[b], out, 0, SENT, 0, NULL);
	}
}

static void test_stow_duplicates(void **state)
{
	static const char *const uids[] = { "1.2.3", "1.2.4" };
	static const char *const twice[] = { "1.2.3", "1.2.3" };
	op_stow_result out[2];

	(void)state;
	/* Listed twice: Orthanc does so for an instance sent twice. */
	assert_int_equal(interpret(200,
				   RESPONSE(REF("1.2.3") "," REF("1.2.3") "," REF("1.2.4"), ""),
				   uids, 2, out),
			 OP_STOW_OK);
	expect_result("referenced twice", out, 0, SENT, 0, NULL);
	expect_result("referenced twice", out, 1, SENT, 0, NULL);
	assert_int_equal(interpret(400,
				   RESPONSE("", FAIL("1.2.3", "49152") "," FAIL("1.2.3", "49152")),
				   uids, 2, out),
			 OP_STOW_OK);
	expect_result("failed twice", out, 0, QUARANTINE, 0, "C000");
	expect_result("failed twice", out, 1, RETRY, 0, "HTTP 400");
	/* The same instance twice in the batch. */
	assert_int_equal(interpret(200, RESPONSE(REF("1.2.3"), ""), twice, 2, out), OP_STOW_OK);
	expect_result("sent twice", out, 0, SENT, 0, NULL);
	expect_result("sent twice", out, 1, SENT, 0, NULL);
	/* Failed twice with different reasons: either, but the reason must
	 * match the verdict. */
	assert_int_equal(interpret(400,
				   RESPONSE("", FAIL("1.2.3", "272") "," FAIL("1.2.3", "49152")),
				   uids, 2, out),
			 OP_STOW_OK);
	if (out[0].verdict == RETRY)
		expect_result("two reasons", out, 0, RETRY, 0, "0110");
	else
		expect_result("two reasons", out, 0, QUARANTINE, 0, "C000");
}

/* Instances the batch does not hold are ignored, however listed. */
static void test_stow_strangers_ignored(void **state)
{
	static const char *const uids[] = { "1.2.3", "1.2.4" };
	static const char *const body = RESPONSE(REF("9.9.9") "," REF("1.2.4"),
						 FAIL("8.8.8", "49152") "," FAIL("7.7.7", "272"));
	op_stow_result out[2];

	(void)state;
	assert_int_equal(interpret(200, body, uids, 2, out), OP_STOW_OK);
	expect_result("200", out, 0, RETRY, 1, "HTTP 200");
	expect_result("200", out, 1, SENT, 0, NULL);
	assert_int_equal(interpret(409, body, uids, 2, out), OP_STOW_OK);
	expect_result("409", out, 0, QUARANTINE, 0, "HTTP 409");
	expect_result("409", out, 1, SENT, 0, NULL);
}

static void json_delete(void *json)
{
	cJSON_Delete(json);
}

/* A batch of 1000 (the uplink's largest), answered in another order:
 * even instances referenced, odd ones failed (0110 or C000 in turn), every
 * tenth listed nowhere. */
static void test_stow_large_batch(void **state)
{
	enum { N = 1000 };
	static char uid_text[N][72];
	static const char *uids[N];
	static op_stow_result out[N];
	cJSON *root = unit_hold(cJSON_CreateObject(), json_delete), *refs = cJSON_CreateArray(),
	      *fails = cJSON_CreateArray(), *seq;
	char *body;

	(void)state;
	assert_non_null(root);
	for (int i = 0; i < N; i++) {
		/* Long UIDs: 64 characters, the most a UID has. */
		snprintf(uid_text[i], sizeof(uid_text[i]), "1.2.826.0.1.3680043.10.543.%037d", i);
		assert_int_equal(strlen(uid_text[i]), 64);
		uids[i] = uid_text[i];
	}
	for (int i = N - 1; i >= 0; i--) {
		cJSON *item, *attr, *value;

		if (i % 10 == 9)
			continue;
		item = cJSON_CreateObject();
		attr = cJSON_AddObjectToObject(item, "00081155");
		cJSON_AddStringToObject(attr, "vr", "UI");
		value = cJSON_AddArrayToObject(attr, "Value");
		cJSON_AddItemToArray(value, cJSON_CreateString(uid_text[i]));
		if (i % 2) {
			attr = cJSON_AddObjectToObject(item, "00081197");
			cJSON_AddStringToObject(attr, "vr", "US");
			value = cJSON_AddArrayToObject(attr, "Value");
			cJSON_AddItemToArray(value, cJSON_CreateNumber(i % 4 == 1 ? 272 : 49152));
		}
		cJSON_AddItemToArray(i % 2 ? fails : refs, item);
	}
	seq = cJSON_AddObjectToObject(root, "00081198");
	cJSON_AddStringToObject(seq, "vr", "SQ");
	cJSON_AddItemToObject(seq, "Value", fails);
	seq = cJSON_AddObjectToObject(root, "00081199");
	cJSON_AddStringToObject(seq, "vr", "SQ");
	cJSON_AddItemToObject(seq, "Value", refs);
	body = unit_hold(cJSON_PrintUnformatted(root), NULL);
	assert_int_equal(interpret(400, body, uids, N, out), OP_STOW_OK);
	for (unsigned i = 0; i < N; i++) {
		if (i % 10 == 9)
			expect_result("large", out, i, RETRY, 0, "HTTP 400");
		else if (i % 2 == 0)
			expect_result("large", out, i, SENT, 0, NULL);
		else if (i % 4 == 1)
			expect_result("large", out, i, RETRY, 0, "0110");
		else
			expect_result("large", out, i, QUARANTINE, 0, "C000");
	}
	unit_release(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stow_says_nothing, unit_release_all),
		cmocka_unit_test_teardown(test_stow_body_len, unit_release_all),
		cmocka_unit_test_teardown(test_stow_deep_nesting, unit_release_all),
		cmocka_unit_test_teardown(test_stow_referenced_wins, unit_release_all),
		cmocka_unit_test_teardown(test_stow_duplicates, unit_release_all),
		cmocka_unit_test_teardown(test_stow_strangers_ignored, unit_release_all),
		cmocka_unit_test_teardown(test_stow_large_batch, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
