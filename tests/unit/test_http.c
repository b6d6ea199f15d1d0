/*
 * test_http: services/uplink/http.c, the reader of one HTTP/1.1 response:
 * its framing (Content-Length, chunked, to EOF, no body, interim 1xx
 * responses), the cap on the body kept, and a reader's life (started,
 * reset, reused). Status, Content-Type and keep-alive: test_http_headers;
 * what is not a valid response: test_http_errors.
 *
 * Data-driven, as curl's tests are (unit_http.h): each case is a canned
 * server reply and what the reader must make of it.
 *
 * The Orthanc replies are those of docs/notes-orthanc.md, verbatim
 * (unit_cloud.h); Content-Length is the length of the body as shown there
 * (compact), not the one Orthanc sent (tabs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_http.h"
#include "unit_cloud.h"

/* --- framing -------------------------------------------------------------------- */

static void test_http_content_length(void **state)
{
	static const struct reply cases[] = {
		{ .name = "small",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		  .status = 200,
		  .content_type = "",
		  .body = "hello",
		  .keep_alive = 1 },
		{ .name = "Content-Length: 0",
		  .raw = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"
			 "Content-Length: 0\r\n\r\n",
		  .status = 401,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
		{ .name = "binary body with NULs",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\0\r\n\0",
		  .raw_len = 42,
		  .status = 200,
		  .content_type = "",
		  .body = "\0\r\n\0",
		  .body_len = 4,
		  .keep_alive = 1 },
		{ .name = "Content-Length with the connection closing after it",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
		  .closes = 1,
		  .status = 200,
		  .content_type = "",
		  .body = "ok" },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

static void test_http_orthanc_replies(void **state)
{
	struct reply cases[] = {
		{ .name = "Orthanc 200, all stored",
		  .raw = with_length("HTTP/1.1 200 OK\r\nServer: nginx\r\n"
				     "Content-Type: application/dicom+json\r\n"
				     "Connection: keep-alive\r\n",
				     ORTHANC_200_ALL_GOOD),
		  .status = 200,
		  .content_type = "application/dicom+json",
		  .body = ORTHANC_200_ALL_GOOD,
		  .keep_alive = 1 },
		{ .name = "Orthanc 400, no Content-Type",
		  .raw = with_length("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n"
				     "Connection: keep-alive\r\n",
				     ORTHANC_400_GARBAGE_PART),
		  .status = 400,
		  .content_type = "",
		  .body = ORTHANC_400_GARBAGE_PART,
		  .keep_alive = 1 },
		{ .name = "Orthanc direct (no nginx), Keep-Alive: timeout=1",
		  .raw = with_length("HTTP/1.1 400 Bad Request\r\nConnection: keep-alive\r\n"
				     "Keep-Alive: timeout=1\r\n",
				     ORTHANC_400_GARBAGE_PART),
		  .status = 400,
		  .content_type = "",
		  .body = ORTHANC_400_GARBAGE_PART,
		  .keep_alive = 1 },
		{ .name = "Orthanc 415",
		  .raw = with_length("HTTP/1.1 415 Unsupported Media Type\r\nServer: nginx\r\n"
				     "Connection: keep-alive\r\n",
				     ORTHANC_415),
		  .status = 415,
		  .content_type = "",
		  .body = ORTHANC_415,
		  .keep_alive = 1 },
		{ .name = "nginx 502, HTML",
		  .raw = "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Type: text/html\r\n"
			 "Content-Length: 150\r\nConnection: keep-alive\r\n\r\n" NGINX_502,
		  .status = 502,
		  .content_type = "text/html",
		  .body = NGINX_502,
		  .keep_alive = 1 },
	};
	(void)state;
	assert_int_equal(strlen(NGINX_502), 150);
	CHECK_REPLIES(cases);
	for (size_t i = 0; i < 4; i++)
		unit_release((char *)cases[i].raw);
}

static void test_http_chunked(void **state)
{
	static const struct reply cases[] = {
		{ .name = "chunked",
		  .raw = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/dicom+json\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n"
			 "5\r\nhello\r\n1\r\n,\r\nA\r\n0123456789\r\n0\r\n\r\n",
		  .status = 400,
		  .content_type = "application/dicom+json",
		  .body = "hello,0123456789",
		  .keep_alive = 1 },
		{ .name = "chunk extensions, upper-case size, trailer",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n"
			 "0\r\nX-Trailer: yes\r\n\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "abcdefghijklmnopqrstuvwxyz",
		  .keep_alive = 1 },
		{ .name = "chunked, empty",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
		{ .name = "chunked then Connection: close",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: "
			 "close\r\n\r\n"
			 "2\r\nok\r\n0\r\n\r\n",
		  .closes = 1,
		  .status = 200,
		  .content_type = "",
		  .body = "ok" },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

static void test_http_until_eof(void **state)
{
	static const struct reply cases[] = {
		{ .name = "HTTP/1.0 without a length",
		  .raw = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
			 "[{\"00081199\":{\"vr\":\"SQ\"}}]",
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 200,
		  .content_type = "application/json",
		  .body = "[{\"00081199\":{\"vr\":\"SQ\"}}]" },
		{ .name = "HTTP/1.1, Connection: close, no length",
		  .raw = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy\n",
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 503,
		  .content_type = "",
		  .body = "busy\n" },
		{ .name = "HTTP/1.1 without a length or close",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end",
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 200,
		  .content_type = "text/plain",
		  .body = "to the end" },
		{ .name = "HTTP/1.0, empty body to EOF",
		  .raw = "HTTP/1.0 500 Internal Server Error\r\n\r\n",
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 500,
		  .content_type = "",
		  .body = "" },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

/* A response to read until EOF is not complete before it, whatever follows. */
static void test_http_until_eof_not_early(void **state)
{
	static const char raw[] = "HTTP/1.0 200 OK\r\n\r\n{}";
	op_http_response *r;
	int complete = 1;

	(void)state;
	r = open_reader(CAP);
	assert_int_equal(op_http_response_feed(r, raw, strlen(raw), &complete), 0);
	assert_int_equal(complete, 0);
	assert_int_equal(op_http_response_keep_alive(r), 0);
	assert_int_equal(op_http_response_feed(r, "[]", 2, &complete), 0);
	assert_int_equal(complete, 0);
	assert_int_equal(op_http_response_eof(r, &complete), 0);
	assert_int_equal(complete, 1);
	/* A second EOF changes nothing. */
	assert_int_equal(op_http_response_eof(r, &complete), 0);
	assert_int_equal(complete, 1);
	{
		size_t len;
		const char *body = op_http_response_body(r, &len);

		assert_int_equal(len, 4);
		assert_string_equal(body, "{}[]");
	}
	close_reader(r);
}

static void test_http_no_body(void **state)
{
	static const struct reply cases[] = {
		{ .name = "204 without a length",
		  .raw = "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
		  .status = 204,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
		{ .name = "304 without a length",
		  .raw = "HTTP/1.1 304 Not Modified\r\n\r\n",
		  .status = 304,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

/* --- the body cap --------------------------------------------------------------- */

static void test_http_truncated(void **state)
{
	static const struct reply cases[] = {
		{ .name = "Content-Length over the cap",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 36\r\n\r\n"
			 "0123456789abcdefghijklmnopqrstuvwxyz",
		  .cap = 10,
		  .status = 200,
		  .content_type = "",
		  .body = "0123456789",
		  .keep_alive = 1,
		  .truncated = 1 },
		{ .name = "chunked over the cap",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "4\r\n0123\r\n4\r\n4567\r\n4\r\n89ab\r\n0\r\n\r\n",
		  .cap = 6,
		  .status = 200,
		  .content_type = "",
		  .body = "012345",
		  .keep_alive = 1,
		  .truncated = 1 },
		{ .name = "until EOF over the cap",
		  .raw = "HTTP/1.0 502 Bad Gateway\r\n\r\n" NGINX_502,
		  .cap = 7,
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 502,
		  .content_type = "",
		  .body = "<html>\r",
		  .truncated = 1 },
		{ .name = "exactly the cap",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
		  .cap = 10,
		  .status = 200,
		  .content_type = "",
		  .body = "0123456789",
		  .keep_alive = 1 },
		{ .name = "one over the cap",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789X",
		  .cap = 10,
		  .status = 200,
		  .content_type = "",
		  .body = "0123456789",
		  .keep_alive = 1,
		  .truncated = 1 },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

/* body_max 0: the body is framed, none of it kept. And a large one. */
static void test_http_truncated_extremes(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
	op_http_response *r;
	const char *body;
	char *big;
	size_t len;
	int complete;

	(void)state;
	r = open_reader(0);
	assert_int_equal(op_http_response_feed(r, head, strlen(head), &complete), 0);
	big = unit_hold(malloc(1000000), NULL);
	assert_non_null(big);
	memset(big, 'x', 1000000);
	assert_int_equal(op_http_response_feed(r, big, 1000000, &complete), 0);
	assert_int_equal(complete, 1);
	body = op_http_response_body(r, &len);
	assert_int_equal(len, 0);
	assert_int_equal(body[0], '\0');
	assert_int_equal(op_http_response_body_truncated(r), 1);
	assert_int_equal(op_http_response_keep_alive(r), 1);
	close_reader(r);

	/* 1 MB kept (the uplink's cap), fed in 1000 pieces of 1000 bytes. */
	r = open_reader(1000000);
	assert_int_equal(op_http_response_feed(r, head, strlen(head), &complete), 0);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(complete, 0);
		big[i * 1000] = (char)('a' + i % 26);
		assert_int_equal(op_http_response_feed(r, big + i * 1000, 1000, &complete), 0);
	}
	assert_int_equal(complete, 1);
	body = op_http_response_body(r, &len);
	assert_int_equal(len, 1000000);
	assert_memory_equal(body, big, 1000000);
	assert_int_equal(body[len], '\0');
	assert_int_equal(op_http_response_body_truncated(r), 0);
	close_reader(r);
	unit_release(big);
}

/* --- lifecycle ------------------------------------------------------------------- */

static void test_http_started(void **state)
{
	op_http_response *r;
	int complete;

	(void)state;
	r = open_reader(CAP);
	assert_int_equal(op_http_response_started(r), 0);
	assert_int_equal(op_http_response_feed(r, "", 0, &complete), 0);
	assert_int_equal(op_http_response_started(r), 0);
	assert_int_equal(op_http_response_feed(r, "H", 1, &complete), 0);
	assert_int_equal(op_http_response_started(r), 1);
	assert_int_equal(complete, 0);
	assert_string_equal(op_http_response_error(r), "");
	op_http_response_reset(r);
	assert_int_equal(op_http_response_started(r), 0);
	close_reader(r);
	op_http_response_close(NULL);
}

/* A second response on the same reader after reset: nothing of the first. */
static void test_http_reset_reuse(void **state)
{
	static const char first[] = "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
				    "Content-Length: 12\r\n\r\n0123456789ab";
	static const char second[] = "HTTP/1.0 404 Not Found\r\n\r\nno";
	static const char bad[] = "garbage\r\n";
	op_http_response *r;
	const char *body;
	size_t len;
	int complete;

	(void)state;
	r = open_reader(8);
	assert_int_equal(op_http_response_feed(r, first, strlen(first), &complete), 0);
	assert_int_equal(complete, 1);
	assert_int_equal(op_http_response_body_truncated(r), 1);

	op_http_response_reset(r);
	assert_int_equal(op_http_response_started(r), 0);
	assert_string_equal(op_http_response_content_type(r), "");
	body = op_http_response_body(r, &len);
	assert_int_equal(len, 0);
	assert_string_equal(body, "");
	assert_int_equal(op_http_response_body_truncated(r), 0);
	assert_int_equal(op_http_response_keep_alive(r), 0);
	assert_int_equal(op_http_response_feed(r, second, strlen(second), &complete), 0);
	assert_int_equal(complete, 0);
	assert_int_equal(op_http_response_eof(r, &complete), 0);
	assert_int_equal(complete, 1);
	assert_int_equal(op_http_response_status(r), 404);
	assert_string_equal(op_http_response_content_type(r), "");
	body = op_http_response_body(r, &len);
	assert_int_equal(len, 2);
	assert_string_equal(body, "no");
	assert_int_equal(op_http_response_body_truncated(r), 0);
	assert_int_equal(op_http_response_keep_alive(r), 0);

	/* After an error, reset makes the reader usable again. */
	op_http_response_reset(r);
	assert_int_equal(op_http_response_feed(r, bad, strlen(bad), &complete), -EPROTO);
	assert_true(strlen(op_http_response_error(r)) > 0);
	op_http_response_reset(r);
	assert_string_equal(op_http_response_error(r), "");
	assert_int_equal(op_http_response_feed(r, first, strlen(first), &complete), 0);
	assert_int_equal(complete, 1);
	assert_int_equal(op_http_response_status(r), 200);
	assert_string_equal(op_http_response_content_type(r), "application/dicom+json");
	body = op_http_response_body(r, &len);
	assert_int_equal(len, 8);
	assert_string_equal(body, "01234567");
	assert_int_equal(op_http_response_keep_alive(r), 1);
	close_reader(r);
}

/*
 * Interim responses. The uplink never sends "Expect: 100-continue", yet
 * RFC 9110 15.2 says a client must parse and ignore 1xx responses (other
 * than 101) before the final one, even unasked: nginx in front of an
 * uplink is free to send one, and some servers send 102 Processing or 103
 * Early Hints on their own. The final response is what counts.
 */
static void test_http_interim_response(void **state)
{
	static const struct reply cases[] = {
		{ .name = "100 Continue, then 200",
		  .raw = "HTTP/1.1 100 Continue\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n"
			 "Content-Length: 2\r\n\r\n{}",
		  .status = 200,
		  .content_type = "application/dicom+json",
		  .body = "{}",
		  .keep_alive = 1 },
		{ .name = "102 Processing twice, then 409",
		  .raw = "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
			 "HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}",
		  .status = 409,
		  .content_type = "",
		  .body = "{}",
		  .keep_alive = 1 },
		{ .name = "103 Early Hints with a Content-Type, then 200 without",
		  .raw = "HTTP/1.1 103 Early Hints\r\nContent-Type: text/html\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		  .status = 200,
		  .content_type = "",
		  .body = "ok",
		  .keep_alive = 1 },
	};
	op_http_response *r;
	int complete = 1;

	(void)state;
	/* A 100 alone is not the response. */
	r = open_reader(CAP);
	assert_int_equal(op_http_response_feed(r, "HTTP/1.1 100 Continue\r\n\r\n", 25, &complete),
			 0);
	assert_int_equal(complete, 0);
	close_reader(r);
	CHECK_REPLIES(cases);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_http_content_length, unit_release_all),
		cmocka_unit_test_teardown(test_http_orthanc_replies, unit_release_all),
		cmocka_unit_test_teardown(test_http_chunked, unit_release_all),
		cmocka_unit_test_teardown(test_http_until_eof, unit_release_all),
		cmocka_unit_test_teardown(test_http_until_eof_not_early, unit_release_all),
		cmocka_unit_test_teardown(test_http_no_body, unit_release_all),
		cmocka_unit_test_teardown(test_http_truncated, unit_release_all),
		cmocka_unit_test_teardown(test_http_truncated_extremes, unit_release_all),
		cmocka_unit_test_teardown(test_http_started, unit_release_all),
		cmocka_unit_test_teardown(test_http_reset_reuse, unit_release_all),
		cmocka_unit_test_teardown(test_http_interim_response, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
