/*
 * test_clock: services/common/clock.c, the two clocks: the wall clock
 * agrees with time(2), the monotonic one never goes back, its milliseconds
 * and nanoseconds are the same clock, and an interval slept is measured as
 * at least its length.
 *
 * The machine is shared with other builds: upper bounds are generous
 * (seconds), lower bounds exact.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "common/clock.h"

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void test_clock_wall(void **state)
{
	int64_t before, now, after;

	(void)state;
	/* time(2) may read a coarser clock, a tick behind: a second's margin. */
	before = (int64_t)time(NULL) * 1000;
	now = op_clock_wall_ms();
	after = ((int64_t)time(NULL) + 2) * 1000;
	assert_true(now >= before);
	assert_true(now < after);
	/* Milliseconds since 1970, not seconds or microseconds: after
	 * 2020-01-01 and before 2100-01-01. */
	assert_true(now > 1577836800000LL);
	assert_true(now < 4102444800000LL);
}

static void test_clock_monotonic_never_goes_back(void **state)
{
	int64_t ms = op_clock_mono_ms(), next_ms;
	uint64_t ns = op_clock_mono_ns(), next_ns;

	(void)state;
	for (int i = 0; i < 100000; i++) {
		next_ms = op_clock_mono_ms();
		next_ns = op_clock_mono_ns();
		assert_true(next_ms >= ms);
		assert_true(next_ns >= ns);
		ms = next_ms;
		ns = next_ns;
	}
}

/* Milliseconds and nanoseconds count from the same start. */
static void test_clock_ms_and_ns_agree(void **state)
{
	int64_t ms_before, ms_after;
	uint64_t ns;

	(void)state;
	ms_before = op_clock_mono_ms();
	ns = op_clock_mono_ns();
	ms_after = op_clock_mono_ms();
	assert_true((int64_t)(ns / 1000000) >= ms_before);
	assert_true((int64_t)(ns / 1000000) <= ms_after);
}

/* An interval is measured as at least what was slept, by both clocks. */
static void test_clock_measures_a_sleep(void **state)
{
	int64_t mono = op_clock_mono_ms(), wall = op_clock_wall_ms(), mono_slept, wall_slept;
	uint64_t ns = op_clock_mono_ns(), ns_slept;

	(void)state;
	sleep_ms(200);
	mono_slept = op_clock_mono_ms() - mono;
	ns_slept = op_clock_mono_ns() - ns;
	wall_slept = op_clock_wall_ms() - wall;
	assert_in_range(mono_slept, 200, 200 + 5000);
	assert_in_range(ns_slept, 200000000ULL, 200000000ULL + 5000000000ULL);
	/* The wall clock may be set meanwhile; on a test machine it is not. */
	assert_in_range(wall_slept, 199, 200 + 5000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clock_wall),
		cmocka_unit_test(test_clock_monotonic_never_goes_back),
		cmocka_unit_test(test_clock_ms_and_ns_agree),
		cmocka_unit_test(test_clock_measures_a_sleep),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
