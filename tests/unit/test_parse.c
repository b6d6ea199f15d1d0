/*
 * test_parse: services/common/parse.c, the values people write in the
 * configuration file, the console's requests and outpostctl's arguments:
 * whole numbers in a range, sizes, IPv4 networks, AE titles, listen
 * addresses and the cloud's URL. Each value that is refused leaves the
 * output as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/parse.h"

/* --- whole numbers ----------------------------------------------------------------- */

static void test_parse_int(void **state)
{
	static const struct {
		const char *s;
		long long min, max, want;
	} good[] = {
		{ "0", 0, 10, 0 },
		{ "10", 0, 10, 10 },
		{ "1", 1, 65535, 1 },
		{ "65535", 1, 65535, 65535 },
		{ "-5", -10, 10, -5 },
		{ "007", 0, 10, 7 },
		{ "9223372036854775807", 0, 9223372036854775807LL, 9223372036854775807LL },
	};
	static const struct {
		const char *s;
		long long min, max;
	} bad[] = {
		{ "", 0, 10 },
		{ "11", 0, 10 },
		{ "-1", 0, 10 },
		{ "0", 1, 65535 },
		{ "65536", 1, 65535 },
		{ "abc", 0, 10 },
		{ "12x", 0, 100 },
		{ "1.5", 0, 10 },
		{ "1 ", 0, 10 },
		{ "0x10", 0, 100 },
		{ "1e3", 0, 10000 },
		{ "9223372036854775808", 0, 9223372036854775807LL },
		{ "99999999999999999999999", 0, 9223372036854775807LL },
	};
	long long v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 12345;
		if (op_parse_int(good[i].s, good[i].min, good[i].max, &v) != 0)
			fail_msg("op_parse_int(\"%s\", %lld, %lld) refused", good[i].s, good[i].min,
				 good[i].max);
		assert_int_equal(v, good[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 12345;
		if (op_parse_int(bad[i].s, bad[i].min, bad[i].max, &v) != -EINVAL)
			fail_msg("op_parse_int(\"%s\", %lld, %lld) accepted", bad[i].s, bad[i].min,
				 bad[i].max);
		assert_int_equal(v, 12345); /* untouched */
	}
}

/* --- sizes ------------------------------------------------------------------------ */

static void size_is(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	int rc = op_parse_size(s, &v);

	if (rc != 0)
		fail_msg("op_parse_size(\"%s\") = %d", s, rc);
	if (v != want)
		fail_msg("op_parse_size(\"%s\") gave %llu, want %llu", s, (unsigned long long)v,
			 (unsigned long long)want);
}

static void size_fails(const char *s, int want_rc)
{
	uint64_t v = 12345;
	int rc = op_parse_size(s, &v);

	if (rc != want_rc)
		fail_msg("op_parse_size(\"%s\") = %d, want %d", s, rc, want_rc);
	assert_int_equal(v, 12345); /* untouched */
}

static void test_parse_size(void **state)
{
	(void)state;
	size_is("0", 0);
	size_is("512", 512);
	size_is("64k", 64 << 10);
	size_is("64K", 64 << 10);
	size_is("10M", 10ULL << 20);
	size_is("2G", 2ULL << 30);
	size_is("1T", 1ULL << 40);
	size_is("0T", 0);
	size_is(" 5M ", 5ULL << 20);
	size_is("18446744073709551615", UINT64_MAX);
	size_is("16777215T", 16777215ULL << 40);
	size_is("17179869183G", 17179869183ULL << 30);
	size_is("17592186044415M", 17592186044415ULL << 20);
	size_is("18014398509481983k", 18014398509481983ULL << 10);

	/* Overflow. */
	size_fails("18446744073709551616", -ERANGE);
	size_fails("99999999999999999999999", -ERANGE);
	size_fails("16777216T", -ERANGE);
	size_fails("17179869184G", -ERANGE);
	size_fails("17592186044416M", -ERANGE);
	size_fails("18014398509481984k", -ERANGE);

	/* Junk. */
	size_fails("", -EINVAL);
	size_fails(" ", -EINVAL);
	size_fails("k", -EINVAL);
	size_fails("M10", -EINVAL);
	size_fails("-1", -EINVAL);
	size_fails("-1G", -EINVAL);
	size_fails("+1", -EINVAL);
	size_fails("1.5G", -EINVAL);
	size_fails("10MB", -EINVAL);
	size_fails("10MiB", -EINVAL);
	size_fails("10X", -EINVAL);
	size_fails("0x10", -EINVAL);
	size_fails("1 2", -EINVAL);
	size_fails("1kk", -EINVAL);
	size_fails("1G junk", -EINVAL);
}

/* --- CIDRs ------------------------------------------------------------------------- */

static void cidr_is(const char *s, uint32_t addr, uint32_t mask)
{
	op_cidr c = { 1, 1 };

	if (op_cidr_parse(s, &c) != 0)
		fail_msg("op_cidr_parse(\"%s\") failed", s);
	if (c.addr != addr || c.mask != mask)
		fail_msg("op_cidr_parse(\"%s\") = %08x/%08x, want %08x/%08x", s, c.addr, c.mask,
			 addr, mask);
}

static void test_parse_cidr(void **state)
{
	(void)state;
	cidr_is("10.0.0.0/8", 0x0a000000, 0xff000000);
	cidr_is("192.168.1.0/24", 0xc0a80100, 0xffffff00);
	cidr_is("172.16.0.0/12", 0xac100000, 0xfff00000);
	cidr_is("0.0.0.0/0", 0, 0);
	cidr_is("1.2.3.4/0", 0, 0);
	cidr_is("192.168.1.7/32", 0xc0a80107, 0xffffffff);
	cidr_is("192.168.1.7", 0xc0a80107, 0xffffffff);
	cidr_is("255.255.255.255", 0xffffffff, 0xffffffff);
	cidr_is("10.1.2.3/31", 0x0a010202, 0xfffffffe);
	cidr_is("10.1.2.3/1", 0, 0x80000000);
	cidr_is("128.0.0.1/1", 0x80000000, 0x80000000);
	/* Host bits are cleared, so the network matches as written. */
	cidr_is("10.1.2.3/8", 0x0a000000, 0xff000000);

	const char *bad[] = { "",
			      "/8",
			      "10.0.0.0/",
			      "10.0.0.0/33",
			      "10.0.0.0/-1",
			      "10.0.0.0/+8",
			      "10.0.0.0/8x",
			      "10.0.0.0/ 8",
			      "10.0.0.0/8/8",
			      "10.0.0.0/99999999999999999999",
			      "10.0.0",
			      "10.0.0.0.0",
			      "256.0.0.0",
			      "10.0.0.-1",
			      "::1",
			      "::ffff:10.0.0.1",
			      "example.org",
			      " 10.0.0.1",
			      "10.0.0.1 ",
			      "10.0.0.1/8 ",
			      "0x0a.0.0.1",
			      "1.2.3.4/8888888888888888888888888888888888888888" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		op_cidr c = { 7, 7 };
		if (op_cidr_parse(bad[i], &c) != -EINVAL)
			fail_msg("op_cidr_parse(\"%s\") was accepted", bad[i]);
	}
}

static void test_parse_cidr_match(void **state)
{
	op_cidr nets[3] = { { 0, 0 } };

	(void)state;
	assert_int_equal(op_cidr_match(nets, 0, 0x0a000001), 0);

	assert_int_equal(op_cidr_parse("10.0.0.0/8", &nets[0]), 0);
	assert_true(op_cidr_match(nets, 1, 0x0a000000));
	assert_true(op_cidr_match(nets, 1, 0x0affffff));
	assert_false(op_cidr_match(nets, 1, 0x0b000000));
	assert_false(op_cidr_match(nets, 1, 0x09ffffff));

	assert_int_equal(op_cidr_parse("192.168.1.7", &nets[1]), 0);
	assert_true(op_cidr_match(nets, 2, 0xc0a80107));
	assert_false(op_cidr_match(nets, 2, 0xc0a80106));
	assert_false(op_cidr_match(nets, 2, 0xc0a80108));
	assert_false(op_cidr_match(nets, 1, 0xc0a80107)); /* only the first n */

	assert_int_equal(op_cidr_parse("0.0.0.0/0", &nets[2]), 0);
	assert_true(op_cidr_match(&nets[2], 1, 0));
	assert_true(op_cidr_match(&nets[2], 1, 0xffffffff));
	assert_true(op_cidr_match(nets, 3, 0x08080808));
}

/* --- AE titles ------------------------------------------------------------------------ */

static void test_parse_ae_title_valid(void **state)
{
	(void)state;
	assert_true(op_ae_title_valid("A"));
	assert_true(op_ae_title_valid("OUTPOST"));
	assert_true(op_ae_title_valid("SIXTEEN_CHARS_AE"));
	assert_true(op_ae_title_valid("MY AE"));
	assert_true(op_ae_title_valid("CT-1.ward_2@x"));
	assert_false(op_ae_title_valid(""));
	assert_false(op_ae_title_valid("SEVENTEEN_CHARS_X"));
	assert_false(op_ae_title_valid(" "));
	assert_false(op_ae_title_valid("                "));
	assert_false(op_ae_title_valid("A\\B"));
	assert_false(op_ae_title_valid("\\"));
	assert_false(op_ae_title_valid("A\nB"));
	assert_false(op_ae_title_valid("A\tB"));
	assert_false(op_ae_title_valid("\x1b"));
	assert_false(op_ae_title_valid("A\x7f"));
	assert_false(op_ae_title_valid("\xc3\x84RZT")); /* not ISO 646 */
}

/* --- listen addresses -------------------------------------------------------------- */

static void test_parse_listen(void **state)
{
	static const struct {
		const char *s, *addr;
		uint16_t port;
	} good[] = {
		{ "127.0.0.1:8080", "127.0.0.1", 8080 },
		{ "0.0.0.0:443", "0.0.0.0", 443 },
		{ "localhost:9000", "127.0.0.1", 9000 },
		{ "10.1.2.3:1", "10.1.2.3", 1 },
		{ "255.255.255.255:65535", "255.255.255.255", 65535 },
	};
	static const char *const bad[] = {
		"",
		"8080",
		":8080",
		"127.0.0.1",
		"127.0.0.1:",
		"127.0.0.1:0",
		"127.0.0.1:65536",
		"127.0.0.1:80x",
		"127.0.0.1:99999999999999999999",
		"example.com:80",
		"10.0.0:80",
		"256.0.0.1:80",
		"[::1]:80",
		"::1:80",
		"127.000.000.001.1:80",
	};
	char addr[16];
	uint16_t port;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(addr, 'Z', sizeof(addr));
		port = 0;
		if (op_listen_parse(good[i].s, addr, &port) != 0)
			fail_msg("op_listen_parse(\"%s\") refused", good[i].s);
		assert_string_equal(addr, good[i].addr);
		assert_int_equal(port, good[i].port);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(addr, "untouched", 10);
		port = 7;
		if (op_listen_parse(bad[i], addr, &port) != -EINVAL)
			fail_msg("op_listen_parse(\"%s\") accepted", bad[i]);
		assert_string_equal(addr, "untouched");
		assert_int_equal(port, 7);
	}
}

/* --- the cloud's URL ------------------------------------------------------------------ */

/* Accepted as host, port and path; or refused, saying why, the outputs
 * untouched. */
static void test_parse_url(void **state)
{
	static const struct {
		const char *url, *host;
		uint16_t port;
		const char *path, *why;
	} cases[] = {
		{ "https://cloud.example.org", "cloud.example.org", 443, "", NULL },
		{ "https://cloud.example.org/", "cloud.example.org", 443, "", NULL },
		{ "https://cloud.example.org/dicom-web", "cloud.example.org", 443, "/dicom-web",
		  NULL },
		/* Trailing slashes go: the uplink appends "/studies". */
		{ "https://cloud.example.org/dicom-web//", "cloud.example.org", 443, "/dicom-web",
		  NULL },
		{ "https://localhost:8443/a/b", "localhost", 8443, "/a/b", NULL },
		{ "https://10.0.0.1:1/", "10.0.0.1", 1, "", NULL },
		{ "https://h:65535", "h", 65535, "", NULL },

		{ "", NULL, 0, NULL, "https://" },
		{ "http://cloud.example.org/", NULL, 0, NULL, "https://" },
		{ "cloud.example.org", NULL, 0, NULL, "https://" },
		{ "https://cloud.example.org/?x=1", NULL, 0, NULL, "query" },
		{ "https://cloud.example.org/a#top", NULL, 0, NULL, "fragment" },
		{ "https://", NULL, 0, NULL, "host" },
		{ "https:///dicom-web", NULL, 0, NULL, "host" },
		{ "https://:443/", NULL, 0, NULL, "host" },
		{ "https://user@cloud.example.org/", NULL, 0, NULL, "host" },
		{ "https://[::1]:443/", NULL, 0, NULL, "host" },
		{ "https://cloud.example.org:/", NULL, 0, NULL, "port" },
		{ "https://cloud.example.org:0/", NULL, 0, NULL, "port" },
		{ "https://cloud.example.org:65536/", NULL, 0, NULL, "port" },
		{ "https://cloud.example.org:44x3/", NULL, 0, NULL, "port" },
		/* Blanks and control characters: a Host header or a request
		 * line would carry them, or be split by them. */
		{ "https://cloud example.org/", NULL, 0, NULL, "host" },
		{ "https://cloud.example.org\r\nX-Injected: 1/", NULL, 0, NULL, "host" },
		{ "https://cloud\x7f.example.org/", NULL, 0, NULL, "host" },
		{ "https://cloud.example.org/dicom web", NULL, 0, NULL, "path" },
		{ "https://cloud.example.org/a\tb", NULL, 0, NULL, "path" },
		{ "https://cloud.example.org/a\x01b", NULL, 0, NULL, "path" },
	};
	char host[256], path[768];
	const char *why;
	uint16_t port;
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why = NULL;
		snprintf(host, sizeof(host), "untouched");
		snprintf(path, sizeof(path), "untouched");
		port = 7;
		rc = op_url_parse(cases[i].url, host, sizeof(host), &port, path, sizeof(path),
				  &why);
		if (!cases[i].why) {
			if (rc != 0)
				fail_msg("op_url_parse(\"%s\") refused: %s", cases[i].url, why);
			assert_string_equal(host, cases[i].host);
			assert_int_equal(port, cases[i].port);
			assert_string_equal(path, cases[i].path);
			continue;
		}
		if (rc != -EINVAL)
			fail_msg("op_url_parse(\"%s\") accepted", cases[i].url);
		if (!why || !strstr(why, cases[i].why))
			fail_msg("op_url_parse(\"%s\"): \"%s\" does not say \"%s\"", cases[i].url,
				 why ? why : "(none)", cases[i].why);
		assert_string_equal(host, "untouched");
		assert_int_equal(port, 7);
		assert_string_equal(path, "untouched");
	}
}

/* A host or path longer than its buffer is refused, not cut. */
static void test_parse_url_lengths(void **state)
{
	char host[8], path[8];
	const char *why = NULL;
	uint16_t port;

	(void)state;
	assert_int_equal(op_url_parse("https://1234567/123456", host, sizeof(host), &port, path,
				      sizeof(path), &why),
			 0);
	assert_string_equal(host, "1234567");
	assert_string_equal(path, "/123456");
	assert_int_equal(op_url_parse("https://12345678/", host, sizeof(host), &port, path,
				      sizeof(path), &why),
			 -EINVAL);
	assert_non_null(strstr(why, "host"));
	assert_int_equal(op_url_parse("https://h/1234567", host, sizeof(host), &port, path,
				      sizeof(path), &why),
			 -EINVAL);
	assert_non_null(strstr(why, "path"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_int),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_parse_cidr_match),
		cmocka_unit_test(test_parse_ae_title_valid),
		cmocka_unit_test(test_parse_listen),
		cmocka_unit_test(test_parse_url),
		cmocka_unit_test(test_parse_url_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
