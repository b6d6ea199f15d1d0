/*
 * https: HTTP/1.1 over mbedTLS over a libuv TCP stream (see https.h).
 *
 * mbedTLS is given two callbacks instead of a socket: send() appends the
 * records it produces to an output buffer that is handed to uv_write()
 * whole, and recv() takes from the bytes uv_read() delivered (or answers
 * WANT_READ). The handshake and the reading of responses advance each time
 * bytes arrive.
 */
#include "uplink/https.h"

#include <errno.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

#define IN_CAP (64 * 1024)          /* ciphertext received, not yet decrypted */
#define RESPONSE_BODY_MAX (1 << 20) /* STOW-RS results are small */

enum state { NEW, RESOLVING, CONNECTING, HANDSHAKE, READY, BUSY, CLOSED };

struct out_req {
	uv_write_t req;
	op_https *c;
	size_t len;
	unsigned char data[];
};

struct op_https {
	uv_loop_t *loop;
	op_tls *tls;
	char host[256];
	char port[8];
	int timeout_ms;
	enum state state;

	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_timer_t shape_timer; /* releases a write the shaper held back */
	uv_getaddrinfo_t gai;
	uv_connect_t connect;
	struct addrinfo *addrs, *addr; /* resolved; addr: the one connected to */
	int handles;                   /* open libuv handles; freed when 0 and closed by the user */
	int user_closed;

	mbedtls_ssl_context ssl;
	unsigned char in_buf[IN_CAP];
	op_tls_input in;     /* over in_buf */
	struct out_req *out; /* records being gathered for one uv_write */
	size_t out_cap;
	struct out_req *held; /* gathered, waiting for the shaper's tokens */
	int writes_pending;
	uint64_t bytes_out;
	op_shaper *shaper; /* shared by all connections; NULL: unshaped */
	op_shaper *cap;    /* a second bucket a write must also pass; NULL: none */
	int urgent, scavenger;

	/* the request */
	op_https_handler h;
	char *head;
	size_t head_len;
	int body_done, waiting_chunk, requests_done;
	op_http_response *resp;
};

static void fail(op_https *c, enum op_https_stage stage, const char *why);
static void pump_body(op_https *c);

/* --- handles ----------------------------------------------------------------- */

static void maybe_free(op_https *c)
{
	if (c->handles > 0 || !c->user_closed)
		return;
	if (c->addrs)
		uv_freeaddrinfo(c->addrs);
	mbedtls_ssl_free(&c->ssl);
	op_tls_close(c->tls);
	op_http_response_close(c->resp);
	free(c->out);
	free(c->held);
	free(c->head);
	free(c);
}

static void on_handle_closed(uv_handle_t *handle)
{
	op_https *c = handle->data;

	c->handles--;
	maybe_free(c);
}

/* Closes the socket and the timer; the object stays until the user closes
 * it too. */
static void shut(op_https *c)
{
	if (c->state == CLOSED)
		return;
	c->state = CLOSED;
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->shape_timer))
		uv_close((uv_handle_t *)&c->shape_timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
	fail(t->data, OP_HTTPS_TIMEOUT, "no progress within the timeout");
}

/* Bytes moved: the request is alive. (Bytes our own shaper holds back are
 * not the peer's fault: the timeout waits while they wait.) */
static void progress(op_https *c)
{
	if (c->state != CLOSED && c->h.on_response)
		uv_timer_start(&c->timer, on_timeout, (uint64_t)c->timeout_ms, 0);
}

/* The request ends (failed or answered): no more timeouts for it. */
static void request_over(op_https *c)
{
	if (c->state != CLOSED)
		uv_timer_stop(&c->timer);
	memset(&c->h, 0, sizeof(c->h));
}

static void fail(op_https *c, enum op_https_stage stage, const char *why)
{
	op_https_handler h = c->h;
	int was_idle = h.on_failure == NULL;

	request_over(c);
	shut(c);
	if (!was_idle)
		h.on_failure(h.ctx, c, stage, why);
}

/* --- mbedTLS I/O ----------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
	struct out_req *o = (struct out_req *)req;
	op_https *c = o->c;

	c->writes_pending--;
	free(o);
	if (c->state == CLOSED)
		return;
	if (status < 0) {
		/* Nothing of the response yet on a reused connection: the
		 * server had closed it while it was idle. */
		int stale = c->requests_done > 0 && !op_http_response_started(c->resp);
		/* During the handshake no byte of the request has left. */
		fail(c,
		     c->state == HANDSHAKE ? OP_HTTPS_TLS
		     : stale               ? OP_HTTPS_STALE
					   : OP_HTTPS_SEND,
		     uv_strerror(status));
		return;
	}
	progress(c);
	if (c->state == BUSY && c->writes_pending == 0 && !c->held)
		pump_body(c);
}

static int flush(op_https *c);

static void on_shape_timer(uv_timer_t *t)
{
	op_https *c = t->data;

	if (c->state != CLOSED && flush(c) < 0)
		fail(c, OP_HTTPS_SEND, "cannot write to the socket");
}

/* Hands the gathered records to libuv, when the shaper has tokens for
 * them; else holds them and asks again when it should have. */
static int flush(op_https *c)
{
	struct out_req *o;
	uv_buf_t buf;
	uint64_t wait;
	int rc;

	if (!c->held) {
		if (!c->out || c->out->len == 0)
			return 0;
		c->held = c->out;
		c->out = NULL;
		c->out_cap = 0;
	}
	o = c->held;
	wait = op_shaper_take2(c->shaper, c->cap, o->len, c->urgent, op_clock_mono_ns());
	if (wait) {
		uv_timer_stop(&c->timer);
		if (wait != OP_SHAPER_WAIT_FOREVER)
			uv_timer_start(&c->shape_timer, on_shape_timer, wait / 1000000 + 1, 0);
		return 0; /* paused: op_https_reshape() releases it */
	}
	c->held = NULL;
	o->c = c;
	buf = uv_buf_init((char *)o->data, (unsigned)o->len);
	rc = uv_write(&o->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
	if (rc < 0) {
		free(o);
		return rc;
	}
	c->writes_pending++;
	c->bytes_out += o->len;
	progress(c);
	/* Records gathered while these waited go next. */
	return c->out && c->out->len ? flush(c) : 0;
}

static int tls_send(void *ctx, const unsigned char *data, size_t len)
{
	op_https *c = ctx;
	size_t have = c->out ? c->out->len : 0;

	if (have + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 32 * 1024;
		struct out_req *o;

		while (cap < have + len)
			cap *= 2;
		o = realloc(c->out, sizeof(*o) + cap);
		if (!o)
			return MBEDTLS_ERR_SSL_ALLOC_FAILED;
		if (!c->out)
			o->len = 0;
		c->out = o;
		c->out_cap = cap;
	}
	memcpy(c->out->data + c->out->len, data, len);
	c->out->len += len;
	return (int)len;
}

static int tls_recv(void *ctx, unsigned char *buf, size_t len)
{
	return op_tls_input_take(&((op_https *)ctx)->in, buf, len);
}

/* Encrypts and queues all of data. */
static int tls_write_all(op_https *c, const unsigned char *data, size_t len)
{
	while (len > 0) {
		int n = mbedtls_ssl_write(&c->ssl, data, len);
		if (n <= 0)
			return n == 0 ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : n;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* --- requests ------------------------------------------------------------------ */

static void pump_body(op_https *c)
{
	if (c->body_done || c->waiting_chunk || c->writes_pending > 0 || c->held)
		return;
	c->waiting_chunk = 1;
	c->h.next_chunk(c->h.ctx, c);
}

static void start_request(op_https *c)
{
	int rc;

	c->state = BUSY;
	op_http_response_reset(c->resp);
	c->body_done = c->waiting_chunk = 0;
	progress(c);
	rc = tls_write_all(c, (const unsigned char *)c->head, c->head_len);
	if (rc == 0)
		rc = flush(c) < 0 ? MBEDTLS_ERR_NET_SEND_FAILED : 0;
	if (rc != 0) {
		char why[128];
		mbedtls_strerror(rc, why, sizeof(why));
		fail(c, OP_HTTPS_SEND, why);
	}
}

void op_https_body_write(op_https *c, const void *data, size_t len)
{
	int rc;

	if (c->state != BUSY || !c->waiting_chunk)
		return; /* the request ended meanwhile (response, failure) */
	c->waiting_chunk = 0;
	if (len == 0) {
		c->body_done = 1;
		return;
	}
	rc = tls_write_all(c, data, len);
	if (rc == 0 && flush(c) < 0)
		rc = MBEDTLS_ERR_NET_SEND_FAILED;
	if (rc != 0) {
		char why[128];
		mbedtls_strerror(rc, why, sizeof(why));
		fail(c, OP_HTTPS_SEND, why);
	}
}

void op_https_body_fail(op_https *c, const char *why)
{
	if (c->state == BUSY)
		fail(c, OP_HTTPS_BODY, why);
}

static void response_complete(op_https *c)
{
	op_https_handler h = c->h;

	c->requests_done++;
	/* A response before the whole body was sent (e.g. 401, 413) leaves
	 * the request half-written: the connection cannot carry another. */
	if (!c->body_done || c->waiting_chunk || !op_http_response_keep_alive(c->resp))
		shut(c);
	else
		c->state = READY;
	request_over(c);
	h.on_response(h.ctx, c, c->resp);
}

/* The peer ended the connection (TLS close_notify or TCP EOF). */
static void peer_closed(op_https *c)
{
	int complete = 0;

	if (c->state != BUSY) {
		shut(c); /* an idle kept-alive connection: nothing to tell */
		return;
	}
	if (!op_http_response_started(c->resp)) {
		fail(c, c->requests_done > 0 ? OP_HTTPS_STALE : OP_HTTPS_RECEIVE,
		     "connection closed before a response");
		return;
	}
	if (op_http_response_eof(c->resp, &complete) < 0 || !complete) {
		fail(c, OP_HTTPS_RECEIVE, op_http_response_error(c->resp));
		return;
	}
	response_complete(c);
}

/* Decrypts what arrived and feeds the response reader. */
static void read_records(op_https *c)
{
	char plain[16384];
	int complete = 0;

	while (c->state == BUSY || c->state == READY) {
		int n = mbedtls_ssl_read(&c->ssl, (unsigned char *)plain, sizeof(plain));

		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			break;
		if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
			peer_closed(c);
			return;
		}
		if (n < 0) {
			char why[128];
			mbedtls_strerror(n, why, sizeof(why));
			fail(c, OP_HTTPS_RECEIVE, why);
			return;
		}
		if (c->state == READY) {
			shut(c); /* bytes nobody asked for: not a server to keep */
			return;
		}
		if (op_http_response_feed(c->resp, plain, (size_t)n, &complete) < 0) {
			fail(c, OP_HTTPS_RECEIVE, op_http_response_error(c->resp));
			return;
		}
		if (complete) {
			response_complete(c);
			return;
		}
	}
}

static void handshake(op_https *c)
{
	char why[256];
	int rc = mbedtls_ssl_handshake(&c->ssl);

	if (flush(c) < 0) {
		fail(c, OP_HTTPS_CONNECT, "cannot write to the socket");
		return;
	}
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		return;
	if (rc != 0) {
		op_tls_explain(&c->ssl, rc, why, sizeof(why));
		fail(c, OP_HTTPS_TLS, why);
		return;
	}
	if (op_tls_established(c->tls, &c->ssl, why, sizeof(why)) < 0) {
		fail(c, OP_HTTPS_TLS, why);
		return;
	}
	start_request(c);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	op_https *c = handle->data;

	(void)suggested;
	op_tls_input_compact(&c->in); /* keep the unread bytes at the front */
	*buf = uv_buf_init((char *)c->in.data + c->in.len, (unsigned)(IN_CAP - c->in.len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	op_https *c = stream->data;

	(void)buf;
	if (c->state == CLOSED)
		return;
	if (nread == UV_EOF) {
		if (c->state == HANDSHAKE)
			fail(c, OP_HTTPS_TLS,
			     "the server closed the connection during the handshake");
		else
			peer_closed(c);
		return;
	}
	if (nread < 0) {
		int stale = c->state == BUSY && c->requests_done > 0 &&
			    !op_http_response_started(c->resp);
		fail(c,
		     c->state == HANDSHAKE ? OP_HTTPS_TLS
		     : stale               ? OP_HTTPS_STALE
					   : OP_HTTPS_RECEIVE,
		     uv_strerror((int)nread));
		return;
	}
	if (nread == 0)
		return;
	c->in.len += (size_t)nread;
	progress(c);
	if (c->state == HANDSHAKE)
		handshake(c);
	else
		read_records(c);
}

/* --- connecting ---------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status)
{
	op_https *c = req->data;

	if (c->state == CLOSED)
		return;
	if (status < 0) {
		fail(c, OP_HTTPS_CONNECT, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (c->scavenger) {
		uv_os_fd_t fd;
		/* TCP-LP yields to other traffic; the uplink checked at start
		 * that the kernel offers it. */
		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "lp", 2);
	}
	c->state = HANDSHAKE;
	mbedtls_ssl_set_bio(&c->ssl, c, tls_send, tls_recv, NULL);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
		fail(c, OP_HTTPS_CONNECT, "cannot read from the socket");
		return;
	}
	progress(c);
	handshake(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	op_https *c = req->data;
	char why[320];
	int rc;

	c->handles--; /* the getaddrinfo request */
	if (c->user_closed || c->state == CLOSED) {
		if (res)
			uv_freeaddrinfo(res);
		maybe_free(c);
		return;
	}
	if (status < 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", c->host, uv_strerror(status));
		fail(c, OP_HTTPS_CONNECT, why);
		return;
	}
	/* IPv4 first: hospital networks are, and "localhost" resolving to ::1
	 * first must not miss a server listening on 127.0.0.1. */
	c->addrs = c->addr = res;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		if (a->ai_family == AF_INET) {
			c->addr = a;
			break;
		}
	}
	c->state = CONNECTING;
	if (op_tls_setup(c->tls, &c->ssl, c->host) < 0) {
		fail(c, OP_HTTPS_TLS, "cannot set up TLS");
		return;
	}
	c->connect.data = c;
	rc = uv_tcp_connect(&c->connect, &c->tcp, c->addr->ai_addr, on_connect);
	if (rc < 0)
		fail(c, OP_HTTPS_CONNECT, uv_strerror(rc));
}

static void resolve(op_https *c)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	int rc;

	c->state = RESOLVING;
	c->gai.data = c;
	progress(c);
	rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, c->port, &hints);
	if (rc < 0) {
		fail(c, OP_HTTPS_CONNECT, uv_strerror(rc));
		return;
	}
	c->handles++;
}

/* --- API ----------------------------------------------------------------------- */

int op_https_open(uv_loop_t *loop, op_tls *tls, const op_https_options *opt, op_https **out)
{
	op_https *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	rc = op_http_response_open(RESPONSE_BODY_MAX, &c->resp);
	if (rc < 0) {
		free(c);
		return rc;
	}
	c->loop = loop;
	c->in.data = c->in_buf;
	c->tls = op_tls_ref(tls); /* released in maybe_free() */
	snprintf(c->host, sizeof(c->host), "%s", opt->host);
	snprintf(c->port, sizeof(c->port), "%u", opt->port);
	c->timeout_ms = opt->timeout_s * 1000;
	c->shaper = opt->shaper;
	c->cap = opt->cap;
	c->scavenger = opt->scavenger;
	mbedtls_ssl_init(&c->ssl);
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	uv_timer_init(loop, &c->shape_timer);
	c->tcp.data = c->timer.data = c->shape_timer.data = c;
	c->handles = 3;
	c->state = NEW;
	*out = c;
	return 0;
}

void op_https_close(op_https *c)
{
	if (!c || c->user_closed)
		return;
	c->user_closed = 1;
	memset(&c->h, 0, sizeof(c->h)); /* no callback after close */
	if (c->state == RESOLVING)
		uv_cancel((uv_req_t *)&c->gai);
	shut(c);
	maybe_free(c);
}

int op_https_request(op_https *c, const char *head, size_t head_len, const op_https_handler *h)
{
	char *copy;

	if (c->state == CLOSED || c->user_closed)
		return -EPIPE;
	if (c->state != NEW && c->state != READY)
		return -EBUSY;
	copy = malloc(head_len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, head, head_len);
	free(c->head);
	c->head = copy;
	c->head_len = head_len;
	c->h = *h;
	if (c->state == NEW)
		resolve(c);
	else
		start_request(c);
	return 0;
}

int op_https_reusable(const op_https *c)
{
	return c->state == READY && !c->user_closed;
}

uint64_t op_https_bytes_out(const op_https *c)
{
	return c->bytes_out;
}

void op_https_set_urgent(op_https *c, int urgent)
{
	c->urgent = urgent;
}

void op_https_reshape(op_https *c)
{
	if (c->state != CLOSED && c->held) {
		uv_timer_stop(&c->shape_timer);
		if (flush(c) < 0)
			fail(c, OP_HTTPS_SEND, "cannot write to the socket");
	}
}
