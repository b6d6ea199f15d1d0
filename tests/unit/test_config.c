/*
 * test_config: services/common/config.c, the keys and their values:
 * defaults, every key, the syntax inih accepts, ranges and refused values
 * (sizes, CIDRs, AE titles, lists; their parsers are test_parse's), long
 * lines and lists, [shaping], [priority], [console], and the query/retrieve
 * and commitment keys of [receiver] and [spool]. What it says of a
 * refused file: test_config_errors; its printout: test_config_print.
 *
 * Each test writes its files into its own mkdtemp directory, removed after.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

/* --- defaults and every key ----------------------------------------------------- */

static void test_config_defaults(void **state)
{
	op_config c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	op_config_defaults(&c);
	assert_string_equal(c.receiver.ae_title, "OUTPOST");
	assert_string_equal(c.receiver.bind, "0.0.0.0");
	assert_int_equal(c.receiver.port, 11112);
	assert_int_equal(c.receiver.allowed_calling_aets.n, 0);
	assert_int_equal(c.receiver.n_allowed_hosts, 0);
	assert_int_equal(c.receiver.max_associations, 16);
	assert_int_equal(c.receiver.max_pdu, OP_PDU_MAX);
	assert_int_equal(c.receiver.acse_timeout, 30);
	assert_int_equal(c.receiver.dimse_timeout, 60);
	assert_int_equal(c.receiver.allow_query, 1);
	assert_int_equal(c.receiver.commitment, OP_COMMIT_CLOUD);
	assert_int_equal(c.receiver.commitment_timeout, 86400);
	assert_string_equal(c.spool.dir, "var/spool");
	assert_int_equal(c.spool.max_bytes, 0);
	assert_int_equal(c.spool.min_free_bytes, 512ULL << 20);
	assert_int_equal(c.spool.keep_sent_bytes, 1ULL << 30);
	assert_int_equal(c.spool.keep_sent_days, 0);
	assert_int_equal(c.n_peers, 0);
	assert_int_equal(c.log_level, OP_LOG_INFO);
	/* The defaults are themselves a valid configuration. */
	assert_true(op_ae_title_valid(c.receiver.ae_title));
}

static void test_config_empty_file_is_defaults(void **state)
{
	struct unit_config *f = *state;
	op_config d;

	op_config_defaults(&d);
	assert_int_equal(unit_config_load_text(f, ""), 0);
	assert_string_equal(f->cfg.receiver.ae_title, d.receiver.ae_title);
	assert_int_equal(f->cfg.receiver.port, d.receiver.port);
	assert_string_equal(f->cfg.spool.dir, d.spool.dir);
	assert_int_equal(f->cfg.spool.min_free_bytes, d.spool.min_free_bytes);
	assert_int_equal(f->cfg.log_level, d.log_level);

	/* Only comments and blank lines. */
	assert_int_equal(
		unit_config_load_text(f, "; comment\n# another\n\n   \n[receiver]\n; none\n"), 0);
	assert_int_equal(f->cfg.receiver.port, d.receiver.port);
}

static void test_config_every_key(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, unit_config_every_key), 0);
	assert_string_equal(f->err, "");
	unit_config_assert_every_key(&f->cfg);
}

/* Load starts from the defaults: nothing of an earlier load survives. */
static void test_config_load_starts_from_defaults(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, unit_config_every_key), 0);
	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 2000\n"), 0);
	assert_int_equal(f->cfg.receiver.port, 2000);
	assert_string_equal(f->cfg.receiver.ae_title, "OUTPOST");
	assert_int_equal(f->cfg.receiver.allowed_calling_aets.n, 0);
	assert_int_equal(f->cfg.receiver.n_allowed_hosts, 0);
	assert_int_equal(f->cfg.spool.max_bytes, 0);
	assert_int_equal(f->cfg.log_level, OP_LOG_INFO);
}

static void test_config_syntax_variants(void **state)
{
	struct unit_config *f = *state;

	/* Spaces around '=' and ':' as separator are inih's; inline comments
	 * start with " #" (';' separates schedule windows). */
	assert_int_equal(unit_config_load_text(f, "[receiver]\n"
						  "port=105\n"
						  "ae_title   =   SPACED AE   \n"
						  "max_associations = 8 # comment after a value\n"
						  "\n"
						  "# comment\n"
						  "; comment\n"
						  "[log]\n"
						  "level = warn\n"),
			 0);
	assert_int_equal(f->cfg.receiver.port, 105);
	assert_string_equal(f->cfg.receiver.ae_title, "SPACED AE");
	assert_int_equal(f->cfg.receiver.max_associations, 8);
	assert_int_equal(f->cfg.log_level, OP_LOG_WARN);

	/* A section may appear twice; the last value of a key wins. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 1\n[spool]\ndir = a\n"
						  "[receiver]\nport = 2\n"),
			 0);
	assert_int_equal(f->cfg.receiver.port, 2);
	assert_string_equal(f->cfg.spool.dir, "a");

	/* Each log level by name. */
	const char *levels[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++) {
		char text[64];
		snprintf(text, sizeof(text), "[log]\nlevel = %s\n", levels[i]);
		assert_int_equal(unit_config_load_text(f, text), 0);
		assert_int_equal(f->cfg.log_level, (enum op_log_level)i);
	}
}

/* Every integer key at both ends of its range, and just outside. */
static void test_config_int_ranges(void **state)
{
	struct unit_config *f = *state;
	const struct {
		const char *key;
		long long min, max;
	} ints[] = {
		{ "port", 1, 65535 },
		{ "max_associations", 1, 256 },
		{ "max_pdu", OP_PDU_MIN, OP_PDU_MAX },
		{ "acse_timeout", 1, 3600 },
		{ "dimse_timeout", 1, 86400 },
	};
	char text[128], v[32];

	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		snprintf(text, sizeof(text), "[receiver]\n%s = %lld\n", ints[i].key, ints[i].min);
		assert_int_equal(unit_config_load_text(f, text), 0);
		snprintf(text, sizeof(text), "[receiver]\n%s = %lld\n", ints[i].key, ints[i].max);
		assert_int_equal(unit_config_load_text(f, text), 0);
		snprintf(v, sizeof(v), "%lld", ints[i].min - 1);
		unit_config_assert_refused(f, "receiver", ints[i].key, v);
		snprintf(v, sizeof(v), "%lld", ints[i].max + 1);
		unit_config_assert_refused(f, "receiver", ints[i].key, v);
		unit_config_assert_refused(f, "receiver", ints[i].key, "-1");
		unit_config_assert_refused(f, "receiver", ints[i].key, "abc");
		unit_config_assert_refused(f, "receiver", ints[i].key, "12x");
		unit_config_assert_refused(f, "receiver", ints[i].key, "1.5");
		unit_config_assert_refused(f, "receiver", ints[i].key, "99999999999999999999999");
		unit_config_assert_refused(f, "receiver", ints[i].key, "");
	}
	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 65535\nmax_pdu = 4096\n"), 0);
	assert_int_equal(f->cfg.receiver.port, 65535);
	assert_int_equal(f->cfg.receiver.max_pdu, 4096);
	/* 65536 must not wrap to 0 in the 16-bit field. */
	unit_config_assert_refused(f, "receiver", "port", "65536");
	unit_config_assert_refused(f, "receiver", "port", "0");
}

static void test_config_bad_values(void **state)
{
	struct unit_config *f = *state;

	unit_config_assert_refused(f, "receiver", "ae_title", "SEVENTEEN_CHARS_X");
	unit_config_assert_refused(f, "receiver", "ae_title", "A\\B");
	unit_config_assert_refused(f, "receiver", "ae_title", "");
	unit_config_assert_refused(f, "receiver", "bind", "10.0.0");
	unit_config_assert_refused(f, "receiver", "bind", "localhost");
	unit_config_assert_refused(f, "receiver", "bind", "256.1.1.1");
	unit_config_assert_refused(f, "receiver", "bind", "::1");
	unit_config_assert_refused(f, "receiver", "bind", "");
	unit_config_assert_refused(f, "receiver", "allowed_calling_aets", "GOOD, BAD\\AE");
	unit_config_assert_refused(f, "receiver", "allowed_calling_aets", "SEVENTEEN_CHARS_X");
	unit_config_assert_refused(f, "receiver", "allowed_hosts", "10.0.0.0/33");
	unit_config_assert_refused(f, "receiver", "allowed_hosts", "10.0.0.0/8, example.org");
	unit_config_assert_refused(f, "spool", "dir", "");
	unit_config_assert_refused(f, "spool", "max_bytes", "10X");
	unit_config_assert_refused(f, "spool", "max_bytes", "-1");
	unit_config_assert_refused(f, "spool", "max_bytes", "lots");
	unit_config_assert_refused(f, "spool", "min_free_bytes", "99999999999999999999");
	unit_config_assert_refused(f, "spool", "keep_sent_bytes", "20000000T");
	unit_config_assert_refused(f, "log", "level", "verbose");
	unit_config_assert_refused(f, "log", "level", "INFO ish");
	unit_config_assert_refused(f, "log", "level", "");
}

/* spool.dir holds OP_DIR_MAX - 1 characters; longer is refused, not cut. */
static void test_config_dir_length(void **state)
{
	struct unit_config *f = *state;
	static char text[sizeof(f->cfg.spool.dir) + 64], dir[sizeof(f->cfg.spool.dir) + 1];
	size_t max = sizeof(f->cfg.spool.dir) - 1;

	memset(dir, 'd', max + 1);
	dir[0] = '/';
	dir[max + 1] = '\0';
	snprintf(text, sizeof(text), "[spool]\ndir = %s\n", dir);
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 2, "dir");

	dir[max] = '\0';
	snprintf(text, sizeof(text), "[spool]\ndir = %s\n", dir);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_string_equal(f->cfg.spool.dir, dir);
}

/* A long line (a path, a list, a comment) is read whole: inih's default
 * 200-byte line buffer must not split it into a second, garbled line. */
static void test_config_long_lines(void **state)
{
	struct unit_config *f = *state;
	char dir[400], text[1200], comment[600];

	/* A 300-character path. */
	memset(dir, 'p', 300);
	dir[0] = '/';
	dir[300] = '\0';
	snprintf(text, sizeof(text), "[spool]\ndir = %s\n[log]\nlevel = error\n", dir);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_string_equal(f->cfg.spool.dir, dir);
	assert_int_equal(f->cfg.log_level, OP_LOG_ERROR);

	/* A 500-character comment whose tail looks like a key. */
	memset(comment, '-', 500);
	comment[0] = ';';
	memcpy(comment + 480, " port = 9 ", 10);
	comment[500] = '\0';
	snprintf(text, sizeof(text), "[receiver]\n%s\nmax_associations = 3\n", comment);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.receiver.port, 11112);
	assert_int_equal(f->cfg.receiver.max_associations, 3);
}

/* --- lists ------------------------------------------------------------------------ */

static void test_config_lists(void **state)
{
	struct unit_config *f = *state;
	const op_receiver_config *r = &f->cfg.receiver;

	/* Commas, with blanks around them and empty items between them
	 * (README: lists are separated by commas, allowed_hosts also by
	 * spaces). */
	assert_int_equal(
		unit_config_load_text(
			f, "[receiver]\n"
			   "allowed_calling_aets = A,B  ,  C,\tD , ,E,\n"
			   "allowed_hosts = 10.0.0.0/8 192.168.0.0/16,172.16.0.1\t10.9.9.9\n"),
		0);
	assert_int_equal(r->allowed_calling_aets.n, 5);
	assert_string_equal(r->allowed_calling_aets.aet[0], "A");
	assert_string_equal(r->allowed_calling_aets.aet[1], "B");
	assert_string_equal(r->allowed_calling_aets.aet[2], "C");
	assert_string_equal(r->allowed_calling_aets.aet[3], "D");
	assert_string_equal(r->allowed_calling_aets.aet[4], "E");
	assert_int_equal(r->n_allowed_hosts, 4);
	assert_int_equal(r->allowed_hosts[1].addr, 0xc0a80000);
	assert_int_equal(r->allowed_hosts[1].mask, 0xffff0000);
	assert_int_equal(r->allowed_hosts[2].addr, 0xac100001);
	assert_int_equal(r->allowed_hosts[3].addr, 0x0a090909);

	/* An AE title may contain spaces (op_ae_title_valid("MY AE")), so a
	 * modality called "MY AE" can be allowed. */
	assert_int_equal(
		unit_config_load_text(f, "[receiver]\nallowed_calling_aets = MY AE, CT1\n"), 0);
	assert_int_equal(r->allowed_calling_aets.n, 2);
	assert_string_equal(r->allowed_calling_aets.aet[0], "MY AE");
	assert_string_equal(r->allowed_calling_aets.aet[1], "CT1");

	/* A list given twice: the second replaces the first. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\n"
						  "allowed_calling_aets = A, B, C\n"
						  "allowed_calling_aets = D\n"),
			 0);
	assert_int_equal(r->allowed_calling_aets.n, 1);
	assert_string_equal(r->allowed_calling_aets.aet[0], "D");

	/* An empty list means "any". */
	assert_int_equal(
		unit_config_load_text(f, "[receiver]\nallowed_calling_aets =\nallowed_hosts =\n"),
		0);
	assert_int_equal(r->allowed_calling_aets.n, 0);
	assert_int_equal(r->n_allowed_hosts, 0);
}

/*
 * Writes "[receiver]\nkey = " and n items into text: AE titles of width
 * characters (width 1: letters, comma-separated without spaces, so that 65
 * fit in one short line), or hosts (width 0). With per_line, the list goes on
 * over indented continuation lines, per_line items each.
 */
static void make_list(char *text, size_t size, const char *key, int n, int width, int per_line)
{
	size_t o = (size_t)snprintf(text, size, "[receiver]\n%s =", key);

	for (int i = 0; i < n; i++) {
		const char *sep = i == 0 ? " " : ",";

		if (per_line && i && i % per_line == 0)
			sep = ",\n    ";
		else if (width != 1 && i)
			sep = ", ";
		if (width == 0)
			o += (size_t)snprintf(text + o, size - o, "%s10.0.%d.%d", sep, i / 250,
					      i % 250);
		else if (width == 1)
			o += (size_t)snprintf(text + o, size - o, "%s%c", sep, 'A' + i % 26);
		else
			o += (size_t)snprintf(text + o, size - o, "%s%0*d", sep, width, i);
		assert_true(o < size);
	}
	snprintf(text + o, size - o, "\nport = 104\n");
}

/* 64 entries fit, 65 are refused with a message naming the key and line. */
static void test_config_list_limits(void **state)
{
	struct unit_config *f = *state;
	static char text[8192];

	make_list(text, sizeof(text), "allowed_calling_aets", OP_LIST_MAX, 1, 0);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.receiver.allowed_calling_aets.n, OP_LIST_MAX);
	assert_string_equal(f->cfg.receiver.allowed_calling_aets.aet[0], "A");
	assert_string_equal(f->cfg.receiver.allowed_calling_aets.aet[63], "L");

	make_list(text, sizeof(text), "allowed_calling_aets", OP_LIST_MAX + 1, 1, 0);
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 2, "allowed_calling_aets");
	assert_non_null(strstr(f->err, "64"));
}

/*
 * Continuation lines are not supported (an indented "port = 104" must never
 * become part of the value above it): a list broken over indented lines is
 * refused at its second line, and one line holds a list of any length.
 */
static void test_config_long_list_continued(void **state)
{
	struct unit_config *f = *state;
	static char text[8192];

	make_list(text, sizeof(text), "allowed_calling_aets", OP_LIST_MAX, OP_AE_MAX, 8);
	assert_int_equal(unit_config_load_text(f, text), -EINVAL);
	unit_config_assert_error_at(f, 3, NULL);

	make_list(text, sizeof(text), "allowed_calling_aets", OP_LIST_MAX, OP_AE_MAX, 0);
	assert_true(strlen(text) > 1000);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.receiver.allowed_calling_aets.n, OP_LIST_MAX);
	assert_string_equal(f->cfg.receiver.allowed_calling_aets.aet[63], "0000000000000063");

	make_list(text, sizeof(text), "allowed_hosts", OP_LIST_MAX, 0, 0);
	assert_int_equal(unit_config_load_text(f, text), 0);
	assert_int_equal(f->cfg.receiver.n_allowed_hosts, OP_LIST_MAX);
	assert_int_equal(f->cfg.receiver.allowed_hosts[0].addr, 0x0a000000);
	assert_int_equal(f->cfg.receiver.allowed_hosts[63].addr, 0x0a00003f);
	assert_int_equal(f->cfg.receiver.port, 104);
}

/*
 * An indented key line is not silently glued to the value above it (inih
 * reads an indented line as the continuation of the previous value): it is
 * read as its own key, or refused naming its line.
 */
static void test_config_indented_key(void **state)
{
	struct unit_config *f = *state;
	int rc = unit_config_load_text(f, "[receiver]\nae_title = EDGE\n  port = 104\n");

	if (rc == 0) {
		assert_string_equal(f->cfg.receiver.ae_title, "EDGE");
		assert_int_equal(f->cfg.receiver.port, 104);
	} else {
		assert_int_equal(rc, -EINVAL);
		unit_config_assert_error_at(f, 3, NULL);
	}
}

/* [shaping] and [priority]: rates, the schedule, switches, match lists. */
static void test_config_shaping_priority(void **state)
{
	struct unit_config *f = *state;

	op_config_defaults(&f->cfg);
	assert_true(f->cfg.shaping.rate == OP_RATE_UNLIMITED); /* the default */
	assert_int_equal(unit_config_load_text(
				 f,
				 "[shaping]\n"
				 "rate = 8Mbit\n"
				 "burst = 64k\n"
				 "schedule = Mon-Fri 07:00-19:00 2Mbit; Sat 00:00-24:00 0\n"
				 "scavenger = on\n"
				 "[priority]\n"
				 "urgent_calling_aets = ER CT, CT2\n"
				 "urgent_match = RequestedProcedurePriority=STAT, Modality=XA\n"),
			 0);
	assert_true(f->cfg.shaping.rate == 8000000);
	assert_int_equal(f->cfg.shaping.burst, 64 << 10);
	assert_int_equal(f->cfg.shaping.parsed.n, 2);
	assert_true(f->cfg.shaping.parsed.windows[1].rate_bps == 0);
	assert_int_equal(f->cfg.shaping.scavenger, 1);
	assert_int_equal(f->cfg.priority.urgent_calling_aets.n, 2);
	assert_string_equal(f->cfg.priority.urgent_calling_aets.aet[0], "ER CT");
	assert_string_equal(f->cfg.priority.urgent_match,
			    "RequestedProcedurePriority=STAT, Modality=XA");
	/* A ';' does not start a comment (schedules use it); " #" does. */
	assert_int_equal(unit_config_load_text(f, "[shaping]\nrate = 1M # the night rate\n"), 0);
	assert_true(f->cfg.shaping.rate == 1000000);

	unit_config_assert_refused(f, "shaping", "rate", "fast");
	unit_config_assert_refused(f, "shaping", "rate", "8MB");
	unit_config_assert_refused(f, "shaping", "schedule", "Mon 07:00-25:00 1M");
	unit_config_assert_refused(f, "shaping", "schedule", "Someday 07:00-08:00 1M");
	unit_config_assert_refused(f, "shaping", "scavenger", "maybe");
	unit_config_assert_refused(f, "priority", "urgent_match", "STAT");
	unit_config_assert_refused(f, "priority", "urgent_match", "Requested Priority=STAT");
	unit_config_assert_refused(f, "priority", "urgent_match", "Modality=");
	unit_config_assert_refused(f, "priority", "urgent_calling_aets", "BAD\\AE");
}

static void test_config_console(void **state)
{
	struct unit_config *f = *state;

	op_config_defaults(&f->cfg);
	assert_string_equal(f->cfg.console.listen, "127.0.0.1:8080");
	assert_string_equal(f->cfg.console.password_hash, ""); /* no default password */
	assert_int_equal(f->cfg.console.session_ttl, 28800);
	assert_int_equal(unit_config_load_text(
				 f, "[console]\n"
				    "listen = 0.0.0.0:443\n"
				    "socket = /run/outpost/outpost.sock\n"
				    "tls_cert = /etc/outpost/console.pem\n"
				    "tls_key = /etc/outpost/console.key\n"
				    "password_hash = $argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n"
				    "web_root = /usr/share/outpost/console\n"
				    "session_ttl = 600\n"),
			 0);
	assert_string_equal(f->cfg.console.listen_addr, "0.0.0.0");
	assert_int_equal(f->cfg.console.listen_port, 443);
	assert_string_equal(f->cfg.console.socket, "/run/outpost/outpost.sock");
	assert_string_equal(f->cfg.console.password_hash,
			    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
	assert_int_equal(f->cfg.console.session_ttl, 600);
	/* Empty: no listener; localhost is 127.0.0.1. */
	assert_int_equal(unit_config_load_text(f, "[console]\nlisten =\nsocket =\n"), 0);
	assert_string_equal(f->cfg.console.listen, "");
	assert_string_equal(f->cfg.console.socket, "");
	assert_int_equal(unit_config_load_text(f, "[console]\nlisten = localhost:9000\n"), 0);
	assert_string_equal(f->cfg.console.listen_addr, "127.0.0.1");

	unit_config_assert_refused(f, "console", "listen", "8080");
	unit_config_assert_refused(f, "console", "listen", "127.0.0.1:0");
	unit_config_assert_refused(f, "console", "listen", "127.0.0.1:70000");
	unit_config_assert_refused(f, "console", "listen", "example.com:80");
	unit_config_assert_refused(f, "console", "password_hash", "secret");
	unit_config_assert_refused(f, "console", "session_ttl", "10");
	assert_int_equal(unit_config_load_text(f, "[console]\ntls_cert = /a.pem\n"), -EINVAL);
	unit_config_assert_error_at(f, 2, "tls_cert and tls_key go together");
}

/* [console] backlog_alarm: a duration, 1 h unless set. */
static void test_config_backlog_alarm(void **state)
{
	struct unit_config *f = *state;
	static const struct {
		const char *text;
		uint32_t seconds;
	} good[] = { { "90", 90 },   { "90s", 90 },   { "30m", 1800 },
		     { "2h", 7200 }, { "1d", 86400 }, { "30d", 30 * 86400 } };

	op_config_defaults(&f->cfg);
	assert_int_equal(f->cfg.console.backlog_alarm, 3600);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char text[128];

		snprintf(text, sizeof(text), "[console]\nbacklog_alarm = %s\n", good[i].text);
		assert_int_equal(unit_config_load_text(f, text), 0);
		assert_int_equal(f->cfg.console.backlog_alarm, good[i].seconds);
	}
	unit_config_assert_refused(f, "console", "backlog_alarm", "59s");
	unit_config_assert_refused(f, "console", "backlog_alarm", "31d");
	unit_config_assert_refused(f, "console", "backlog_alarm", "1w");
	unit_config_assert_refused(f, "console", "backlog_alarm", "h");
	unit_config_assert_refused(f, "console", "backlog_alarm", "1hs");
	unit_config_assert_refused(f, "console", "backlog_alarm", "1sh");
	unit_config_assert_refused(f, "console", "backlog_alarm", "-1h");
	unit_config_assert_refused(f, "console", "backlog_alarm", "");
}

/* [receiver] allow_query, commitment and commitment_timeout, [spool]
 * keep_sent_days: what the file may say, and what it may not. */
static void test_config_query_commitment(void **state)
{
	struct unit_config *f = *state;
	static const struct {
		const char *text;
		uint32_t seconds;
	} timeouts[] = { { "60", 60 }, { "90m", 5400 }, { "24h", 86400 }, { "30d", 30 * 86400 } };

	assert_int_equal(unit_config_load_text(f, "[receiver]\n"
						  "allow_query = off\n"
						  "commitment = local\n"
						  "[spool]\n"
						  "keep_sent_days = 3650\n"),
			 0);
	assert_int_equal(f->cfg.receiver.allow_query, 0);
	assert_int_equal(f->cfg.receiver.commitment, OP_COMMIT_LOCAL);
	assert_int_equal(f->cfg.receiver.commitment_timeout, 86400); /* the default */
	assert_int_equal(f->cfg.spool.keep_sent_days, 3650);
	assert_int_equal(unit_config_load_text(f, "[receiver]\n"
						  "allow_query = yes\n"
						  "commitment = cloud\n"
						  "[spool]\n"
						  "keep_sent_days = 0\n"),
			 0);
	assert_int_equal(f->cfg.receiver.allow_query, 1);
	assert_int_equal(f->cfg.receiver.commitment, OP_COMMIT_CLOUD);
	assert_int_equal(f->cfg.spool.keep_sent_days, 0);
	for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
		char text[128];

		snprintf(text, sizeof(text), "[receiver]\ncommitment_timeout = %s\n",
			 timeouts[i].text);
		assert_int_equal(unit_config_load_text(f, text), 0);
		assert_int_equal(f->cfg.receiver.commitment_timeout, timeouts[i].seconds);
	}
	assert_string_equal(op_config_commitment_name(OP_COMMIT_LOCAL), "local");
	assert_string_equal(op_config_commitment_name(OP_COMMIT_CLOUD), "cloud");
	assert_string_equal(op_config_commitment_name((enum op_commitment)7), "?");

	unit_config_assert_refused(f, "receiver", "allow_query", "maybe");
	unit_config_assert_refused(f, "receiver", "allow_query", "");
	unit_config_assert_refused(f, "receiver", "commitment", "remote");
	unit_config_assert_refused(f, "receiver", "commitment", "Local");
	unit_config_assert_refused(f, "receiver", "commitment", "");
	unit_config_assert_refused(f, "receiver", "commitment_timeout", "59");
	unit_config_assert_refused(f, "receiver", "commitment_timeout", "31d");
	unit_config_assert_refused(f, "receiver", "commitment_timeout", "2592001");
	unit_config_assert_refused(f, "receiver", "commitment_timeout", "1w");
	unit_config_assert_refused(f, "receiver", "commitment_timeout", "");
	unit_config_assert_refused(f, "spool", "keep_sent_days", "3651");
	unit_config_assert_refused(f, "spool", "keep_sent_days", "-1");
	unit_config_assert_refused(f, "spool", "keep_sent_days", "7d");
	unit_config_assert_refused(f, "spool", "keep_sent_days", "");
	/* They are keys of their sections only. */
	unit_config_assert_refused(f, "spool", "commitment", "local");
	unit_config_assert_refused(f, "receiver", "keep_sent_days", "1");
}

/* A relative socket set in the file is beside the file, whatever the
 * working directory; an absolute one, an empty one and the default stay. */
static void test_config_socket_beside_file(void **state)
{
	struct unit_config *f = *state;
	char want[PATH_MAX + 32], *slash;
	char out[16];

	assert_int_equal(unit_config_load_text(f, "[console]\nsocket = run/outpost.sock\n"), 0);
	snprintf(want, sizeof(want), "%s", f->tmp.path);
	slash = strrchr(want, '/');
	assert_non_null(slash);
	snprintf(slash + 1, sizeof(want) - (size_t)(slash + 1 - want), "run/outpost.sock");
	assert_string_equal(f->cfg.console.socket, want);
	assert_int_equal(unit_config_load_text(f, "[console]\nsocket = /run/o.sock\n"), 0);
	assert_string_equal(f->cfg.console.socket, "/run/o.sock");
	assert_int_equal(unit_config_load_text(f, "[console]\nlisten =\n"), 0);
	assert_string_equal(f->cfg.console.socket, "var/outpost.sock");
	/* The one function both outpostctl and the services use. */
	assert_int_equal(op_config_resolve_path("etc/o.ini", "s.sock", out, sizeof(out)), 0);
	assert_string_equal(out, "etc/s.sock");
	assert_int_equal(op_config_resolve_path("o.ini", "s.sock", out, sizeof(out)), 0);
	assert_string_equal(out, "s.sock");
	assert_int_equal(op_config_resolve_path("/a/long/dir/o.ini", "s.sock", out, sizeof(out)),
			 -ENAMETOOLONG);
}

/* Read by the appliance's boot (outpost-grow-data) from --check-config's
 * output: off unless a site file says so. */
static void test_config_security(void **state)
{
	struct unit_config *f = *state;

	op_config_defaults(&f->cfg);
	assert_int_equal(f->cfg.security.allow_unencrypted, 0);
	assert_int_equal(unit_config_load_text(f, "[security]\nallow_unencrypted = yes\n"), 0);
	assert_int_equal(f->cfg.security.allow_unencrypted, 1);
	unit_config_assert_refused(f, "security", "allow_unencrypted", "maybe");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_config_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults),
		T(test_config_empty_file_is_defaults),
		T(test_config_every_key),
		T(test_config_load_starts_from_defaults),
		T(test_config_syntax_variants),
		T(test_config_int_ranges),
		T(test_config_bad_values),
		T(test_config_dir_length),
		T(test_config_long_lines),
		T(test_config_lists),
		T(test_config_list_limits),
		T(test_config_long_list_continued),
		T(test_config_shaping_priority),
		T(test_config_console),
		T(test_config_backlog_alarm),
		T(test_config_query_commitment),
		T(test_config_socket_beside_file),
		T(test_config_indented_key),
		T(test_config_security),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
