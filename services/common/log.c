/*
 * log: key=value lines on stderr, one write(2) per line (see log.h).
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

static enum op_log_level min_level = OP_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void op_log_set_level(enum op_log_level level)
{
	min_level = level;
}

enum op_log_level op_log_get_level(void)
{
	return min_level;
}

int op_log_level_parse(const char *s, enum op_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum op_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void op_log(enum op_log_level level, const char *event, const char *fmt, ...)
{
	char line[2048];
	int64_t ms = op_clock_wall_ms();
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;
	int rc;
	va_list ap;

	if (level < min_level)
		return;
	gmtime_r(&secs, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	rc = snprintf(line + n, sizeof(line) - n, ".%03dZ level=%s event=%s ", (int)(ms % 1000),
		      level_names[level], event);
	if (rc > 0)
		n += (size_t)rc;
	va_start(ap, fmt);
	rc = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (rc > 0)
		n += (size_t)rc;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2; /* truncated: keep the newline */
	while (n > 0 && line[n - 1] == ' ')
		n--;
	line[n++] = '\n';
	/* One write keeps lines whole; a short write to stderr is not retried. */
	if (write(STDERR_FILENO, line, n) < 0)
		(void)errno;
}

const char *op_log_quote(char *buf, size_t size, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (size < 3) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[5];
		size_t k = 0;

		if (c == '"' || c == '\\') {
			esc[k++] = '\\';
			esc[k++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			esc[k++] = '\\';
			esc[k++] = 'x';
			esc[k++] = hex[c >> 4];
			esc[k++] = hex[c & 15];
		} else {
			esc[k++] = (char)c;
		}
		if (o + k + 2 > size)
			break;
		memcpy(buf + o, esc, k);
		o += k;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
