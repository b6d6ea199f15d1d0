/*
 * schedule: upload rates - a default rate and a weekly schedule in local
 * (wall-clock) time that overrides it window by window:
 *
 *   Mon-Fri 07:00-19:00 2Mbit; Mon-Fri 19:00-07:00 unlimited; Sat-Sun 00:00-24:00 20Mbit
 *
 * Days are Mon..Sun, a single day or a range (Fri-Mon wraps); a window
 * whose end is not after its start crosses midnight and belongs to its
 * start day (Mon 19:00-07:00 is Monday evening to Tuesday 07:00). Rates
 * are bits per second with k, M, G (powers of 1000) and an optional
 * "bit", "bit/s" or "bps"; "unlimited"; 0 pauses. The first window that
 * contains a moment gives its rate; outside every window the default
 * applies. Wall-clock time follows DST: on the spring-forward day the
 * skipped hour never happens, in autumn the repeated hour is in its
 * window twice.
 */
#ifndef OP_SCHEDULE_H
#define OP_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define OP_RATE_UNLIMITED UINT64_MAX
#define OP_SCHEDULE_MAX 32 /* windows */

typedef struct op_window {
	unsigned days;     /* bit 0 Monday ... bit 6 Sunday */
	int start, end;    /* minutes since midnight, 0..1440 */
	uint64_t rate_bps; /* OP_RATE_UNLIMITED, or bits per second (0: paused) */
} op_window;

typedef struct op_schedule {
	op_window windows[OP_SCHEDULE_MAX];
	int n;
} op_schedule;

/* "8Mbit", "512k", "2.5M", "unlimited", "0" -> bits per second. Returns 0
 * or -EINVAL. */
int op_rate_parse(const char *s, uint64_t *bps);

/* Writes a rate as op_rate_parse() reads it ("8Mbit", "unlimited"). */
void op_rate_format(uint64_t bps, char *buf, size_t size);

/* Parses windows separated by ';'. Returns 0, or -EINVAL with the reason
 * (naming the window) in err. An empty text is an empty schedule. */
int op_schedule_parse(const char *text, op_schedule *out, char *err, size_t errlen);

/* The rate at local time tm (from localtime_r), given the default. */
uint64_t op_schedule_rate(const op_schedule *s, uint64_t default_bps, const struct tm *tm);

/*
 * When the rate at local time tm (as op_schedule_rate() gives it) next
 * changes: the minutes from the start of tm's minute to the first minute
 * whose rate differs, or -1 when it stays the same for a week. Wall-clock
 * minutes: a DST change in between shifts the answer by its hour.
 * *from_window is 1 when a window gives the rate at tm, 0 when the
 * default does.
 */
int op_schedule_next_change(const op_schedule *s, uint64_t default_bps, const struct tm *tm,
			    int *from_window);

#endif
