/*
 * test_stow: services/uplink/stow.c, STOW-RS as the uplink speaks it: the
 * framing. The exact bytes of a part's head and of the closing delimiter,
 * and a Content-Length (op_stow_body_length) equal to the length of a body
 * assembled part by part as the uplink sends it, which this test also
 * splits back into its parts (RFC 2046) on its own.
 *
 * What the uplink makes of the cloud's answer (op_stow_interpret):
 * test_stow_status (the table of stow.h), test_stow_orthanc (Orthanc's
 * answers), test_stow_json (JSON that says nothing usable, overlaps,
 * duplicates, strangers).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/stow.h"
#include "unit.h"

/* --- framing ---------------------------------------------------------------------- */

#define B32 "0123456789abcdef0123456789abcdef"
#define HEAD_MIDDLE "\r\nContent-Type: application/dicom\r\nContent-Length: "

static void test_stow_part_head_bytes(void **state)
{
	char buf[256];
	size_t n;

	(void)state;
	n = op_stow_part_head(buf, sizeof(buf), B32, 1234);
	assert_string_equal(buf, "--" B32 "\r\nContent-Type: application/dicom\r\n"
				 "Content-Length: 1234\r\n\r\n");
	assert_int_equal(n, strlen(buf));
	n = op_stow_part_head(buf, sizeof(buf), B32, 0);
	assert_string_equal(buf, "--" B32 HEAD_MIDDLE "0\r\n\r\n");
	assert_int_equal(n, strlen(buf));
	n = op_stow_part_head(buf, sizeof(buf), B32, UINT64_MAX);
	assert_string_equal(buf, "--" B32 HEAD_MIDDLE "18446744073709551615\r\n\r\n");
	assert_int_equal(n, strlen(buf));
}

static void test_stow_close_bytes(void **state)
{
	char buf[64];
	size_t n;

	(void)state;
	n = op_stow_close(buf, sizeof(buf), B32);
	assert_string_equal(buf, "--" B32 "--\r\n");
	assert_int_equal(n, 38);
}

/* Too small a buffer: nothing is written past its size, and 0 says so. */
static void test_stow_framing_small_buffer(void **state)
{
	static const char head[] = "--" B32 HEAD_MIDDLE "7\r\n\r\n";
	static const char close[] = "--" B32 "--\r\n";
	char buf[128];

	(void)state;
	for (size_t size = 0; size < sizeof(head); size++) {
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(op_stow_part_head(buf, size, B32, 7), 0);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
	assert_int_equal(op_stow_part_head(buf, sizeof(head), B32, 7), sizeof(head) - 1);
	assert_string_equal(buf, head);
	for (size_t size = 0; size < sizeof(close); size++) {
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(op_stow_close(buf, size, B32), 0);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
	assert_int_equal(op_stow_close(buf, sizeof(close), B32), sizeof(close) - 1);
	assert_string_equal(buf, close);
	assert_int_equal(op_stow_part_head(NULL, 0, B32, 7), 0);
	assert_int_equal(op_stow_close(NULL, 0, B32), 0);
}

static void test_stow_boundary(void **state)
{
	enum { N = 1000 };
	static char seen[N][OP_STOW_BOUNDARY_LEN + 1];
	int digits[16] = { 0 };

	(void)state;
	for (int i = 0; i < N; i++) {
		memset(seen[i], 'X', sizeof(seen[i]));
		op_stow_boundary(seen[i]);
		assert_int_equal(seen[i][OP_STOW_BOUNDARY_LEN], '\0');
		assert_int_equal(strlen(seen[i]), OP_STOW_BOUNDARY_LEN);
		for (int j = 0; j < OP_STOW_BOUNDARY_LEN; j++) {
			const char *hex = "0123456789abcdef", *p = strchr(hex, seen[i][j]);

			assert_non_null(p);
			digits[p - hex]++;
		}
	}
	qsort(seen, N, sizeof(seen[0]), (int (*)(const void *, const void *))strcmp);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(seen[i - 1], seen[i]);
	/* 32000 random digits: each of the 16 about 2000 times. */
	for (int d = 0; d < 16; d++)
		assert_in_range(digits[d], 1500, 2500);
}

struct body {
	char *data;
	size_t len, cap;
};

static void put(struct body *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		char *data = malloc((b->len + n) * 2);

		assert_non_null(data);
		if (b->len)
			memcpy(data, b->data, b->len);
		unit_release(b->data);
		b->data = unit_hold(data, NULL);
		b->cap = (b->len + n) * 2;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

/* A body as the uplink's next_chunk() sends it: for each part its head,
 * its bytes and a CRLF; then the closing delimiter. */
static void assemble(struct body *b, const char *boundary, char *const *parts,
		     const uint64_t *sizes, unsigned n)
{
	char small[256];
	size_t len;

	for (unsigned i = 0; i < n; i++) {
		len = op_stow_part_head(small, sizeof(small), boundary, sizes[i]);
		assert_true(len > 0);
		put(b, small, len);
		put(b, parts[i], sizes[i]);
		put(b, "\r\n", 2);
	}
	len = op_stow_close(small, sizeof(small), boundary);
	assert_true(len > 0);
	put(b, small, len);
}

/* Splits body back into its parts (RFC 2046 5.1.1), on its own. */
static void check_multipart(const struct body *b, const char *boundary, char *const *parts,
			    const uint64_t *sizes, unsigned n)
{
	char dash[128], delim[128], want[256];
	const char *p = b->data, *end = b->data + b->len, *next;
	size_t dash_len = (size_t)snprintf(dash, sizeof(dash), "--%s", boundary);
	size_t delim_len = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);

	/* No preamble: the body opens with the first delimiter. */
	assert_true((size_t)(end - p) >= dash_len);
	assert_memory_equal(p, dash, dash_len);
	p += dash_len;
	for (unsigned i = 0; i < n; i++) {
		size_t want_len = (size_t)snprintf(want, sizeof(want),
						   "\r\nContent-Type: application/dicom\r\n"
						   "Content-Length: %" PRIu64 "\r\n\r\n",
						   sizes[i]);

		assert_true((size_t)(end - p) >= want_len);
		assert_memory_equal(p, want, want_len);
		p += want_len;
		/* The part's bytes run to the next delimiter. */
		next = memmem(p, (size_t)(end - p), delim, delim_len);
		assert_non_null(next);
		assert_int_equal(next - p, sizes[i]);
		assert_memory_equal(p, parts[i], sizes[i]);
		p = next + delim_len;
	}
	/* The close delimiter, and nothing after it (no epilogue). */
	assert_int_equal(end - p, 4);
	assert_memory_equal(p, "--\r\n", 4);
}

/* Part i: bytes that look like framing (CRLF, dashes) but hold no boundary. */
static char *make_part(unsigned i, uint64_t size)
{
	static const char pattern[] = "\r\n--\r\n\r\nContent-Length: 0\r\n-";
	char *part = unit_hold(malloc(size ? size : 1), NULL);

	assert_non_null(part);
	for (uint64_t j = 0; j < size; j++)
		part[j] = j % 7 == 3 ? (char)('A' + (i + j) % 26)
				     : pattern[(i + j) % (sizeof(pattern) - 1)];
	return part;
}

static void check_assembled(const char *boundary, const uint64_t *sizes, unsigned n)
{
	char **parts = unit_hold(calloc(n ? n : 1, sizeof(*parts)), NULL);
	struct body b = { 0 };

	for (unsigned i = 0; i < n; i++)
		parts[i] = make_part(i, sizes[i]);
	assemble(&b, boundary, parts, sizes, n);
	assert_int_equal(op_stow_body_length(boundary, sizes, n), b.len);
	check_multipart(&b, boundary, parts, sizes, n);
	for (unsigned i = 0; i < n; i++)
		unit_release(parts[i]);
	unit_release(parts);
	unit_release(b.data);
}

static void test_stow_body_length_assembled(void **state)
{
	static const uint64_t one_empty[] = { 0 }, one_byte[] = { 1 }, three[] = { 1, 2, 3 };
	static const uint64_t digits[] = { 9, 10, 99, 100, 999, 1000, 9999, 10000, 0, 1 };
	static const uint64_t one_mb[] = { 1 << 20 };
	static uint64_t many[1000]; /* the uplink's largest batch */
	char boundary[OP_STOW_BOUNDARY_LEN + 1];
	/* RFC 2046 allows boundaries of up to 70 characters. */
	static const char long_boundary[] =
		"0123456789012345678901234567890123456789012345678901234567890123456789";

	(void)state;
	assert_int_equal(strlen(long_boundary), 70);
	op_stow_boundary(boundary);
	for (unsigned i = 0; i < 1000; i++)
		many[i] = (i * 7919u) % 1500;
	check_assembled(boundary, NULL, 0);
	check_assembled(boundary, one_empty, 1);
	check_assembled(boundary, one_byte, 1);
	check_assembled(boundary, three, 3);
	check_assembled(boundary, digits, 10);
	check_assembled(boundary, one_mb, 1);
	check_assembled(boundary, many, 1000);
	check_assembled(long_boundary, three, 3);
	check_assembled(long_boundary, digits, 10);
	/* No parts: the close delimiter alone. */
	assert_int_equal(op_stow_body_length(boundary, NULL, 0), 2 + 32 + 4);
}

/* Sizes no test can hold in memory: the body is counted as the uplink
 * would send it, and against the length worked out by hand. */
static void test_stow_body_length_big(void **state)
{
	static const uint64_t big[] = { 4294967295u, 4294967296u, 1000000000000u,
					9000000000000000000u, 0 };
	static const uint64_t huge[] = { 10000000000000000000u };
	static const struct {
		const uint64_t *sizes;
		unsigned n;
	} cases[] = { { big, 5 }, { huge, 1 } };
	char boundary[OP_STOW_BOUNDARY_LEN + 1], small[256], digits[32];

	(void)state;
	op_stow_boundary(boundary);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t sent = 0, by_hand = 2 + 32 + 4;

		for (unsigned i = 0; i < cases[c].n; i++) {
			uint64_t size = cases[c].sizes[i];

			sent += op_stow_part_head(small, sizeof(small), boundary, size) + size + 2;
			by_hand += 2 + 32 + strlen(HEAD_MIDDLE) +
				   (uint64_t)snprintf(digits, sizeof(digits), "%" PRIu64, size) +
				   4 + size + 2;
		}
		sent += op_stow_close(small, sizeof(small), boundary);
		assert_true(sent == by_hand);
		assert_true(op_stow_body_length(boundary, cases[c].sizes, cases[c].n) == by_hand);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stow_part_head_bytes, unit_release_all),
		cmocka_unit_test_teardown(test_stow_close_bytes, unit_release_all),
		cmocka_unit_test_teardown(test_stow_framing_small_buffer, unit_release_all),
		cmocka_unit_test_teardown(test_stow_boundary, unit_release_all),
		cmocka_unit_test_teardown(test_stow_body_length_assembled, unit_release_all),
		cmocka_unit_test_teardown(test_stow_body_length_big, unit_release_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
