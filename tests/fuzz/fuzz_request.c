/*
 * fuzz_request: libFuzzer harness for what the console's server reads from
 * its clients (the LAN): HTTP requests (console/request.c, over
 * http-parser), one after another on one connection.
 *
 * The first input byte chooses the size of the pieces the rest arrives
 * in (a client may send any pieces). Every complete request is checked
 * against the limits the server promises; a streamed body (over 64 KiB,
 * announced) goes to a sink, as the console's firmware upload takes it.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "console/request.h"

static void check(const op_request *r)
{
	size_t len;
	const char *body = op_request_body(r, &len);

	if (len > OP_REQUEST_BODY_MAX || body[len] != '\0')
		__builtin_trap();
	if (strlen(op_request_path(r)) >= OP_REQUEST_URL_MAX || !*op_request_method(r))
		__builtin_trap();
	/* Lookups walk every header. */
	(void)op_request_header(r, "Authorization");
	(void)op_request_header(r, "Cookie");
	(void)strlen(op_request_query(r));
}

static int sink(void *ctx, const char *data, size_t len)
{
	if (len == 0 || !data)
		__builtin_trap();
	*(size_t *)ctx += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	op_request_parser p;
	size_t piece, off = 0, sunk = 0;

	if (size == 0)
		return 0;
	piece = data[0] ? data[0] : size;
	data++;
	size--;
	op_request_parser_init(&p);
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece, used;
		op_request *done;
		int rc = op_request_parse(&p, (const char *)data + off, n, &used, &done);

		if (rc < 0)
			break;
		if (used > n)
			__builtin_trap();
		if (rc == 2)
			op_request_parser_sink(&p, sink, &sunk);
		if (done) {
			check(done);
			op_request_free(done);
		}
		off += used;
		if (rc == 0 && used != n)
			__builtin_trap();
	}
	op_request_parser_free(&p);
	return 0;
}
