/*
 * fair: max-min shares of the [shaping] bucket between destinations
 * (fair.h).
 */
#include "uplink/fair.h"

#include "common/schedule.h"

#define MIN_WANT 64000ULL /* bits/s: the least a destination is assumed to want */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* What destination d would take now, given its last share. */
static uint64_t want(const op_fair_dest *d)
{
	uint64_t w;

	if (d->share == OP_RATE_UNLIMITED || d->used >= d->share / 10 * 9)
		return d->cap; /* held back by its share (or never measured) */
	w = d->used + d->used / 4;
	return min_u64(d->cap, w < MIN_WANT ? MIN_WANT : w);
}

void op_fair_share(uint64_t rate, op_fair_dest *d, int n)
{
	uint64_t wants[64], left = rate;
	int done[64] = { 0 }, active = 0;

	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++) {
		if (rate == OP_RATE_UNLIMITED || rate == 0) {
			d[i].share = rate == 0 ? 0 : d[i].cap;
			done[i] = 1;
			continue;
		}
		wants[i] = want(&d[i]);
		active += d[i].active;
	}
	if (rate == OP_RATE_UNLIMITED || rate == 0)
		return;
	/* Water-filling over the active ones: the smallest wants first. */
	for (int left_n = active; left_n > 0; left_n--) {
		int k = -1;

		for (int i = 0; i < n; i++)
			if (d[i].active && !done[i] && (k < 0 || wants[i] < wants[k]))
				k = i;
		d[k].share = min_u64(wants[k], left / (uint64_t)left_n);
		left -= d[k].share;
		done[k] = 1;
	}
	/* The idle ones: an equal share of the whole, to start with. */
	for (int i = 0; i < n; i++)
		if (!d[i].active)
			d[i].share = min_u64(d[i].cap, rate / (uint64_t)(active + 1));
	/* What nobody active could use goes to those that want more. */
	for (int i = 0; i < n && left > 0; i++)
		if (d[i].active && d[i].share < d[i].cap && wants[i] == d[i].cap) {
			uint64_t more = min_u64(left, d[i].cap - d[i].share);
			d[i].share += more;
			left -= more;
		}
}
