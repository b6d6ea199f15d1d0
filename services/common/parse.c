/*
 * parse: the values of the configuration file and of the console's and
 * outpostctl's arguments (see parse.h).
 */
#include "common/parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int op_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!*s || *end || errno || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int op_listen_parse(const char *s, char addr[16], uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	struct in_addr a;
	char host[16];
	long v;
	char *end;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &a) != 1)
		return -EINVAL;
	errno = 0;
	v = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || v < 1 || v > 65535)
		return -EINVAL;
	snprintf(addr, 16, "%s", host);
	*port = (uint16_t)v;
	return 0;
}

/* Has s[0..n) a blank or a control character (that a Host header would
 * carry, or split)? */
static int has_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return 1;
	return 0;
}

int op_url_parse(const char *url, char *host, size_t host_size, uint16_t *port, char *path,
		 size_t path_size, const char **why)
{
	const char *h, *end, *colon;
	size_t n, path_len;
	uint16_t p = 443;
	long v;
	char *e;

	if (strncmp(url, "https://", 8) != 0) {
		*why = "must start with https://";
		return -EINVAL;
	}
	h = url + 8;
	end = h + strcspn(h, "/?#");
	if (strpbrk(url, "?#")) {
		*why = "must not have a query or fragment";
		return -EINVAL;
	}
	colon = memchr(h, ':', (size_t)(end - h));
	n = (size_t)((colon ? colon : end) - h);
	if (n == 0 || n >= host_size || memchr(h, '@', (size_t)(end - h)) || *h == '[') {
		*why = "needs a host name (no user@, no IPv6 literal)";
		return -EINVAL;
	}
	if (has_blank(h, n)) {
		*why = "has a host name with a blank or a control character";
		return -EINVAL;
	}
	if (colon) {
		v = strtol(colon + 1, &e, 10);
		if (e != end || colon + 1 == end || v < 1 || v > 65535) {
			*why = "has a bad port";
			return -EINVAL;
		}
		p = (uint16_t)v;
	}
	path_len = strlen(end);
	while (path_len > 0 && end[path_len - 1] == '/')
		path_len--;
	if (path_len >= path_size || has_blank(end, strlen(end))) {
		*why = "has a path that is too long, or blanks or control characters";
		return -EINVAL;
	}
	/* Only now, whole: a refused URL leaves the outputs as they were. */
	memcpy(host, h, n);
	host[n] = '\0';
	*port = p;
	memcpy(path, end, path_len);
	path[path_len] = '\0';
	return 0;
}

int op_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'M':
		shift = 20;
		end++;
		break;
	case 'G':
		shift = 30;
		end++;
		break;
	case 'T':
		shift = 40;
		end++;
		break;
	default: break;
	}
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int op_cidr_parse(const char *s, op_cidr *out)
{
	char buf[32];
	struct in_addr a;
	char *slash, *end;
	long bits = 32;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		if (!isdigit((unsigned char)slash[1]))
			return -EINVAL;
		bits = strtol(slash + 1, &end, 10);
		if (*end || bits < 0 || bits > 32)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	out->mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
	out->addr = ntohl(a.s_addr) & out->mask;
	return 0;
}

int op_cidr_match(const op_cidr *nets, int n, uint32_t addr)
{
	for (int i = 0; i < n; i++)
		if ((addr & nets[i].mask) == nets[i].addr)
			return 1;
	return 0;
}

int op_cidr_allows(const op_cidr *nets, int n, uint32_t addr)
{
	return n == 0 || op_cidr_match(nets, n, addr);
}

int op_ae_title_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	int only_spaces = 1;

	if (n == 0 || n > OP_AE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\')
			return 0;
		if (c != ' ')
			only_spaces = 0;
	}
	return !only_spaces;
}
