/*
 * stow: STOW-RS request framing and response interpretation (see stow.h).
 */
#include "uplink/stow.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define TAG_REFERENCED_SOP_SEQUENCE "00081199"
#define TAG_FAILED_SOP_SEQUENCE "00081198"
#define TAG_REFERENCED_SOP_INSTANCE_UID "00081155"
#define TAG_FAILURE_REASON "00081197"

void op_stow_boundary(char out[OP_STOW_BOUNDARY_LEN + 1])
{
	unsigned char r[OP_STOW_BOUNDARY_LEN / 2];

	randombytes_buf(r, sizeof(r));
	sodium_bin2hex(out, OP_STOW_BOUNDARY_LEN + 1, r, sizeof(r));
}

size_t op_stow_part_head(char *buf, size_t size, const char *boundary, uint64_t part_len)
{
	int n = snprintf(buf, size,
			 "--%s\r\nContent-Type: application/dicom\r\nContent-Length: %" PRIu64
			 "\r\n\r\n",
			 boundary, part_len);

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

size_t op_stow_close(char *buf, size_t size, const char *boundary)
{
	int n = snprintf(buf, size, "--%s--\r\n", boundary);

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

uint64_t op_stow_body_length(const char *boundary, const uint64_t *sizes, unsigned n)
{
	char buf[256];
	uint64_t total = op_stow_close(buf, sizeof(buf), boundary);

	/* Each part: its head, its bytes, and the CRLF before the next
	 * delimiter (RFC 2046: the CRLF belongs to the delimiter). */
	for (unsigned i = 0; i < n; i++)
		total += op_stow_part_head(buf, sizeof(buf), boundary, sizes[i]) + sizes[i] + 2;
	return total;
}

/* The first value of a DICOM JSON attribute, as a string or a number. */
static const cJSON *first_value(const cJSON *item, const char *tag)
{
	const cJSON *attr = cJSON_GetObjectItemCaseSensitive(item, tag);
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(attr, "Value");

	return cJSON_IsArray(value) ? cJSON_GetArrayItem(value, 0) : NULL;
}

/* The items of a sequence attribute of the response dataset. */
static const cJSON *sequence(const cJSON *root, const char *tag)
{
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(root, tag), "Value");

	return cJSON_IsArray(value) ? value : NULL;
}

/* A FailureReason is a US: an integer from 0 to 0xFFFF; anything else is
 * no reason at all. */
static int failure_reason(const cJSON *why, unsigned *reason)
{
	if (!cJSON_IsNumber(why) || !(why->valuedouble >= 0 && why->valuedouble <= 0xffff) ||
	    why->valuedouble != (double)(unsigned)why->valuedouble)
		return -1;
	*reason = (unsigned)why->valuedouble;
	return 0;
}

static int failure_is_transient(unsigned reason)
{
	return (reason & 0xff00) == 0xa700 || reason == 0x0110 || reason == 0x0213;
}

/* What an HTTP status alone says about an instance the body did not name. */
static enum op_stow_action by_status(int status, op_stow_result *r)
{
	if (status == 401 || status == 403) {
		r->verdict = OP_VERDICT_REQUEUE;
		snprintf(r->reason, sizeof(r->reason), "HTTP %d: the cloud refused the credentials",
			 status);
		return OP_STOW_PAUSE;
	}
	if (status == 413) {
		r->verdict = OP_VERDICT_REQUEUE;
		snprintf(r->reason, sizeof(r->reason), "HTTP 413: the request was too large");
		return OP_STOW_SPLIT;
	}
	if (status == 409) {
		r->verdict = OP_VERDICT_QUARANTINE;
		snprintf(r->reason, sizeof(r->reason),
			 "HTTP 409: the cloud holds a conflicting instance");
		return OP_STOW_OK;
	}
	r->verdict = OP_VERDICT_RETRY;
	if (status >= 200 && status < 300) {
		snprintf(r->reason, sizeof(r->reason),
			 "HTTP %d, but the cloud did not confirm the instance", status);
		r->unconfirmed = 1;
	} else
		snprintf(r->reason, sizeof(r->reason), "HTTP %d", status);
	return status >= 500 ? OP_STOW_LINK_DOWN : OP_STOW_OK;
}

enum op_stow_action op_stow_interpret(int http_status, const char *content_type, const char *body,
				      size_t body_len, const char *const *sop_uids, unsigned n,
				      op_stow_result *out)
{
	enum op_stow_action action = OP_STOW_OK;
	cJSON *root = NULL;
	const cJSON *refs = NULL, *fails = NULL, *item;

	/* Credentials refused or too large: nothing in the body can be
	 * trusted to be per instance, and the batch goes back whole. */
	if (http_status == 401 || http_status == 403 || http_status == 413 || http_status >= 500)
		body = NULL;
	/* These say what to do next on their own, however many instances
	 * the request held (by_status() agrees for each instance). */
	if (http_status == 401 || http_status == 403)
		action = OP_STOW_PAUSE;
	else if (http_status == 413)
		action = OP_STOW_SPLIT;
	else if (http_status >= 500)
		action = OP_STOW_LINK_DOWN;
	(void)content_type; /* not trusted: Orthanc's 400 and 409 carry none */
	if (body && body_len)
		root = cJSON_ParseWithLength(body, body_len);
	/* A STOW-RS response is one dataset; some servers wrap it in an array. */
	if (cJSON_IsArray(root) && cJSON_GetArraySize(root) == 1)
		item = cJSON_GetArrayItem(root, 0);
	else
		item = root;
	if (cJSON_IsObject(item)) {
		refs = sequence(item, TAG_REFERENCED_SOP_SEQUENCE);
		fails = sequence(item, TAG_FAILED_SOP_SEQUENCE);
	}
	/* A 4xx that carries no STOW-RS answer (nginx's "400 No required SSL
	 * certificate was sent", a 404 for a wrong url path, a proxy's page)
	 * is about the request, not its instances: the batch goes back whole
	 * and the uplink pauses with an alarm, as for refused credentials;
	 * 408 and 429 ask to come back later: the link backs off. */
	if (http_status >= 400 && http_status < 500 && http_status != 401 && http_status != 403 &&
	    http_status != 409 && http_status != 413 && !cJSON_IsObject(item)) {
		int later = http_status == 408 || http_status == 429;

		for (unsigned i = 0; i < n; i++) {
			memset(&out[i], 0, sizeof(out[i]));
			out[i].verdict = OP_VERDICT_REQUEUE;
			out[i].syntax_refused = http_status == 415;
			snprintf(out[i].reason, sizeof(out[i].reason), "%s",
				 later ? "the cloud asked to come back later"
				       : "the cloud refused the request itself");
		}
		cJSON_Delete(root);
		return later ? OP_STOW_LINK_DOWN : OP_STOW_PAUSE;
	}
	for (unsigned i = 0; i < n; i++) {
		op_stow_result *r = &out[i];
		int found = 0;

		memset(r, 0, sizeof(*r));
		cJSON_ArrayForEach(item, refs)
		{
			const cJSON *uid = first_value(item, TAG_REFERENCED_SOP_INSTANCE_UID);
			if (cJSON_IsString(uid) && strcmp(uid->valuestring, sop_uids[i]) == 0) {
				r->verdict = OP_VERDICT_SENT;
				found = 1;
				break;
			}
		}
		const cJSON *search = found ? NULL : fails;

		cJSON_ArrayForEach(item, search)
		{
			const cJSON *uid = first_value(item, TAG_REFERENCED_SOP_INSTANCE_UID);
			const cJSON *why = first_value(item, TAG_FAILURE_REASON);
			unsigned reason;

			if (!cJSON_IsString(uid) || strcmp(uid->valuestring, sop_uids[i]) != 0)
				continue;
			if (failure_reason(why, &reason) < 0) {
				r->verdict = OP_VERDICT_QUARANTINE;
				snprintf(r->reason, sizeof(r->reason),
					 "HTTP %d, failed without a valid FailureReason",
					 http_status);
			} else {
				r->verdict = failure_is_transient(reason) ? OP_VERDICT_RETRY
									  : OP_VERDICT_QUARANTINE;
				r->syntax_refused = reason == 0xC122 || reason == 0x0122;
				snprintf(r->reason, sizeof(r->reason),
					 "HTTP %d, FailureReason %04X", http_status, reason);
			}
			found = 1;
			break;
		}
		if (!found) {
			enum op_stow_action a = by_status(http_status, r);
			if (a != OP_STOW_OK)
				action = a;
		}
	}
	cJSON_Delete(root);
	return action;
}
