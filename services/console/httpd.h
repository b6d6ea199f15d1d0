/*
 * httpd: the HTTP/1.1 server of the status API and the web console, on
 * the uplink's libuv loop (docs/API.md).
 *
 * Two listeners: [console] listen (TCP; HTTPS with mbedTLS when tls_cert
 * and tls_key are set) and [console] socket (a Unix socket for outpostctl,
 * trusted as the local administrator). Requests are framed by Debian's
 * libhttp-parser (request.c), answered one at a time per connection in
 * the order they came (keep-alive); a request's body is held in memory,
 * at most 64 KiB, unless the handler streams it (op_httpd_receive()).
 *
 * This module only frames: what a request means is the handler's (api.c).
 * The handler answers with op_httpd_reply(), now or later (after work on
 * the thread pool); the request stays valid until then, even when the
 * client has gone.
 *
 * Loop thread only.
 */
#ifndef OP_HTTPD_H
#define OP_HTTPD_H

#include <stddef.h>
#include <uv.h>

#include "common/config.h"
#include "console/request.h"

typedef struct op_httpd op_httpd;
typedef struct op_httpd_req op_httpd_req;

typedef void (*op_httpd_handler)(void *ctx, op_httpd_req *req);

/*
 * Listens on cfg's listeners. A listener that cannot be opened is logged
 * (event=console.listen, with what to do) and left out: the uplink's work
 * does not depend on its console. -EINVAL with the reason in err when the
 * TLS certificate or key cannot be loaded.
 */
int op_httpd_open(uv_loop_t *loop, const op_console_config *cfg, op_httpd_handler handler,
		  void *ctx, op_httpd **out, char *err, size_t errlen);

/* Closes the listeners and every connection; requests not yet answered
 * are answered by nobody (their op_httpd_reply() frees them). Accepts
 * NULL. */
void op_httpd_close(op_httpd *c);

/* The request: method, path, headers, body (request.h). */
const op_request *op_httpd_request(const op_httpd_req *r);
/* Came on the Unix socket? */
int op_httpd_is_local(const op_httpd_req *r);
/* Came over TLS? */
int op_httpd_is_tls(const op_httpd_req *r);
/* The client's address ("127.0.0.1"), or "local" on the Unix socket. */
const char *op_httpd_peer(const op_httpd_req *r);
/* Has the client gone (its answer would be dropped)? */
int op_httpd_gone(const op_httpd_req *r);

/*
 * A request whose body is announced as over 64 KiB comes to the handler
 * with its headers only: op_httpd_streamed() is 1. The handler either
 * answers it (the connection then ends, the body unread) or takes the body
 * with op_httpd_receive(). data gets the body piece by piece as it
 * arrives, returning 0, or an HTTP status to refuse the rest. end then
 * gets 0 when the body is complete, that status (or 400 for a malformed
 * one), or -1 when the client has gone; the handler answers the request
 * from end or later, in every case (op_httpd_reply() drops an answer
 * to a client that has gone). A body small enough to have been held goes
 * to data in one piece, then to end, before op_httpd_receive() returns.
 */
typedef int (*op_httpd_data)(void *ctx, const void *data, size_t len);
typedef void (*op_httpd_end)(void *ctx, op_httpd_req *req, int status);
int op_httpd_streamed(const op_httpd_req *r);
void op_httpd_receive(op_httpd_req *r, op_httpd_data data, op_httpd_end end, void *ctx);

/*
 * Answers and frees the request. extra_headers: complete "Name: value\r\n"
 * lines, or NULL. When the connection is gone the answer is dropped.
 */
void op_httpd_reply(op_httpd_req *r, int status, const char *content_type,
		    const char *extra_headers, const void *body, size_t len);

#endif
