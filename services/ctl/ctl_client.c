/*
 * ctl_client: outpostctl's HTTP/1.1 client over the uplink's Unix socket
 * (ctl_client.h).
 *
 * The HTTP client is hand-written rather than http-parser's: it speaks only
 * to our own uplink over a local socket, one request per connection
 * (Connection: close), and the uplink never sends chunked bodies, so a
 * status line, headers and Content-Length are all there is to read.
 */
#include "ctl/ctl_client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/io.h"
#include "ctl/ctl.h"

#define RESPONSE_MAX (64u << 20) /* GET /api/queue?per_page=500 is well under */
#define HEADERS_MAX (64u << 10)

void op_ctl_response_free(op_ctl_response *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

/* One header line: a Content-Length (sets *cl) or Transfer-Encoding. */
static int parse_header(const char *s, size_t n, int64_t *cl, const char **why)
{
	const char *colon = memchr(s, ':', n), *v, *end = s + n;
	size_t name_len;
	uint64_t value = 0;

	if (!colon || colon == s) {
		*why = "malformed header line";
		return -EPROTO;
	}
	name_len = (size_t)(colon - s);
	v = colon + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (name_len == 14 && strncasecmp(s, "Content-Length", 14) == 0) {
		if (v == end) {
			*why = "empty Content-Length";
			return -EPROTO;
		}
		for (const char *p = v; p < end; p++) {
			if (!isdigit((unsigned char)*p) || value > RESPONSE_MAX) {
				*why = "bad Content-Length";
				return -EPROTO;
			}
			value = value * 10 + (uint64_t)(*p - '0');
		}
		if (value > RESPONSE_MAX || (*cl >= 0 && (uint64_t)*cl != value)) {
			*why = "bad Content-Length";
			return -EPROTO;
		}
		*cl = (int64_t)value;
	} else if (name_len == 17 && strncasecmp(s, "Transfer-Encoding", 17) == 0) {
		/* The uplink never sends one; no client here would decode it. */
		*why = "Transfer-Encoding is not supported";
		return -EPROTO;
	}
	return 0;
}

int op_ctl_response_parse(const char *buf, size_t len, int eof, op_ctl_response *out,
			  const char **why)
{
	size_t pos = 0, bare, full, body_len;
	int64_t cl = -1;
	int status = 0;
	const char *s;

	memset(out, 0, sizeof(*out));
	*why = "";
	/* Interim 1xx responses come before the final one. */
	for (;;) {
		if (memcmp(buf + pos, "HTTP/", len - pos < 5 ? len - pos : 5) != 0) {
			*why = "not an HTTP response";
			return -EPROTO;
		}
		if (!memchr(buf + pos, '\n', len - pos))
			goto need_more;
		op_ctl__next_line(buf, len, pos, &bare, &full);
		s = buf + pos;
		if (bare < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) ||
		    s[8] != ' ' || !isdigit((unsigned char)s[9]) ||
		    !isdigit((unsigned char)s[10]) || !isdigit((unsigned char)s[11]) ||
		    (bare > 12 && s[12] != ' ')) {
			*why = "malformed status line";
			return -EPROTO;
		}
		status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
		if (status < 100) {
			*why = "malformed status line";
			return -EPROTO;
		}
		pos += full;
		cl = -1;
		for (;;) {
			if (!memchr(buf + pos, '\n', len - pos))
				goto need_more;
			op_ctl__next_line(buf, len, pos, &bare, &full);
			pos += full;
			if (bare == 0)
				break;
			if (parse_header(buf + pos - full, bare, &cl, why) < 0)
				return -EPROTO;
		}
		if (status >= 200)
			break;
	}

	if (cl >= 0) {
		if (len - pos < (uint64_t)cl)
			goto need_more;
		body_len = (size_t)cl;
	} else if (status == 204 || status == 304) {
		body_len = 0;
	} else if (!eof) {
		return -EAGAIN;
	} else {
		body_len = len - pos;
	}
	out->body = malloc(body_len + 1);
	if (!out->body)
		return -ENOMEM;
	memcpy(out->body, buf + pos, body_len);
	out->body[body_len] = '\0';
	out->body_len = body_len;
	out->status = status;
	return 0;

need_more:
	if (len > HEADERS_MAX && cl < 0) {
		*why = "headers too long";
		return -EPROTO;
	}
	if (eof) {
		*why = "the response was cut short";
		return -EPROTO;
	}
	return -EAGAIN;
}

int op_ctl_not_running(int rc)
{
	/* ENOENT: no socket file; ECONNREFUSED: a file nobody listens on (the
	 * service died without removing it); ENOTDIR: a path component is a file. */
	return rc == -ENOENT || rc == -ECONNREFUSED || rc == -ENOTDIR;
}

int op_ctl_request(const char *socket_path, const char *method, const char *target,
		   const char *body, int timeout_ms, op_ctl_response *out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t deadline = op_clock_mono_ms() + timeout_ms;
	char *req = NULL, *buf = NULL, *bigger;
	size_t req_len, len = 0, cap = 16384;
	const char *why = "";
	int fd = -1, rc, n;

	memset(out, 0, sizeof(*out));
	if (strlen(socket_path) >= sizeof(sa.sun_path)) {
		rc = -ENAMETOOLONG;
		snprintf(err, errlen, "the socket path is longer than %zu bytes",
			 sizeof(sa.sun_path) - 1);
		goto out;
	}
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	/* A Unix socket connects at once or fails at once (a full backlog
	 * blocks: the poll below then bounds the wait for the answer). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s", strerror(errno));
		goto out;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		rc = -errno;
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		goto out;
	}

	n = asprintf(&req,
		     "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: outpostctl/%s\r\n"
		     "Accept: application/json\r\nConnection: close\r\n%sContent-Length: %zu\r\n"
		     "\r\n%s",
		     method, target, OP_VERSION, body ? "Content-Type: application/json\r\n" : "",
		     body ? strlen(body) : 0, body ? body : "");
	if (n < 0) {
		req = NULL;
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	req_len = (size_t)n;
	rc = op_io_send_all(fd, req, req_len, deadline);
	if (rc < 0)
		goto io_error;

	/* Read until the response is complete: by its Content-Length, or by
	 * the end of the connection when it has none. */
	buf = malloc(cap);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (len == cap) {
			if (cap >= RESPONSE_MAX) {
				rc = -EMSGSIZE;
				snprintf(err, errlen, "the response is larger than %u MiB",
					 RESPONSE_MAX >> 20);
				goto out;
			}
			bigger = realloc(buf, cap * 2);
			if (!bigger) {
				rc = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			buf = bigger;
			cap *= 2;
		}
		r = op_io_recv_some(fd, buf + len, cap - len, deadline);
		if (r < 0) {
			rc = (int)r;
			goto io_error;
		}
		len += (size_t)r;
		rc = op_ctl_response_parse(buf, len, r == 0, out, &why);
		if (rc == -EAGAIN && r > 0)
			continue;
		if (rc == -EPROTO && len == 0) {
			why = "the connection was closed without an answer";
		}
		if (rc < 0) {
			if (rc == -ENOMEM)
				snprintf(err, errlen, "out of memory");
			else
				snprintf(err, errlen, "bad response: %s", why);
			goto out;
		}
		break;
	}
	rc = 0;
	goto out;

io_error:
	if (rc == -ETIMEDOUT)
		snprintf(err, errlen, "no answer within %d s", (timeout_ms + 999) / 1000);
	else
		snprintf(err, errlen, "%s", strerror(-rc));
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(buf);
	return rc;
}
