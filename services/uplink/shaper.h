/*
 * shaper: one token bucket over every byte the uplink writes to the
 * network (all connections together, TLS records included).
 *
 * Tokens (bytes) fill at the rate up to the burst. A write goes when the
 * bucket is not in debt, and takes its length, going into debt if it must:
 * the long-run rate holds exactly, and no second is more than one burst
 * plus one write over it. Urgent writes come first: while an urgent
 * request is in flight (urgent_active, kept by the uplink), routine writes
 * wait, so an urgent study has the whole rate.
 *
 * Time is passed in (nanoseconds, any monotonic origin), so tests need no
 * clock. Loop thread only.
 */
#ifndef OP_SHAPER_H
#define OP_SHAPER_H

#include <stdint.h>

#include "common/schedule.h"

#define OP_SHAPER_WAIT_FOREVER UINT64_MAX

typedef struct op_shaper {
	uint64_t rate;  /* bits per second; OP_RATE_UNLIMITED; 0 paused */
	uint64_t burst; /* bytes */
	double tokens;  /* bytes; negative: debt */
	uint64_t last_ns;
	uint64_t urgent_until_ns; /* an urgent write waits until then */
	int urgent_active;        /* urgent requests in flight: routine writes wait */
	uint64_t bytes;           /* written in all, for the logs */
} op_shaper;

/* Starts unlimited. */
void op_shaper_init(op_shaper *s, uint64_t now_ns);

/* New rate and burst (0: a tenth of a second at the rate, at least
 * 16 KiB). Tokens in hand are kept, up to the new burst. */
void op_shaper_set(op_shaper *s, uint64_t rate_bps, uint64_t burst, uint64_t now_ns);

/* May len bytes go now? 0: yes, and they are counted. Otherwise the
 * nanoseconds to wait before asking again (OP_SHAPER_WAIT_FOREVER when
 * paused); nothing is counted. */
uint64_t op_shaper_take(op_shaper *s, uint64_t len, int urgent, uint64_t now_ns);

/* op_shaper_take() through two buckets (either may be NULL), e.g. the
 * shared one and a destination's own: 0 when both let len bytes go now
 * (then both count them), else the longer wait (neither counts). */
uint64_t op_shaper_take2(op_shaper *a, op_shaper *b, uint64_t len, int urgent, uint64_t now_ns);

/* The largest write worth making at once: the burst, or a big chunk when
 * unlimited. */
uint64_t op_shaper_chunk(const op_shaper *s, uint64_t max);

#endif
