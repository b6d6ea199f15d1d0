/*
 * unit_http: the harness of the tests of services/uplink/http.c
 * (test_http_*.c), data-driven as curl's tests are: a case is a canned
 * server reply and what the reader must make of it (status, Content-Type,
 * body, keep-alive, truncation, or -EPROTO with a message). Every reply is
 * fed in one piece, byte by byte, cut at every position, and (when short)
 * cut at every pair of positions: TCP and TLS hand a response over in any
 * pieces, and the result must not depend on where they fall.
 *
 * Header-only: it needs http.c, which the common layer's tests cannot
 * link (unit.h). Its tests' teardown is unit_release_all.
 */
#ifndef OP_UNIT_HTTP_H
#define OP_UNIT_HTTP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/http.h"
#include "unit.h"

#define CAP 4096 /* body_max of the cases that do not set theirs */

static inline void reader_close(void *r)
{
	op_http_response_close(r);
}

/* A reader, held until close_reader() or the test's teardown. */
static inline op_http_response *open_reader(size_t body_max)
{
	op_http_response *r = NULL;

	assert_int_equal(op_http_response_open(body_max, &r), 0);
	return unit_hold(r, reader_close);
}

static inline void close_reader(op_http_response *r)
{
	unit_release(r);
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

static inline size_t raw_len(const struct reply *c)
{
	return c->raw_len ? c->raw_len : strlen(c->raw);
}

static inline size_t cap_of(const struct reply *c)
{
	return c->cap ? c->cap : CAP;
}

/* Feeds c->raw cut at cuts[0..ncuts) (ascending), then EOF if it closes. */
static inline void run(const struct reply *c, const size_t *cuts, size_t ncuts, struct outcome *o)
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
static inline void expect(const struct reply *c, const struct outcome *o, const char *how,
			  int with_type)
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
static inline void check_reply(const struct reply *c, int type_in_pieces)
{
	size_t len = raw_len(c);
	size_t *all = unit_hold(malloc((len + 1) * sizeof(*all)), NULL);
	struct outcome *o = unit_hold(malloc(sizeof(*o)), NULL);
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
	unit_release(o);
	unit_release(all);
}

static inline void check_replies(const struct reply *cases, size_t n, int type_in_pieces)
{
	for (size_t i = 0; i < n; i++)
		check_reply(&cases[i], type_in_pieces);
}

#define CHECK_REPLIES(cases) check_replies(cases, sizeof(cases) / sizeof(cases[0]), 0)

/* "HEAD" + Content-Length: the body's length + "\r\n\r\n" + body. */
static inline char *with_length(const char *head, const char *body)
{
	size_t size = strlen(head) + strlen(body) + 64;
	char *raw = unit_hold(malloc(size), NULL);

	assert_non_null(raw);
	snprintf(raw, size, "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
	return raw;
}

#endif
