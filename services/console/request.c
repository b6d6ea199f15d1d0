/*
 * request: an HTTP request, framed by http-parser (see request.h).
 *
 * Header names and values are kept in one buffer, NUL-terminated, with
 * their offsets: http-parser hands them over in pieces that may split
 * anywhere, across reads too.
 */
#include "console/request.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct op_request {
	int keep_alive;
	int streamed;
	char method[16];
	char url[OP_REQUEST_URL_MAX];
	char *query;
	char headers[OP_REQUEST_HEADERS_MAX];
	int n_headers;
	unsigned name_off[OP_REQUEST_HEADER_LINES], value_off[OP_REQUEST_HEADER_LINES];
	char *body;
	size_t body_len;
};

const char *op_request_method(const op_request *r)
{
	return r->method;
}

const char *op_request_path(const op_request *r)
{
	return r->url;
}

const char *op_request_query(const op_request *r)
{
	return r->query ? r->query : "";
}

const char *op_request_header(const op_request *r, const char *name)
{
	for (int i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers + r->name_off[i], name) == 0)
			return r->headers + r->value_off[i];
	return NULL;
}

const char *op_request_body(const op_request *r, size_t *len)
{
	if (len)
		*len = r->body_len;
	return r->body ? r->body : "";
}

int op_request_keep_alive(const op_request *r)
{
	return r->keep_alive;
}

int op_request_streamed(const op_request *r)
{
	return r->streamed;
}

void op_request_parser_sink(op_request_parser *p, op_request_sink sink, void *ctx)
{
	p->sink = sink;
	p->sink_ctx = ctx;
}

void op_request_free(op_request *r)
{
	if (!r)
		return;
	free(r->body);
	free(r);
}

static int on_message_begin(http_parser *hp)
{
	op_request_parser *p = hp->data;

	op_request_free(p->req);
	p->req = calloc(1, sizeof(*p->req));
	if (!p->req) {
		p->error = 500;
		return -1;
	}
	p->hlen = 0;
	p->in_value = 0;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	op_request_parser *p = hp->data;
	size_t have = strlen(p->req->url);

	if (have + len >= sizeof(p->req->url)) {
		p->error = 414;
		return -1;
	}
	memcpy(p->req->url + have, at, len);
	p->req->url[have + len] = '\0';
	return 0;
}

static int append_header(op_request_parser *p, const char *at, size_t len)
{
	if (p->hlen + len + 1 >= sizeof(p->req->headers)) {
		p->error = 431;
		return -1;
	}
	memcpy(p->req->headers + p->hlen, at, len);
	p->hlen += len;
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	op_request_parser *p = hp->data;
	op_request *r = p->req;

	if (p->in_value || r->n_headers == 0) {
		if (r->n_headers == OP_REQUEST_HEADER_LINES || p->hlen + 1 >= sizeof(r->headers)) {
			p->error = 431;
			return -1;
		}
		if (r->n_headers)
			r->headers[p->hlen++] = '\0'; /* ends the last value */
		r->name_off[r->n_headers] = (unsigned)p->hlen;
		r->value_off[r->n_headers] = (unsigned)p->hlen; /* until a value comes */
		r->n_headers++;
		p->in_value = 0;
	}
	return append_header(p, at, len);
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	op_request_parser *p = hp->data;
	op_request *r = p->req;

	if (!p->in_value) {
		if (p->hlen + 1 >= sizeof(r->headers)) {
			p->error = 431;
			return -1;
		}
		r->headers[p->hlen++] = '\0'; /* ends the name */
		r->value_off[r->n_headers - 1] = (unsigned)p->hlen;
		p->in_value = 1;
	}
	return append_header(p, at, len);
}

static int on_headers_complete(http_parser *hp)
{
	op_request_parser *p = hp->data;
	op_request *r = p->req;
	char *q;

	if (r->n_headers && p->in_value)
		r->headers[p->hlen++] = '\0';
	else if (r->n_headers) /* a name without a value: dropped */
		r->n_headers--;
	snprintf(r->method, sizeof(r->method), "%s", http_method_str(hp->method));
	q = strchr(r->url, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	r->keep_alive = http_should_keep_alive(hp);
	if (hp->content_length != ULLONG_MAX && hp->content_length > OP_REQUEST_BODY_MAX) {
		/* Handed over now; the body goes to the sink. */
		r->streamed = 1;
		p->streaming = 1;
		p->sink = NULL;
		http_parser_pause(hp, 1);
	}
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	op_request_parser *p = hp->data;
	op_request *r = p->req;
	char *b;

	if (p->streaming) {
		int rc = p->sink ? p->sink(p->sink_ctx, at, len) : 413;

		if (rc) {
			p->error = rc;
			return -1;
		}
		return 0;
	}
	if (r->body_len + len > OP_REQUEST_BODY_MAX) {
		p->error = 413;
		return -1;
	}
	b = realloc(r->body, r->body_len + len + 1);
	if (!b) {
		p->error = 500;
		return -1;
	}
	memcpy(b + r->body_len, at, len);
	r->body = b;
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	op_request_parser *p = hp->data;

	p->streaming = 0;
	p->sink = NULL;
	http_parser_pause(hp, 1); /* the next request waits for this answer */
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void op_request_parser_init(op_request_parser *p)
{
	memset(p, 0, sizeof(*p));
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
}

void op_request_parser_free(op_request_parser *p)
{
	op_request_free(p->req);
	p->req = NULL;
}

int op_request_parse(op_request_parser *p, const char *data, size_t len, size_t *used,
		     op_request **done)
{
	size_t n;

	*done = NULL;
	*used = 0;
	http_parser_pause(&p->parser, 0);
	n = http_parser_execute(&p->parser, &settings, data, len);
	*used = n;
	if (HTTP_PARSER_ERRNO(&p->parser) == HPE_PAUSED) {
		/* A streamed request was handed over at its headers. */
		*done = p->req;
		p->req = NULL;
		return *done && (*done)->streamed && p->streaming ? 2 : 1;
	}
	if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK || n != len)
		return -(p->error ? p->error : 400);
	return 0;
}
