/*
 * test_request: services/console/request.c, the console's reader of HTTP
 * requests.
 *
 * Data-driven: each case is what a client sends and what the parser must
 * make of it (the requests, in order, or the HTTP status of the refusal).
 * Every case is fed whole, byte by byte, and cut at every position: a
 * client's bytes arrive in any pieces. A streamed body (over 64 KiB,
 * announced) goes to a sink that counts it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/request.h"

struct expect {
	const char *method, *path, *query, *auth, *body;
	int keep_alive;
	int streamed;
	size_t sunk; /* a streamed body's bytes */
};

struct test_case {
	const char *name;
	const char *input;
	size_t len; /* 0: strlen(input) */
	int error;  /* the refusal's HTTP status, after the requests */
	struct expect req[2];
	int n_req;
};

static int count(void *ctx, const char *data, size_t len)
{
	(void)data;
	*(size_t *)ctx += len;
	return 0;
}

/* Feeds in pieces of `piece` bytes (0: whole), from `cut` on in one piece
 * after the first `cut` bytes (0: no cut). Returns the refusal, or 0. */
static int run(const struct test_case *t, size_t piece, size_t cut, op_request **out, int *n_out,
	       size_t *sunk)
{
	size_t len = t->len ? t->len : strlen(t->input), off = 0;
	op_request_parser p;
	int rc = 0;

	*n_out = 0;
	op_request_parser_init(&p);
	while (off < len) {
		size_t n = len - off, used;
		op_request *done;

		if (piece && n > piece)
			n = piece;
		if (cut && off < cut && n > cut - off)
			n = cut - off;
		rc = op_request_parse(&p, t->input + off, n, &used, &done);
		if (rc < 0)
			break;
		if (rc == 2)
			op_request_parser_sink(&p, count, &sunk[*n_out]);
		if (done) {
			assert_true(*n_out < 2);
			out[(*n_out)++] = done;
		} else if (rc == 0) {
			assert_int_equal(used, n);
		}
		off += used;
		rc = 0;
	}
	op_request_parser_free(&p);
	return rc < 0 ? -rc : 0;
}

static void check(const struct test_case *t, size_t piece, size_t cut)
{
	op_request *got[2] = { NULL, NULL };
	size_t sunk[2] = { 0, 0 };
	int n, error = run(t, piece, cut, got, &n, sunk);

	if (error != t->error)
		fail_msg("%s (piece %zu, cut %zu): refusal %d, expected %d", t->name, piece, cut,
			 error, t->error);
	assert_int_equal(n, t->n_req);
	for (int i = 0; i < n; i++) {
		const struct expect *e = &t->req[i];
		size_t blen;
		const char *auth = op_request_header(got[i], "authorization");

		assert_string_equal(op_request_method(got[i]), e->method);
		assert_string_equal(op_request_path(got[i]), e->path);
		assert_string_equal(op_request_query(got[i]), e->query ? e->query : "");
		if (e->auth)
			assert_non_null(auth), assert_string_equal(auth, e->auth);
		else
			assert_null(auth);
		assert_string_equal(op_request_body(got[i], &blen), e->body ? e->body : "");
		assert_int_equal(blen, e->body ? strlen(e->body) : 0);
		assert_int_equal(op_request_keep_alive(got[i]), e->keep_alive);
		assert_int_equal(op_request_streamed(got[i]), e->streamed);
		assert_int_equal(sunk[i], e->sunk);
		op_request_free(got[i]);
	}
}

/* A body that grows past the limit without announcing its length. */
static char *big_body_request(void)
{
	static char buf[OP_REQUEST_BODY_MAX + 256];
	int n = snprintf(buf, sizeof(buf),
			 "POST /api/login HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
			 OP_REQUEST_BODY_MAX + 1);

	memset(buf + n, 'a', OP_REQUEST_BODY_MAX + 1);
	buf[n + OP_REQUEST_BODY_MAX + 1] = '\0';
	return buf;
}

/* A bundle's body, streamed, then a request on the same connection. */
static char *streamed_request(void)
{
	static char buf[70000 + 256];
	int n = snprintf(buf, sizeof(buf),
			 "PUT /api/firmware HTTP/1.1\r\nContent-Length: 70000\r\n\r\n");

	memset(buf + n, 'b', 70000);
	snprintf(buf + n + 70000, 64, "GET /healthz HTTP/1.1\r\n\r\n");
	return buf;
}

static void test_request_cases(void **state)
{
	static char long_url[OP_REQUEST_URL_MAX + 64], many[4096];
	const struct test_case cases[] = {
		{ "get",
		  "GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n",
		  0,
		  0,
		  { { "GET", "/api/status", NULL, NULL, NULL, 1, 0, 0 } },
		  1 },
		{ "query and basic",
		  "GET /api/queue?state=queued&page=2 HTTP/1.1\r\nAuthorization: Basic "
		  "YTpi\r\nConnection: close\r\n\r\n",
		  0,
		  0,
		  { { "GET", "/api/queue", "state=queued&page=2", "Basic YTpi", NULL, 0, 0, 0 } },
		  1 },
		{ "post body",
		  "POST /api/login HTTP/1.1\r\nContent-Length: 16\r\n\r\n{\"password\":\"x\"}",
		  0,
		  0,
		  { { "POST", "/api/login", NULL, NULL, "{\"password\":\"x\"}", 1, 0, 0 } },
		  1 },
		{ "chunked body",
		  "PUT /api/shaping HTTP/1.1\r\nTransfer-Encoding: "
		  "chunked\r\n\r\n3\r\n{\"r\r\n1\r\n}\r\n0\r\n\r\n",
		  0,
		  0,
		  { { "PUT", "/api/shaping", NULL, NULL, "{\"r}", 1, 0, 0 } },
		  1 },
		{ "two in one write",
		  "POST /api/pause HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET /healthz "
		  "HTTP/1.0\r\n\r\n",
		  0,
		  0,
		  { { "POST", "/api/pause", NULL, NULL, "{}", 1, 0, 0 },
		    { "GET", "/healthz", NULL, NULL, NULL, 0, 0, 0 } },
		  2 },
		{ "header names any case",
		  "GET / HTTP/1.1\r\nAUTHORIZATION: Bearer t\r\n\r\n",
		  0,
		  0,
		  { { "GET", "/", NULL, "Bearer t", NULL, 1, 0, 0 } },
		  1 },
		{ "not http", "HELLO\r\n\r\n", 0, 400, { { 0 } }, 0 },
		{ "nul in the line", "GET /\0 HTTP/1.1\r\n\r\n", 20, 400, { { 0 } }, 0 },
		{ "body over 64 KiB announced: streamed",
		  "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n",
		  0,
		  0,
		  { { "POST", "/", NULL, NULL, NULL, 1, 1, 0 } },
		  1 },
		{ "a streamed body, then a request",
		  streamed_request(),
		  0,
		  0,
		  { { "PUT", "/api/firmware", NULL, NULL, NULL, 1, 1, 70000 },
		    { "GET", "/healthz", NULL, NULL, NULL, 1, 0, 0 } },
		  2 },
		{ "body over 64 KiB sent", big_body_request(), 0, 413, { { 0 } }, 0 },
		{ "url too long", long_url, 0, 414, { { 0 } }, 0 },
		{ "too many headers", many, 0, 431, { { 0 } }, 0 },
		{ "good then bad",
		  "GET /a HTTP/1.1\r\n\r\nBAD\r\n\r\n",
		  0,
		  400,
		  { { "GET", "/a", NULL, NULL, NULL, 1, 0, 0 } },
		  1 },
	};
	int n;

	(void)state;
	n = snprintf(long_url, sizeof(long_url), "GET /");
	memset(long_url + n, 'a', OP_REQUEST_URL_MAX);
	snprintf(long_url + n + OP_REQUEST_URL_MAX, 32, " HTTP/1.1\r\n\r\n");
	n = snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < OP_REQUEST_HEADER_LINES + 1; i++)
		n += snprintf(many + n, sizeof(many) - (size_t)n, "X-%d: y\r\n", i);
	snprintf(many + n, sizeof(many) - (size_t)n, "\r\n");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct test_case *t = &cases[i];
		size_t len = t->len ? t->len : strlen(t->input);

		check(t, 0, 0);
		check(t, 1, 0);
		check(t, 4096, 0);
		if (len < 300)
			for (size_t cut = 1; cut < len; cut++)
				check(t, 0, cut);
	}
}

static int refuse(void *ctx, const char *data, size_t len)
{
	(void)ctx, (void)data, (void)len;
	return 507;
}

/* A streamed body with nowhere to go is refused; a sink's refusal is the
 * parse's. */
static void test_streamed_body_refusals(void **state)
{
	const char head[] = "PUT /api/firmware HTTP/1.1\r\nContent-Length: 100000\r\n\r\nxyz";
	op_request_parser p;
	op_request *done;
	size_t used;

	(void)state;
	for (int with_sink = 0; with_sink < 2; with_sink++) {
		size_t rest;

		op_request_parser_init(&p);
		assert_int_equal(op_request_parse(&p, head, sizeof(head) - 1, &used, &done), 2);
		assert_true(used <= sizeof(head) - 4); /* the body was not taken */
		assert_true(op_request_streamed(done));
		op_request_free(done);
		if (with_sink)
			op_request_parser_sink(&p, refuse, NULL);
		rest = sizeof(head) - 1 - used;
		assert_int_equal(op_request_parse(&p, head + used, rest, &used, &done),
				 with_sink ? -507 : -413);
		op_request_parser_free(&p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_cases),
		cmocka_unit_test(test_streamed_body_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
