/*
 * http: a response reader over http-parser (see http.h).
 */
#include "uplink/http.h"

#include <errno.h>
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct op_http_response {
	http_parser parser;
	http_parser_settings settings;
	int started, complete, in_content_type, truncated;
	int in_field;   /* the last callback was a piece of a header's name */
	char field[12]; /* the first bytes of that name */
	size_t field_len;
	char content_type[128];
	size_t ct_len;
	char *body;
	size_t body_len, body_max;
	const char *error;
};

static op_http_response *of(http_parser *p)
{
	return p->data;
}

static int on_message_begin(http_parser *p)
{
	of(p)->started = 1;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	op_http_response *r = of(p);

	/* http-parser hands a name over in as many pieces as it arrived in
	 * (one per read): gather it. */
	if (!r->in_field) {
		r->in_field = 1;
		r->field_len = 0;
	}
	if (r->field_len < sizeof(r->field))
		memcpy(r->field + r->field_len, at,
		       len < sizeof(r->field) - r->field_len ? len
							     : sizeof(r->field) - r->field_len);
	r->field_len += len;
	r->in_content_type = r->field_len == 12 && strncasecmp(r->field, "Content-Type", 12) == 0;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	op_http_response *r = of(p);

	r->in_field = 0;
	if (!r->in_content_type)
		return 0;
	if (len > sizeof(r->content_type) - 1 - r->ct_len)
		len = sizeof(r->content_type) - 1 - r->ct_len;
	memcpy(r->content_type + r->ct_len, at, len);
	r->ct_len += len;
	r->content_type[r->ct_len] = '\0';
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	op_http_response *r = of(p);
	size_t keep = len;

	if (keep > r->body_max - r->body_len) {
		keep = r->body_max - r->body_len;
		r->truncated = 1;
	}
	memcpy(r->body + r->body_len, at, keep);
	r->body_len += keep;
	r->body[r->body_len] = '\0';
	return 0;
}

static int on_message_complete(http_parser *p)
{
	op_http_response *r = of(p);

	/* An interim response (1xx but 101) comes before the real one: a
	 * client must read it and carry on, even unasked (RFC 9110 15.2). */
	if (p->status_code / 100 == 1 && p->status_code != 101) {
		r->content_type[0] = '\0';
		r->ct_len = 0;
		return 0;
	}
	r->complete = 1;
	http_parser_pause(p, 1); /* nothing may follow unasked */
	return 0;
}

int op_http_response_open(size_t body_max, op_http_response **out)
{
	op_http_response *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r || !(r->body = malloc(body_max + 1))) {
		free(r);
		return -ENOMEM;
	}
	r->body_max = body_max;
	r->settings.on_message_begin = on_message_begin;
	r->settings.on_header_field = on_header_field;
	r->settings.on_header_value = on_header_value;
	r->settings.on_body = on_body;
	r->settings.on_message_complete = on_message_complete;
	op_http_response_reset(r);
	*out = r;
	return 0;
}

void op_http_response_close(op_http_response *r)
{
	if (!r)
		return;
	free(r->body);
	free(r);
}

void op_http_response_reset(op_http_response *r)
{
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
	r->started = r->complete = r->in_content_type = r->truncated = r->in_field = 0;
	r->content_type[0] = '\0';
	r->ct_len = 0;
	r->body_len = 0;
	r->body[0] = '\0';
	r->error = NULL;
}

int op_http_response_feed(op_http_response *r, const char *data, size_t len, int *complete)
{
	size_t n;

	*complete = r->complete;
	if (len == 0)
		return 0;
	if (r->complete) {
		r->error = "bytes after the end of the response";
		return -EPROTO;
	}
	n = http_parser_execute(&r->parser, &r->settings, data, len);
	if (r->complete && HTTP_PARSER_ERRNO(&r->parser) == HPE_PAUSED) {
		*complete = 1;
		if (n < len) {
			r->error = "bytes after the end of the response";
			return -EPROTO;
		}
		return 0;
	}
	if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK || n != len) {
		r->error = http_errno_description(HTTP_PARSER_ERRNO(&r->parser));
		return -EPROTO;
	}
	return 0;
}

int op_http_response_eof(op_http_response *r, int *complete)
{
	*complete = r->complete;
	if (r->complete)
		return 0;
	/* A zero-length execute tells http-parser the stream ended. */
	http_parser_execute(&r->parser, &r->settings, NULL, 0);
	*complete = r->complete;
	if (!r->complete) {
		r->error = r->started ? "connection closed before the response ended"
				      : "connection closed before a response";
		return -EPROTO;
	}
	return 0;
}

int op_http_response_started(const op_http_response *r)
{
	return r->started;
}

int op_http_response_status(const op_http_response *r)
{
	return (int)r->parser.status_code;
}

const char *op_http_response_content_type(const op_http_response *r)
{
	return r->content_type;
}

const char *op_http_response_body(const op_http_response *r, size_t *len)
{
	*len = r->body_len;
	return r->body;
}

int op_http_response_body_truncated(const op_http_response *r)
{
	return r->truncated;
}

int op_http_response_keep_alive(const op_http_response *r)
{
	return r->complete && http_should_keep_alive(&r->parser);
}

const char *op_http_response_error(const op_http_response *r)
{
	return r->error ? r->error : "";
}
