/*
 * clock: the time, in the two clocks Outpost needs.
 *
 * Wall-clock time (CLOCK_REALTIME) is what is stored and shown: when an
 * instance was received, when an attempt is due, log lines, the audit
 * log. Monotonic time (CLOCK_MONOTONIC) measures intervals and bounds
 * waits: deadlines, the token bucket, rates; it does not jump when the
 * wall clock is set.
 *
 * Thread-safe.
 */
#ifndef OP_CLOCK_H
#define OP_CLOCK_H

#include <stdint.h>

/* Milliseconds since the epoch. */
int64_t op_clock_wall_ms(void);

/* Monotonic milliseconds (from an arbitrary start). */
int64_t op_clock_mono_ms(void);

/* Monotonic nanoseconds (from an arbitrary start). */
uint64_t op_clock_mono_ns(void);

#endif
