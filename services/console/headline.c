/*
 * headline: the console's one line about a link (see headline.h). The
 * order of the cases is the order of what the operator must act on first:
 * their own pause, refused credentials, an unreachable cloud, then a rate
 * of 0, then whether anything is queued.
 */
#include "console/headline.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/schedule.h"

void op_headline_time(int64_t ms, int64_t now, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000), n = (time_t)(now / 1000);
	struct tm tm, tn;

	if (!ms) {
		snprintf(out, size, "%s", "");
		return;
	}
	localtime_r(&t, &tm);
	localtime_r(&n, &tn);
	if (tm.tm_year == tn.tm_year && tm.tm_yday == tn.tm_yday)
		strftime(out, size, "%H:%M %Z", &tm);
	else
		strftime(out, size, "%Y-%m-%d %H:%M %Z", &tm);
}

void op_headline_zone(int64_t now, char *abbrev, size_t asize, char *offset, size_t osize,
		      char *name, size_t nsize)
{
	time_t t = (time_t)(now / 1000);
	const char *tz = getenv("TZ"), *zi;
	char link[PATH_MAX];
	ssize_t n;
	struct tm tm;
	long off;

	localtime_r(&t, &tm);
	strftime(abbrev, asize, "%Z", &tm);
	off = tm.tm_gmtoff;
	snprintf(offset, osize, "%c%02ld:%02ld", off < 0 ? '-' : '+', labs(off) / 3600,
		 labs(off) % 3600 / 60);
	/* The IANA name: TZ when it names a zone, else the link
	 * /etc/localtime -> .../zoneinfo/Europe/Berlin; "" when neither. */
	snprintf(name, nsize, "%s", "");
	if (tz && *tz) {
		if (strchr(tz, '/') || strcmp(tz, "UTC") == 0)
			snprintf(name, nsize, "%s", tz + (*tz == ':'));
		return;
	}
	n = readlink("/etc/localtime", link, sizeof(link) - 1);
	if (n <= 0)
		return;
	link[n] = '\0';
	if ((zi = strstr(link, "zoneinfo/")))
		snprintf(name, nsize, "%s", zi + strlen("zoneinfo/"));
}

/* "held by schedule until 19:00 CET" and the like: what holds a rate of
 * 0, and until when. */
static void held(const op_link_facts *f, op_headline *h)
{
	char until[64], since[64];
	int n;

	op_headline_time(f->rate_until, f->now, until, sizeof(until));
	op_headline_time(f->rate_since, f->now, since, sizeof(since));
	h->state = OP_HEADLINE_HELD;
	h->since = f->rate_since;
	h->until = f->rate_until;
	if (f->rate_from_window) {
		h->paused_by = "schedule";
		n = snprintf(h->text, sizeof(h->text), "held by schedule");
	} else if (strcmp(f->rate_source, "console") == 0) {
		h->paused_by = "operator";
		n = snprintf(h->text, sizeof(h->text), "held: rate 0 set in the console");
	} else {
		h->paused_by = "config";
		n = snprintf(h->text, sizeof(h->text), "held: [shaping] rate is 0");
	}
	if (*until)
		n += snprintf(h->text + n, sizeof(h->text) - (size_t)n, " until %s", until);
	else if (*since)
		n += snprintf(h->text + n, sizeof(h->text) - (size_t)n, " since %s", since);
	/* The operator's rate of 0 and the schedule: the schedule's windows
	 * win, the rate applies outside them. */
	if (!f->rate_from_window && *until)
		snprintf(h->text + n, sizeof(h->text) - (size_t)n,
			 " (the schedule's next window overrides the rate then)");
	if (f->queued == 0)
		snprintf(h->text + strlen(h->text), sizeof(h->text) - strlen(h->text),
			 "; nothing queued");
}

void op_headline_of(const op_link_facts *f, op_headline *h)
{
	char since[64], rate[32];
	int n;

	memset(h, 0, sizeof(*h));
	h->paused_by = "";
	if (strcmp(f->link, "unprovisioned") == 0) {
		h->state = OP_HEADLINE_UNPROVISIONED;
		snprintf(h->text, sizeof(h->text), "not configured: %s", f->link_reason);
		return;
	}
	if (f->paused_by_operator) {
		h->state = OP_HEADLINE_PAUSED;
		h->paused_by = "operator";
		h->since = f->paused_since;
		op_headline_time(h->since, f->now, since, sizeof(since));
		snprintf(h->text, sizeof(h->text), "paused by the operator%s%s",
			 *since ? " since " : "", since);
		return;
	}
	h->since = f->link_since;
	op_headline_time(h->since, f->now, since, sizeof(since));
	if (strcmp(f->link, "paused") == 0) {
		h->state = OP_HEADLINE_REFUSED;
		snprintf(h->text, sizeof(h->text), "stopped since %s: %s", since, f->link_reason);
		return;
	}
	if (strcmp(f->link, "down") == 0) {
		h->state = OP_HEADLINE_DOWN;
		snprintf(h->text, sizeof(h->text), "down since %s (%s)", since, f->link_reason);
		return;
	}
	if (f->rate == 0) {
		held(f, h);
		return;
	}
	if (strcmp(f->link, "starting") == 0) {
		h->state = OP_HEADLINE_STARTING;
		n = snprintf(h->text, sizeof(h->text), "connecting (%s)", f->link_reason);
	} else if (f->queued == 0) {
		h->state = OP_HEADLINE_IDLE;
		if (f->last_upload_at)
			h->since = f->last_upload_at;
		op_headline_time(h->since, f->now, since, sizeof(since));
		n = snprintf(h->text, sizeof(h->text), "idle since %s: nothing queued", since);
	} else {
		h->state = OP_HEADLINE_SENDING;
		n = snprintf(h->text, sizeof(h->text), "sending");
	}
	/* A schedule's window sends although the rate is 0: say which wins. */
	if (f->rate_from_window && f->default_rate == 0) {
		char until[64];

		op_rate_format(f->rate, rate, sizeof(rate));
		op_headline_time(f->rate_until, f->now, until, sizeof(until));
		snprintf(h->text + n, sizeof(h->text) - (size_t)n,
			 "%s at %s: the schedule's window overrides the rate 0 %s%s%s",
			 strcmp(h->state, OP_HEADLINE_SENDING) == 0 ? "" : ";", rate,
			 strcmp(f->rate_source, "console") == 0 ? "set in the console"
								: "of [shaping]",
			 *until ? " until " : "", until);
	}
}
