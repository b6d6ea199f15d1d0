/*
 * route: parsing and matching of a route's `when` conditions (route.h).
 */
#include "common/route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int op_route_glob(const char *pattern, const char *text)
{
	const char *star = NULL, *resume = NULL;

	/* Iterative, with one backtrack point: the last '*' seen. Later stars
	 * supersede earlier ones, so this is linear-ish and never recurses. */
	while (*text) {
		if (*pattern == '*') {
			star = pattern++;
			resume = text;
		} else if (*pattern == '?' || (*pattern && tolower((unsigned char)*pattern) ==
								   tolower((unsigned char)*text))) {
			pattern++;
			text++;
		} else if (star) {
			pattern = star + 1;
			text = ++resume;
		} else {
			return 0;
		}
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

/* Copies s[0..n) into out (size bytes) without the blanks around it; -E2BIG
 * when it does not fit. */
static int trim_copy(const char *s, size_t n, char *out, size_t size)
{
	while (n && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n >= size)
		return -E2BIG;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int parse_one(const char *item, size_t len, op_route_cond *c, char *err, size_t errlen)
{
	const char *eq = memchr(item, '=', len);
	int rc = -EINVAL;

	memset(c, 0, sizeof(*c));
	if (!eq) {
		snprintf(err, errlen, "'%.*s' is not key=value (e.g. calling_aet=CT_ER)", (int)len,
			 item);
		goto out;
	}
	if (trim_copy(item, (size_t)(eq - item), c->key, sizeof(c->key)) < 0 ||
	    trim_copy(eq + 1, len - (size_t)(eq - item) - 1, c->value, sizeof(c->value)) < 0) {
		snprintf(err, errlen, "'%.*s' is too long", (int)len, item);
		goto out;
	}
	if (!*c->key || !*c->value) {
		snprintf(err, errlen, "'%.*s' is not key=value (e.g. calling_aet=CT_ER)", (int)len,
			 item);
		goto out;
	}
	if (strcmp(c->key, "calling_aet") == 0 || strcmp(c->key, "called_aet") == 0) {
		c->kind = strcmp(c->key, "calling_aet") == 0 ? OP_COND_CALLING_AET
							     : OP_COND_CALLED_AET;
		/* A pattern longer than an AE title could still match one
		 * ("*" runs), but one with a backslash never can. */
		if (!op_ae_title_valid(c->value)) {
			snprintf(err, errlen,
				 "%s: '%s' is not an AE title pattern (1-16 characters, no "
				 "backslash; * and ? wildcards)",
				 c->key, c->value);
			goto out;
		}
	} else if (strcmp(c->key, "source") == 0) {
		c->kind = OP_COND_SOURCE;
		if (op_cidr_parse(c->value, &c->cidr) < 0) {
			snprintf(err, errlen,
				 "source: '%s' is not an IPv4 address or network (e.g. "
				 "10.1.2.0/24)",
				 c->value);
			goto out;
		}
	} else {
		c->kind = OP_COND_ATTRIBUTE;
		/* The dictionary is DCMTK's, in the receiver; a keyword is
		 * letters and digits, starting with a letter. */
		for (const char *k = c->key; *k; k++) {
			if (!isalnum((unsigned char)*k) || !isalpha((unsigned char)c->key[0])) {
				snprintf(err, errlen,
					 "'%s' is not calling_aet, called_aet, source or an "
					 "attribute keyword (e.g. Modality)",
					 c->key);
				goto out;
			}
		}
	}
	rc = 0;
out:
	return rc;
}

int op_route_parse_when(const char *when, op_route_cond *out, int max, int *n, char *err,
			size_t errlen)
{
	const char *s = when, *comma;
	int count = 0, rc = -EINVAL;

	if (err && errlen)
		err[0] = '\0';
	for (;;) {
		size_t len;
		const char *t;

		comma = strchr(s, ',');
		len = comma ? (size_t)(comma - s) : strlen(s);
		for (t = s; t < s + len && isspace((unsigned char)*t); t++)
			;
		if (t == s + len) {
			/* An empty item: "a=1,,b=2", a trailing comma, or
			 * nothing at all; each is a typo, not "always". */
			snprintf(err, errlen, "%s",
				 count == 0 && !comma
					 ? "no condition (write key=value, ...)"
					 : "an empty condition (two commas, or one at an end)");
			goto out;
		}
		if (count == max) {
			snprintf(err, errlen, "more than %d conditions", max);
			goto out;
		}
		if (parse_one(s, len, &out[count], err, errlen) < 0)
			goto out;
		count++;
		if (!comma)
			break;
		s = comma + 1;
	}
	*n = count;
	rc = 0;
out:
	return rc;
}

int op_route_assoc_match(const op_route_cond *c, int n, const char *calling_aet,
			 const char *called_aet, const char *peer_ip)
{
	struct in_addr a;

	for (int i = 0; i < n; i++) {
		switch (c[i].kind) {
		case OP_COND_CALLING_AET:
			if (!calling_aet || !op_route_glob(c[i].value, calling_aet))
				return 0;
			break;
		case OP_COND_CALLED_AET:
			if (!called_aet || !op_route_glob(c[i].value, called_aet))
				return 0;
			break;
		case OP_COND_SOURCE:
			if (!peer_ip || inet_pton(AF_INET, peer_ip, &a) != 1 ||
			    !op_cidr_match(&c[i].cidr, 1, ntohl(a.s_addr)))
				return 0;
			break;
		case OP_COND_ATTRIBUTE: break;
		}
	}
	return 1;
}

void op_route_attribute_text(const op_route_cond *c, int n, char *out, size_t size)
{
	size_t o = 0;
	int w;

	if (!size)
		return;
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (c[i].kind != OP_COND_ATTRIBUTE)
			continue;
		w = snprintf(out + o, size - o, "%s%s=%s", o ? ", " : "", c[i].key, c[i].value);
		if (w < 0 || (size_t)w >= size - o)
			return; /* cut: snprintf terminated it */
		o += (size_t)w;
	}
}
