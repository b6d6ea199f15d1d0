/*
 * route: the conditions of a [route NAME] section's `when` key, parsed
 * once and matched against each association and instance.
 *
 * `when` is a comma-separated list of conditions that must all hold:
 * calling_aet=PATTERN, called_aet=PATTERN, source=CIDR, or
 * Keyword=PATTERN (a DICOM attribute, checked against the dictionary by
 * the receiver, which has DCMTK; here only its syntax). Patterns may use
 * `*` and `?`, and match case-insensitively.
 *
 * Pure functions of their arguments: thread-safe, no allocation.
 */
#ifndef OP_ROUTE_H
#define OP_ROUTE_H

#include <stddef.h>

#include "common/parse.h"

enum op_route_cond_kind {
	OP_COND_CALLING_AET,
	OP_COND_CALLED_AET,
	OP_COND_SOURCE,
	OP_COND_ATTRIBUTE
};

typedef struct op_route_cond {
	enum op_route_cond_kind kind;
	char key[64];    /* as written: "calling_aet", "source", "Modality", ... */
	char value[256]; /* as written (the pattern, or the CIDR text) */
	op_cidr cidr;    /* OP_COND_SOURCE */
} op_route_cond;

#define OP_ROUTE_CONDS_MAX 16

/*
 * Splits a when text into at most max conditions (*n of them). Returns 0,
 * or -EINVAL with the reason in err (an empty text, an item that is not
 * key=value, a bad keyword, AE pattern or CIDR, too many conditions).
 */
int op_route_parse_when(const char *when, op_route_cond *out, int max, int *n, char *err,
			size_t errlen);

/*
 * 1 when every condition that is not OP_COND_ATTRIBUTE holds for this
 * association, else 0. peer_ip is dotted IPv4; NULL or unparsable fails a
 * source condition. NULL AE titles fail their conditions.
 */
int op_route_assoc_match(const op_route_cond *c, int n, const char *calling_aet,
			 const char *called_aet, const char *peer_ip);

/*
 * The OP_COND_ATTRIBUTE conditions as "Keyword=Value, ..." (the syntax of
 * [priority] urgent_match, for the DICOM matcher) into out, always
 * terminated; "" when there are none. Cut to size.
 */
void op_route_attribute_text(const op_route_cond *c, int n, char *out, size_t size);

/* 1 when text matches pattern (`*`: any run, `?`: any one character),
 * ignoring ASCII case; else 0. */
int op_route_glob(const char *pattern, const char *text);

#endif
