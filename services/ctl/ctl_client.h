/*
 * ctl_client: a minimal HTTP/1.1 client over the uplink's Unix socket, for
 * outpostctl's commands (docs/API.md): one request per connection, the
 * answer read whole within a deadline, and the parser of that answer on
 * its own (it is tested on canned responses).
 *
 * Nothing here keeps state between calls.
 */
#ifndef OP_CTL_CLIENT_H
#define OP_CTL_CLIENT_H

#include <stddef.h>

typedef struct op_ctl_response {
	int status;      /* 100..599 */
	char *body;      /* malloc'd, NUL-terminated (body_len excludes the NUL) */
	size_t body_len; /* the body may hold NULs: body_len is its length */
} op_ctl_response;

/*
 * Parses one HTTP/1.x response held in buf[0..len). With eof clear,
 * returns -EAGAIN while more bytes are needed (headers not ended, or fewer
 * body bytes than Content-Length); with eof set, a response without
 * Content-Length ends at len. Returns 0 (out filled; free it with
 * op_ctl_response_free), -EAGAIN, -EPROTO (not an HTTP response, bad
 * Content-Length, chunked encoding, cut short; reason in *why) or -ENOMEM.
 */
int op_ctl_response_parse(const char *buf, size_t len, int eof, op_ctl_response *out,
			  const char **why);

/* Frees the body; accepts a zeroed or already freed response. */
void op_ctl_response_free(op_ctl_response *r);

/*
 * Sends method target (with body as application/json when not NULL) to the
 * uplink on the Unix socket at socket_path, with Connection: close, and
 * reads the response, all within timeout_ms. Returns 0 (out filled,
 * whatever the HTTP status) or a negative errno with a reason in err:
 * connecting fails with connect(2)'s error (op_ctl_not_running tells
 * whether it means nothing is there); afterwards -ETIMEDOUT, -EPROTO,
 * -EMSGSIZE (response over 64 MiB) or the socket's error.
 */
int op_ctl_request(const char *socket_path, const char *method, const char *target,
		   const char *body, int timeout_ms, op_ctl_response *out, char *err,
		   size_t errlen);

/* Does op_ctl_request's rc mean that no service listens on the socket
 * (missing, or refusing: a stale socket file)? */
int op_ctl_not_running(int rc);

#endif
