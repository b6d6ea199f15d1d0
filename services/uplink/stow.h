/*
 * stow: DICOMweb STOW-RS (PS3.18 10.5) as the uplink speaks it: the
 * multipart/related framing of a request, and what a response means for
 * each instance of the batch.
 *
 * The response is read per instance whatever the HTTP status (Orthanc
 * answers 400 to a batch with one bad part, yet stores the good ones) -
 * except 401, 403, 413 and 5xx, whose body says nothing per instance: an
 * instance in ReferencedSOPSequence (0008,1199) is sent; one in
 * FailedSOPSequence (0008,1198) is retried or quarantined by its
 * FailureReason (0008,1197); one in neither takes the HTTP status's
 * verdict. The body is read whatever its Content-Type says (Orthanc sends
 * 400 and 409 without one). Untrusted input: fuzzed by
 * tests/fuzz/fuzz_response.c.
 */
#ifndef OP_STOW_H
#define OP_STOW_H

#include <stddef.h>
#include <stdint.h>

#include "common/spool.h"

#define OP_STOW_BOUNDARY_LEN 32

/* What the uplink does after a response, beyond settling each instance. */
enum op_stow_action {
	OP_STOW_OK,        /* the cloud answered; carry on */
	OP_STOW_LINK_DOWN, /* the cloud is unwell (5xx): back off the whole link */
	OP_STOW_PAUSE,     /* credentials refused (401, 403): pause with an alarm */
	OP_STOW_SPLIT,     /* the batch was too large (413): send smaller ones */
};

typedef struct op_stow_result {
	enum op_spool_verdict verdict; /* SENT, RETRY, QUARANTINE or REQUEUE */
	char reason[160];              /* for RETRY and QUARANTINE */
	/* RETRY because the cloud answered 2xx yet listed the instance in
	 * neither sequence (Orthanc does so when it drops an instance, and
	 * drops the rest of the request with it): the uplink quarantines an
	 * instance that stays unconfirmed. */
	int unconfirmed;
	/* The cloud does not take the transfer syntax it was sent in:
	 * FailureReason C122 or 0122 (PS3.18 I.2.2), or HTTP 415 for the
	 * whole request. For an encoded copy the uplink then sends the
	 * original (dimse.c sets it too, from the association). */
	int syntax_refused;
} op_stow_result;

/* A fresh random boundary (hex). */
void op_stow_boundary(char out[OP_STOW_BOUNDARY_LEN + 1]);

/* The header before a part of part_len bytes (starts with the delimiter).
 * Returns its length (< size). */
size_t op_stow_part_head(char *buf, size_t size, const char *boundary, uint64_t part_len);

/* The closing delimiter. Returns its length. */
size_t op_stow_close(char *buf, size_t size, const char *boundary);

/* Content-Length of a body of n parts of the given sizes. */
uint64_t op_stow_body_length(const char *boundary, const uint64_t *sizes, unsigned n);

/*
 * Interprets a response for the n instances sent (their SOP Instance
 * UIDs, in order): fills out[n] and returns what to do next. body may be
 * NULL. A FailureReason of A7xx (out of resources), 0110 (processing
 * failure), 0213 (resource limitation) is retried; any other is a refusal
 * for good.
 */
enum op_stow_action op_stow_interpret(int http_status, const char *content_type, const char *body,
				      size_t body_len, const char *const *sop_uids, unsigned n,
				      op_stow_result *out);

#endif
