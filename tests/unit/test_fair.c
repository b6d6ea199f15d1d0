/*
 * test_fair: max-min shares of the [shaping] bucket between destinations
 * (services/uplink/fair.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/schedule.h"
#include "uplink/fair.h"

#define U OP_RATE_UNLIMITED

/* Two busy destinations held back by their shares: half each. */
static void test_fair_equal(void **state)
{
	op_fair_dest d[2] = { { 1, U, U, 0 }, { 1, U, U, 0 } };

	(void)state;
	op_fair_share(40000000, d, 2);
	assert_int_equal(d[0].share, 20000000);
	assert_int_equal(d[1].share, 20000000);
	/* Both used what they were given: still half each. */
	d[0].used = d[0].share;
	d[1].used = d[1].share;
	op_fair_share(40000000, d, 2);
	assert_int_equal(d[0].share + d[1].share, 40000000);
	assert_int_equal(d[0].share, 20000000);
}

/* One capped lower by its own rate: the other takes the rest. */
static void test_fair_cap(void **state)
{
	op_fair_dest d[3] = { { 1, 5000000, U, 0 }, { 1, U, U, 0 }, { 1, U, U, 0 } };

	(void)state;
	op_fair_share(40000000, d, 3);
	assert_int_equal(d[0].share, 5000000);
	assert_int_equal(d[1].share, 17500000);
	assert_int_equal(d[2].share, 17500000);
}

/* A slow peer that cannot use its share leaves it to the others, and can
 * grow back. */
static void test_fair_slow_peer(void **state)
{
	op_fair_dest d[2] = { { 1, U, 20000000, 2000000 }, { 1, U, 20000000, 20000000 } };

	(void)state;
	op_fair_share(40000000, d, 2);
	assert_int_equal(d[0].share, 2500000); /* a quarter more than it used */
	assert_int_equal(d[1].share, 37500000);
	d[0].used = d[0].share; /* it used all: it wants more again */
	d[1].used = d[1].share;
	op_fair_share(40000000, d, 2);
	assert_int_equal(d[0].share, 20000000);
	assert_int_equal(d[1].share, 20000000);
}

/* Idle ones are ready to start; unlimited and paused buckets. */
static void test_fair_idle_unlimited_paused(void **state)
{
	op_fair_dest d[2] = { { 1, U, U, 0 }, { 0, 8000000, U, 0 } };

	(void)state;
	op_fair_share(30000000, d, 2);
	assert_int_equal(d[0].share, 30000000);
	assert_int_equal(d[1].share, 8000000);
	op_fair_share(U, d, 2);
	assert_true(d[0].share == U && d[1].share == 8000000);
	op_fair_share(0, d, 2);
	assert_true(d[0].share == 0 && d[1].share == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fair_equal),
		cmocka_unit_test(test_fair_cap),
		cmocka_unit_test(test_fair_slow_peer),
		cmocka_unit_test(test_fair_idle_unlimited_paused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
