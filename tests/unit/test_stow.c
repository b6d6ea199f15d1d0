/*
 * test_stow: services/uplink/stow.c, STOW-RS as the uplink speaks it.
 *
 * Framing: the exact bytes of a part's head and of the closing delimiter,
 * and a Content-Length (op_stow_body_length) equal to the length of a body
 * assembled part by part as the uplink sends it, which this test also
 * splits back into its parts (RFC 2046) on its own.
 *
 * Interpretation: every row of the table in stow.h (by sequence, by
 * FailureReason, by HTTP status), the bodies Orthanc 1.10.1 + DICOMweb 1.7
 * really sends (docs/notes-orthanc.md, verbatim: the placeholders <SOP-n>
 * serve as the batch's SOP Instance UIDs, as any string would), and the
 * JSON a broken or hostile server could send. Every body is handed over
 * in a buffer of exactly its length, without a NUL after it, so that ASan
 * catches a read past body_len.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/stow.h"
#include "unit_cloud.h"

/* --- responses made up for the cases Orthanc does not show ----------------------- */

#define REF(uid) "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"" uid "\"]}}"
#define FAIL(uid, reason)                                                                          \
	"{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"" uid "\"]},"                                   \
	"\"00081197\":{\"vr\":\"US\",\"Value\":[" reason "]}}"
#define RESPONSE(refs, fails)                                                                      \
	"{\"00081198\":{\"vr\":\"SQ\",\"Value\":[" fails "]},"                                     \
	"\"00081199\":{\"vr\":\"SQ\",\"Value\":[" refs "]}}"

/* --- what a test holds ------------------------------------------------------------ */

/*
 * Memory a test holds, released by teardown() even when an assertion
 * fails half-way (else the ASan run adds leaks to the failure).
 */
static struct {
	void *mem[1024 + 8];
	cJSON *json;
} held;

static void *hold(void *p)
{
	assert_non_null(p);
	for (size_t i = 0; i < sizeof(held.mem) / sizeof(held.mem[0]); i++)
		if (!held.mem[i]) {
			held.mem[i] = p;
			return p;
		}
	free(p);
	fail();
	return NULL;
}

static void release(void *p)
{
	for (size_t i = 0; i < sizeof(held.mem) / sizeof(held.mem[0]); i++)
		if (held.mem[i] == p) {
			held.mem[i] = NULL;
			break;
		}
	free(p);
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(held.mem) / sizeof(held.mem[0]); i++)
		release(held.mem[i]);
	cJSON_Delete(held.json);
	held.json = NULL;
	return 0;
}

/* --- framing ---------------------------------------------------------------------- */

#define B32 "0123456789abcdef0123456789abcdef"
#define HEAD_MIDDLE "\r\nContent-Type: application/dicom\r\nContent-Length: "

static void test_stow_part_head_bytes(void **state)
{
	char buf[256];
	size_t n;

	(void)state;
	n = op_stow_part_head(buf, sizeof(buf), B32, 1234);
	assert_string_equal(buf, "--" B32 "\r\nContent-Type: application/dicom\r\n"
				 "Content-Length: 1234\r\n\r\n");
	assert_int_equal(n, strlen(buf));
	n = op_stow_part_head(buf, sizeof(buf), B32, 0);
	assert_string_equal(buf, "--" B32 HEAD_MIDDLE "0\r\n\r\n");
	assert_int_equal(n, strlen(buf));
	n = op_stow_part_head(buf, sizeof(buf), B32, UINT64_MAX);
	assert_string_equal(buf, "--" B32 HEAD_MIDDLE "18446744073709551615\r\n\r\n");
	assert_int_equal(n, strlen(buf));
}

static void test_stow_close_bytes(void **state)
{
	char buf[64];
	size_t n;

	(void)state;
	n = op_stow_close(buf, sizeof(buf), B32);
	assert_string_equal(buf, "--" B32 "--\r\n");
	assert_int_equal(n, 38);
}

/* Too small a buffer: nothing is written past its size, and 0 says so. */
static void test_stow_framing_small_buffer(void **state)
{
	static const char head[] = "--" B32 HEAD_MIDDLE "7\r\n\r\n";
	static const char close[] = "--" B32 "--\r\n";
	char buf[128];

	(void)state;
	for (size_t size = 0; size < sizeof(head); size++) {
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(op_stow_part_head(buf, size, B32, 7), 0);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
	assert_int_equal(op_stow_part_head(buf, sizeof(head), B32, 7), sizeof(head) - 1);
	assert_string_equal(buf, head);
	for (size_t size = 0; size < sizeof(close); size++) {
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(op_stow_close(buf, size, B32), 0);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
	assert_int_equal(op_stow_close(buf, sizeof(close), B32), sizeof(close) - 1);
	assert_string_equal(buf, close);
	assert_int_equal(op_stow_part_head(NULL, 0, B32, 7), 0);
	assert_int_equal(op_stow_close(NULL, 0, B32), 0);
}

static void test_stow_boundary(void **state)
{
	enum { N = 1000 };
	static char seen[N][OP_STOW_BOUNDARY_LEN + 1];
	int digits[16] = { 0 };

	(void)state;
	for (int i = 0; i < N; i++) {
		memset(seen[i], 'X', sizeof(seen[i]));
		op_stow_boundary(seen[i]);
		assert_int_equal(seen[i][OP_STOW_BOUNDARY_LEN], '\0');
		assert_int_equal(strlen(seen[i]), OP_STOW_BOUNDARY_LEN);
		for (int j = 0; j < OP_STOW_BOUNDARY_LEN; j++) {
			const char *hex = "0123456789abcdef", *p = strchr(hex, seen[i][j]);

			assert_non_null(p);
			digits[p - hex]++;
		}
	}
	qsort(seen, N, sizeof(seen[0]), (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(seen[i - 1], seen[i]);
	/* 32000 random digits: each of the 16 about 2000 times. */
	for (int d = 0; d < 16; d++)
		assert_in_range(digits[d], 1500, 2500);
}

struct body {
	char *data;
	size_t len, cap;
};

static void put(struct body *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		char *data = malloc((b->len + n) * 2);

		assert_non_null(data);
		if (b->len)
			memcpy(data, b->data, b->len);
		release(b->data);
		b->data = hold(data);
		b->cap = (b->len + n) * 2;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* A body as the uplink's next_chunk() sends it: for each part its head,
 * its bytes and a CRLF; then the closing delimiter. */
static void assemble(struct body *b, const char *boundary, char *const *parts,
		     const uint64_t *sizes, unsigned n)
{
	char small[256];
	size_t len;

	for (unsigned i = 0; i < n; i++) {
		len = op_stow_part_head(small, sizeof(small), boundary, sizes[i]);
		assert_true(len > 0);
		put(b, small, len);
		put(b, parts[i], sizes[i]);
		put(b, "\r\n", 2);
	}
	len = op_stow_close(small, sizeof(small), boundary);
	assert_true(len > 0);
	put(b, small, len);
}

/* Splits body back into its parts (RFC 2046 5.1.1), on its own. */
static void check_multipart(const struct body *b, const char *boundary, char *const *parts,
			    const uint64_t *sizes, unsigned n)
{
	char dash[128], delim[128], want[256];
	const char *p = b->data, *end = b->data + b->len, *next;
	size_t dash_len = (size_t)snprintf(dash, sizeof(dash), "--%s", boundary);
	size_t delim_len = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);

	/* No preamble: the body opens with the first delimiter. */
	assert_true((size_t)(end - p) >= dash_len);
	assert_memory_equal(p, dash, dash_len);
	p += dash_len;
	for (unsigned i = 0; i < n; i++) {
		size_t want_len = (size_t)snprintf(want, sizeof(want),
						   "\r\nContent-Type: application/dicom\r\n"
						   "Content-Length: %" PRIu64 "\r\n\r\n",
						   sizes[i]);

		assert_true((size_t)(end - p) >= want_len);
		assert_memory_equal(p, want, want_len);
		p += want_len;
		/* The part's bytes run to the next delimiter. */
		next = memmem(p, (size_t)(end - p), delim, delim_len);
		assert_non_null(next);
		assert_int_equal(next - p, sizes[i]);
		assert_memory_equal(p, parts[i], sizes[i]);
		p = next + delim_len;
	}
	/* The close delimiter, and nothing after it (no epilogue). */
	assert_int_equal(end - p, 4);
	assert_memory_equal(p, "--\r\n", 4);
}

/* Part i: bytes that look like framing (CRLF, dashes) but hold no boundary. */
static char *make_part(unsigned i, uint64_t size)
{
	static const char pattern[] = "\r\n--\r\n\r\nContent-Length: 0\r\n-";
	char *part = hold(malloc(size ? size : 1));

	assert_non_null(part);
	for (uint64_t j = 0; j < size; j++)
		part[j] = j % 7 == 3 ? (char)('A' + (i + j) % 26)
				     : pattern[(i + j) % (sizeof(pattern) - 1)];
	return part;
}

static void check_assembled(const char *boundary, const uint64_t *sizes, unsigned n)
{
	char **parts = hold(calloc(n ? n : 1, sizeof(*parts)));
	struct body b = { 0 };

	for (unsigned i = 0; i < n; i++)
		parts[i] = make_part(i, sizes[i]);
	assemble(&b, boundary, parts, sizes, n);
	assert_int_equal(op_stow_body_length(boundary, sizes, n), b.len);
	check_multipart(&b, boundary, parts, sizes, n);
	for (unsigned i = 0; i < n; i++)
		release(parts[i]);
	release(parts);
	release(b.data);
}

static void test_stow_body_length_assembled(void **state)
{
	static const uint64_t one_empty[] = { 0 }, one_byte[] = { 1 }, three[] = { 1, 2, 3 };
	static const uint64_t digits[] = { 9, 10, 99, 100, 999, 1000, 9999, 10000, 0, 1 };
	static const uint64_t one_mb[] = { 1 << 20 };
	static uint64_t many[1000]; /* the uplink's largest batch */
	char boundary[OP_STOW_BOUNDARY_LEN + 1];
	/* RFC 2046 allows boundaries of up to 70 characters. */
	static const char long_boundary[] =
		"0123456789012345678901234567890123456789012345678901234567890123456789";

	(void)state;
	assert_int_equal(strlen(long_boundary), 70);
	op_stow_boundary(boundary);
	for (unsigned i = 0; i < 1000; i++)
		many[i] = (i * 7919u) % 1500;
	check_assembled(boundary, NULL, 0);
	check_assembled(boundary, one_empty, 1);
	check_assembled(boundary, one_byte, 1);
	check_assembled(boundary, three, 3);
	check_assembled(boundary, digits, 10);
	check_assembled(boundary, one_mb, 1);
	check_assembled(boundary, many, 1000);
	check_assembled(long_boundary, three, 3);
	check_assembled(long_boundary, digits, 10);
	/* No parts: the close delimiter alone. */
	assert_int_equal(op_stow_body_length(boundary, NULL, 0), 2 + 32 + 4);
}

/* Sizes no test can hold in memory: the body is counted as the uplink
 * would send it, and against the length worked out by hand. */
static void test_stow_body_length_big(void **state)
{
	static const uint64_t big[] = { 4294967295u, 4294967296u, 1000000000000u,
					9000000000000000000u, 0 };
	static const uint64_t huge[] = { 10000000000000000000u };
	static const struct {
		const uint64_t *sizes;
		unsigned n;
	} cases[] = { { big, 5 }, { huge, 1 } };
	char boundary[OP_STOW_BOUNDARY_LEN + 1], small[256], digits[32];

	(void)state;
	op_stow_boundary(boundary);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t sent = 0, by_hand = 2 + 32 + 4;

		for (unsigned i = 0; i < cases[c].n; i++) {
			uint64_t size = cases[c].sizes[i];

			sent += op_stow_part_head(small, sizeof(small), boundary, size) + size + 2;
			by_hand += 2 + 32 + strlen(HEAD_MIDDLE) +
				   (uint64_t)snprintf(digits, sizeof(digits), "%" PRIu64, size) +
				   4 + size + 2;
		}
		sent += op_stow_close(small, sizeof(small), boundary);
		assert_true(sent == by_hand);
		assert_true(op_stow_body_length(boundary, cases[c].sizes, cases[c].n) == by_hand);
	}
}

/* --- interpretation: the harness ---------------------------------------------------- */

/*
 * op_stow_interpret on a copy of body of exactly len bytes, into out filled
 * with junk first (every field must be set). Checks what holds for any
 * answer: a valid action and verdicts, unconfirmed only with RETRY, a
 * NUL-terminated reason, present unless SENT.
 */
static enum op_stow_action interpret_len(int status, const char *type, const char *body, size_t len,
					 const char *const *uids, unsigned n, op_stow_result *out)
{
	char *copy = NULL;
	enum op_stow_action action;

	if (body) {
		copy = hold(malloc(len ? len : 1));
		assert_non_null(copy);
		memcpy(copy, body, len);
	}
	if (n)
		memset(out, 0xa5, n * sizeof(*out));
	action = op_stow_interpret(status, type, copy, len, uids, n, out);
	release(copy);
	assert_in_range(action, OP_STOW_OK, OP_STOW_SPLIT);
	for (unsigned i = 0; i < n; i++) {
		assert_in_range(out[i].verdict, OP_VERDICT_SENT, OP_VERDICT_REQUEUE);
		assert_non_null(memchr(out[i].reason, '\0', sizeof(out[i].reason)));
		assert_true(out[i].unconfirmed == 0 ||
			    (out[i].unconfirmed == 1 && out[i].verdict == OP_VERDICT_RETRY));
		if (out[i].verdict != OP_VERDICT_SENT)
			assert_true(out[i].reason[0] != '\0');
	}
	return action;
}

static enum op_stow_action interpret(int status, const char *body, const char *const *uids,
				     unsigned n, op_stow_result *out)
{
	/* Orthanc sends a Content-Type with 200 only; http.c gives "" then. */
	return interpret_len(status, status == 200 ? "application/dicom+json" : "", body,
			     body ? strlen(body) : 0, uids, n, out);
}

static const char *const verdict_names[] = { "SENT", "RETRY", "QUARANTINE", "REQUEUE" };

/* The result for instance i is verdict (unconfirmed or not), its reason
 * holding says (NULL: anything). */
static void expect_result(const char *ctx, const op_stow_result *out, unsigned i,
			  enum op_spool_verdict verdict, int unconfirmed, const char *says)
{
	const op_stow_result *r = &out[i];

	if (r->verdict == verdict && r->unconfirmed == unconfirmed &&
	    (!says || strstr(r->reason, says)))
		return;
	print_error(
		"%s, instance %u: %s unconfirmed=%d \"%s\"; expected %s unconfirmed=%d \"%s\"\n",
		ctx, i, verdict_names[r->verdict], r->unconfirmed, r->reason,
		verdict_names[verdict], unconfirmed, says ? says : "");
	fail();
}

#define SENT OP_VERDICT_SENT
#define RETRY OP_VERDICT_RETRY
#define QUARANTINE OP_VERDICT_QUARANTINE
#define REQUEUE OP_VERDICT_REQUEUE

/* --- interpretation: the table of stow.h ------------------------------------------ */

/* Instances listed nowhere take the HTTP status's verdict. */
static const struct row {
	int status;
	enum op_spool_verdict verdict;
	int unconfirmed;
	enum op_stow_action action;
} rows[] = {
	{ 200, RETRY, 1, OP_STOW_OK },        { 201, RETRY, 1, OP_STOW_OK },
	{ 202, RETRY, 1, OP_STOW_OK },        { 204, RETRY, 1, OP_STOW_OK },
	{ 299, RETRY, 1, OP_STOW_OK },        { 409, QUARANTINE, 0, OP_STOW_OK },
	{ 401, REQUEUE, 0, OP_STOW_PAUSE },   { 403, REQUEUE, 0, OP_STOW_PAUSE },
	{ 413, REQUEUE, 0, OP_STOW_SPLIT },   { 500, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 501, RETRY, 0, OP_STOW_LINK_DOWN }, { 502, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 503, RETRY, 0, OP_STOW_LINK_DOWN }, { 504, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 599, RETRY, 0, OP_STOW_LINK_DOWN }, { 400, RETRY, 0, OP_STOW_OK },
	{ 404, RETRY, 0, OP_STOW_OK },        { 405, RETRY, 0, OP_STOW_OK },
	{ 408, RETRY, 0, OP_STOW_OK },        { 415, RETRY, 0, OP_STOW_OK },
	{ 422, RETRY, 0, OP_STOW_OK },        { 429, RETRY, 0, OP_STOW_OK },
	{ 499, RETRY, 0, OP_STOW_OK },
};

/*
 * A 4xx other than 401, 403, 409, 413 whose body is no STOW-RS answer (not
 * a JSON object: no body, a proxy's page) refuses the request itself: the
 * batch goes back whole, and the uplink pauses (408, 429: backs off).
 * Returns 1 and the expectation when that rule applies to status and body.
 */
static int request_refused(int status, const char *body, size_t len, struct row *want)
{
	cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *item = cJSON_IsArray(root) && cJSON_GetArraySize(root) == 1
				    ? cJSON_GetArrayItem(root, 0)
				    : root;
	int answer = cJSON_IsObject(item);

	cJSON_Delete(root);
	if (status < 400 || status >= 500 || status == 401 || status == 403 || status == 409 ||
	    status == 413 || answer)
		return 0;
	want->status = status;
	want->verdict = REQUEUE;
	want->unconfirmed = 0;
	want->action = status == 408 || status == 429 ? OP_STOW_LINK_DOWN : OP_STOW_PAUSE;
	return 1;
}

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

/* --- interpretation: Orthanc's answers ---------------------------------------------- */

static char *pretty(const char *compact)
{
	cJSON *root = cJSON_Parse(compact);
	char *text;

	assert_non_null(root);
	text = cJSON_Print(root); /* tabs and newlines, as Orthanc writes it */
	cJSON_Delete(root);
	return hold(text);
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
	release(tabs);
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
	char *body = hold(malloc(2 * DEPTH));
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
	release(body);
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

/* A batch of 1000 (the uplink's largest), answered in another order:
 * even instances referenced, odd ones failed (0110 or C000 in turn), every
 * tenth listed nowhere. */
static void test_stow_large_batch(void **state)
{
	enum { N = 1000 };
	static char uid_text[N][72];
	static const char *uids[N];
	static op_stow_result out[N];
	cJSON *root = held.json = cJSON_CreateObject(), *refs = cJSON_CreateArray(),
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
	body = hold(cJSON_PrintUnformatted(root));
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
	release(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stow_part_head_bytes, teardown),
		cmocka_unit_test_teardown(test_stow_close_bytes, teardown),
		cmocka_unit_test_teardown(test_stow_framing_small_buffer, teardown),
		cmocka_unit_test_teardown(test_stow_boundary, teardown),
		cmocka_unit_test_teardown(test_stow_body_length_assembled, teardown),
		cmocka_unit_test_teardown(test_stow_body_length_big, teardown),
		cmocka_unit_test_teardown(test_stow_by_status, teardown),
		cmocka_unit_test_teardown(test_stow_body_ignored, teardown),
		cmocka_unit_test_teardown(test_stow_failure_reasons, teardown),
		cmocka_unit_test_teardown(test_stow_failure_reason_fraction, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_all_good, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_400_garbage_part, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_400_cannot_understand, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_409_processing_failure, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_200_unconfirmed, teardown),
		cmocka_unit_test_teardown(test_stow_orthanc_errors, teardown),
		cmocka_unit_test_teardown(test_stow_content_type_ignored, teardown),
		cmocka_unit_test_teardown(test_stow_says_nothing, teardown),
		cmocka_unit_test_teardown(test_stow_body_len, teardown),
		cmocka_unit_test_teardown(test_stow_deep_nesting, teardown),
		cmocka_unit_test_teardown(test_stow_referenced_wins, teardown),
		cmocka_unit_test_teardown(test_stow_duplicates, teardown),
		cmocka_unit_test_teardown(test_stow_strangers_ignored, teardown),
		cmocka_unit_test_teardown(test_stow_no_instances, teardown),
		cmocka_unit_test_teardown(test_stow_odd_statuses, teardown),
		cmocka_unit_test_teardown(test_stow_large_batch, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
