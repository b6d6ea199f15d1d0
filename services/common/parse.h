/*
 * parse: values written by people - in the configuration file, the
 * console's requests and outpostctl's arguments - read one way
 * everywhere: whole numbers in a range, sizes, AE titles, IPv4 networks,
 * listen addresses and the cloud's URL.
 *
 * Each returns 0, or -EINVAL (-ERANGE where it says) and leaves its output
 * unchanged. Thread-safe.
 */
#ifndef OP_PARSE_H
#define OP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define OP_AE_MAX 16 /* DICOM AE title: at most 16 characters */

/* An IPv4 network: addr and mask in host byte order. */
typedef struct op_cidr {
	uint32_t addr;
	uint32_t mask;
} op_cidr;

/* A whole number in decimal, nothing before or after it, from min to max. */
int op_parse_int(const char *s, long long min, long long max, long long *out);

/* "512", "64k", "10M", "2G", "1T" (powers of 1024) -> bytes. -ERANGE when
 * it does not fit 64 bits. */
int op_parse_size(const char *s, uint64_t *out);

/* "10.0.0.0/8" or "192.168.1.7" -> network. */
int op_cidr_parse(const char *s, op_cidr *out);

/* Is addr (host byte order) inside one of the n networks? */
int op_cidr_match(const op_cidr *nets, int n, uint32_t addr);

/* An allow-list (allowed_hosts): does it let addr in? An empty list
 * (n == 0) lets everyone in. */
int op_cidr_allows(const op_cidr *nets, int n, uint32_t addr);

/* Splits an https:// URL into host, port and path (no trailing slash).
 * -EINVAL with the reason in why. */
int op_url_parse(const char *url, char *host, size_t host_size, uint16_t *port, char *path,
		 size_t path_size, const char **why);

/* "127.0.0.1:8080" (an IPv4 address or localhost, and a port) -> its
 * parts. */
int op_listen_parse(const char *s, char addr[16], uint16_t *port);

/* Is s a valid AE title (PS3.5: 1-16 characters of the default repertoire,
 * no backslash or control character, not only spaces)? 1 or 0 (NULL: 0). */
int op_ae_title_valid(const char *s);

#endif
