/*
 * request: one HTTP/1.1 request read from a client, framed by Debian's
 * libhttp-parser, for the console's server (console.c). Free of libuv and
 * sockets, so it is fuzzed on its own (tests/fuzz/fuzz_request.c).
 *
 * Limits, each answered with its HTTP status: URL 2 KiB (414), headers
 * 8 KiB and 32 lines (431), body 64 KiB (413); anything that is not HTTP
 * is 400. A larger body with a Content-Length is not held but streamed
 * to its reader (a firmware bundle; op_request_parser_sink()).
 */
#ifndef OP_REQUEST_H
#define OP_REQUEST_H

#include <http_parser.h>
#include <stddef.h>

#define OP_REQUEST_URL_MAX 2048
#define OP_REQUEST_HEADERS_MAX 8192
#define OP_REQUEST_HEADER_LINES 32
#define OP_REQUEST_BODY_MAX (64 * 1024)

typedef struct op_request op_request;

/* Takes a piece of a streamed body: 0, or an HTTP status that refuses the
 * rest. */
typedef int (*op_request_sink)(void *ctx, const char *data, size_t len);

/* A connection's parser: requests one after another. */
typedef struct op_request_parser {
	http_parser parser;
	op_request *req; /* being read */
	size_t hlen;
	int in_value;  /* the last header callback was a value */
	int error;     /* the HTTP status of a refusal */
	int streaming; /* a streamed request's body is being read */
	op_request_sink sink;
	void *sink_ctx;
} op_request_parser;

void op_request_parser_init(op_request_parser *p);

/* Frees a request being read. */
void op_request_parser_free(op_request_parser *p);

/*
 * Reads bytes. Returns 0 when all of them were taken and the request is
 * not complete yet; 1 when a request is complete: *done receives it (the
 * caller owns it) and *used says how many bytes it took (the rest belong
 * to the next request); or a negative HTTP status (-400, -413, -414,
 * -431, -500 for no memory) after which the connection must end.
 */
int op_request_parse(op_request_parser *p, const char *data, size_t len, size_t *used,
		     op_request **done);

/*
 * A body announced by Content-Length as over OP_REQUEST_BODY_MAX is not
 * held. op_request_parse() returns 2 once the headers are complete: *done
 * is the request without its body (op_request_streamed() is 1), and *used
 * stops before the body (bytes from there on are fed again). The caller then either ends the connection
 * (answering first), or calls op_request_parser_sink(). The sink receives
 * the body as it comes, and the parse returns 1 with *done NULL when the
 * body is complete. A body that comes with no sink set is refused (-413).
 */
void op_request_parser_sink(op_request_parser *p, op_request_sink sink, void *ctx);
int op_request_streamed(const op_request *r);

void op_request_free(op_request *r); /* accepts NULL */

const char *op_request_method(const op_request *r); /* "GET", ... */
const char *op_request_path(const op_request *r);   /* without the query */
const char *op_request_query(const op_request *r);  /* after '?', or "" */
/* A header's value (name case-insensitive), or NULL. */
const char *op_request_header(const op_request *r, const char *name);
const char *op_request_body(const op_request *r, size_t *len); /* NUL-terminated */
/* Does the client keep the connection open after the answer? */
int op_request_keep_alive(const op_request *r);

#endif
