/*
 * schedule: rates and the weekly schedule (see schedule.h).
 */
#include "common/schedule.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const day_names[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };

int op_rate_parse(const char *s, uint64_t *bps)
{
	static const char *const units[] = { "", "bit", "bit/s", "bps", "b/s" };
	double v, mult = 1;
	char *end;
	int ok = 0;

	while (isspace((unsigned char)*s))
		s++;
	if (strcasecmp(s, "unlimited") == 0) {
		*bps = OP_RATE_UNLIMITED;
		return 0;
	}
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || !isfinite(v) || v < 0)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1e3;
		end++;
		break;
	case 'M':
		mult = 1e6;
		end++;
		break;
	case 'G':
		mult = 1e9;
		end++;
		break;
	default: break;
	}
	while (isspace((unsigned char)*end))
		end++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && !ok; i++) {
		size_t n = strlen(units[i]);
		const char *rest = end + n;

		if (strncasecmp(end, units[i], n) != 0)
			continue;
		while (isspace((unsigned char)*rest))
			rest++;
		ok = *rest == '\0';
	}
	if (!ok || v * mult >= 1e15) /* 1 Pbit/s: not a real link */
		return -EINVAL;
	*bps = (uint64_t)llround(v * mult);
	return 0;
}

void op_rate_format(uint64_t bps, char *buf, size_t size)
{
	if (bps == OP_RATE_UNLIMITED)
		snprintf(buf, size, "unlimited");
	else if (bps == 0)
		snprintf(buf, size, "0");
	else if (bps && bps % 1000000000 == 0)
		snprintf(buf, size, "%" PRIu64 "Gbit", bps / 1000000000);
	else if (bps && bps % 1000000 == 0)
		snprintf(buf, size, "%" PRIu64 "Mbit", bps / 1000000);
	else if (bps && bps % 1000 == 0)
		snprintf(buf, size, "%" PRIu64 "kbit", bps / 1000);
	else
		snprintf(buf, size, "%" PRIu64 "bit", bps);
}

static int day_of(const char *s, size_t n)
{
	for (int i = 0; i < 7; i++)
		if (n == 3 && strncasecmp(s, day_names[i], 3) == 0)
			return i;
	return -1;
}

/* "Mon", "Mon-Fri", "Fri-Mon" -> bit set. */
static int parse_days(const char *s, size_t n, unsigned *out)
{
	const char *dash = memchr(s, '-', n);
	int a, b;

	if (!dash) {
		a = b = day_of(s, n);
	} else {
		a = day_of(s, (size_t)(dash - s));
		b = day_of(dash + 1, n - (size_t)(dash - s) - 1);
	}
	if (a < 0 || b < 0)
		return -EINVAL;
	*out = 0;
	for (int d = a;; d = (d + 1) % 7) {
		*out |= 1u << d;
		if (d == b)
			break;
	}
	return 0;
}

/* "HH:MM" (24:00 allowed) -> minutes. */
static int parse_clock(const char *s, size_t n, int *out)
{
	int h, m;

	if (n != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
	    s[2] != ':' || !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return -EINVAL;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && m != 0))
		return -EINVAL;
	*out = h * 60 + m;
	return 0;
}

/* One window: "DAYS HH:MM-HH:MM RATE". */
static int parse_window(char *w, op_window *out, const char **why)
{
	char *save = NULL, *days = strtok_r(w, " \t", &save);
	char *span = strtok_r(NULL, " \t", &save);
	char *rate = strtok_r(NULL, "", &save);
	char *dash;

	if (!days || !span || !rate) {
		*why = "expected DAYS HH:MM-HH:MM RATE";
		return -EINVAL;
	}
	if (parse_days(days, strlen(days), &out->days) < 0) {
		*why = "days are Mon..Sun or a range like Mon-Fri";
		return -EINVAL;
	}
	dash = strchr(span, '-');
	if (!dash || parse_clock(span, (size_t)(dash - span), &out->start) < 0 ||
	    parse_clock(dash + 1, strlen(dash + 1), &out->end) < 0 || out->start == 1440) {
		*why = "times are HH:MM-HH:MM (00:00 to 24:00)";
		return -EINVAL;
	}
	if (op_rate_parse(rate, &out->rate_bps) < 0) {
		*why = "rate is bits per second with k, M, G (e.g. 2Mbit), unlimited or 0";
		return -EINVAL;
	}
	return 0;
}

int op_schedule_parse(const char *text, op_schedule *out, char *err, size_t errlen)
{
	char buf[4096], *save = NULL, *w;
	const char *why = "";
	int i = 0;

	memset(out, 0, sizeof(*out));
	if (strlen(text) >= sizeof(buf)) {
		snprintf(err, errlen, "too long");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", text);
	for (w = strtok_r(buf, ";", &save); w; w = strtok_r(NULL, ";", &save)) {
		char copy[256];

		while (isspace((unsigned char)*w))
			w++;
		if (!*w)
			continue;
		i++;
		if (out->n == OP_SCHEDULE_MAX) {
			snprintf(err, errlen, "more than %d windows", OP_SCHEDULE_MAX);
			return -EINVAL;
		}
		snprintf(copy, sizeof(copy), "%s", w);
		if (parse_window(w, &out->windows[out->n], &why) < 0) {
			snprintf(err, errlen, "window %d '%s': %s", i, copy, why);
			return -EINVAL;
		}
		out->n++;
	}
	return 0;
}

static int in_window(const op_window *w, int day, int minute)
{
	int yesterday = (day + 6) % 7;

	if (w->start < w->end)
		return (w->days & 1u << day) && minute >= w->start && minute < w->end;
	/* Crosses midnight: the evening of a listed day, or the morning
	 * after one. */
	return ((w->days & 1u << day) && minute >= w->start) ||
	       ((w->days & 1u << yesterday) && minute < w->end);
}

/* The window that gives the rate on day (Monday 0) at minute, or -1. */
static int window_at(const op_schedule *s, int day, int minute)
{
	for (int i = 0; i < s->n; i++)
		if (in_window(&s->windows[i], day, minute))
			return i;
	return -1;
}

uint64_t op_schedule_rate(const op_schedule *s, uint64_t default_bps, const struct tm *tm)
{
	int w = window_at(s, (tm->tm_wday + 6) % 7 /* tm: Sunday 0 */,
			  tm->tm_hour * 60 + tm->tm_min);

	return w < 0 ? default_bps : s->windows[w].rate_bps;
}

int op_schedule_next_change(const op_schedule *s, uint64_t default_bps, const struct tm *tm,
			    int *from_window)
{
	int day = (tm->tm_wday + 6) % 7, minute = tm->tm_hour * 60 + tm->tm_min;
	int w = window_at(s, day, minute);
	uint64_t now = w < 0 ? default_bps : s->windows[w].rate_bps;

	*from_window = w >= 0;
	/* Minute by minute over one week: at most 10080 steps of s->n
	 * windows, and only the operator's status asks. */
	for (int k = 1; k <= 7 * 1440; k++) {
		int m = minute + k, x = window_at(s, (day + m / 1440) % 7, m % 1440);

		if ((x < 0 ? default_bps : s->windows[x].rate_bps) != now)
			return k;
	}
	return -1;
}
