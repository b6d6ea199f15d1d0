/*
 * test_shaper: services/uplink/shaper.c - the token bucket, driven by a
 * simulated clock: writes of a fixed size are offered as fast as the
 * bucket allows, and the bytes let through are binned per 100 ms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "uplink/shaper.h"

#define NS 1000000000ULL

/* Sends total bytes in writes of `write` bytes, asking again after each
 * wait; bins[i] gets the bytes let through in [i*100ms, (i+1)*100ms).
 * Returns the simulated time taken. */
static uint64_t simulate(op_shaper *s, uint64_t total, uint64_t write, uint64_t *bins, size_t nbins)
{
	uint64_t now = 0, sent = 0;

	while (sent < total) {
		uint64_t wait = op_shaper_take(s, write, 0, now);

		if (wait == OP_SHAPER_WAIT_FOREVER)
			break;
		if (wait) {
			now += wait;
			continue;
		}
		if (now / (NS / 10) < nbins)
			bins[now / (NS / 10)] += write;
		sent += write;
	}
	return now;
}

/* Mean within 1%, and no second over 125% (the test, simulated). */
static void check_rate(uint64_t rate_bps, uint64_t write)
{
	static uint64_t bins[600];
	op_shaper s;
	uint64_t total = rate_bps / 8 * 30, took;
	double mean;

	memset(bins, 0, sizeof(bins));
	op_shaper_init(&s, 0);
	op_shaper_set(&s, rate_bps, 0, 0);
	took = simulate(&s, total, write, bins, 600);
	mean = (double)total * 8 / ((double)took / NS);
	if (mean < rate_bps * 0.99 || mean > rate_bps * 1.01)
		fail_msg("rate %llu: mean %.0f bit/s", (unsigned long long)rate_bps, mean);
	for (size_t i = 0; i + 10 <= took / (NS / 10); i++) {
		uint64_t second = 0;

		for (size_t j = i; j < i + 10; j++)
			second += bins[j];
		if (second * 8 > rate_bps * 1.25)
			fail_msg("rate %llu: second from %zu00 ms carried %llu bit",
				 (unsigned long long)rate_bps, i, (unsigned long long)second * 8);
	}
}

static void test_shaper_rates(void **state)
{
	(void)state;
	check_rate(1000000, 16 * 1024);
	check_rate(8000000, 100 * 1024);
	check_rate(100000000, 256 * 1024);
	check_rate(2000000, 1000); /* many small writes */
}

static void test_shaper_unlimited_and_paused(void **state)
{
	op_shaper s;

	(void)state;
	op_shaper_init(&s, 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(op_shaper_take(&s, 1 << 20, 0, 0), 0);
	assert_true(s.bytes == 1000ULL << 20);
	op_shaper_set(&s, 0, 0, 0);
	assert_true(op_shaper_take(&s, 1, 0, 5 * NS) == OP_SHAPER_WAIT_FOREVER);
	assert_true(op_shaper_take(&s, 1, 1, 5 * NS) == OP_SHAPER_WAIT_FOREVER);
	/* Resuming: the bucket fills from the resume on, not from the pause. */
	op_shaper_set(&s, 8000000, 0, 100 * NS);
	assert_int_equal(op_shaper_take(&s, 1000, 0, 100 * NS), 0);
	assert_true(op_shaper_take(&s, 1000, 0, 100 * NS) > 0);
}

/* The chunk size tracks the burst, so writes meter smoothly. */
static void test_shaper_chunk(void **state)
{
	op_shaper s;

	(void)state;
	op_shaper_init(&s, 0);
	assert_int_equal(op_shaper_chunk(&s, 262144), 262144);
	op_shaper_set(&s, 8000000, 0, 0);
	assert_int_equal(s.burst, 100000);
	assert_int_equal(op_shaper_chunk(&s, 262144), 100000);
	op_shaper_set(&s, 100000, 0, 0);
	assert_int_equal(s.burst, 16384); /* the floor */
	op_shaper_set(&s, 8000000, 50000, 0);
	assert_int_equal(s.burst, 50000);
}

/* While an urgent write waits for tokens, routine writes wait too. */
static void test_shaper_urgent_first(void **state)
{
	op_shaper s;
	uint64_t now = 0, wait;

	(void)state;
	op_shaper_init(&s, 0);
	op_shaper_set(&s, 8000000, 0, 0);
	assert_int_equal(op_shaper_take(&s, 200000, 0, now), 0); /* into debt */
	wait = op_shaper_take(&s, 1000, 1, now);                 /* urgent must wait */
	assert_true(wait > 0);
	/* Just before the urgent write may go, routine writes are held. */
	assert_true(op_shaper_take(&s, 1000, 0, now + wait - 1) > 0);
	assert_int_equal(op_shaper_take(&s, 1000, 1, now + wait), 0);
	/* Then routine writes go again, as tokens allow. */
	assert_true(op_shaper_take(&s, 1000, 0, now + wait + NS) == 0);
}

/* While an urgent request is in flight, routine writes wait, whatever the
 * tokens: the urgent study has the whole rate. */
static void test_shaper_urgent_request_holds_routine(void **state)
{
	op_shaper s;

	(void)state;
	op_shaper_init(&s, 0);
	op_shaper_set(&s, 8000000, 0, 0);
	s.urgent_active = 1;
	assert_true(op_shaper_take(&s, 1000, 0, 10 * NS) > 0);
	assert_int_equal(op_shaper_take(&s, 1000, 1, 10 * NS), 0);
	s.urgent_active = 0;
	assert_int_equal(op_shaper_take(&s, 1000, 0, 11 * NS), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shaper_rates),
		cmocka_unit_test(test_shaper_unlimited_and_paused),
		cmocka_unit_test(test_shaper_chunk),
		cmocka_unit_test(test_shaper_urgent_first),
		cmocka_unit_test(test_shaper_urgent_request_holds_routine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
