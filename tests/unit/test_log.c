/*
 * test_log: services/common/log.c. The quoting that keeps untrusted values
 * (calling AE titles, error texts) from forging log lines, level names, and
 * the shape of a written line (captured by pointing stderr at a file).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* --- op_log_quote ------------------------------------------------------------ */

/* Is s one quoted value: a quote, then plain characters or whole escapes
 * (\" \\ \xHH), then the closing quote, and nothing after it? */
static int well_quoted(const char *s)
{
	size_t n = strlen(s), i = 1;

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return 0;
	while (i < n - 1) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"')
			return 0;
		if (c != '\\') {
			i++;
			continue;
		}
		if (s[i + 1] == '"' || s[i + 1] == '\\')
			i += 2;
		else if (s[i + 1] == 'x' && i + 3 < n - 1 && isxdigit((unsigned char)s[i + 2]) &&
			 isxdigit((unsigned char)s[i + 3]))
			i += 4;
		else
			return 0;
	}
	return i == n - 1;
}

static void quote_is(const char *in, const char *want)
{
	char buf[256];

	assert_ptr_equal(op_log_quote(buf, sizeof(buf), in), buf);
	assert_string_equal(buf, want);
}

static void test_log_quote_plain(void **state)
{
	(void)state;
	quote_is("STORESCU", "\"STORESCU\"");
	quote_is("a b", "\"a b\"");
	quote_is("", "\"\"");
	quote_is(NULL, "\"\"");
	quote_is("key=value", "\"key=value\"");
}

static void test_log_quote_escapes(void **state)
{
	(void)state;
	quote_is("a\"b", "\"a\\\"b\"");
	quote_is("a\\b", "\"a\\\\b\"");
	quote_is("\"", "\"\\\"\"");
	quote_is("\\", "\"\\\\\"");
	quote_is("a\nb", "\"a\\x0ab\"");
	quote_is("a\rb", "\"a\\x0db\"");
	quote_is("\t", "\"\\x09\"");
	quote_is("\x01", "\"\\x01\"");
	quote_is("\x1b[31m", "\"\\x1b[31m\"");
	quote_is("\x1f", "\"\\x1f\"");
	quote_is("\x7f", "\"\\x7f\"");
	quote_is(" ~", "\" ~\"");
}

/* A calling AE title cannot start a new line or close the quotes early. */
static void test_log_quote_cannot_forge_a_line(void **state)
{
	const char *evil = "X\" level=error event=forged\nT level=error";
	char buf[256];

	(void)state;
	op_log_quote(buf, sizeof(buf), evil);
	assert_null(strchr(buf, '\n'));
	assert_true(well_quoted(buf));
	assert_string_equal(buf, "\"X\\\" level=error event=forged\\x0aT level=error\"");
}

static void test_log_quote_truncates(void **state)
{
	char buf[8];

	(void)state;
	/* Room for 5 characters between the quotes. */
	op_log_quote(buf, sizeof(buf), "abcdefghij");
	assert_string_equal(buf, "\"abcde\"");
	op_log_quote(buf, sizeof(buf), "abcde");
	assert_string_equal(buf, "\"abcde\"");
	op_log_quote(buf, sizeof(buf), "abcd");
	assert_string_equal(buf, "\"abcd\"");
	/* An escape that does not fit is left out whole, never cut in half. */
	op_log_quote(buf, sizeof(buf), "abc\n");
	assert_string_equal(buf, "\"abc\"");
	op_log_quote(buf, sizeof(buf), "abcd\"");
	assert_string_equal(buf, "\"abcd\"");
	op_log_quote(buf, sizeof(buf), "abc\"");
	assert_string_equal(buf, "\"abc\\\"\"");
	op_log_quote(buf, sizeof(buf), "a\\\\\\\\");
	assert_string_equal(buf, "\"a\\\\\\\\\"");
}

static void test_log_quote_tiny_buffers(void **state)
{
	char buf[16];

	(void)state;
	/* size 0: nothing is written. */
	memset(buf, 'Z', sizeof(buf));
	assert_ptr_equal(op_log_quote(buf, 0, "abc"), buf);
	assert_int_equal(buf[0], 'Z');
	/* size 1 and 2: no room for two quotes, an empty string. */
	memset(buf, 'Z', sizeof(buf));
	op_log_quote(buf, 1, "abc");
	assert_int_equal(buf[0], '\0');
	assert_int_equal(buf[1], 'Z');
	memset(buf, 'Z', sizeof(buf));
	op_log_quote(buf, 2, "abc");
	assert_int_equal(buf[0], '\0');
	assert_int_equal(buf[2], 'Z');
	/* size 3: just the quotes. */
	memset(buf, 'Z', sizeof(buf));
	op_log_quote(buf, 3, "abc");
	assert_string_equal(buf, "\"\"");
	assert_int_equal(buf[3], 'Z');
	/* size 4: one character. */
	memset(buf, 'Z', sizeof(buf));
	op_log_quote(buf, 4, "abc");
	assert_string_equal(buf, "\"a\"");
	assert_int_equal(buf[4], 'Z');
	/* size 5 with an escape first: it does not fit whole. */
	memset(buf, 'Z', sizeof(buf));
	op_log_quote(buf, 5, "\nabc");
	assert_string_equal(buf, "\"\"");
	assert_int_equal(buf[5], 'Z');
}

/* Never writes past size, whatever the input (checked byte by byte). */
static void test_log_quote_never_overflows(void **state)
{
	const char *inputs[] = { "",
				 "a",
				 "\"\"\"\"\"\"",
				 "\n\n\n\n\n\n\n",
				 "abc\\def\x01ghi",
				 "0123456789012345678901234567890123456789" };
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		for (size_t size = 0; size < 48; size++) {
			memset(buf, 'Z', sizeof(buf));
			op_log_quote(buf, size, inputs[i]);
			for (size_t j = size; j < sizeof(buf); j++)
				assert_int_equal(buf[j], 'Z');
			if (size == 0)
				continue;
			assert_true(strlen(buf) < size);
			if (size >= 3)
				assert_true(well_quoted(buf));
		}
	}
}

/* --- levels -------------------------------------------------------------------- */

static void test_log_level_parse(void **state)
{
	enum op_log_level l;

	(void)state;
	assert_int_equal(op_log_level_parse("debug", &l), 0);
	assert_int_equal(l, OP_LOG_DEBUG);
	assert_int_equal(op_log_level_parse("info", &l), 0);
	assert_int_equal(l, OP_LOG_INFO);
	assert_int_equal(op_log_level_parse("warn", &l), 0);
	assert_int_equal(l, OP_LOG_WARN);
	assert_int_equal(op_log_level_parse("error", &l), 0);
	assert_int_equal(l, OP_LOG_ERROR);

	const char *bad[] = { "", "warning", "err", "info ", " info", "infos", "trace", "0" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		l = OP_LOG_ERROR;
		assert_int_equal(op_log_level_parse(bad[i], &l), -EINVAL);
		assert_int_equal(l, OP_LOG_ERROR); /* untouched on failure */
	}
}

static void test_log_level_set_get(void **state)
{
	enum op_log_level saved = op_log_get_level();

	(void)state;
	op_log_set_level(OP_LOG_DEBUG);
	assert_int_equal(op_log_get_level(), OP_LOG_DEBUG);
	op_log_set_level(OP_LOG_ERROR);
	assert_int_equal(op_log_get_level(), OP_LOG_ERROR);
	op_log_set_level(saved);
}

/* --- op_log: lines on stderr --------------------------------------------------- */

struct capture {
	char path[64];
	int saved_fd;
};

static void capture_start(struct capture *c)
{
	int fd;

	snprintf(c->path, sizeof(c->path), "/tmp/test_log.XXXXXX");
	fd = mkstemp(c->path);
	assert_true(fd >= 0);
	fflush(stderr);
	c->saved_fd = dup(STDERR_FILENO);
	assert_true(c->saved_fd >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* Restores stderr; returns what was written (test_free it; cmocka frees it
 * when the test fails). */
static char *capture_end(struct capture *c)
{
	char *text;

	fflush(stderr);
	assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
	close(c->saved_fd);
	text = unit_read_file(c->path, NULL);
	unlink(c->path);
	return text;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_log_line_format(void **state)
{
	enum op_log_level saved = op_log_get_level();
	struct capture c;
	char *text;

	(void)state;
	op_log_set_level(OP_LOG_INFO);
	capture_start(&c);
	op_warn("test.event", "sop=%s bytes=%d", "1.2.3", 42);
	text = capture_end(&c);
	op_log_set_level(saved);

	/* 2026-11-28T10:00:00.123Z level=warn event=test.event sop=1.2.3 bytes=42 */
	assert_int_equal(count_lines(text), 1);
	assert_true(strlen(text) > 25);
	assert_int_equal(text[4], '-');
	assert_int_equal(text[7], '-');
	assert_int_equal(text[10], 'T');
	assert_int_equal(text[13], ':');
	assert_int_equal(text[16], ':');
	assert_int_equal(text[19], '.');
	assert_int_equal(text[23], 'Z');
	assert_int_equal(text[24], ' ');
	assert_string_equal(text + 25, "level=warn event=test.event sop=1.2.3 bytes=42\n");
	test_free(text);
}

static void test_log_below_level_is_dropped(void **state)
{
	enum op_log_level saved = op_log_get_level();
	struct capture c;
	char *text;

	(void)state;
	op_log_set_level(OP_LOG_WARN);
	capture_start(&c);
	op_debug("test.debug", "a=%d", 1);
	op_info("test.info", "a=%d", 2);
	op_warn("test.warn", "a=%d", 3);
	op_error("test.error", "a=%d", 4);
	text = capture_end(&c);
	op_log_set_level(saved);

	assert_int_equal(count_lines(text), 2);
	assert_null(strstr(text, "test.debug"));
	assert_null(strstr(text, "test.info"));
	assert_non_null(strstr(text, "level=warn event=test.warn a=3\n"));
	assert_non_null(strstr(text, "level=error event=test.error a=4\n"));
	test_free(text);
}

/* An empty key=value part leaves no trailing space; an overlong one is cut
 * but still ends the line. */
static void test_log_line_edges(void **state)
{
	enum op_log_level saved = op_log_get_level();
	struct capture c;
	static char big[10000];
	char *text, *second;

	(void)state;
	memset(big, 'x', 9999);
	big[9999] = '\0';
	op_log_set_level(OP_LOG_DEBUG);
	capture_start(&c);
	op_info("test.empty", "%s", "");
	op_info("test.big", "v=%s", big);
	text = capture_end(&c);
	op_log_set_level(saved);

	assert_int_equal(count_lines(text), 2);
	assert_non_null(strstr(text, " level=info event=test.empty\n"));
	second = strchr(text, '\n') + 1;
	assert_non_null(strstr(second, "event=test.big v=xxx"));
	assert_true(strlen(second) <= 2048);
	assert_int_equal(second[strlen(second) - 1], '\n');
	test_free(text);
}

/* Lines from several threads never interleave. */
#define LOG_THREADS 4
#define LOG_LINES 200

static void *log_thread(void *arg)
{
	char pad[300];
	int id = (int)(intptr_t)arg;

	memset(pad, 'a' + id, sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (int i = 0; i < LOG_LINES; i++)
		op_info("test.thread", "t=%d i=%d pad=%s end=%d", id, i, pad, id);
	return NULL;
}

static void test_log_threads_whole_lines(void **state)
{
	enum op_log_level saved = op_log_get_level();
	pthread_t th[LOG_THREADS];
	struct capture c;
	char *text, *save = NULL, *line;
	int seen[LOG_THREADS] = { 0 };

	(void)state;
	op_log_set_level(OP_LOG_INFO);
	capture_start(&c);
	for (int i = 0; i < LOG_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, log_thread, (void *)(intptr_t)i), 0);
	for (int i = 0; i < LOG_THREADS; i++)
		pthread_join(th[i], NULL);
	text = capture_end(&c);
	op_log_set_level(saved);

	assert_int_equal(count_lines(text), LOG_THREADS * LOG_LINES);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int t = -1, i = -1, end = -2;
		const char *p = strstr(line, "event=test.thread t=");

		assert_non_null(p);
		assert_int_equal(sscanf(p, "event=test.thread t=%d i=%d", &t, &i), 2);
		assert_in_range(t, 0, LOG_THREADS - 1);
		p = strstr(line, " end=");
		assert_non_null(p);
		assert_int_equal(sscanf(p, " end=%d", &end), 1);
		assert_int_equal(end, t);
		for (const char *q = strstr(line, "pad=") + 4; *q != ' '; q++)
			assert_int_equal(*q, 'a' + t);
		seen[t]++;
	}
	for (int i = 0; i < LOG_THREADS; i++)
		assert_int_equal(seen[i], LOG_LINES);
	test_free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_quote_plain),
		cmocka_unit_test(test_log_quote_escapes),
		cmocka_unit_test(test_log_quote_cannot_forge_a_line),
		cmocka_unit_test(test_log_quote_truncates),
		cmocka_unit_test(test_log_quote_tiny_buffers),
		cmocka_unit_test(test_log_quote_never_overflows),
		cmocka_unit_test(test_log_level_parse),
		cmocka_unit_test(test_log_level_set_get),
		cmocka_unit_test(test_log_line_format),
		cmocka_unit_test(test_log_below_level_is_dropped),
		cmocka_unit_test(test_log_line_edges),
		cmocka_unit_test(test_log_threads_whole_lines),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
