/*
 * https: one HTTP/1.1 client connection over TLS (mbedTLS) on libuv
 * streams: resolve, connect, handshake, then requests one after another
 * (keep-alive). mbedTLS's I/O goes through callbacks on the connection's
 * buffers (no blocking socket, no thread).
 *
 * A request is a head (request line and headers, written by the caller)
 * and a body pulled from a source one chunk at a time: the next chunk is
 * asked for only when the previous one has left the process, so memory
 * does not grow with the body.
 *
 * Loop thread only. Callbacks may call any function of this module,
 * including op_https_close().
 */
#ifndef OP_HTTPS_H
#define OP_HTTPS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "uplink/http.h"
#include "uplink/shaper.h"
#include "uplink/tls.h"

typedef struct op_https op_https;

/* Where a request failed. */
enum op_https_stage {
	OP_HTTPS_CONNECT, /* resolving or connecting */
	OP_HTTPS_TLS,     /* handshake, certificate, pin */
	OP_HTTPS_SEND,    /* writing the request */
	OP_HTTPS_RECEIVE, /* reading the response (cut, garbage) */
	OP_HTTPS_TIMEOUT, /* no progress for the timeout */
	OP_HTTPS_STALE,   /* a kept-alive connection the server had closed:
			     nothing was answered, the request may be sent again */
	OP_HTTPS_BODY,    /* the body source failed (op_https_body_fail) */
};

typedef struct op_https_handler {
	void *ctx;
	/* The body source: deliver the next chunk with op_https_body_write()
	 * (now or later; a zero length ends the body) or fail it. */
	void (*next_chunk)(void *ctx, op_https *c);
	/* The whole response arrived. */
	void (*on_response)(void *ctx, op_https *c, const op_http_response *r);
	/* The request failed; the connection is closed. */
	void (*on_failure)(void *ctx, op_https *c, enum op_https_stage stage, const char *why);
} op_https_handler;

typedef struct op_https_options {
	const char *host;
	uint16_t port;
	int timeout_s;     /* the longest time without progress before a request fails */
	op_shaper *shaper; /* meters every write, shared by connections; NULL: none */
	op_shaper *cap;    /* and a second bucket, e.g. one destination's own rate; NULL: none */
	int scavenger;     /* TCP-LP congestion control on the socket */
} op_https_options;

/* A connection, not yet connected. */
int op_https_open(uv_loop_t *loop, op_tls *tls, const op_https_options *opt, op_https **out);

/* Closes (at once, abandoning any request: no callback follows) and frees
 * when libuv is done with it. Accepts NULL. */
void op_https_close(op_https *c);

/* Starts a request; connects first if needed. The head is copied. -EBUSY
 * during another request; -EPIPE when the connection is closed. */
int op_https_request(op_https *c, const char *head, size_t head_len, const op_https_handler *h);

/* The next body chunk (copied, encrypted and queued at once); len 0 ends
 * the body. */
void op_https_body_write(op_https *c, const void *data, size_t len);

/* The body cannot be produced: the request fails (stage OP_HTTPS_BODY) and
 * the connection closes, so the server never sees a complete body. */
void op_https_body_fail(op_https *c, const char *why);

/* Can another request be sent on this connection? */
int op_https_reusable(const op_https *c);

/* Bytes written to the network (TLS records included) since open. */
uint64_t op_https_bytes_out(const op_https *c);

/* This connection's writes go first at the shaper (an urgent study). */
void op_https_set_urgent(op_https *c, int urgent);

/* The shaper's rate changed: a write held back asks again now. */
void op_https_reshape(op_https *c);

#endif
