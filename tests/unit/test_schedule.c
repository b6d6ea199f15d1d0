/*
 * test_schedule: services/common/schedule.c - rates and the weekly schedule,
 * evaluated at local times built with mktime() in chosen time zones
 * (including DST changes), so no test waits for a clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/schedule.h"

static void test_rate_parse(void **state)
{
	static const struct {
		const char *text;
		uint64_t bps;
	} good[] = {
		{ "0", 0 },
		{ "8Mbit", 8000000 },
		{ "8M", 8000000 },
		{ "2.5Mbit/s", 2500000 },
		{ "512k", 512000 },
		{ "512 kbps", 512000 },
		{ "1G", 1000000000 },
		{ "100", 100 },
		{ "unlimited", OP_RATE_UNLIMITED },
		{ "Unlimited", OP_RATE_UNLIMITED },
		{ " 20Mbit ", 20000000 },
	};
	static const char *const bad[] = { "",     "fast", "-1", "8 Mbyte", "8MB",
					   "1e20", "8Q",   "M8", "nan",     "inf" };
	uint64_t v;
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (op_rate_parse(good[i].text, &v) != 0 || v != good[i].bps)
			fail_msg("'%s' -> %d", good[i].text, (int)v);
		/* Formatting reads back to the same rate. */
		op_rate_format(v, buf, sizeof(buf));
		assert_int_equal(op_rate_parse(buf, &v), 0);
		assert_true(v == good[i].bps);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (op_rate_parse(bad[i], &v) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
}

static struct tm at(int year, int month, int day, int hour, int min)
{
	struct tm tm = { 0 };
	time_t t;

	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	localtime_r(&t, &tm);
	return tm;
}

#define MBIT(x) ((uint64_t)(x)*1000000)
#define DEFAULT MBIT(5)

static uint64_t rate_at(const op_schedule *s, int y, int mo, int d, int h, int mi)
{
	struct tm tm = at(y, mo, d, h, mi);

	return op_schedule_rate(s, DEFAULT, &tm);
}

/* The example. 2026-11-30 is a Monday. */
static void test_schedule_example(void **state)
{
	op_schedule s;
	char err[256];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	assert_int_equal(op_schedule_parse("Mon-Fri 07:00-19:00 2Mbit; Mon-Fri 19:00-07:00 "
					   "unlimited; Sat-Sun 00:00-24:00 20Mbit",
					   &s, err, sizeof(err)),
			 0);
	assert_int_equal(s.n, 3);
	assert_true(rate_at(&s, 2026, 11, 30, 6, 59) == DEFAULT); /* Monday, before any */
	assert_true(rate_at(&s, 2026, 11, 30, 7, 0) == MBIT(2));
	assert_true(rate_at(&s, 2026, 11, 30, 18, 59) == MBIT(2));
	assert_true(rate_at(&s, 2026, 11, 30, 19, 0) == OP_RATE_UNLIMITED);
	assert_true(rate_at(&s, 2026, 12, 1, 6, 59) == OP_RATE_UNLIMITED); /* Tue morning */
	/* Friday's night window runs into Saturday morning, and comes first. */
	assert_true(rate_at(&s, 2026, 12, 5, 0, 0) == OP_RATE_UNLIMITED);
	assert_true(rate_at(&s, 2026, 12, 5, 6, 59) == OP_RATE_UNLIMITED);
	assert_true(rate_at(&s, 2026, 12, 5, 7, 0) == MBIT(20));   /* Saturday */
	assert_true(rate_at(&s, 2026, 12, 6, 23, 59) == MBIT(20)); /* Sunday */
	assert_true(rate_at(&s, 2026, 12, 7, 3, 0) == DEFAULT);    /* Mon night: Sun not listed */
}

/* When the rate next changes, and whether a window gives it: what the
 * console's "held by schedule until 19:00" says. */
static void test_schedule_next_change(void **state)
{
	op_schedule s, none;
	char err[256];
	struct tm tm;
	int win = -1;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	assert_int_equal(op_schedule_parse("Mon-Fri 07:00-19:00 0; Sat 10:00-11:00 2Mbit", &s, err,
					   sizeof(err)),
			 0);
	tm = at(2026, 11, 30, 14, 41); /* Monday, in the window of rate 0 */
	assert_int_equal(op_schedule_next_change(&s, DEFAULT, &tm, &win), 4 * 60 + 19);
	assert_int_equal(win, 1);
	tm = at(2026, 11, 30, 19, 0); /* the default until Tuesday 07:00 */
	assert_int_equal(op_schedule_next_change(&s, DEFAULT, &tm, &win), 12 * 60);
	assert_int_equal(win, 0);
	tm = at(2026, 12, 4, 20, 0); /* Friday evening: the default until Sat 10:00 */
	assert_int_equal(op_schedule_next_change(&s, DEFAULT, &tm, &win), 14 * 60);
	assert_int_equal(win, 0);
	/* The default equal to a window's rate: no change at its edge. */
	tm = at(2026, 12, 5, 10, 30);
	assert_int_equal(op_schedule_next_change(&s, MBIT(2), &tm, &win), 44 * 60 + 30);
	assert_int_equal(win, 1);
	/* No schedule: the rate never changes. */
	assert_int_equal(op_schedule_parse("", &none, err, sizeof(err)), 0);
	assert_int_equal(op_schedule_next_change(&none, 0, &tm, &win), -1);
	assert_int_equal(win, 0);
}

/* A window across midnight belongs to its start day; days wrap. */
static void test_schedule_midnight_and_wrapping_days(void **state)
{
	op_schedule s;
	char err[256];

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	assert_int_equal(op_schedule_parse("Sun 22:00-02:00 0; Fri-Mon 12:00-13:00 1Mbit", &s, err,
					   sizeof(err)),
			 0);
	assert_true(rate_at(&s, 2026, 12, 6, 22, 0) == 0);        /* Sunday 22:00 */
	assert_true(rate_at(&s, 2026, 12, 7, 1, 59) == 0);        /* Monday 01:59 */
	assert_true(rate_at(&s, 2026, 12, 7, 2, 0) == DEFAULT);   /* Monday 02:00 */
	assert_true(rate_at(&s, 2026, 12, 5, 23, 0) == DEFAULT);  /* Saturday */
	assert_true(rate_at(&s, 2026, 12, 4, 12, 30) == MBIT(1)); /* Fri */
	assert_true(rate_at(&s, 2026, 12, 7, 12, 30) == MBIT(1)); /* Mon */
	assert_true(rate_at(&s, 2026, 12, 8, 12, 30) == DEFAULT); /* Tue */
}

/* Wall-clock windows across DST changes (Europe/Berlin, 2026-03-29 and
 * 2026-10-25): the window follows the local clock. */
static void test_schedule_dst(void **state)
{
	op_schedule s;
	char err[256];
	struct tm tm;
	time_t t;

	(void)state;
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	assert_int_equal(op_schedule_parse("Sun 01:00-04:00 1Mbit", &s, err, sizeof(err)), 0);
	/* Spring: 02:00 becomes 03:00; 01:59 and 03:00 are both inside. */
	assert_true(rate_at(&s, 2026, 3, 29, 1, 59) == MBIT(1));
	assert_true(rate_at(&s, 2026, 3, 29, 3, 30) == MBIT(1));
	assert_true(rate_at(&s, 2026, 3, 29, 4, 0) == DEFAULT);
	/* Autumn: 02:30 happens twice, in the window both times. */
	tm = at(2026, 10, 25, 0, 30);
	t = mktime(&tm);
	for (int i = 0; i < 5 * 4; i++, t += 15 * 60) {
		struct tm local;

		localtime_r(&t, &local);
		assert_true(op_schedule_rate(&s, DEFAULT, &local) ==
			    (local.tm_hour >= 1 && local.tm_hour < 4 ? MBIT(1) : DEFAULT));
	}
	setenv("TZ", "UTC", 1);
	tzset();
}

static void test_schedule_errors(void **state)
{
	static const char *const bad[] = {
		"Mon 07:00-19:00",         "Mon 7:00-19:00 1M",     "Mon 07:00-25:00 1M",
		"Mon 07:60-19:00 1M",      "Monday 07:00-19:00 1M", "Mon-Foo 07:00-19:00 1M",
		"Mon 07:00 19:00 1M",      "Mon 24:00-01:00 1M",    "Mon 07:00-19:00 fast",
		"Mon 07:00-19:00 1M; Tue", "Mon 24:01-19:00 1M",
	};
	op_schedule s;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (op_schedule_parse(bad[i], &s, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_non_null(strstr(err, "window"));
	}
	/* Empty: no windows. */
	assert_int_equal(op_schedule_parse("", &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(op_schedule_parse(" ; ;", &s, err, sizeof(err)), 0);
	assert_int_equal(s.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_parse),
		cmocka_unit_test(test_schedule_example),
		cmocka_unit_test(test_schedule_next_change),
		cmocka_unit_test(test_schedule_midnight_and_wrapping_days),
		cmocka_unit_test(test_schedule_dst),
		cmocka_unit_test(test_schedule_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
