/*
 * headline: the one line that leads the console about a link to a
 * destination - "sending", "held by schedule until 19:00 CET", "paused by
 * the operator since 14:41 CET", "down since 14:02 CET (connection
 * refused)", "idle: nothing queued" - computed in one place from that
 * link's state alone, so that the console, outpostctl and /metrics say the
 * same, and a box with several destinations can show one per link.
 *
 * Pure functions: no I/O, any thread. Times are told in the box's local
 * time zone (TZ, /etc/localtime) with its abbreviation.
 */
#ifndef OP_HEADLINE_H
#define OP_HEADLINE_H

#include <stddef.h>
#include <stdint.h>

/* What the headline is made of: one link's state (op_uplink_view) and its
 * queue. Times are ms since the epoch, 0 when unknown. */
typedef struct op_link_facts {
	const char *link;   /* up, down, paused (credentials), starting, unprovisioned */
	int64_t link_since; /* the link entered that state */
	const char *link_reason;
	int paused_by_operator;
	int64_t paused_since;
	uint64_t rate;           /* in force now (OP_RATE_UNLIMITED, 0: nothing moves) */
	int64_t rate_since;      /* the rate in force since */
	int rate_from_window;    /* a window of the schedule gives it, else the default rate */
	int64_t rate_until;      /* the rate changes then; 0: not within a week */
	uint64_t default_rate;   /* the rate outside the schedule's windows */
	const char *rate_source; /* who set the default rate: "console" or "config" */
	uint64_t queued;         /* instances queued or sending */
	int64_t last_upload_at;  /* an instance was confirmed then; 0: none since start */
	int64_t now;
} op_link_facts;

/* What moves now, in one word each (JSON "state" of the headline). */
#define OP_HEADLINE_SENDING "sending"
#define OP_HEADLINE_IDLE "idle"                   /* up, nothing queued */
#define OP_HEADLINE_HELD "held"                   /* the rate in force is 0 */
#define OP_HEADLINE_PAUSED "paused"               /* by the operator */
#define OP_HEADLINE_REFUSED "refused"             /* the cloud refused the credentials */
#define OP_HEADLINE_DOWN "down"                   /* the cloud cannot be reached */
#define OP_HEADLINE_STARTING "starting"           /* nothing exchanged yet */
#define OP_HEADLINE_UNPROVISIONED "unprovisioned" /* no [cloud] url */

typedef struct op_headline {
	const char *state; /* OP_HEADLINE_* */
	/* Why nothing moves when nothing does: "operator" (a pause, or a rate
	 * of 0 they set) or "schedule" (a window of rate 0, or [shaping] rate
	 * 0 in the file: "config"); "" otherwise. */
	const char *paused_by;
	int64_t since;  /* in this state since (ms); 0 unknown */
	int64_t until;  /* held until (ms); 0 unknown */
	char text[640]; /* the line itself */
} op_headline;

/* Fills h from f. Never fails. */
void op_headline_of(const op_link_facts *f, op_headline *h);

/*
 * A moment in the box's local time with its zone: "14:41 CET" on now's
 * day, "2026-12-04 14:41 CET" on another. Writes "" for 0.
 */
void op_headline_time(int64_t ms, int64_t now, char *out, size_t size);

/* The box's time zone: its abbreviation now ("CET") and its offset from
 * UTC ("+01:00"), and the IANA name when the system tells it
 * ("Europe/Berlin", else ""). */
void op_headline_zone(int64_t now, char *abbrev, size_t asize, char *offset, size_t osize,
		      char *name, size_t nsize);

#endif
