/*
 * test_http: services/uplink/http.c, the reader of one HTTP/1.1 response.
 *
 * Data-driven, as curl's tests are: each case is a canned server reply and
 * what the reader must make of it (status, Content-Type, body, keep-alive,
 * truncation, or -EPROTO with a message). Every reply is fed in one piece,
 * byte by byte, cut at every position, and (when short) cut at every pair
 * of positions: TCP and TLS hand a response over in any pieces, and the
 * result must not depend on where they fall.
 *
 * The Orthanc replies are those of docs/notes-orthanc.md, verbatim (the
 * placeholders <SOP-n> and PORT included); Content-Length is the length of
 * the body as shown there (compact), not the one Orthanc sent (tabs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/http.h"

#define CAP 4096 /* body_max of the cases that do not set theirs */

/* --- replies from docs/notes-orthanc.md -------------------------------------- */

#define ORTHANC_200_ALL_GOOD                                                                       \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-1>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-1>\"],\"vr\":\"UR\"}},{\"00081150\":{\"Value\":[\"1.2.840.1"     \
	"0008.5.1.4.1.1.4\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-2>\"],\"vr\":\"UI"     \
	"\"},\"00081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-MR>/se"     \
	"ries/<SERIES-MR>/instances/<SOP-2>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

#define ORTHANC_400_GARBAGE_PART                                                                   \
	"{\"00080005\":{\"Value\":[\"ISO_IR 100\"],\"vr\":\"CS\"},\"00081190\":{\"Value\":[\""     \
	"http://localhost:PORT/dicom-web/studies/<STUDY-CT>\"],\"vr\":\"UR\"},\"00081198\":{"      \
	"\"vr\":\"SQ\"},\"00081199\":{\"Value\":[{\"00081150\":{\"Value\":[\"1.2.840.10008.5."     \
	"1.4.1.1.2\"],\"vr\":\"UI\"},\"00081155\":{\"Value\":[\"<SOP-3>\"],\"vr\":\"UI\"},\"0"     \
	"0081190\":{\"Value\":[\"http://localhost:PORT/dicom-web/studies/<STUDY-CT>/series/<S"     \
	"ERIES-CT>/instances/<SOP-3>\"],\"vr\":\"UR\"}}],\"vr\":\"SQ\"}}"

#define ORTHANC_415                                                                                \
	"{\"HttpError\":\"Unsupported Media Type\",\"HttpStatus\":415,\"Message\":\"Unsupport"     \
	"ed media type\",\"Method\":\"POST\",\"OrthancError\":\"Unsupported media type\",\"Or"     \
	"thancStatus\":3000,\"Uri\":\"/dicom-web/studies\"}"

/* nginx's error page: CRLF line ends, 150 bytes as its Content-Length says. */
#define NGINX_502                                                                                  \
	"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"                      \
	"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"              \
	"</body>\r\n</html>\r\n"

/* --- what a test holds ------------------------------------------------------------ */

/*
 * Memory and readers a test holds, released by teardown() even when an
 * assertion fails half-way (else the ASan run adds leaks to the failure).
 */
static struct {
	void *mem[16];
	op_http_response *readers[8];
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
		if (held.mem[i] == p)
			held.mem[i] = NULL;
	free(p);
}

static op_http_response *open_reader(size_t body_max)
{
	op_http_response *r = NULL;

	assert_int_equal(op_http_response_open(body_max, &r), 0);
	assert_non_null(r);
	for (size_t i = 0; i < sizeof(held.readers) / sizeof(held.readers[0]); i++)
		if (!held.readers[i]) {
			held.readers[i] = r;
			return r;
		}
	op_http_response_close(r);
	fail();
	return NULL;
}

static void close_reader(op_http_response *r)
{
	for (size_t i = 0; i < sizeof(held.readers) / sizeof(held.readers[0]); i++)
		if (held.readers[i] == r)
			held.readers[i] = NULL;
	op_http_response_close(r);
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(held.mem) / sizeof(held.mem[0]); i++)
		release(held.mem[i]);
	for (size_t i = 0; i < sizeof(held.readers) / sizeof(held.readers[0]); i++)
		close_reader(held.readers[i]);
	return 0;
}

/* --- the harness ---------------------------------------------------------------- */

struct reply {
	const char *name;
	const char *raw; /* what the server sends */
	size_t raw_len;  /* 0: strlen(raw) */
	size_t cap;      /* body_max; 0: CAP */
	int closes;      /* the server closes the connection after raw */
	/* What the reader must make of it. */
	int rc;            /* 0, or -EPROTO from some feed or from eof */
	const char *error; /* with -EPROTO: a part of the message (NULL: any) */
	int status;
	const char *content_type;
	const char *body;
	size_t body_len; /* 0: strlen(body) */
	int keep_alive;
	int truncated;
	int needs_eof; /* complete only once the server has closed */
};

struct outcome {
	int rc, complete, complete_before_eof, status, keep_alive, truncated;
	char content_type[256];
	char body[CAP + 1];
	size_t body_len;
	int body_terminated;
	char error[256];
};

static size_t raw_len(const struct reply *c)
{
	return c->raw_len ? c->raw_len : strlen(c->raw);
}

static size_t cap_of(const struct reply *c)
{
	return c->cap ? c->cap : CAP;
}

/* Feeds c->raw cut at cuts[0..ncuts) (ascending), then EOF if it closes. */
static void run(const struct reply *c, const size_t *cuts, size_t ncuts, struct outcome *o)
{
	op_http_response *r;
	size_t len = raw_len(c), from = 0;
	const char *body;
	int complete = 0, rc = 0;

	memset(o, 0, sizeof(*o));
	r = open_reader(cap_of(c));
	for (size_t i = 0; i <= ncuts && rc == 0; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		int was_complete = complete;

		rc = op_http_response_feed(r, c->raw + from, to - from, &complete);
		/* Once complete, a response stays complete. */
		assert_true(!was_complete || complete || rc < 0);
		from = to;
	}
	o->complete_before_eof = complete;
	if (rc < 0) {
		/* An error in what was received is for good: nothing more is
		 * accepted (*complete is not looked at with an error). */
		int again;

		snprintf(o->error, sizeof(o->error), "%s", op_http_response_error(r));
		assert_int_equal(op_http_response_feed(r, "H", 1, &again), -EPROTO);
	} else if (c->closes) {
		rc = op_http_response_eof(r, &complete);
		snprintf(o->error, sizeof(o->error), "%s", op_http_response_error(r));
	}
	o->rc = rc;
	o->complete = complete;
	o->status = op_http_response_status(r);
	o->keep_alive = op_http_response_keep_alive(r);
	o->truncated = op_http_response_body_truncated(r);
	snprintf(o->content_type, sizeof(o->content_type), "%s", op_http_response_content_type(r));
	body = op_http_response_body(r, &o->body_len);
	assert_true(o->body_len <= cap_of(c));
	o->body_terminated = body[o->body_len] == '\0';
	memcpy(o->body, body, o->body_len < CAP ? o->body_len : CAP);
	close_reader(r);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_error("%s, %s: ", c->name, how);                                     \
			print_error(__VA_ARGS__);                                                  \
			print_error("\n");                                                         \
			fail();                                                                    \
		}                                                                                  \
	} while (0)

/* with_type: compare the Content-Type too (see test_http_content_type_in_pieces). */
static void expect(const struct reply *c, const struct outcome *o, const char *how, int with_type)
{
	if (c->rc) {
		CHECK(o->rc == c->rc, "rc %d, expected %d", o->rc, c->rc);
		CHECK(o->error[0] != '\0', "-EPROTO without a message");
		CHECK(!c->error || strstr(o->error, c->error), "error \"%s\", expected \"%s\"",
		      o->error, c->error);
		return;
	}
	size_t body_len = c->body_len ? c->body_len : strlen(c->body);

	CHECK(o->rc == 0, "rc %d (%s)", o->rc, o->error);
	CHECK(o->complete, "not complete");
	CHECK(!c->needs_eof || !o->complete_before_eof, "complete before the server closed");
	CHECK(c->needs_eof || o->complete_before_eof, "complete only at EOF");
	CHECK(o->status == c->status, "status %d, expected %d", o->status, c->status);
	CHECK(!with_type || strcmp(o->content_type, c->content_type) == 0,
	      "Content-Type \"%s\", expected \"%s\"", o->content_type, c->content_type);
	CHECK(o->body_len == body_len, "body of %zu bytes, expected %zu", o->body_len, body_len);
	CHECK(memcmp(o->body, c->body, body_len) == 0, "body \"%.*s\", expected \"%s\"",
	      (int)o->body_len, o->body, c->body);
	CHECK(o->body_terminated, "body not NUL-terminated");
	CHECK(o->keep_alive == c->keep_alive, "keep-alive %d, expected %d", o->keep_alive,
	      c->keep_alive);
	CHECK(o->truncated == c->truncated, "truncated %d, expected %d", o->truncated,
	      c->truncated);
}

/*
 * One piece, byte by byte, every cut, every pair of cuts (short replies).
 * The Content-Type is compared in pieces only when type_in_pieces is set:
 * test_http_content_type_in_pieces does so for every reply with a type, so
 * that one bug there fails one test, not every test of framing.
 */
static void check_reply(const struct reply *c, int type_in_pieces)
{
	size_t len = raw_len(c);
	size_t *all = hold(malloc((len + 1) * sizeof(*all)));
	struct outcome *o = hold(malloc(sizeof(*o)));
	char how[64];

	assert_non_null(all);
	assert_non_null(o);
	run(c, NULL, 0, o);
	expect(c, o, "in one piece", 1);
	for (size_t i = 0; i + 1 < len; i++)
		all[i] = i + 1;
	run(c, all, len > 0 ? len - 1 : 0, o);
	expect(c, o, "byte by byte", type_in_pieces);
	for (size_t i = 0; i <= len; i++) {
		snprintf(how, sizeof(how), "cut at %zu", i);
		run(c, &i, 1, o);
		expect(c, o, how, type_in_pieces);
	}
	if (len <= 300)
		for (size_t i = 1; i < len; i++)
			for (size_t j = i + 1; j < len; j++) {
				size_t cuts[2] = { i, j };

				snprintf(how, sizeof(how), "cut at %zu and %zu", i, j);
				run(c, cuts, 2, o);
				expect(c, o, how, type_in_pieces);
			}
	release(o);
	release(all);
}

static void check_replies(const struct reply *cases, size_t n, int type_in_pieces)
{
	for (size_t i = 0; i < n; i++)
		check_reply(&cases[i], type_in_pieces);
}

#define CHECK_REPLIES(cases) check_replies(cases, sizeof(cases) / sizeof(cases[0]), 0)

/* "HEAD" + Content-Length: the body's length + "\r\n\r\n" + body. */
static char *with_length(const char *head, const char *body)
{
	size_t size = strlen(head) + strlen(body) + 64;
	char *raw = hold(malloc(size));

	assert_non_null(raw);
	snprintf(raw, size, "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
	return raw;
}

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
		release((char *)cases[i].raw);
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
	release((char *)cases[0].raw);
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
	big = hold(malloc(1000000));
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
	release(big);
}

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
		cmocka_unit_test_teardown(test_http_content_length, teardown),
		cmocka_unit_test_teardown(test_http_orthanc_replies, teardown),
		cmocka_unit_test_teardown(test_http_chunked, teardown),
		cmocka_unit_test_teardown(test_http_until_eof, teardown),
		cmocka_unit_test_teardown(test_http_until_eof_not_early, teardown),
		cmocka_unit_test_teardown(test_http_no_body, teardown),
		cmocka_unit_test_teardown(test_http_status_and_type, teardown),
		cmocka_unit_test_teardown(test_http_content_type_in_pieces, teardown),
		cmocka_unit_test_teardown(test_http_keep_alive, teardown),
		cmocka_unit_test_teardown(test_http_truncated, teardown),
		cmocka_unit_test_teardown(test_http_truncated_extremes, teardown),
		cmocka_unit_test_teardown(test_http_garbage, teardown),
		cmocka_unit_test_teardown(test_http_header_overflow, teardown),
		cmocka_unit_test_teardown(test_http_bytes_after_end, teardown),
		cmocka_unit_test_teardown(test_http_eof_early, teardown),
		cmocka_unit_test_teardown(test_http_started, teardown),
		cmocka_unit_test_teardown(test_http_reset_reuse, teardown),
		cmocka_unit_test_teardown(test_http_interim_response, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
