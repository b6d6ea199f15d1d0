/*
 * console: the HTTP/1.1 server of the status API and the web console, on
 * the uplink's libuv loop (docs/API.md).
 *
 * Two listeners: [console] listen (TCP; HTTPS with mbedTLS when tls_cert
 * and tls_key are set) and [console] socket (a Unix socket for outpostctl,
 * trusted as the local administrator). Requests are framed by Debian's
 * libhttp-parser (request.c), answered one at a time per connection in
 * the order they came (keep-alive); a request's body is held in memory,
 * at most 64 KiB, unless the handler streams it (op_console_receive()).
 *
 * This module only frames: what a request means is the handler's (api.c).
 * The handler answers with op_console_reply(), now or later (after work on
 * the thread pool); the request stays valid until then, even when the
 * client has gone.
 *
 * Loop thread only.
 */
#ifndef OP_CONSOLE_H
#define OP_CONSOLE_H

#include <stddef.h>
#include <uv.h>

#include "common/config.h"
#include "uplink/request.h"

typedef struct op_console op_console;
typedef struct op_console_req op_console_req;

typedef void (*op_console_handler)(void *ctx, op_console_req *req);

/*
 * Listens on cfg's listeners. A listener that cannot be opened is logged
 * (event=console.listen, with what to do) and left out: the uplink's work
 * does not depend on its console. -EINVAL with the reason in err when the
 * TLS certificate or key cannot be loaded.
 */
int op_console_open(uv_loop_t *loop, const op_console_config *cfg, op_console_handler handler,
		    void *ctx, op_console **out, char *err, size_t errlen);

/* Closes the listeners and every connection; requests not yet answered
 * are answered by nobody (their op_console_reply() frees them). Accepts
 * NULL. */
void op_console_close(op_console *c);

/* The request: method, path, headers, body (request.h). */
const op_request *op_console_request(const op_console_req *r);
/* Came on the Unix socket? */
int op_console_is_local(const op_console_req *r);
/* Came over TLS? */
int op_console_is_tls(const op_console_req *r);
/* The client's address ("127.0.0.1"), or "local" on the Unix socket. */
const char *op_console_peer(const op_console_req *r);

/*
 * A request whose body is announced as over 64 KiB comes to the handler
 * with its headers only: op_console_streamed() is 1. The handler either
 * answers it (the connection then ends, the body unread) or takes the body
 * with op_console_receive(). data gets the body piece by piece as it
 * arrives, returning 0, or an HTTP status to refuse the rest. end then
 * gets 0 when the body is complete, that status (or 400 for a malformed
 * one), or -1 when the client has gone; the handler answers the request
 * from end or later, in every case (op_console_reply() drops an answer
 * to a client that has gone). A body small enough to have been held goes
 * to data in one piece, then to end, before op_console_receive() returns.
 */
typedef int (*op_console_data)(void *ctx, const void *data, size_t len);
typedef void (*op_console_end)(void *ctx, op_console_req *req, int status);
int op_console_streamed(const op_console_req *r);
void op_console_receive(op_console_req *r, op_console_data data, op_console_end end, void *ctx);

/*
 * Answers and frees the request. extra_headers: complete "Name: value\r\n"
 * lines, or NULL. When the connection is gone the answer is dropped.
 */
void op_console_reply(op_console_req *r, int status, const char *content_type,
		      const char *extra_headers, const void *body, size_t len);

#endif
