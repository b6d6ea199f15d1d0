/*
 * log: one line per event on stderr, as key=value pairs.
 *
 *   2026-11-28T10:00:00.123Z level=info event=store.ok sop=1.2.3 bytes=5120
 *
 * Lines are written with one write(2), so lines from several threads never
 * interleave. Patient names and other PHI are never passed to the logger at
 * the default level; UIDs, AE titles and addresses are fine.
 *
 * The level is process-wide (like syslog's mask): it is the one piece of
 * global state in services/common, set once at start-up.
 */
#ifndef OP_LOG_H
#define OP_LOG_H

#include <stddef.h>

enum op_log_level { OP_LOG_DEBUG, OP_LOG_INFO, OP_LOG_WARN, OP_LOG_ERROR };

/* Sets the lowest level written. Not thread-safe: call before threads start. */
void op_log_set_level(enum op_log_level level);
enum op_log_level op_log_get_level(void);

/* Parses "debug", "info", "warn" or "error". Returns 0 or -EINVAL. */
int op_log_level_parse(const char *s, enum op_log_level *out);

/* Writes one line: timestamp, level, event, then fmt (key=value pairs). */
void op_log(enum op_log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Quotes an untrusted or free-text value for a key=value line: wraps it in
 * double quotes and escapes quotes, backslashes and control characters, so
 * a calling AE title cannot forge a log line. Truncates to fit buf; returns buf.
 */
const char *op_log_quote(char *buf, size_t size, const char *s);

/* A buffer size for op_log_quote() that never truncates a value of n
 * bytes: every byte may become \xNN, plus the quotes and the NUL. Every
 * peer-supplied string (UIDs, AE titles, comments, a cloud's reasons) goes
 * through op_log_quote() before it reaches a line. */
#define OP_LOG_QUOTED(n) (4 * (n) + 3)

#define op_debug(event, ...) op_log(OP_LOG_DEBUG, event, __VA_ARGS__)
#define op_info(event, ...) op_log(OP_LOG_INFO, event, __VA_ARGS__)
#define op_warn(event, ...) op_log(OP_LOG_WARN, event, __VA_ARGS__)
#define op_error(event, ...) op_log(OP_LOG_ERROR, event, __VA_ARGS__)

#endif
