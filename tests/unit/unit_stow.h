/*
 * unit_stow: the harness of the tests of op_stow_interpret
 * (services/uplink/stow.c; test_stow_*.c): STOW-RS responses made up for
 * the cases Orthanc does not show (unit_cloud.h has those it does), the
 * interpretation of a body handed over in a buffer of exactly its length
 * (no NUL after it, so that ASan catches a read past body_len) with the
 * checks that hold for any answer, and the table of stow.h: the verdict
 * and action of each HTTP status for the instances a body does not name.
 *
 * Header-only: it needs stow.c, which the common layer's tests cannot
 * link (unit.h). Its tests' teardown is unit_release_all.
 */
#ifndef OP_UNIT_STOW_H
#define OP_UNIT_STOW_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/stow.h"
#include "unit.h"

/* --- responses made up for the cases Orthanc does not show ----------------------- */

#define REF(uid) "{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"" uid "\"]}}"
#define FAIL(uid, reason)                                                                          \
	"{\"00081155\":{\"vr\":\"UI\",\"Value\":[\"" uid "\"]},"                                   \
	"\"00081197\":{\"vr\":\"US\",\"Value\":[" reason "]}}"
#define RESPONSE(refs, fails)                                                                      \
	"{\"00081198\":{\"vr\":\"SQ\",\"Value\":[" fails "]},"                                     \
	"\"00081199\":{\"vr\":\"SQ\",\"Value\":[" refs "]}}"

/* --- interpretation: the harness ---------------------------------------------------- */

/*
 * op_stow_interpret on a copy of body of exactly len bytes, into out filled
 * with junk first (every field must be set). Checks what holds for any
 * answer: a valid action and verdicts, unconfirmed only with RETRY, a
 * NUL-terminated reason, present unless SENT.
 */
static inline enum op_stow_action interpret_len(int status, const char *type, const char *body,
						size_t len, const char *const *uids, unsigned n,
						op_stow_result *out)
{
	char *copy = NULL;
	enum op_stow_action action;

	if (body) {
		copy = unit_hold(malloc(len ? len : 1), NULL);
		assert_non_null(copy);
		memcpy(copy, body, len);
	}
	if (n)
		memset(out, 0xa5, n * sizeof(*out));
	action = op_stow_interpret(status, type, copy, len, uids, n, out);
	unit_release(copy);
	assert_in_range(action, OP_STOW_OK, OP_STOW_SPLIT);
	for (unsigned i = 0; i < n; i++) {
		assert_in_range(out[i].verdict, OP_VERDICT_SENT, OP_VERDICT_REQUEUE);
		assert_non_null(memchr(out[i].reason, '\0', sizeof(out[i].reason)));
		assert_true(out[i].unconfirmed == 0 ||
			    (out[i].unconfirmed == 1 && out[i].verdict == OP_VERDICT_RETRY));
		if (out[i].verdict != OP_VERDICT_SENT)
			assert_true(out[i].reason[0] != '\0');
	}
	return action;
}

static inline enum op_stow_action interpret(int status, const char *body, const char *const *uids,
					    unsigned n, op_stow_result *out)
{
	/* Orthanc sends a Content-Type with 200 only; http.c gives "" then. */
	return interpret_len(status, status == 200 ? "application/dicom+json" : "", body,
			     body ? strlen(body) : 0, uids, n, out);
}

static const char *const verdict_names[] = { "SENT", "RETRY", "QUARANTINE", "REQUEUE" };

/* The result for instance i is verdict (unconfirmed or not), its reason
 * holding says (NULL: anything). */
static inline void expect_result(const char *ctx, const op_stow_result *out, unsigned i,
				 enum op_spool_verdict verdict, int unconfirmed, const char *says)
{
	const op_stow_result *r = &out[i];

	if (r->verdict == verdict && r->unconfirmed == unconfirmed &&
	    (!says || strstr(r->reason, says)))
		return;
	print_error(
		"%s, instance %u: %s unconfirmed=%d \"%s\"; expected %s unconfirmed=%d \"%s\"\n",
		ctx, i, verdict_names[r->verdict], r->unconfirmed, r->reason,
		verdict_names[verdict], unconfirmed, says ? says : "");
	fail();
}

#define SENT OP_VERDICT_SENT
#define RETRY OP_VERDICT_RETRY
#define QUARANTINE OP_VERDICT_QUARANTINE
#define REQUEUE OP_VERDICT_REQUEUE

/* --- the table of stow.h ---------------------------------------------------------- */

/* Instances listed nowhere take the HTTP status's verdict. */
static const struct row {
	int status;
	enum op_spool_verdict verdict;
	int unconfirmed;
	enum op_stow_action action;
} rows[] = {
	{ 200, RETRY, 1, OP_STOW_OK },        { 201, RETRY, 1, OP_STOW_OK },
	{ 202, RETRY, 1, OP_STOW_OK },        { 204, RETRY, 1, OP_STOW_OK },
	{ 299, RETRY, 1, OP_STOW_OK },        { 409, QUARANTINE, 0, OP_STOW_OK },
	{ 401, REQUEUE, 0, OP_STOW_PAUSE },   { 403, REQUEUE, 0, OP_STOW_PAUSE },
	{ 413, REQUEUE, 0, OP_STOW_SPLIT },   { 500, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 501, RETRY, 0, OP_STOW_LINK_DOWN }, { 502, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 503, RETRY, 0, OP_STOW_LINK_DOWN }, { 504, RETRY, 0, OP_STOW_LINK_DOWN },
	{ 599, RETRY, 0, OP_STOW_LINK_DOWN }, { 400, RETRY, 0, OP_STOW_OK },
	{ 404, RETRY, 0, OP_STOW_OK },        { 405, RETRY, 0, OP_STOW_OK },
	{ 408, RETRY, 0, OP_STOW_OK },        { 415, RETRY, 0, OP_STOW_OK },
	{ 422, RETRY, 0, OP_STOW_OK },        { 429, RETRY, 0, OP_STOW_OK },
	{ 499, RETRY, 0, OP_STOW_OK },
};

/*
 * A 4xx other than 401, 403, 409, 413 whose body is no STOW-RS answer (not
 * a JSON object: no body, a proxy's page) refuses the request itself: the
 * batch goes back whole, and the uplink pauses (408, 429: backs off).
 * Returns 1 and the expectation when that rule applies to status and body.
 */
static inline int request_refused(int status, const char *body, size_t len, struct row *want)
{
	cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *item = cJSON_IsArray(root) && cJSON_GetArraySize(root) == 1
				    ? cJSON_GetArrayItem(root, 0)
				    : root;
	int answer = cJSON_IsObject(item);

	cJSON_Delete(root);
	if (status < 400 || status >= 500 || status == 401 || status == 403 || status == 409 ||
	    status == 413 || answer)
		return 0;
	want->status = status;
	want->verdict = REQUEUE;
	want->unconfirmed = 0;
	want->action = status == 408 || status == 429 ? OP_STOW_LINK_DOWN : OP_STOW_PAUSE;
	return 1;
}

#endif
