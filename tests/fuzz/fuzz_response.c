/*
 * fuzz_response: libFuzzer harness for what the uplink reads from the
 * network: an HTTP response (uplink/http.c, over http-parser) and the
 * STOW-RS result in its body (uplink/stow.c, over cJSON).
 *
 * The first input byte chooses where the response is split across two
 * reads (a response may arrive in any pieces); the rest is the response.
 * The whole input is also interpreted as a JSON body on its own, so the
 * STOW parser sees inputs that a valid HTTP frame would hide.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "uplink/http.h"
#include "uplink/stow.h"

static const char *const uids[] = { "1.2.3.4", "1.2.840.10008.1", "2.25.1" };

static void interpret(int status, const char *type, const char *body, size_t len)
{
	op_stow_result out[3];

	op_stow_interpret(status, type, body, len, uids, 3, out);
	for (int i = 0; i < 3; i++)
		if ((unsigned)out[i].verdict > OP_VERDICT_REQUEUE || !memchr(out[i].reason, 0, 160))
			__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static op_http_response *r;
	const char *body;
	size_t split, len;
	int complete = 0;

	if (!r && op_http_response_open(4096, &r) < 0)
		return 0;
	if (size == 0)
		return 0;
	split = size > 1 ? data[0] % size : 0;
	data++;
	size--;
	if (split > size)
		split = size;
	op_http_response_reset(r);
	if (op_http_response_feed(r, (const char *)data, split, &complete) == 0 &&
	    op_http_response_feed(r, (const char *)data + split, size - split, &complete) == 0 &&
	    (complete || op_http_response_eof(r, &complete) == 0) && complete) {
		body = op_http_response_body(r, &len);
		if (len > 4096 || body[len] != '\0')
			__builtin_trap();
		interpret(op_http_response_status(r), op_http_response_content_type(r), body, len);
	}
	interpret(200, "application/dicom+json", (const char *)data, size);
	return 0;
}
