/*
 * fair: how the [shaping] bucket is shared between destinations that have
 * work - max-min fairness (water-filling): each gets an equal share,
 * except one that needs less (its own `rate`, or what it used when it was
 * not held back) keeps only what it needs and leaves the rest to the
 * others. The host recomputes the shares a few times a second from what
 * each destination sent, and gives each destination's own bucket its
 * share (the shared bucket still bounds the sum).
 *
 * A pure function: no state, no clock.
 */
#ifndef OP_FAIR_H
#define OP_FAIR_H

#include <stdint.h>

typedef struct op_fair_dest {
	int active;     /* has work in flight or queued now */
	uint64_t cap;   /* its own rate (bits/s); OP_RATE_UNLIMITED */
	uint64_t share; /* what it was given last time (bits/s); OP_RATE_UNLIMITED */
	uint64_t used;  /* what it sent since (bits/s) */
} op_fair_dest;

/*
 * Writes each destination's new share into d[i].share for a bucket of
 * rate bits/s (OP_RATE_UNLIMITED: every share is its cap; 0: 0). A
 * destination that used at least 90% of its last share counts as wanting
 * more; one that used less wants a quarter more than it used (at least
 * 64 kbit/s), so that it can grow. Inactive ones get an equal share too
 * (they start at once when work comes), without taking from the active.
 */
void op_fair_share(uint64_t rate, op_fair_dest *d, int n);

#endif
