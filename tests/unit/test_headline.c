/*
 * test_headline: services/console/headline.c - the console's one line
 * about a link, from that link's state alone, in the box's time zone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/schedule.h"
#include "console/headline.h"

/* 2026-11-30 (a Monday) at h:m local time, in ms. */
static int64_t at(int h, int m)
{
	struct tm tm = { .tm_year = 126,
			 .tm_mon = 10,
			 .tm_mday = 30,
			 .tm_hour = h,
			 .tm_min = m,
			 .tm_isdst = -1 };

	return (int64_t)mktime(&tm) * 1000;
}

static op_link_facts up_link(void)
{
	op_link_facts f = {
		.link = "up",
		.link_since = at(9, 0),
		.link_reason = "",
		.rate = OP_RATE_UNLIMITED,
		.rate_since = at(8, 0),
		.default_rate = OP_RATE_UNLIMITED,
		.rate_source = "config",
		.queued = 12,
		.now = at(14, 50),
	};

	return f;
}

static void berlin(void)
{
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
}

static void test_headline_sending_and_idle(void **state)
{
	op_link_facts f;
	op_headline h;

	(void)state;
	berlin();
	f = up_link();
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "sending");
	assert_string_equal(h.text, "sending");
	assert_string_equal(h.paused_by, "");
	assert_true(h.since == at(9, 0));
	f.queued = 0;
	f.last_upload_at = at(14, 2);
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "idle");
	assert_string_equal(h.text, "idle since 14:02 CET: nothing queued");
}

/* A pause tells the time of the pause, not the time the link came up. */
static void test_headline_paused_by_operator(void **state)
{
	op_link_facts f;
	op_headline h;

	(void)state;
	berlin();
	f = up_link();
	f.paused_by_operator = 1;
	f.paused_since = at(14, 41);
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "paused");
	assert_string_equal(h.paused_by, "operator");
	assert_string_equal(h.text, "paused by the operator since 14:41 CET");
	assert_true(h.since == at(14, 41));
	/* Before the cloud's state: the operator's own pause comes first. */
	f.link = "down";
	f.link_reason = "connection refused";
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "paused");
	/* Another day: the date too. */
	f.now = at(14, 50) + 86400000;
	op_headline_of(&f, &h);
	assert_string_equal(h.text, "paused by the operator since 2026-11-30 14:41 CET");
}

static void test_headline_down(void **state)
{
	op_link_facts f;
	op_headline h;

	(void)state;
	berlin();
	f = up_link();
	f.link = "down";
	f.link_since = at(14, 2);
	f.link_reason = "connection refused";
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "down");
	assert_string_equal(h.text, "down since 14:02 CET (connection refused)");
	f.link = "paused";
	f.link_reason = "HTTP 401";
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "refused");
	assert_string_equal(h.text, "stopped since 14:02 CET: HTTP 401");
}

static void test_headline_held(void **state)
{
	op_link_facts f;
	op_headline h;

	(void)state;
	berlin();
	f = up_link();
	f.rate = 0;
	f.rate_from_window = 1;
	f.rate_until = at(19, 0);
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "held");
	assert_string_equal(h.paused_by, "schedule");
	assert_string_equal(h.text, "held by schedule until 19:00 CET");
	assert_true(h.until == at(19, 0));
	/* The operator's rate 0 holds outside the windows, and says that the
	 * next window wins. */
	f.rate_from_window = 0;
	f.rate_source = "console";
	f.default_rate = 0;
	f.rate_until = at(19, 0);
	op_headline_of(&f, &h);
	assert_string_equal(h.paused_by, "operator");
	assert_string_equal(h.text, "held: rate 0 set in the console until 19:00 CET (the "
				    "schedule's next window overrides the rate then)");
	f.rate_until = 0;
	f.rate_source = "config";
	f.queued = 0;
	op_headline_of(&f, &h);
	assert_string_equal(h.paused_by, "config");
	assert_string_equal(h.text, "held: [shaping] rate is 0 since 08:00 CET; nothing queued");
	/* ... and while a window sends, the line says the window wins. */
	f.rate = 2000000;
	f.rate_from_window = 1;
	f.rate_source = "console";
	f.rate_until = at(19, 0);
	f.queued = 3;
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "sending");
	assert_string_equal(h.text, "sending at 2Mbit: the schedule's window overrides the rate "
				    "0 set in the console until 19:00 CET");
	f.queued = 0;
	f.last_upload_at = at(14, 2);
	op_headline_of(&f, &h);
	assert_string_equal(h.state, "idle");
	assert_string_equal(h.text,
			    "idle since 14:02 CET: nothing queued; at 2Mbit: the "
			    "schedule's window overrides the rate 0 set in the console until "
			    "19:00 CET");
}

static void test_headline_zone(void **state)
{
	char abbrev[16], offset[16], name[64], t[64];

	(void)state;
	berlin();
	op_headline_zone(at(12, 0), abbrev, sizeof(abbrev), offset, sizeof(offset), name,
			 sizeof(name));
	assert_string_equal(abbrev, "CET");
	assert_string_equal(offset, "+01:00");
	assert_string_equal(name, "Europe/Berlin");
	setenv("TZ", "UTC", 1);
	tzset();
	op_headline_zone(at(12, 0), abbrev, sizeof(abbrev), offset, sizeof(offset), name,
			 sizeof(name));
	assert_string_equal(abbrev, "UTC");
	assert_string_equal(offset, "+00:00");
	op_headline_time(at(12, 0), at(13, 0), t, sizeof(t));
	assert_string_equal(t, "12:00 UTC");
	op_headline_time(0, at(13, 0), t, sizeof(t));
	assert_string_equal(t, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headline_sending_and_idle),
		cmocka_unit_test(test_headline_paused_by_operator),
		cmocka_unit_test(test_headline_down),
		cmocka_unit_test(test_headline_held),
		cmocka_unit_test(test_headline_zone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
