/*
 * test_http_headers: services/uplink/http.c, what the reader makes of a
 * response's head: the status, the Content-Type (in any case, with
 * parameters, cut to what is kept, whatever pieces it arrives in) and
 * keep-alive (HTTP/1.0 and 1.1, Connection).
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
#include "unit_cloud.h"

/* --- status, Content-Type, keep-alive ------------------------------------------- */

static const struct reply type_cases[] = {
	{ .name = "content-type in lower case",
	  .raw = "HTTP/1.1 201 Created\r\ncontent-type: application/dicom+json\r\n"
		 "Content-Length: 2\r\n\r\n{}",
	  .status = 201,
	  .content_type = "application/dicom+json",
	  .body = "{}",
	  .keep_alive = 1 },
	{ .name = "CONTENT-TYPE in upper case, with parameters",
	  .raw = "HTTP/1.1 202 Accepted\r\nCONTENT-TYPE: application/dicom+json; "
		 "charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
	  .status = 202,
	  .content_type = "application/dicom+json; charset=utf-8",
	  .body = "{}",
	  .keep_alive = 1 },
	{ .name = "Content-Type after other headers that look like it",
	  .raw = "HTTP/1.1 200 OK\r\nContent-Type-Options: nosniff\r\nX-Content-Type: "
		 "no\r\nContent-Typ: no\r\nContent-type:text/html\r\nContent-Length: 0\r\n"
		 "\r\n",
	  .status = 200,
	  .content_type = "text/html",
	  .body = "",
	  .keep_alive = 1 },
	{ .name = "Content-Type longer than kept",
	  .raw = "HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json; "
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1\r\n"
		 "Content-Length: 0\r\n\r\n",
	  .status = 200,
	  /* The first 127 bytes, NUL-terminated. */
	  .content_type = "application/dicom+json; "
			  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  .body = "",
	  .keep_alive = 1 },
	{ .name = "status 599 and a reason phrase with spaces",
	  .raw = "HTTP/1.1 599 Some Proxy Said No\r\nContent-Length: 0\r\n\r\n",
	  .status = 599,
	  .content_type = "",
	  .body = "",
	  .keep_alive = 1 },
	{ .name = "no reason phrase",
	  .raw = "HTTP/1.1 413 \r\nContent-Length: 0\r\n\r\n",
	  .status = 413,
	  .content_type = "",
	  .body = "",
	  .keep_alive = 1 },
};

static void test_http_status_and_type(void **state)
{
	(void)state;
	assert_int_equal(strlen(type_cases[3].content_type), 127);
	CHECK_REPLIES(type_cases);
}

/*
 * The Content-Type whatever the pieces a response arrives in: http-parser
 * hands a header's name over in as many pieces as it arrived in (one per
 * read), and "Content-Type" cut in two is still Content-Type.
 */
static void test_http_content_type_in_pieces(void **state)
{
	struct reply cases[] = {
		{ .name = "Orthanc 200",
		  .raw = with_length("HTTP/1.1 200 OK\r\nServer: nginx\r\n"
				     "Content-Type: application/dicom+json\r\n"
				     "Connection: keep-alive\r\n",
				     ORTHANC_200_ALL_GOOD),
		  .status = 200,
		  .content_type = "application/dicom+json",
		  .body = ORTHANC_200_ALL_GOOD,
		  .keep_alive = 1 },
		{ .name = "nginx 502",
		  .raw = "HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\nContent-Type: text/html\r\n"
			 "Content-Length: 150\r\nConnection: keep-alive\r\n\r\n" NGINX_502,
		  .status = 502,
		  .content_type = "text/html",
		  .body = NGINX_502,
		  .keep_alive = 1 },
		{ .name = "chunked",
		  .raw = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/dicom+json\r\n"
			 "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		  .status = 400,
		  .content_type = "application/dicom+json",
		  .body = "{}",
		  .keep_alive = 1 },
		{ .name = "HTTP/1.0 to EOF",
		  .raw = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[]",
		  .closes = 1,
		  .needs_eof = 1,
		  .status = 200,
		  .content_type = "application/json",
		  .body = "[]" },
		{ .name = "only a look-alike",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Type-Options: nosniff\r\nContent-Length: 0\r\n"
			 "\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
	};
	(void)state;
	check_replies(type_cases, sizeof(type_cases) / sizeof(type_cases[0]), 1);
	check_replies(cases, sizeof(cases) / sizeof(cases[0]), 1);
	unit_release((char *)cases[0].raw);
}

static void test_http_keep_alive(void **state)
{
	static const struct reply cases[] = {
		{ .name = "HTTP/1.1 by default",
		  .raw = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 1 },
		{ .name = "HTTP/1.1, Connection: close",
		  .raw = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 0 },
		{ .name = "HTTP/1.1, connection: CLOSE",
		  .raw = "HTTP/1.1 200 OK\r\nconnection: CLOSE\r\nContent-Length: 0\r\n\r\n",
		  .status = 200,
		  .content_type = "",
		  .body = "",
		  .keep_alive = 0 },
		{ .name = "HTTP/1.0 with a length",
		  .raw = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		  .status = 200,
		  .content_type = "",
		  .body = "ok",
		  .keep_alive = 0 },
		{ .name = "HTTP/1.0, Connection: keep-alive",
		  .raw = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
		  .status = 200,
		  .content_type = "",
		  .body = "ok",
		  .keep_alive = 1 },
	};
	op_http_response *r;
	int complete;

	(void)state;
	CHECK_REPLIES(cases);
	/* Not before the response is complete. */
	r = open_reader(CAP);
	assert_int_equal(op_http_response_keep_alive(r), 0);
	assert_int_equal(op_http_response_feed(r, cases[0].raw, 20, &complete), 0);
	assert_int_equal(complete, 0);
	assert_int_equal(op_http_response_keep_alive(r), 0);
	close_reader(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_http_status_and_type, unit_release_all),
		cmocka_unit_test_teardown(test_http_content_type_in_pieces, unit_release_all),
		cmocka_unit_test_teardown(test_http_keep_alive, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
