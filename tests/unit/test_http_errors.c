/*
 * test_http_errors: services/uplink/http.c, what is not a valid response
 * (garbage, another protocol, bad lengths and chunks), endless headers,
 * bytes after the end of a response, and a connection closed before it
 * ended: -EPROTO, with a message.
 *
 * Data-driven (unit_http.h): each case is a canned server reply and what
 * the reader must make of it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_http.h"

/* --- what is not a valid response ------------------------------------------------ */

static void test_http_garbage(void **state)
{
	static const struct reply cases[] = {
		{ .name = "not HTTP", .raw = "garbage\r\n\r\n", .rc = -EPROTO },
		{ .name = "SSH banner", .raw = "SSH-2.0-OpenSSH_9.2p1\r\n", .rc = -EPROTO },
		{ .name = "a TLS alert (plain HTTP to a TLS port)",
		  .raw = "\x15\x03\x03\x00\x02\x02\x46",
		  .rc = -EPROTO },
		{ .name = "a request instead of a response",
		  .raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "HTTP/2 preface",
		  .raw = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "status of 4 digits",
		  .raw = "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "status not a number",
		  .raw = "HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "Content-Length not a number",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "Content-Length negative",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "Content-Length overflowing 64 bits",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "two different Content-Lengths",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
		  .rc = -EPROTO },
		{ .name = "chunk size not hex",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		  .rc = -EPROTO },
		{ .name = "chunk without its CRLF",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
			 "chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n",
		  .rc = -EPROTO },
		{ .name = "NUL in the status line",
		  .raw = "HTTP/1.1 200\0OK\r\n\r\n",
		  .raw_len = 19,
		  .rc = -EPROTO },
		{ .name = "header line without a colon",
		  .raw = "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
		  .rc = -EPROTO },
	};
	(void)state;
	CHECK_REPLIES(cases);
}

/* A server sending endless headers is cut off, not buffered forever. */
static void test_http_header_overflow(void **state)
{
	static const char line[] = "X-Filler: 0123456789012345678901234567890123456789\r\n";
	op_http_response *r;
	int complete, rc = 0;

	(void)state;
	r = open_reader(CAP);
	assert_int_equal(op_http_response_feed(r, "HTTP/1.1 200 OK\r\n", 17, &complete), 0);
	for (int i = 0; i < 100000 && rc == 0; i++)
		rc = op_http_response_feed(r, line, strlen(line), &complete);
	assert_int_equal(rc, -EPROTO);
	assert_true(strlen(op_http_response_error(r)) > 0);
	assert_int_equal(complete, 0);
	close_reader(r);
}

static void test_http_bytes_after_end(void **state)
{
	static const struct reply cases[] = {
		{ .name = "one byte more than Content-Length",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX",
		  .rc = -EPROTO,
		  .error = "after the end" },
		{ .name = "a stray CRLF after the body",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n",
		  .rc = -EPROTO,
		  .error = "after the end" },
		{ .name = "a second response",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
			 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		  .rc = -EPROTO,
		  .error = "after the end" },
		{ .name = "after the last chunk",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
		  .rc = -EPROTO,
		  .error = "after the end" },
		{ .name = "after a response without a body",
		  .raw = "HTTP/1.1 204 No Content\r\n\r\nX",
		  .rc = -EPROTO,
		  .error = "after the end" },
	};
	op_http_response *r;
	int complete;

	(void)state;
	CHECK_REPLIES(cases);
	/* In a later read, once complete. */
	r = open_reader(CAP);
	assert_int_equal(op_http_response_feed(r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
					       38, &complete),
			 0);
	assert_int_equal(complete, 1);
	/* An empty read is not a byte. */
	assert_int_equal(op_http_response_feed(r, "", 0, &complete), 0);
	assert_int_equal(complete, 1);
	assert_int_equal(op_http_response_feed(r, "H", 1, &complete), -EPROTO);
	assert_non_null(strstr(op_http_response_error(r), "after the end"));
	close_reader(r);
}

static void test_http_eof_early(void **state)
{
	static const struct reply cases[] = {
		{ .name = "nothing at all",
		  .raw = "",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before a response" },
		{ .name = "in the status line",
		  .raw = "HTTP/1.1 20",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "in the headers",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "headers of a response to read to EOF, not ended",
		  .raw = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "mid-body (Content-Length)",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "mid-body, right after the headers",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "mid-chunk",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "before the last chunk",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
		{ .name = "after the last chunk, before its CRLF",
		  .raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
		  .closes = 1,
		  .rc = -EPROTO,
		  .error = "closed before the response ended" },
	};
	op_http_response *r;
	int complete = 1;

	(void)state;
	CHECK_REPLIES(cases);
	/* Nothing received: not started; https.c tells a stale connection by it. */
	r = open_reader(CAP);
	assert_int_equal(op_http_response_eof(r, &complete), -EPROTO);
	assert_int_equal(complete, 0);
	assert_int_equal(op_http_response_started(r), 0);
	close_reader(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_http_garbage, unit_release_all),
		cmocka_unit_test_teardown(test_http_header_overflow, unit_release_all),
		cmocka_unit_test_teardown(test_http_bytes_after_end, unit_release_all),
		cmocka_unit_test_teardown(test_http_eof_early, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
