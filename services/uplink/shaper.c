/*
 * shaper: a token bucket with debt and an urgent lane (see shaper.h).
 */
#include "uplink/shaper.h"

#define MIN_BURST (16 * 1024)
/* How often held routine writes look again while urgent ones go. */
#define ROUTINE_RECHECK_NS (20 * 1000000ULL)

static double bytes_per_ns(const op_shaper *s)
{
	return (double)s->rate / 8e9;
}

static void refill(op_shaper *s, uint64_t now_ns)
{
	if (now_ns > s->last_ns && s->rate != OP_RATE_UNLIMITED) {
		s->tokens += (double)(now_ns - s->last_ns) * bytes_per_ns(s);
		if (s->tokens > (double)s->burst)
			s->tokens = (double)s->burst;
	}
	if (now_ns > s->last_ns)
		s->last_ns = now_ns;
}

void op_shaper_init(op_shaper *s, uint64_t now_ns)
{
	s->rate = OP_RATE_UNLIMITED;
	s->burst = 0;
	s->tokens = 0;
	s->last_ns = now_ns;
	s->urgent_until_ns = 0;
	s->urgent_active = 0;
	s->bytes = 0;
}

void op_shaper_set(op_shaper *s, uint64_t rate_bps, uint64_t burst, uint64_t now_ns)
{
	refill(s, now_ns);
	s->rate = rate_bps;
	if (!burst && rate_bps != OP_RATE_UNLIMITED)
		burst = rate_bps / 80; /* a tenth of a second, in bytes */
	s->burst = burst < MIN_BURST ? MIN_BURST : burst;
	if (s->tokens > (double)s->burst)
		s->tokens = (double)s->burst;
}

uint64_t op_shaper_take(op_shaper *s, uint64_t len, int urgent, uint64_t now_ns)
{
	uint64_t wait;

	if (s->rate == OP_RATE_UNLIMITED) {
		s->bytes += len;
		return 0;
	}
	if (s->rate == 0)
		return OP_SHAPER_WAIT_FOREVER;
	refill(s, now_ns);
	if (!urgent && s->urgent_active > 0)
		return ROUTINE_RECHECK_NS;
	if (!urgent && now_ns < s->urgent_until_ns)
		return s->urgent_until_ns - now_ns;
	if (s->tokens >= 0) {
		s->tokens -= (double)len;
		s->bytes += len;
		return 0;
	}
	wait = (uint64_t)(-s->tokens / bytes_per_ns(s)) + 1;
	if (urgent)
		s->urgent_until_ns = now_ns + wait;
	return wait;
}

uint64_t op_shaper_chunk(const op_shaper *s, uint64_t max)
{
	if (s->rate == OP_RATE_UNLIMITED || s->burst >= max)
		return max;
	return s->burst;
}

uint64_t op_shaper_take2(op_shaper *a, op_shaper *b, uint64_t len, int urgent, uint64_t now_ns)
{
	/* A zero-length ask counts nothing: neither bucket counts a write the
	 * other holds back. */
	uint64_t wa = a ? op_shaper_take(a, 0, urgent, now_ns) : 0;
	uint64_t wb = b ? op_shaper_take(b, 0, urgent, now_ns) : 0;

	if (wa || wb)
		return wa > wb ? wa : wb;
	if (a)
		op_shaper_take(a, len, urgent, now_ns);
	if (b)
		op_shaper_take(b, len, urgent, now_ns);
	return 0;
}
