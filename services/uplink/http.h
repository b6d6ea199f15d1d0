/*
 * http: one HTTP/1.1 response, framed by http-parser (Debian's
 * libhttp-parser), its body kept in memory up to a cap. The uplink only
 * ever reads small responses (STOW-RS results, errors); a larger body is
 * still framed to its end, but only the first body_max bytes are kept.
 *
 * Untrusted input: fuzzed by tests/fuzz/fuzz_response.c.
 */
#ifndef OP_HTTP_H
#define OP_HTTP_H

#include <stddef.h>

typedef struct op_http_response op_http_response;

/* A reader keeping at most body_max bytes of body. */
int op_http_response_open(size_t body_max, op_http_response **out);

/* Accepts NULL. */
void op_http_response_close(op_http_response *r);

/* Forgets the last response, for the next request on the connection. */
void op_http_response_reset(op_http_response *r);

/*
 * Feeds bytes received. Returns 0 (*complete tells whether the response
 * has ended) or -EPROTO when the bytes are not a valid response; the
 * reason is op_http_response_error(). Bytes after the end of the response
 * are an error too (a server must not send them unasked).
 */
int op_http_response_feed(op_http_response *r, const char *data, size_t len, int *complete);

/* The peer closed the connection: completes a response whose end is the
 * end of the connection; -EPROTO if the response was cut short. */
int op_http_response_eof(op_http_response *r, int *complete);

/* Has anything been received since the last reset? */
int op_http_response_started(const op_http_response *r);

int op_http_response_status(const op_http_response *r);
const char *op_http_response_content_type(const op_http_response *r);
const char *op_http_response_body(const op_http_response *r, size_t *len);
int op_http_response_body_truncated(const op_http_response *r);
int op_http_response_keep_alive(const op_http_response *r);
const char *op_http_response_error(const op_http_response *r);

#endif
