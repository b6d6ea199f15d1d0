/*
 * test_ctl_client: services/ctl/ctl_client.c, outpostctl's HTTP client:
 * the response parser on canned responses, and the client against a
 * scripted server on a Unix socket (answers, no service, a service that
 * never answers).
 *
 * Each client test listens in its own mkdtemp directory, removed after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "ctl_fixture.h"

/* --- the response parser ----------------------------------------------------------- */

static int parse(const char *text, int eof, op_ctl_response *r)
{
	const char *why;

	return op_ctl_response_parse(text, strlen(text), eof, r, &why);
}

static void test_ctl_response_content_length(void **state)
{
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "content-length: 11\r\nConnection: close\r\n\r\n{\"a\": true}";
	op_ctl_response r;
	char partial[256];

	(void)state;
	assert_int_equal(parse(ok, 0, &r), 0);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 11);
	assert_string_equal(r.body, "{\"a\": true}");
	op_ctl_response_free(&r);
	/* Complete without waiting for the end of the connection. */
	assert_int_equal(parse(ok, 1, &r), 0);
	op_ctl_response_free(&r);

	/* Every prefix is incomplete, and cut short at the end of the connection. */
	for (size_t n = 0; n < strlen(ok); n++) {
		const char *why;

		memcpy(partial, ok, n);
		assert_int_equal(op_ctl_response_parse(partial, n, 0, &r, &why), -EAGAIN);
		assert_int_equal(op_ctl_response_parse(partial, n, 1, &r, &why), -EPROTO);
	}

	/* Bytes after the body are not the body. */
	assert_int_equal(parse("HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}xyz", 1, &r),
			 0);
	assert_int_equal(r.status, 400);
	assert_string_equal(r.body, "{}");
	op_ctl_response_free(&r);

	/* An empty body. */
	assert_int_equal(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 0, &r), 0);
	assert_int_equal(r.body_len, 0);
	assert_string_equal(r.body, "");
	op_ctl_response_free(&r);
}

static void test_ctl_response_until_eof(void **state)
{
	const char *text = "HTTP/1.1 503 Service Unavailable\nContent-Type: text/plain\n\n"
			   "the spool is gone\n";
	op_ctl_response r;

	(void)state;
	assert_int_equal(parse(text, 0, &r), -EAGAIN);
	assert_int_equal(parse(text, 1, &r), 0);
	assert_int_equal(r.status, 503);
	assert_string_equal(r.body, "the spool is gone\n");
	op_ctl_response_free(&r);

	/* No reason phrase; 204 has no body. */
	assert_int_equal(parse("HTTP/1.1 204\r\n\r\n", 0, &r), 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body_len, 0);
	op_ctl_response_free(&r);

	/* An interim 100 Continue comes before the answer. */
	assert_int_equal(parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
			       "Content-Length: 3\r\n\r\nabc",
			       0, &r),
			 0);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "abc");
	op_ctl_response_free(&r);
}

static void test_ctl_response_binary_body(void **state)
{
	const char text[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\0b";
	op_ctl_response r;
	const char *why;

	(void)state;
	assert_int_equal(op_ctl_response_parse(text, sizeof(text) - 1, 0, &r, &why), 0);
	assert_int_equal(r.body_len, 3);
	assert_memory_equal(r.body, "a\0b", 3);
	op_ctl_response_free(&r);
	op_ctl_response_free(&r); /* twice is harmless */
}

static void test_ctl_response_garbage(void **state)
{
	static const char *const bad[] = {
		"SSH-2.0-OpenSSH_9.2\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"<html>hello</html>",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 099 Odd\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
	};
	op_ctl_response r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Refused at once, without waiting for more. */
		if (parse(bad[i], 0, &r) != -EPROTO)
			fail_msg("accepted (eof=0): %s", bad[i]);
		if (parse(bad[i], 1, &r) != -EPROTO)
			fail_msg("accepted (eof=1): %s", bad[i]);
		assert_null(r.body);
	}
	/* Nothing at all before the end of the connection. */
	assert_int_equal(parse("", 1, &r), -EPROTO);
	/* Endless headers. */
	{
		size_t n = 100000;
		char *big = malloc(n + 1);
		const char *why;

		assert_non_null(big);
		memcpy(big, "HTTP/1.1 200 OK\r\n", 17);
		memset(big + 17, 'a', n - 17);
		big[n] = '\0';
		assert_int_equal(op_ctl_response_parse(big, n, 0, &r, &why), -EPROTO);
		free(big);
	}
}

/* --- the client against a scripted server ------------------------------------------ */

struct server {
	int fd;
	const char *reply; /* NULL: read the request, never answer */
	char request[4096];
};

static void *serve_one(void *arg)
{
	struct server *s = arg;
	int c = accept(s->fd, NULL, NULL);
	size_t n = 0;
	ssize_t r;

	if (c < 0)
		return NULL;
	/* The request ends with its body: {} or nothing here. */
	while (n + 1 < sizeof(s->request) &&
	       (r = read(c, s->request + n, sizeof(s->request) - 1 - n)) > 0) {
		n += (size_t)r;
		s->request[n] = '\0';
		if (strstr(s->request, "\r\n\r\n") &&
		    (strstr(s->request, "Content-Length: 0\r\n") ||
		     (n >= 2 && memcmp(s->request + n - 2, "{}", 2) == 0)))
			break;
	}
	if (s->reply) {
		if (write(c, s->reply, strlen(s->reply)) < 0)
			s->request[0] = '\0';
	} else {
		sleep(1);
	}
	close(c);
	return NULL;
}

static void listen_at(struct ctl_fx *f, struct server *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(f->t.path, sizeof(f->t.path), "%s/outpost.sock", f->t.dir);
	assert_true(strlen(f->t.path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, f->t.path, strlen(f->t.path) + 1);
	s->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->fd, 4), 0);
}

/* op_ctl_request(f->t.path, method, target, body, timeout_ms, r, f->err) to a
 * server listening at f->t.path that answers once, by s (the request it read
 * then in s->request); the server is gone when it returns. */
static int request_served(struct ctl_fx *f, struct server *s, const char *method,
			  const char *target, const char *body, int timeout_ms, op_ctl_response *r)
{
	pthread_t t;
	int rc;

	listen_at(f, s);
	assert_int_equal(pthread_create(&t, NULL, serve_one, s), 0);
	rc = op_ctl_request(f->t.path, method, target, body, timeout_ms, r, f->err, sizeof(f->err));
	pthread_join(t, NULL);
	close(s->fd);
	return rc;
}

static void test_ctl_request(void **state)
{
	struct ctl_fx *f = *state;
	struct server s = { .reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				     "Content-Length: 15\r\n\r\n{\"paused\":true}" };
	op_ctl_response r;

	assert_int_equal(request_served(f, &s, "POST", "/api/pause", "{}", 5000, &r), 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"paused\":true}");
	op_ctl_response_free(&r);
	assert_non_null(strstr(s.request, "POST /api/pause HTTP/1.1\r\n"));
	assert_non_null(strstr(s.request, "Connection: close\r\n"));
	assert_non_null(strstr(s.request, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(s.request, "Content-Length: 2\r\n\r\n{}"));
}

/* A response without Content-Length ends with the connection. */
static void test_ctl_request_until_close(void **state)
{
	struct ctl_fx *f = *state;
	struct server s = { .reply =
				    "HTTP/1.1 404 Not Found\r\n\r\n{\"error\": \"no such page\"}" };
	op_ctl_response r;

	assert_int_equal(request_served(f, &s, "GET", "/api/nothing", NULL, 5000, &r), 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "{\"error\": \"no such page\"}");
	op_ctl_response_free(&r);
	assert_non_null(strstr(s.request, "GET /api/nothing HTTP/1.1\r\n"));
	assert_non_null(strstr(s.request, "Content-Length: 0\r\n"));
}

static void test_ctl_request_garbage(void **state)
{
	struct ctl_fx *f = *state;
	struct server s = { .reply = "220 smtp.example ESMTP\r\n" };
	op_ctl_response r;

	assert_int_equal(request_served(f, &s, "GET", "/api/status", NULL, 5000, &r), -EPROTO);
	assert_non_null(strstr(f->err, "not an HTTP response"));
	assert_null(r.body);
}

static void test_ctl_request_timeout(void **state)
{
	struct ctl_fx *f = *state;
	struct server s = { .reply = NULL };
	op_ctl_response r;
	int rc;

	rc = request_served(f, &s, "GET", "/api/status", NULL, 200, &r);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_false(op_ctl_not_running(rc));
	assert_non_null(strstr(f->err, "no answer within 1 s"));
}

static void test_ctl_request_not_running(void **state)
{
	struct ctl_fx *f = *state;
	struct server s;
	op_ctl_response r;
	int rc;

	/* No socket file. */
	snprintf(f->t.path, sizeof(f->t.path), "%s/outpost.sock", f->t.dir);
	rc = op_ctl_request(f->t.path, "GET", "/api/status", NULL, 1000, &r, f->err,
			    sizeof(f->err));
	assert_int_equal(rc, -ENOENT);
	assert_true(op_ctl_not_running(rc));
	/* A socket file nobody listens on (a service killed with -9). */
	listen_at(f, &s);
	close(s.fd);
	rc = op_ctl_request(f->t.path, "GET", "/api/status", NULL, 1000, &r, f->err,
			    sizeof(f->err));
	assert_int_equal(rc, -ECONNREFUSED);
	assert_true(op_ctl_not_running(rc));
	/* A path too long for a Unix socket is not "not running". */
	rc = op_ctl_request(
		"/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
		"GET", "/api/status", NULL, 1000, &r, f->err, sizeof(f->err));
	assert_int_equal(rc, -ENAMETOOLONG);
	assert_false(op_ctl_not_running(rc));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, ctl_fx_setup, ctl_fx_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_response_content_length),
		cmocka_unit_test(test_ctl_response_until_eof),
		cmocka_unit_test(test_ctl_response_binary_body),
		cmocka_unit_test(test_ctl_response_garbage),
		T(test_ctl_request),
		T(test_ctl_request_until_close),
		T(test_ctl_request_garbage),
		T(test_ctl_request_timeout),
		T(test_ctl_request_not_running),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
