/*
 * httpd: HTTP/1.1 framing for the status API and the web console (see
 * httpd.h).
 *
 * A connection's bytes go: socket -> (TLS: mbedTLS reads the ciphertext
 * from conn->in) -> the request parser (request.c). When a request is
 * complete, bytes that follow wait in conn->pending, and the socket is not
 * read, until the answer has been written. A streamed body goes from the
 * parser to the handler's data callback (op_httpd_receive()). Limits:
 * those of request.h; 64 TCP connections, MAX_PER_PEER of them from one
 * address, and 16 on the Unix socket, each counted apart, so that nothing
 * on the network can keep outpostctl out; a request's headers complete
 * HEAD_MS after its first byte (a new connection's after the accept);
 * 60 s without a byte (a body too: an upload may take long but not stall);
 * the answers a client has not read kept under OUT_MAX, its socket not
 * read meanwhile.
 *
 * One job, one file (about 800 lines): a connection's life, from accept
 * through TLS and framing to the answer and the close, is one state
 * machine over struct conn whose callbacks call each other; only the
 * listeners stand apart, and they are too small to be a module.
 */
#include "console/httpd.h"

#include <errno.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "uplink/tls.h"

#define MAX_CONNS 64 /* TCP */
#define MAX_LOCAL 16 /* the Unix socket */
#define MAX_PER_PEER 8
#define HEAD_MS 10000
#define OUT_MAX (64 * 1024)  /* answers queued for a client that does not read */
#define REFUSED_LOG_MS 10000 /* refused connections: a log line at most this often */
#define PENDING_BYTES (OP_REQUEST_BODY_MAX + OP_REQUEST_HEADERS_MAX + OP_REQUEST_URL_MAX)
#define IDLE_MS 60000
#define DRAIN_MS 5000 /* a refused body's client, quiet this long, is closed */

/* A TCP or Unix socket handle, seen as whichever libuv needs. */
union stream {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_tcp_t tcp;
	uv_pipe_t pipe;
};

struct listener {
	union stream h;
	op_httpd *httpd;
	int local;
	int open;
};

struct op_httpd {
	uv_loop_t *loop;
	op_httpd_handler handler;
	void *ctx;
	struct listener tcp, unix_sock;
	char socket_path[sizeof(((op_console_config *)0)->socket)];
	struct conn *conns; /* all open connections */
	int n_tcp, n_local;
	op_cidr allowed[OP_LIST_MAX]; /* [console] allowed_hosts */
	int n_allowed;
	/* Connections refused at accept since the last log line about them. */
	int refused;
	uint64_t refused_logged;
	char why[96]; /* admit()'s answer, when made up */

	op_tls *tls; /* the TCP listener speaks HTTPS: each connection holds it */
};

struct op_httpd_req {
	struct conn *conn; /* NULL once the connection is gone */
	op_request *r;
	int local, tls;
	int unread; /* a streamed body not read to its end: the connection ends */
	char peer[64];
	op_httpd_data data;
	op_httpd_end end;
	void *ctx;
};

struct conn {
	union stream h;
	uv_timer_t idle;
	uv_timer_t head; /* HEAD_MS: a request's headers, from its first byte */
	op_httpd *httpd;
	struct conn *next, **prev;
	int closing;
	int local;
	char peer[64];

	op_request_parser parser;
	op_httpd_req *req;       /* being answered */
	op_httpd_req *receiving; /* its streamed body being read */
	int busy;
	int stopped;         /* reading stopped while busy */
	int eof;             /* the client has sent all it will: close after the answer */
	int draining;        /* answered before its body: dropping the rest (drain()) */
	int backlog;         /* over OUT_MAX of answers unsent: not read until they drain */
	int resuming, again; /* in resume(); asked to go on */
	uv_shutdown_t shutdown;

	unsigned char *pending; /* plaintext that came while busy */
	size_t pending_len;
	size_t pending_off; /* taken so far (resume()) */
	int from_pending;   /* feed() is reading pending itself */

	op_tls *tls; /* HTTPS: the listener's configuration */
	int handshaken;
	mbedtls_ssl_context ssl;
	op_tls_input in; /* ciphertext not yet read by mbedTLS */
};

static void conn_close(struct conn *c);
static void feed(struct conn *c, const char *data, size_t len);

/* --- requests ---------------------------------------------------------------- */

const op_request *op_httpd_request(const op_httpd_req *r)
{
	return r->r;
}

int op_httpd_streamed(const op_httpd_req *r)
{
	return r->r && op_request_streamed(r->r);
}

int op_httpd_is_local(const op_httpd_req *r)
{
	return r->local;
}

int op_httpd_is_tls(const op_httpd_req *r)
{
	return r->tls;
}

const char *op_httpd_peer(const op_httpd_req *r)
{
	return r->peer;
}

int op_httpd_gone(const op_httpd_req *r)
{
	return r->conn == NULL;
}

static void req_free(op_httpd_req *r)
{
	if (!r)
		return;
	op_request_free(r->r);
	free(r);
}

/* --- writing ----------------------------------------------------------------- */

struct write_req {
	uv_write_t w;
	struct conn *c;
	int close_after;
	char data[];
};

static void resume(struct conn *c);

/* libuv calls back every write, cancelled ones too, before the stream's
 * close callback: wr->c is still there. */
static void on_written(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct conn *c = wr->c;
	int close_after = wr->close_after;

	free(wr);
	if (status < 0 || close_after || c->closing) {
		conn_close(c);
		return;
	}
	if (c->backlog && c->h.stream.write_queue_size <= OUT_MAX / 2) {
		c->backlog = 0;
		resume(c);
	}
}

/* Queues bytes for the socket (copied). */
static int raw_write(struct conn *c, const void *data, size_t len, int close_after)
{
	struct write_req *wr;
	uv_buf_t buf;

	if (c->closing)
		return -EPIPE;
	wr = malloc(sizeof(*wr) + len);
	if (!wr)
		return -ENOMEM;
	wr->c = c;
	wr->close_after = close_after;
	memcpy(wr->data, data, len);
	buf = uv_buf_init(wr->data, (unsigned)len);
	if (uv_write(&wr->w, &c->h.stream, &buf, 1, on_written) < 0) {
		free(wr);
		conn_close(c);
		return -EPIPE;
	}
	return 0;
}

/* mbedTLS's output: straight to the socket (libuv queues it). */
static int tls_send(void *ctx, const unsigned char *buf, size_t len)
{
	return raw_write(ctx, buf, len, 0) < 0 ? MBEDTLS_ERR_NET_SEND_FAILED : (int)len;
}

/* mbedTLS's input: the ciphertext read so far. */
static int tls_recv(void *ctx, unsigned char *buf, size_t len)
{
	return op_tls_input_take(&((struct conn *)ctx)->in, buf, len);
}

static int conn_write(struct conn *c, const void *data, size_t len, int close_after)
{
	const unsigned char *p = data;

	if (!c->tls)
		return raw_write(c, data, len, close_after);
	while (len > 0) {
		int n = mbedtls_ssl_write(&c->ssl, p, len);

		if (n < 0) {
			conn_close(c);
			return -EPIPE;
		}
		p += n;
		len -= (size_t)n;
	}
	if (close_after) {
		mbedtls_ssl_close_notify(&c->ssl);
		return raw_write(c, "", 0, 1);
	}
	return 0;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Status";
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_idle(uv_timer_t *t);
static void on_head(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (status < 0 && !c->closing)
		conn_close(c);
}

/*
 * An answer sent before the request's body was read (a refusal): the
 * client may still be sending the body, and a close now would reset the
 * connection, losing the answer before the client reads it. So our side
 * ends (TLS close_notify, then FIN once the answer is out) and what still
 * comes is dropped, until the client closes or is quiet for DRAIN_MS.
 */
static void drain(struct conn *c)
{
	c->draining = 1;
	if (c->tls)
		mbedtls_ssl_close_notify(&c->ssl);
	c->shutdown.data = c;
	if (uv_shutdown(&c->shutdown, &c->h.stream, on_shutdown) < 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->idle, on_idle, DRAIN_MS, DRAIN_MS);
	if (c->stopped) {
		c->stopped = 0;
		if (uv_read_start(&c->h.stream, on_alloc, on_read) < 0)
			conn_close(c);
	}
}

void op_httpd_reply(op_httpd_req *r, int status, const char *content_type,
		    const char *extra_headers, const void *body, size_t len)
{
	struct conn *c = r->conn;
	int keep_alive = r->r && op_request_keep_alive(r->r) && !r->unread && c && !c->eof;
	int unread = r->unread && c && !c->eof;
	/* HEAD: GET's headers, Content-Length included, without the body. */
	int head_only = r->r && strcmp(op_request_method(r->r), "HEAD") == 0;
	char head[2048];
	char *out;
	int n;

	if (c) {
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\n"
			     "Content-Type: %s\r\n"
			     "Content-Length: %zu\r\n"
			     "Cache-Control: no-store\r\n"
			     "X-Content-Type-Options: nosniff\r\n"
			     "X-Frame-Options: DENY\r\n"
			     "%s%s"
			     "Connection: %s\r\n\r\n",
			     status, status_text(status),
			     content_type ? content_type : "text/plain", len,
			     /* A browser that has seen the console over TLS
			      * never tries it in clear again. */
			     c->tls ? "Strict-Transport-Security: max-age=31536000\r\n" : "",
			     extra_headers ? extra_headers : "",
			     keep_alive ? "keep-alive" : "close");
		out = malloc((size_t)n + len);
		if (n > 0 && (size_t)n < sizeof(head) && out) {
			memcpy(out, head, (size_t)n);
			if (head_only)
				len = 0;
			if (len)
				memcpy(out + n, body, len);
			if (conn_write(c, out, (size_t)n + len, !keep_alive && !unread) == 0) {
				if (keep_alive) {
					c->req = NULL;
					c->busy = 0;
					free(out);
					req_free(r);
					/* A client that sends requests but does not
					 * read the answers: the answers wait in
					 * memory up to OUT_MAX, then the client. */
					if (c->h.stream.write_queue_size > OUT_MAX) {
						c->backlog = 1;
						if (!c->stopped) {
							uv_read_stop(&c->h.stream);
							c->stopped = 1;
						}
						return;
					}
					resume(c);
					return;
				}
				if (unread)
					drain(c);
			}
		} else {
			conn_close(c);
		}
		free(out);
		if (c->req == r)
			c->req = NULL;
	}
	req_free(r);
}

/* A request the parser refused: answered here, then the connection ends. */
static void reply_error(struct conn *c, int status, const char *why)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"error\": \"%s\"}", why);
	op_httpd_req *r = calloc(1, sizeof(*r)); /* no request: the connection ends */

	if (!r) {
		conn_close(c);
		return;
	}
	c->req = r;
	r->conn = c;
	c->busy = 1;
	op_httpd_reply(r, status, "application/json", NULL, body, (size_t)n);
}

/* Appends to one of the connection's buffers, keeping it under
 * PENDING_BYTES: a client that sends without waiting for answers, or
 * records mbedTLS cannot complete, is cut off. 0, or -1 once closed. */
static int append(struct conn *c, unsigned char **buf, size_t *len, const char *data, size_t n)
{
	unsigned char *p;

	if (n == 0)
		return 0;
	if (*len + n > PENDING_BYTES || !(p = realloc(*buf, *len + n))) {
		conn_close(c);
		return -1;
	}
	memcpy(p + *len, data, n);
	*buf = p;
	*len += n;
	return 0;
}

/* Bytes that come while a request is being answered wait for its answer;
 * the socket is not read meanwhile: the client waits, not memory. */
static void hold(struct conn *c, const char *data, size_t len)
{
	/* The rest of pending itself, being fed by resume(): it stays where
	 * it is (a copy per request would cost the square of their number). */
	if (c->from_pending) {
		c->pending_off = (size_t)((const unsigned char *)data - c->pending);
		len = 0;
	}
	if (len && append(c, &c->pending, &c->pending_len, data, len) == 0 && !c->stopped) {
		uv_read_stop(&c->h.stream);
		c->stopped = 1;
	}
}

/* Plaintext from the client. */
static void feed(struct conn *c, const char *data, size_t len)
{
	op_request *done;
	op_httpd_req *r;
	size_t used;
	int rc;

	if (c->closing)
		return;
	if (c->busy || c->backlog) {
		hold(c, data, len);
		return;
	}
	/* A request's first byte starts its header deadline. */
	if (!c->receiving && len && !uv_is_active((uv_handle_t *)&c->head))
		uv_timer_start(&c->head, on_head, HEAD_MS, 0);
	rc = op_request_parse(&c->parser, data, len, &used, &done);
	if (c->receiving) {
		if (rc == 0)
			return;
		/* The body has ended, or was refused (by the data callback, or
		 * as malformed). */
		r = c->receiving;
		c->receiving = NULL;
		c->busy = 1;
		if (rc == 1) {
			r->unread = 0;
			hold(c, data + used, len - used);
		}
		r->end(r->ctx, r, rc == 1 ? 0 : -rc);
		return;
	}
	if (rc == 1 || rc == 2) {
		uv_timer_stop(&c->head);
		r = calloc(1, sizeof(*r));
		if (!r) {
			op_request_free(done);
			conn_close(c);
			return;
		}
		r->conn = c;
		r->r = done;
		r->local = c->local;
		r->tls = c->tls != NULL;
		r->unread = rc == 2;
		snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
		c->req = r;
		c->busy = 1;
		hold(c, data + used, len - used);
		if (!c->closing)
			c->httpd->handler(c->httpd->ctx, r);
		return;
	}
	if (rc < 0)
		reply_error(c, -rc,
			    rc == -413   ? "request body too large (at most 64 KiB)"
			    : rc == -414 ? "URL too long"
			    : rc == -431 ? "request headers too large"
			    : rc == -500 ? "out of memory"
					 : "malformed HTTP request");
}

/* After an answer: the requests that came meanwhile. An answer made at
 * once (a cached /healthz) calls this again from inside feed(): that call
 * only asks this loop to go on, so that a client's pipelined requests are
 * taken one after another, not each inside the last (the stack, and every
 * level's copy of what is pending, would grow with their number). */
static void resume(struct conn *c)
{
	if (c->closing)
		return;
	if (c->resuming) {
		c->again = 1;
		return;
	}
	c->resuming = 1;
	do {
		size_t off = c->pending_off;

		c->again = 0;
		if (off == c->pending_len)
			break;
		/* All taken, unless feed() holds the rest (hold()). */
		c->pending_off = c->pending_len;
		c->from_pending = 1;
		feed(c, (const char *)c->pending + off, c->pending_len - off);
		c->from_pending = 0;
	} while (c->again && !c->closing && !c->busy && !c->backlog);
	c->resuming = 0;
	if (!c->closing && c->pending_off == c->pending_len) {
		free(c->pending);
		c->pending = NULL;
		c->pending_len = c->pending_off = 0;
	} else if (!c->closing && c->pending_off) {
		/* What is left goes to the front, where hold() appends after it. */
		memmove(c->pending, c->pending + c->pending_off, c->pending_len - c->pending_off);
		c->pending_len -= c->pending_off;
		c->pending_off = 0;
	}
	if (!c->closing && !c->busy && !c->backlog && c->stopped) {
		c->stopped = 0;
		if (uv_read_start(&c->h.stream, on_alloc, on_read) < 0)
			conn_close(c);
	}
}

static int sink(void *ctx, const char *data, size_t len)
{
	op_httpd_req *r = ctx;

	return r->data(r->ctx, data, len);
}

void op_httpd_receive(op_httpd_req *r, op_httpd_data data, op_httpd_end end, void *ctx)
{
	struct conn *c = r->conn;
	const char *expect = op_request_header(r->r, "Expect");

	r->data = data;
	r->end = end;
	r->ctx = ctx;
	if (!c) {
		end(ctx, r, -1);
		return;
	}
	if (!r->unread) { /* a small body, read already */
		size_t len;
		const char *body = op_request_body(r->r, &len);
		int rc = len ? data(ctx, body, len) : 0;

		end(ctx, r, rc);
		return;
	}
	c->receiving = r;
	if (expect && strcasecmp(expect, "100-continue") == 0 &&
	    conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, 0) < 0)
		return; /* closed, and end called */
	c->busy = 0;
	op_request_parser_sink(&c->parser, sink, r);
	resume(c);
}

/* --- connections --------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->closing > 0)
		return;
	if (c->tls) {
		mbedtls_ssl_free(&c->ssl);
		op_tls_close(c->tls);
	}
	op_request_parser_free(&c->parser);
	free(c->in.data);
	free(c->pending);
	free(c);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = 3; /* the stream and the timers */
	*c->prev = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->local)
		c->httpd->n_local--;
	else
		c->httpd->n_tcp--;
	if (c->req) {
		/* An answer in preparation finds the connection gone. */
		c->req->conn = NULL;
		c->req = NULL;
	}
	uv_close(&c->h.handle, on_conn_closed);
	uv_close((uv_handle_t *)&c->idle, on_conn_closed);
	uv_close((uv_handle_t *)&c->head, on_conn_closed);
	if (c->receiving) {
		op_httpd_req *r = c->receiving;

		c->receiving = NULL;
		r->end(r->ctx, r, -1);
	}
}

static void on_idle(uv_timer_t *t)
{
	struct conn *c = t->data;

	/* A request being answered (test-link may take long) is not idle. */
	if (c->busy && !c->draining) {
		uv_timer_again(t);
		return;
	}
	conn_close(c);
}

/* Headers still incomplete HEAD_MS after their first byte (or after the
 * accept): a slow client holds no slot for long. */
static void on_head(uv_timer_t *t)
{
	struct conn *c = t->data;

	op_debug("console.timeout", "peer=%s reason=\"request headers not complete in %d s\"",
		 c->peer, HEAD_MS / 1000);
	conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

static void tls_input(struct conn *c, const char *data, size_t len)
{
	unsigned char plain[16384];
	int n;

	/* What mbedTLS has read goes; the rest (a partial record) moves to
	 * the front. */
	op_tls_input_compact(&c->in);
	if (append(c, &c->in.data, &c->in.len, data, len) < 0)
		return;
	if (!c->handshaken) {
		n = mbedtls_ssl_handshake(&c->ssl);
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			return;
		if (n != 0) {
			char why[160];

			mbedtls_strerror(n, why, sizeof(why));
			op_info("console.tls", "peer=%s result=failed reason=\"%s\"", c->peer, why);
			conn_close(c);
			return;
		}
		c->handshaken = 1;
	}
	while (!c->closing) {
		n = mbedtls_ssl_read(&c->ssl, plain, sizeof(plain));
		if (n > 0) {
			feed(c, (const char *)plain, (size_t)n);
			continue;
		}
		if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE)
			conn_close(c); /* close_notify, or an error */
		break;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (c->draining) { /* dropped */
		if (nread < 0)
			conn_close(c);
		else if (nread > 0)
			uv_timer_again(&c->idle);
		free(buf->base);
		return;
	}
	if (nread > 0 && !c->closing) {
		uv_timer_again(&c->idle);
		if (c->tls)
			tls_input(c, buf->base, (size_t)nread);
		else
			feed(c, buf->base, (size_t)nread);
	} else if (nread == UV_EOF && c->busy && !c->closing) {
		/* A half-close after the request: its answer still goes out. */
		c->eof = 1;
		uv_read_stop(s);
	} else if (nread < 0) {
		conn_close(c);
	}
	free(buf->base);
}

/* Logs connections refused at accept, at most one line a REFUSED_LOG_MS:
 * a flood of them must not flood the log. */
static void refused(op_httpd *con, const char *peer, const char *why)
{
	uint64_t now = uv_now(con->loop);

	con->refused++;
	if (con->refused_logged && now - con->refused_logged < REFUSED_LOG_MS)
		return;
	op_warn("console.refused", "peer=%s reason=\"%s\" refused=%d", peer, why, con->refused);
	con->refused = 0;
	con->refused_logged = now;
}

/* Who may stay, decided before the connection counts: on TCP an address
 * in [console] allowed_hosts with fewer than MAX_PER_PEER connections, on
 * the Unix socket root or the uplink's own user (SO_PEERCRED: the file's
 * mode alone would let any member of its group in). NULL, or why not. */
static const char *admit(op_httpd *con, struct conn *c)
{
	int same = 0;

	if (c->local) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		uv_os_fd_t fd;

		if (con->n_local >= MAX_LOCAL)
			return "too many connections on the socket";
		if (uv_fileno(&c->h.handle, &fd) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
			return "no peer credentials";
		snprintf(c->peer, sizeof(c->peer), "local");
		if (cred.uid != 0 && cred.uid != geteuid()) {
			snprintf(con->why, sizeof(con->why),
				 "uid %u is not root or the uplink's user", (unsigned)cred.uid);
			return con->why;
		}
		return NULL;
	} else {
		struct sockaddr_storage ss;
		int len = sizeof(ss);

		if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) < 0 ||
		    ss.ss_family != AF_INET)
			return "no peer address";
		uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
		if (!op_cidr_allows(con->allowed, con->n_allowed,
				    ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr)))
			return "not in [console] allowed_hosts";
		if (con->n_tcp >= MAX_CONNS)
			return "too many connections";
		for (struct conn *o = con->conns; o; o = o->next)
			same += !o->local && strcmp(o->peer, c->peer) == 0;
		if (same >= MAX_PER_PEER)
			return "too many connections from this address";
		return NULL;
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	op_httpd *con = l->httpd;
	struct conn *c;
	const char *why;
	int rc;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->httpd = con;
	c->local = l->local;
	if (l->local)
		rc = uv_pipe_init(con->loop, &c->h.pipe, 0);
	else
		rc = uv_tcp_init(con->loop, &c->h.tcp);
	if (rc < 0) {
		free(c);
		return;
	}
	c->h.handle.data = c;
	uv_timer_init(con->loop, &c->idle);
	uv_timer_init(con->loop, &c->head);
	c->idle.data = c;
	c->head.data = c;
	snprintf(c->peer, sizeof(c->peer), "?");
	why = uv_accept(server, &c->h.stream) < 0 ? "accept failed" : admit(con, c);
	c->next = con->conns;
	if (con->conns)
		con->conns->prev = &c->next;
	c->prev = &con->conns;
	con->conns = c;
	if (l->local)
		con->n_local++;
	else
		con->n_tcp++;
	if (why) {
		/* A client already gone (a reset before the accept) is no news. */
		if (strcmp(why, "no peer address") != 0)
			refused(con, c->peer, why);
		conn_close(c);
		return;
	}
	if (!l->local) {
		int sndbuf = OUT_MAX;

		uv_tcp_nodelay(&c->h.tcp, 1);
		/* The kernel's share of a client's unread answers: bounded too
		 * (its autotuning would hold megabytes of them first). */
		uv_send_buffer_size(&c->h.handle, &sndbuf);
		if (con->tls) {
			mbedtls_ssl_init(&c->ssl);
			c->tls = op_tls_ref(con->tls);
			if (op_tls_setup(c->tls, &c->ssl, NULL) < 0) {
				conn_close(c);
				return;
			}
			mbedtls_ssl_set_bio(&c->ssl, c, tls_send, tls_recv, NULL);
		}
	}
	op_request_parser_init(&c->parser);
	uv_timer_start(&c->idle, on_idle, IDLE_MS, IDLE_MS);
	/* A new connection's first request (and TLS handshake) has HEAD_MS. */
	uv_timer_start(&c->head, on_head, HEAD_MS, 0);
	if (uv_read_start(&c->h.stream, on_alloc, on_read) < 0)
		conn_close(c);
}

/* --- listeners ----------------------------------------------------------------- */

static void listen_failed(const char *what, const char *where, int rc, const char *action)
{
	op_error("console.listen", "listener=%s address=\"%s\" error=\"%s\" action=\"%s\"", what,
		 where, uv_strerror(rc), action);
}

static int listen_tcp(op_httpd *con, const op_console_config *cfg)
{
	struct sockaddr_in addr;
	int rc;

	uv_ip4_addr(cfg->listen_addr, cfg->listen_port, &addr);
	uv_tcp_init(con->loop, &con->tcp.h.tcp);
	con->tcp.open = 1;
	con->tcp.httpd = con;
	con->tcp.h.handle.data = &con->tcp;
	rc = uv_tcp_bind(&con->tcp.h.tcp, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen(&con->tcp.h.stream, 64, on_connection);
	if (rc < 0)
		listen_failed("tcp", cfg->listen, rc,
			      "free the port or change [console] listen; uploading goes on");
	else
		op_info("console.listen", "listener=tcp address=%s tls=%s", cfg->listen,
			con->tls ? "on" : "off");
	return rc;
}

static int listen_unix(op_httpd *con, const op_console_config *cfg)
{
	struct stat st;
	int rc;

	snprintf(con->socket_path, sizeof(con->socket_path), "%s", cfg->socket);
	/* A socket left by a killed uplink would make bind fail. Only a
	 * socket is removed, never another kind of file. */
	if (lstat(cfg->socket, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(cfg->socket);
	uv_pipe_init(con->loop, &con->unix_sock.h.pipe, 0);
	con->unix_sock.open = 1;
	con->unix_sock.local = 1;
	con->unix_sock.httpd = con;
	con->unix_sock.h.handle.data = &con->unix_sock;
	rc = uv_pipe_bind(&con->unix_sock.h.pipe, cfg->socket);
	/* Owner and group only: the file's permissions are the socket's
	 * authentication. */
	if (rc == 0)
		rc = chmod(cfg->socket, 0660) < 0 ? -errno : 0;
	if (rc == 0)
		rc = uv_listen(&con->unix_sock.h.stream, 16, on_connection);
	if (rc < 0) {
		listen_failed("unix", cfg->socket, rc,
			      "check [console] socket's directory; outpostctl will not reach "
			      "this uplink");
		con->socket_path[0] = '\0';
	} else {
		op_info("console.listen", "listener=unix address=%s", cfg->socket);
	}
	return rc;
}

int op_httpd_open(uv_loop_t *loop, const op_console_config *cfg, op_httpd_handler handler,
		  void *ctx, op_httpd **out, char *err, size_t errlen)
{
	op_httpd *con = calloc(1, sizeof(*con));
	int rc = 0;

	*out = NULL;
	if (!con)
		return -ENOMEM;
	con->loop = loop;
	con->handler = handler;
	con->ctx = ctx;
	memcpy(con->allowed, cfg->allowed_hosts, sizeof(con->allowed));
	con->n_allowed = cfg->n_allowed_hosts;
	if (*cfg->listen && *cfg->tls_cert)
		rc = op_tls_open_server(cfg->tls_cert, cfg->tls_key, &con->tls, err, errlen);
	if (rc < 0)
		op_error("console.listen",
			 "listener=tcp error=\"[console] %s\" action=\"fix [console] tls_cert and "
			 "tls_key and restart; the console is not served over the network "
			 "meanwhile\"",
			 err);
	else if (*cfg->listen)
		listen_tcp(con, cfg);
	if (*cfg->socket)
		listen_unix(con, cfg);
	*out = con;
	return 0;
}

static void free_httpd(op_httpd *con)
{
	op_tls_close(con->tls);
	free(con);
}

/* The console is freed when its last open listener has closed. */
static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;

	l->open = 0;
	if (!l->httpd->tcp.open && !l->httpd->unix_sock.open)
		free_httpd(l->httpd);
}

void op_httpd_close(op_httpd *con)
{
	if (!con)
		return;
	while (con->conns)
		conn_close(con->conns);
	if (*con->socket_path)
		unlink(con->socket_path);
	if (!con->tcp.open && !con->unix_sock.open) {
		free_httpd(con);
		return;
	}
	if (con->tcp.open)
		uv_close(&con->tcp.h.handle, on_listener_closed);
	if (con->unix_sock.open)
		uv_close(&con->unix_sock.h.handle, on_listener_closed);
}
