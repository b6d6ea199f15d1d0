/*
 * api_status: what the console shows (see internal.h): /api/status,
 * /metrics (Prometheus), /healthz (no login: the appliance's health check
 * and monitors), /api/queue and /api/audit. The engine's state is copied
 * on the loop; the spool is read, the disk measured and the receiver
 * echoed on the thread pool.
 */
#include "console/internal.h"

#include <errno.h>
#include <iconv.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "common/spool.h"
#include "console/echo.h"
#include "console/headline.h"

#define PER_PAGE_MAX 500
#define AUDIT_MAX 1000
#define ECHO_TIMEOUT_MS 5000
#define HEALTH_CALLING_AE "OUTPOST-HEALTH"

static void iso_time(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* --- status and metrics ------------------------------------------------------------- */

struct op__api_disk op__api_disk_of(const char *dir)
{
	struct statvfs v;
	struct op__api_disk d = { 0, 0, 0 };

	if (statvfs(dir, &v) == 0) {
		d.total = (uint64_t)v.f_blocks * v.f_frsize;
		d.free = (uint64_t)v.f_bavail * v.f_frsize;
		d.ok = 1;
	}
	return d;
}

static void add_rate(cJSON *o, const char *name, uint64_t bps)
{
	if (bps == OP_RATE_UNLIMITED)
		cJSON_AddNullToObject(o, name);
	else
		cJSON_AddNumberToObject(o, name, (double)bps);
}

cJSON *op__api_rate_json(const op_uplink_view *v)
{
	cJSON *r = cJSON_CreateObject();

	add_rate(r, "current", v->rate);
	add_rate(r, "configured", v->configured_rate);
	cJSON_AddStringToObject(r, "schedule", v->schedule);
	cJSON_AddStringToObject(r, "source", v->rate_source);
	cJSON_AddStringToObject(r, "schedule_source", v->schedule_source);
	return r;
}

static void add_alarm(cJSON *alarms, const char *id, const char *severity, const char *message)
{
	cJSON *a = cJSON_CreateObject();

	cJSON_AddStringToObject(a, "id", id);
	cJSON_AddStringToObject(a, "severity", severity);
	cJSON_AddStringToObject(a, "message", message);
	cJSON_AddItemToArray(alarms, a);
}

/* The link's headline (console/headline.h) from the engine's view and the
 * queue. */
static void headline_of(const op_uplink_view *v, const op_spool_stats *st, int64_t now,
			op_headline *h)
{
	op_link_facts f = {
		.link = v->link_state,
		.link_since = v->link_since,
		.link_reason = v->link_reason,
		.paused_by_operator = v->paused_by_operator,
		.paused_since = v->paused_since,
		.rate = v->rate,
		.rate_since = v->rate_since,
		.rate_from_window = v->rate_from_window,
		.rate_until = v->rate_until,
		.default_rate = v->configured_rate,
		.rate_source = v->rate_source,
		.queued = st->state[OP_STATE_QUEUED].instances +
			  st->state[OP_STATE_SENDING].instances,
		.last_upload_at = v->last_upload_at,
		.now = now,
	};

	op_headline_of(&f, h);
}

/* Bytes per second sent over the last 5 minutes of the throughput; 0 when
 * nothing was. */
static double recent_rate(const op_uplink_view *v)
{
	uint64_t bytes = 0;

	for (int i = OP_THROUGHPUT_MINUTES - 5; i < OP_THROUGHPUT_MINUTES; i++)
		bytes += v->throughput[i];
	return (double)bytes / 300.0;
}

/* Seconds until what is queued or sending is sent at the recent rate; 0
 * when nothing waits, -1 when nothing is being sent. */
static int64_t clears_in(const op_uplink_view *v, const op_spool_stats *st)
{
	double rate = recent_rate(v);
	uint64_t bytes = st->state[OP_STATE_QUEUED].bytes + st->state[OP_STATE_SENDING].bytes;

	if (!bytes)
		return 0;
	/* Paused, held by a rate of 0 or not up: nothing moves now, whatever
	 * the last minutes sent. */
	if (v->paused_by_operator || v->rate == 0 || strcmp(v->link_state, "up") != 0)
		return -1;
	return rate > 0 ? (int64_t)((double)bytes / rate + 0.5) : -1;
}

/* "2 h 5 min" for the alarm's text. */
static void duration_text(int64_t s, char *out, size_t size)
{
	if (s < 120)
		snprintf(out, size, "%" PRId64 " s", s);
	else if (s < 7200)
		snprintf(out, size, "%" PRId64 " min", s / 60);
	else if (s < 2 * 86400)
		snprintf(out, size, "%" PRId64 " h %" PRId64 " min", s / 3600, s % 3600 / 60);
	else
		snprintf(out, size, "%" PRId64 " d %" PRId64 " h", s / 86400, s % 86400 / 3600);
}

/* What needs the operator: credentials refused, a disk nearly full,
 * quarantined instances, the link down for long, a backlog that does not
 * drain while the link is up or paused. */
static cJSON *alarms_json(const op_uplink_view *v, const struct op__api_settings *c,
			  const op_spool_stats *st, struct op__api_disk d, uint64_t spool_bytes,
			  int64_t now)
{
	cJSON *alarms = cJSON_CreateArray();
	char msg[512];

	if (v->credentials_refused) {
		snprintf(msg, sizeof(msg),
			 "the cloud refused the credentials (%s): check [cloud] auth; sending "
			 "resumes when they change",
			 v->link_reason);
		add_alarm(alarms, "credentials", "error", msg);
	}
	if (d.ok && (d.free < 2 * c->min_free_bytes || d.free < d.total / 10)) {
		snprintf(msg, sizeof(msg),
			 "the spool's disk is nearly full: %" PRIu64 " MB free (the receiver "
			 "refuses below %" PRIu64 " MB)",
			 d.free / 1000000, c->min_free_bytes / 1000000);
		add_alarm(alarms, "disk", "warning", msg);
	}
	if (c->max_bytes && spool_bytes > c->max_bytes / 10 * 9) {
		snprintf(msg, sizeof(msg), "the spool holds %" PRIu64 " of its %" PRIu64 " MB",
			 spool_bytes / 1000000, c->max_bytes / 1000000);
		add_alarm(alarms, "disk", "warning", msg);
	}
	if (st->state[OP_STATE_QUARANTINED].instances) {
		uint64_t n = st->state[OP_STATE_QUARANTINED].instances;

		snprintf(msg, sizeof(msg),
			 "%" PRIu64 " %s quarantined (refused by the cloud): see the queue, fix "
			 "the cause, retry",
			 n, n == 1 ? "instance is" : "instances are");
		add_alarm(alarms, "quarantine", "warning", msg);
	}
	/* A link down has its own alarm below; up, paused or held, the
	 * backlog ageing past [console] backlog_alarm is this one. */
	if (st->oldest_queued_at && strcmp(v->link, "down") != 0 &&
	    now - st->oldest_queued_at > (int64_t)c->backlog_alarm * 1000) {
		char age[64], limit[64], last[64], clear[64];
		int64_t s = clears_in(v, st);

		duration_text((now - st->oldest_queued_at) / 1000, age, sizeof(age));
		duration_text(c->backlog_alarm, limit, sizeof(limit));
		if (v->last_upload_at)
			duration_text((now - v->last_upload_at) / 1000, last, sizeof(last));
		if (s >= 0)
			duration_text(s, clear, sizeof(clear));
		snprintf(msg, sizeof(msg),
			 "backlog: the oldest queued instance is %s old (alarm after %s); %s%s%s; "
			 "%s%s",
			 age, limit,
			 v->last_upload_at ? "last upload " : "no upload since the start",
			 v->last_upload_at ? last : "", v->last_upload_at ? " ago" : "",
			 s >= 0 ? "at the current rate it clears in about "
				: "nothing is being sent",
			 s >= 0 ? clear : "");
		add_alarm(alarms, "backlog", "warning", msg);
	}
	if (strcmp(v->link, "down") == 0 && now - v->link_since > 15 * 60 * 1000) {
		snprintf(msg, sizeof(msg), "the cloud has been unreachable for %" PRId64 " min: %s",
			 (now - v->link_since) / 60000, v->link_reason);
		add_alarm(alarms, "link", "error", msg);
	}
	return alarms;
}

/* DIR/NAME, a file of KEY=VALUE lines (the health gate's), as a JSON
 * object; JSON null when there is none. */
static cJSON *keyvalue_json(const char *dir, const char *name)
{
	char path[PATH_MAX + 64], line[1024];
	cJSON *o;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!*dir || !(f = fopen(path, "re")))
		return cJSON_CreateNull();
	o = cJSON_CreateObject();
	while (fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '=');

		line[strcspn(line, "\n")] = '\0';
		if (eq && eq != line) {
			*eq = '\0';
			cJSON_AddStringToObject(o, line, eq + 1);
		}
	}
	fclose(f);
	return o;
}

/* The engine's state and the settings the status shows, copied on the
 * loop for the thread pool (/api/status, /metrics, /healthz). */
struct view_job {
	struct op__api_job base;
	op_uplink_view view; /* the cloud's */
	/* Every destination's, the cloud's first (its rate and schedule
	 * facts are the shared bucket's: the cloud's engine sets it). */
	op_uplink_view dests[OP_DEST_MAX + 1];
	int n_dests;
	struct op__api_settings settings;
	struct op__api_counters counters;
};

struct status_job {
	struct view_job v;
	char firmware_dir[PATH_MAX]; /* beside the configuration file, or "" */
};

/* The link's headline (headline.h) into x.headline. */
static void add_headline(cJSON *x, const op_uplink_view *v, const op_spool_stats *st, int64_t now)
{
	op_headline h;
	cJSON *y = cJSON_AddObjectToObject(x, "headline");
	char t[32];

	headline_of(v, st, now, &h);
	cJSON_AddStringToObject(y, "state", h.state);
	cJSON_AddStringToObject(y, "text", h.text);
	cJSON_AddStringToObject(y, "paused_by", h.paused_by);
	if (h.since) {
		iso_time(h.since, t, sizeof(t));
		cJSON_AddStringToObject(y, "since", t);
	} else {
		cJSON_AddNullToObject(y, "since");
	}
	if (h.until) {
		iso_time(h.until, t, sizeof(t));
		cJSON_AddStringToObject(y, "until", t);
	} else {
		cJSON_AddNullToObject(y, "until");
	}
}

/* o.link: the link's state, since when (an operator's pause since the
 * pause, not since the link came up), why, and its headline. Returns it. */
static cJSON *add_link(cJSON *o, const op_uplink_view *v, const op_spool_stats *st, int64_t now)
{
	cJSON *x = cJSON_AddObjectToObject(o, "link");
	char t[32];

	cJSON_AddStringToObject(x, "state", v->link);
	iso_time(v->paused_by_operator && v->paused_since ? v->paused_since
		 : v->link_since                          ? v->link_since
							  : v->started_at,
		 t, sizeof(t));
	cJSON_AddStringToObject(x, "since", t);
	cJSON_AddStringToObject(x, "reason", v->link_reason);
	cJSON_AddBoolToObject(x, "paused_by_operator", v->paused_by_operator);
	add_headline(x, v, st, now);
	if (v->last_upload_at)
		cJSON_AddNumberToObject(x, "last_upload_age",
					(double)((now - v->last_upload_at) / 1000));
	else
		cJSON_AddNullToObject(x, "last_upload_age");
	return x;
}

/* o.last_errors: the newest first, each with what it is about (null for
 * the link's own). */
static void add_errors(cJSON *o, const op_uplink_view *v)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "last_errors");
	char t[32];

	for (unsigned i = 0; i < v->n_errors; i++) {
		cJSON *e = cJSON_CreateObject();

		iso_time(v->errors[i].time, t, sizeof(t));
		cJSON_AddStringToObject(e, "time", t);
		cJSON_AddStringToObject(e, "event", v->errors[i].event);
		cJSON_AddStringToObject(e, "message", v->errors[i].message);
		if (*v->errors[i].study_uid)
			cJSON_AddStringToObject(e, "study_uid", v->errors[i].study_uid);
		else
			cJSON_AddNullToObject(e, "study_uid");
		if (*v->errors[i].sop_uid)
			cJSON_AddStringToObject(e, "sop_uid", v->errors[i].sop_uid);
		else
			cJSON_AddNullToObject(e, "sop_uid");
		cJSON_AddItemToArray(arr, e);
	}
}

/* o.queue: by state, the oldest waiting, and when it clears. */
static void add_queue(cJSON *o, const op_uplink_view *v, const op_spool_stats *st, int64_t now)
{
	cJSON *q = cJSON_AddObjectToObject(o, "queue"), *x;
	int64_t s = clears_in(v, st);

	for (int i = 0; i < OP_SPOOL_STATES; i++) {
		x = cJSON_AddObjectToObject(q, op_spool_state_name(i));
		cJSON_AddNumberToObject(x, "instances", (double)st->state[i].instances);
		cJSON_AddNumberToObject(x, "bytes", (double)st->state[i].bytes);
	}
	if (st->oldest_queued_at)
		cJSON_AddNumberToObject(q, "oldest_queued_age",
					(double)((now - st->oldest_queued_at) / 1000));
	else
		cJSON_AddNullToObject(q, "oldest_queued_age");
	cJSON_AddNumberToObject(q, "studies_queued", (double)st->studies_queued);
	if (s >= 0)
		cJSON_AddNumberToObject(q, "clears_in", (double)s);
	else
		cJSON_AddNullToObject(q, "clears_in");
}

static void add_rate_or_null(cJSON *o, const char *name, uint64_t bps)
{
	if (bps == OP_RATE_UNLIMITED)
		cJSON_AddNullToObject(o, name);
	else
		cJSON_AddNumberToObject(o, name, (double)bps);
}

/* What transfer_syntax does for a destination: the mode in force and why,
 * and what compression saved since start. */
static void add_compression(cJSON *o, const op_uplink_compression *c)
{
	cJSON *x = cJSON_AddObjectToObject(o, "compression"), *y;

	cJSON_AddStringToObject(x, "setting", c->setting ? c->setting : "original");
	cJSON_AddStringToObject(x, "mode", c->mode ? c->mode : "original");
	cJSON_AddStringToObject(x, "why", c->why);
	y = cJSON_AddObjectToObject(x, "since_start");
	cJSON_AddNumberToObject(y, "sent_copies", (double)c->sent_copies);
	cJSON_AddNumberToObject(y, "bytes_before", (double)c->bytes_before);
	cJSON_AddNumberToObject(y, "bytes_after", (double)c->bytes_after);
	if (c->bytes_after)
		cJSON_AddNumberToObject(y, "ratio",
					(double)c->bytes_before / (double)c->bytes_after);
	else
		cJSON_AddNullToObject(y, "ratio");
	cJSON_AddNumberToObject(y, "encoded", (double)c->encoded);
	cJSON_AddNumberToObject(y, "encode_ms", (double)c->encode_ms);
	cJSON_AddNumberToObject(y, "sent_original_mismatch", (double)c->mismatches);
	cJSON_AddNumberToObject(y, "sent_original_refused", (double)c->refused);
}

/* One destination: its link and headline, its own queue and totals. NULL
 * when the spool cannot be read. */
static cJSON *destination_json(const op_uplink_view *v, struct op__api_job *job)
{
	op_spool_stats st;
	cJSON *o, *x;

	if (op_spool_get_stats(job->spool, v->name, &st) < 0)
		return NULL;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", v->name);
	cJSON_AddStringToObject(o, "type", v->type);
	cJSON_AddBoolToObject(o, "enabled", v->enabled);
	cJSON_AddStringToObject(o, "peer", v->peer);
	add_link(o, v, &st, job->t);
	x = cJSON_AddObjectToObject(o, "rate");
	add_rate_or_null(x, "cap", v->cap);
	add_rate_or_null(x, "share", v->share);
	add_queue(o, v, &st, job->t);
	x = cJSON_AddObjectToObject(o, "counters");
	cJSON_AddNumberToObject(x, "uploaded_instances", (double)st.counters.uploaded_instances);
	cJSON_AddNumberToObject(x, "uploaded_bytes", (double)st.counters.uploaded_bytes);
	cJSON_AddNumberToObject(x, "retries", (double)st.counters.retries);
	cJSON_AddNumberToObject(x, "quarantined", (double)st.counters.quarantined);
	add_errors(o, v);
	add_compression(o, &v->compression);
	return o;
}

/* A destination other than the cloud (whose alarms are alarms_json's)
 * down for long. */
static void destination_alarm(cJSON *alarms, const op_uplink_view *v, int64_t now)
{
	char msg[512];

	if (strcmp(v->name, OP_SPOOL_DEFAULT_DESTINATION) == 0)
		return;
	if ((strcmp(v->link, "down") == 0 && now - v->link_since > 15 * 60 * 1000) ||
	    v->credentials_refused) {
		snprintf(msg, sizeof(msg), "destination %s %s for %" PRId64 " min: %s", v->name,
			 v->credentials_refused ? "has refused the credentials"
						: "has been unreachable",
			 (now - v->link_since) / 60000, v->link_reason);
		add_alarm(alarms, "destination", "error", msg);
	}
}

static void status_work(struct op__api_job *job)
{
	const struct status_job *j = (const struct status_job *)job;
	const op_uplink_view *v = &j->v.view;
	const struct op__api_settings *c = &j->v.settings;
	op_spool_stats st;
	struct op__api_disk d = op__api_disk_of(c->spool_dir);
	cJSON *o = cJSON_CreateObject(), *x, *arr;
	uint64_t spool_bytes = 0;
	char t[32];

	if (op_spool_get_stats(job->spool, NULL, &st) < 0) {
		cJSON_Delete(o);
		op__api_job_error(job, 503,
				  "the spool database cannot be read (see the uplink's log)");
		return;
	}
	cJSON_AddStringToObject(o, "version", OP_VERSION);
	cJSON_AddNumberToObject(o, "uptime", (double)((job->t - v->started_at) / 1000));
	iso_time(job->t, t, sizeof(t));
	cJSON_AddStringToObject(o, "time", t);

	{
		char abbrev[16], offset[16], name[128];

		op_headline_zone(job->t, abbrev, sizeof(abbrev), offset, sizeof(offset), name,
				 sizeof(name));
		x = cJSON_AddObjectToObject(o, "timezone");
		cJSON_AddStringToObject(x, "abbreviation", abbrev);
		cJSON_AddStringToObject(x, "utc_offset", offset);
		cJSON_AddStringToObject(x, "name", name);
	}

	x = add_link(o, v, &st, job->t);
	cJSON_AddStringToObject(x, "cloud", c->cloud_url);

	cJSON_AddItemToObject(o, "rate", op__api_rate_json(v));

	add_queue(o, v, &st, job->t);
	for (int i = 0; i < OP_SPOOL_STATES; i++)
		spool_bytes += st.state[i].bytes;

	x = cJSON_AddObjectToObject(o, "disk");
	cJSON_AddStringToObject(x, "path", c->spool_dir);
	cJSON_AddNumberToObject(x, "total", (double)d.total);
	cJSON_AddNumberToObject(x, "free", (double)d.free);
	cJSON_AddNumberToObject(x, "spool_bytes", (double)spool_bytes);
	cJSON_AddNumberToObject(x, "max_bytes", (double)c->max_bytes);
	cJSON_AddNumberToObject(x, "min_free_bytes", (double)c->min_free_bytes);

	x = cJSON_AddObjectToObject(o, "throughput");
	cJSON_AddNumberToObject(x, "interval", 60);
	arr = cJSON_AddArrayToObject(x, "bytes");
	for (int i = 0; i < OP_THROUGHPUT_MINUTES; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)v->throughput[i]));

	add_errors(o, v);
	cJSON_AddItemToObject(o, "alarms", alarms_json(v, c, &st, d, spool_bytes, job->t));
	arr = cJSON_AddArrayToObject(o, "destinations");
	for (int i = 0; i < j->v.n_dests; i++) {
		cJSON *dj = destination_json(&j->v.dests[i], job);

		if (!dj) {
			cJSON_Delete(o);
			op__api_job_error(
				job, 503,
				"the spool database cannot be read (see the uplink's log)");
			return;
		}
		cJSON_AddItemToArray(arr, dj);
		destination_alarm(cJSON_GetObjectItemCaseSensitive(o, "alarms"), &j->v.dests[i],
				  job->t);
	}

	/* The appliance's root slot and its last update (outpost-health-gate). */
	x = cJSON_AddObjectToObject(o, "firmware");
	cJSON_AddItemToObject(x, "booted", keyvalue_json(j->firmware_dir, "booted"));
	cJSON_AddItemToObject(x, "last_update", keyvalue_json(j->firmware_dir, "last-update"));
	cJSON_AddItemToObject(x, "encryption", keyvalue_json(j->firmware_dir, "encryption"));

	x = cJSON_AddObjectToObject(o, "console");
	cJSON_AddBoolToObject(x, "tls", *c->fingerprint != '\0');
	if (*c->fingerprint)
		cJSON_AddStringToObject(x, "fingerprint_sha256", c->fingerprint);
	else
		cJSON_AddNullToObject(x, "fingerprint_sha256");

	x = cJSON_AddObjectToObject(o, "counters");
	cJSON_AddNumberToObject(x, "received_instances", (double)st.counters.received_instances);
	cJSON_AddNumberToObject(x, "received_bytes", (double)st.counters.received_bytes);
	cJSON_AddNumberToObject(x, "uploaded_instances", (double)st.counters.uploaded_instances);
	cJSON_AddNumberToObject(x, "uploaded_bytes", (double)st.counters.uploaded_bytes);
	cJSON_AddNumberToObject(x, "retries", (double)st.counters.retries);
	cJSON_AddNumberToObject(x, "quarantined", (double)st.counters.quarantined);
	cJSON_AddNumberToObject(x, "associations_rejected",
				(double)st.counters.associations_rejected);

	/* Storage commitment requests not yet reported (the receiver's). */
	{
		uint64_t pending = 0;
		int64_t oldest = 0;

		op_spool_commit_pending(job->spool, &pending, &oldest);
		x = cJSON_AddObjectToObject(o, "commitments");
		cJSON_AddNumberToObject(x, "pending", (double)pending);
		if (oldest)
			cJSON_AddNumberToObject(x, "oldest_age",
						(double)((job->t - oldest) / 1000));
		else
			cJSON_AddNullToObject(x, "oldest_age");
	}
	op__api_job_json(job, 200, o);
}

static void settings_of(const op_api *api, struct op__api_settings *c)
{
	snprintf(c->spool_dir, sizeof(c->spool_dir), "%s", api->cfg.spool.dir);
	c->max_bytes = api->cfg.spool.max_bytes;
	c->min_free_bytes = api->cfg.spool.min_free_bytes;
	snprintf(c->cloud_url, sizeof(c->cloud_url), "%s", api->cfg.cloud.url);
	c->receiver_port = api->cfg.receiver.port;
	snprintf(c->receiver_ae, sizeof(c->receiver_ae), "%s", api->cfg.receiver.ae_title);
	snprintf(c->fingerprint, sizeof(c->fingerprint), "%s", api->fingerprint);
	c->backlog_alarm = api->cfg.console.backlog_alarm;
}

/* A job of size bytes that starts with a struct view_job, filled in. */
static void *view_job_new(op_api *api, op_httpd_req *req, const char *who, size_t size)
{
	struct view_job *j = op__api_job_new(api, req, who, size);

	if (!j)
		return NULL;
	op_uplink_get_view(api->up, &j->view);
	for (int i = 0; i < api->n_ups; i++) {
		op_uplink_view *d = &j->dests[j->n_dests++];

		op_uplink_get_view(api->ups[i], d);
		d->rate_since = j->view.rate_since;
		d->rate_from_window = j->view.rate_from_window;
		d->rate_until = j->view.rate_until;
		d->configured_rate = j->view.configured_rate;
		d->rate_source = j->view.rate_source;
	}
	settings_of(api, &j->settings);
	j->counters = api->counters;
	return j;
}

static void with_view(op_api *api, op_httpd_req *req, const char *who,
		      void (*work)(struct op__api_job *))
{
	struct view_job *j = view_job_new(api, req, who, sizeof(*j));

	if (j)
		op__api_job_start_bounded(&j->base, work, NULL);
}

void op__api_status(op_api *api, op_httpd_req *req, const char *who)
{
	struct status_job *j = view_job_new(api, req, who, sizeof(*j));

	if (!j)
		return;
	op__api_beside_config(api, "firmware", j->firmware_dir, sizeof(j->firmware_dir));
	op__api_job_start_bounded(&j->v.base, status_work, NULL);
}

/* Appends to a growing text buffer (the metrics page). */
struct text {
	char *p;
	size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		char *p = realloc(t->p, t->cap + (size_t)n + 4096);

		if (!p)
			return;
		t->p = p;
		t->cap += (size_t)n + 4096;
	}
}

static void metric(struct text *t, const char *name, const char *type, const char *help,
		   uint64_t value)
{
	put(t, "# HELP outpost_%s %s\n# TYPE outpost_%s %s\noutpost_%s %" PRIu64 "\n", name, help,
	    name, type, name, value);
}

/* Each destination's own series, labelled destination="NAME" (the
 * unlabelled ones above are the totals, and the cloud's link). */
static int destination_metrics(struct text *t, const struct view_job *j, struct op__api_job *job)
{
	static const struct {
		const char *name, *type, *help;
	} series[] = {
		{ "destination_link_up", "gauge",
		  "1 when the last exchange with the destination succeeded." },
		{ "destination_paused", "gauge",
		  "1 when the operator paused the destination (see also outpost_paused)." },
		{ "destination_queue_instances", "gauge",
		  "The destination's deliveries by state." },
		{ "destination_oldest_queued_seconds", "gauge",
		  "Age of the destination's oldest delivery not yet sent (0: none)." },
		{ "destination_uploaded_instances_total", "counter",
		  "Instances the destination confirmed." },
		{ "destination_uploaded_bytes_total", "counter",
		  "Bytes of the instances the destination confirmed." },
		{ "destination_retries_total", "counter",
		  "Attempts to the destination that failed and were retried." },
		{ "destination_quarantined_total", "counter",
		  "Instances the destination refused for good." },
		{ "destination_compressed_bytes_before_total", "counter",
		  "Bytes, as received, of the instances sent to the destination as JPEG-LS copies "
		  "(since start)." },
		{ "destination_compressed_bytes_after_total", "counter",
		  "Bytes of those copies (since start)." },
		{ "destination_encode_seconds_total", "counter",
		  "CPU seconds spent making and proving copies for the destination (since "
		  "start)." },
		{ "destination_sent_original_total", "counter",
		  "Instances sent as received instead of as a copy: the copy failed its proof "
		  "(reason mismatch) or the destination refused JPEG-LS (reason refused), since "
		  "start." },
	};
	op_spool_stats st[OP_DEST_MAX + 1];

	for (int i = 0; i < j->n_dests; i++)
		if (op_spool_get_stats(job->spool, j->dests[i].name, &st[i]) < 0)
			return -EIO;
	for (size_t s = 0; s < sizeof(series) / sizeof(series[0]); s++) {
		put(t, "# HELP outpost_%s %s\n# TYPE outpost_%s %s\n", series[s].name,
		    series[s].help, series[s].name, series[s].type);
		for (int i = 0; i < j->n_dests; i++) {
			const op_uplink_view *v = &j->dests[i];
			const op_spool_stats *x = &st[i];
			uint64_t value = 0;

			switch (s) {
			case 0: value = strcmp(v->link_state, "up") == 0; break;
			case 1: value = (uint64_t)v->paused_by_operator; break;
			case 2:
				for (int k = 0; k < OP_SPOOL_STATES; k++)
					put(t,
					    "outpost_%s{destination=\"%s\",state=\"%s\"} %" PRIu64
					    "\n",
					    series[s].name, v->name, op_spool_state_name(k),
					    x->state[k].instances);
				continue;
			case 3:
				value = x->oldest_queued_at
						? (uint64_t)((job->t - x->oldest_queued_at) / 1000)
						: 0;
				break;
			case 4: value = x->counters.uploaded_instances; break;
			case 5: value = x->counters.uploaded_bytes; break;
			case 6: value = x->counters.retries; break;
			case 7: value = x->counters.quarantined; break;
			case 8: value = v->compression.bytes_before; break;
			case 9: value = v->compression.bytes_after; break;
			case 10:
				put(t, "outpost_%s{destination=\"%s\"} %.3f\n", series[s].name,
				    v->name, (double)v->compression.encode_ms / 1000.0);
				continue;
			case 11:
				put(t,
				    "outpost_%s{destination=\"%s\",reason=\"mismatch\"} %" PRIu64
				    "\noutpost_%s{destination=\"%s\",reason=\"refused\"} %" PRIu64
				    "\n",
				    series[s].name, v->name, v->compression.mismatches,
				    series[s].name, v->name, v->compression.refused);
				continue;
			}
			put(t, "outpost_%s{destination=\"%s\"} %" PRIu64 "\n", series[s].name,
			    v->name, value);
		}
	}
	return 0;
}

static void metrics_work(struct op__api_job *job)
{
	const struct view_job *j = (const struct view_job *)job;
	const op_uplink_view *v = &j->view;
	const struct op__api_settings *c = &j->settings;
	op_spool_stats st;
	struct op__api_disk d = op__api_disk_of(c->spool_dir);
	struct text t = { 0 };

	if (op_spool_get_stats(job->spool, NULL, &st) < 0) {
		op__api_job_error(job, 503,
				  "the spool database cannot be read (see the uplink's log)");
		return;
	}
	metric(&t, "received_instances_total", "counter",
	       "Instances acknowledged to modalities (duplicates included).",
	       st.counters.received_instances);
	metric(&t, "received_bytes_total", "counter", "Bytes of the instances received.",
	       st.counters.received_bytes);
	metric(&t, "uploaded_instances_total", "counter", "Instances the cloud confirmed.",
	       st.counters.uploaded_instances);
	metric(&t, "uploaded_bytes_total", "counter", "Bytes of the instances uploaded.",
	       st.counters.uploaded_bytes);
	put(&t, "# HELP outpost_queue_instances Instances in the spool by state.\n"
		"# TYPE outpost_queue_instances gauge\n");
	for (int i = 0; i < OP_SPOOL_STATES; i++)
		put(&t, "outpost_queue_instances{state=\"%s\"} %" PRIu64 "\n",
		    op_spool_state_name(i), st.state[i].instances);
	put(&t, "# HELP outpost_queue_bytes Bytes in the spool by state.\n"
		"# TYPE outpost_queue_bytes gauge\n");
	for (int i = 0; i < OP_SPOOL_STATES; i++)
		put(&t, "outpost_queue_bytes{state=\"%s\"} %" PRIu64 "\n", op_spool_state_name(i),
		    st.state[i].bytes);
	metric(&t, "oldest_queued_seconds", "gauge",
	       "Age of the oldest instance not yet uploaded (0: none).",
	       st.oldest_queued_at ? (uint64_t)((job->t - st.oldest_queued_at) / 1000) : 0);
	/* The link alone: a pause is outpost_paused. */
	metric(&t, "link_up", "gauge",
	       "1 when the last exchange with the cloud succeeded (whether or not uploads are "
	       "paused: see outpost_paused).",
	       strcmp(v->link_state, "up") == 0);
	{
		op_headline h;

		headline_of(v, &st, job->t, &h);
		put(&t, "# HELP outpost_paused 1 when nothing is uploaded because of a pause: "
			"by=\"operator\" (outpostctl/console pause, or a rate of 0 set there), "
			"by=\"schedule\" (a schedule window of rate 0), by=\"config\" "
			"([shaping] rate 0).\n"
			"# TYPE outpost_paused gauge\n");
		for (size_t i = 0; i < 3; i++) {
			static const char *const by[] = { "operator", "schedule", "config" };

			put(&t, "outpost_paused{by=\"%s\"} %d\n", by[i],
			    strcmp(h.paused_by, by[i]) == 0);
		}
	}
	put(&t, "# HELP outpost_rate_limit_bits_per_second The upload rate in force.\n"
		"# TYPE outpost_rate_limit_bits_per_second gauge\n");
	if (v->rate == OP_RATE_UNLIMITED)
		put(&t, "outpost_rate_limit_bits_per_second +Inf\n");
	else
		put(&t, "outpost_rate_limit_bits_per_second %" PRIu64 "\n", v->rate);
	metric(&t, "retries_total", "counter", "Upload attempts that failed and were retried.",
	       st.counters.retries);
	metric(&t, "quarantined_total", "counter", "Instances the cloud refused for good.",
	       st.counters.quarantined);
	metric(&t, "associations_rejected_total", "counter",
	       "Associations the receiver turned away.", st.counters.associations_rejected);
	{
		uint64_t pending = 0;
		int64_t oldest = 0;

		op_spool_commit_pending(job->spool, &pending, &oldest);
		metric(&t, "commitments_pending", "gauge",
		       "Storage commitment requests whose report has not been delivered.", pending);
	}
	metric(&t, "disk_free_bytes", "gauge", "Free bytes on the spool's filesystem.", d.free);
	metric(&t, "console_password_checks_total", "counter",
	       "Console passwords verified (Argon2), logins and HTTP Basic.",
	       j->counters.password_checks);
	metric(&t, "console_health_checks_total", "counter",
	       "Health checks run (spool quick_check and C-ECHO); /healthz shares their results.",
	       j->counters.health_checks);
	metric(&t, "console_busy_total", "counter",
	       "Console requests refused for want of room (503, 429).", j->counters.busy);
	if (destination_metrics(&t, j, job) < 0) {
		free(t.p);
		op__api_job_error(job, 503,
				  "the spool database cannot be read (see the uplink's log)");
		return;
	}
	job->status = 200;
	job->ctype = "text/plain; version=0.0.4; charset=utf-8";
	job->body = t.p;
	job->len = t.len;
}

void op__api_metrics(op_api *api, op_httpd_req *req, const char *who)
{
	with_view(api, req, who, metrics_work);
}

/* --- /healthz ----------------------------------------------------------------------- */

static void add_check(cJSON *checks, const char *name, int ok, const char *detail)
{
	cJSON *c = cJSON_AddObjectToObject(checks, name);

	cJSON_AddBoolToObject(c, "ok", ok);
	if (detail)
		cJSON_AddStringToObject(c, "detail", detail);
}

static void healthz_work(struct op__api_job *job)
{
	const struct view_job *j = (const struct view_job *)job;
	const op_uplink_view *v = &j->view;
	const struct op__api_settings *c = &j->settings;
	char spool[300], echo[300];
	int spool_ok, echo_rc;
	cJSON *o = cJSON_CreateObject(), *checks, *cloud;

	spool_ok = op_spool_quick_check(job->spool, spool, sizeof(spool)) == 0;
	echo_rc = op_echo("127.0.0.1", c->receiver_port, c->receiver_ae, HEALTH_CALLING_AE,
			  ECHO_TIMEOUT_MS, echo, sizeof(echo));
	/* A receiver whose admission rules turn the health check's calling AE
	 * or loopback away has still answered at the DICOM level: it is up. */
	if (echo_rc == -EPROTO && strncmp(echo, "association rejected", 20) == 0)
		echo_rc = 0;
	cJSON_AddBoolToObject(o, "healthy", spool_ok && echo_rc == 0);
	checks = cJSON_AddObjectToObject(o, "checks");
	add_check(checks, "uplink", 1, NULL);
	add_check(checks, "spool", spool_ok, spool);
	add_check(checks, "receiver", echo_rc == 0, echo);
	cloud = cJSON_AddObjectToObject(o, "cloud");
	cJSON_AddBoolToObject(cloud, "ok", strcmp(v->link, "up") == 0);
	cJSON_AddStringToObject(cloud, "state", v->link);
	cJSON_AddStringToObject(cloud, "detail", v->link_reason);
	op__api_job_json(job, spool_ok && echo_rc == 0 ? 200 : 503, o);
}

/*
 * /healthz needs no login, so anyone may ask it often; each check is a
 * quick_check of the spool and a C-ECHO on the thread pool the uploads
 * share. So one check runs at a time, every request that comes meanwhile
 * waits for its result, and a result is answered again for HEALTH_FRESH_MS
 * over TCP.
 */
#define HEALTH_FRESH_MS 2000

static void healthz_answer(op_api *api, op_httpd_req *req)
{
	op_httpd_reply(req, api->health_status, OP__API_JSON, NULL, api->health_body,
		       api->health_len);
}

static void healthz_done(struct op__api_job *job)
{
	op_api *api = job->api;

	api->health_running = 0;
	free(api->health_body);
	api->health_body = job->body;
	api->health_len = job->len;
	api->health_status = job->status;
	api->health_at = uv_now(api->loop);
	job->body = NULL;
	for (int i = 0; i < api->n_health_waiters; i++)
		healthz_answer(api, api->health_waiters[i]);
	api->n_health_waiters = 0;
}

void op__api_cancel_healthz(op_api *api)
{
	for (int i = 0; i < api->n_health_waiters; i++)
		op_httpd_reply(api->health_waiters[i], 503, OP__API_JSON, NULL,
			       "{\"error\": \"stopping\"}", 21);
	api->n_health_waiters = 0;
}

void op__api_healthz(op_api *api, op_httpd_req *req)
{
	struct view_job *j;

	/* The Unix socket (outpostctl health, the appliance's health gate
	 * after an update) wants the state now: a check not finished when it
	 * came, never a result kept. */
	if (api->health_body && !op_httpd_is_local(req) &&
	    uv_now(api->loop) - api->health_at < HEALTH_FRESH_MS) {
		healthz_answer(api, req);
		return;
	}
	if (api->n_health_waiters == OP__API_HEALTH_WAITERS) {
		api->counters.busy++;
		op__api_reply_error(req, 503, "Retry-After: 1\r\n", "busy, try again");
		return;
	}
	api->health_waiters[api->n_health_waiters++] = req;
	if (api->health_running)
		return;
	/* The job answers nobody itself: healthz_done() answers the waiters. */
	if (!(j = view_job_new(api, req, NULL, sizeof(*j)))) {
		api->n_health_waiters--; /* answered */
		return;
	}
	j->base.req = NULL;
	api->health_running = 1;
	api->counters.health_checks++;
	if (op__api_job_start(&j->base, healthz_work, healthz_done) < 0) {
		api->health_running = 0;
		api->n_health_waiters--;
		op__api_reply_error(req, 503, "Retry-After: 1\r\n", "busy, try again");
	}
}

/* --- the queue and the audit log ----------------------------------------------------- */

/* The value of key in a query string, copied into out (no decoding: the
 * values used are plain words and numbers). */
static int query_value(const char *query, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);

	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t n = strcspn(p + klen + 1, "&");

			if (n >= size)
				return -EINVAL;
			memcpy(out, p + klen + 1, n);
			out[n] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

static int query_number(const char *query, const char *key, long min, long max, long *out)
{
	char v[32], *end;
	long n;

	if (query_value(query, key, v, sizeof(v)) < 0)
		return 0;
	n = strtol(v, &end, 10);
	if (!*v || *end || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

/* Is s well-formed UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF)? */
static int utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, n, cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		p += n + 1;
	}
	return 1;
}

/* A hex digit's value, or -1. */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The value of key as text a person typed: percent-decoded ('+' is a
 * space), at most max bytes, no control characters, valid UTF-8, leading
 * and trailing spaces dropped. 0 (out "" when absent), or -EINVAL.
 */
static int query_text(const char *query, const char *key, size_t max, char *out, size_t size)
{
	char raw[3 * OP_SPOOL_SEARCH_MAX + 1];
	size_t n = 0, lead;
	int rc;

	*out = '\0';
	rc = query_value(query, key, raw, sizeof(raw));
	if (rc == -ENOENT)
		return 0;
	if (rc < 0 || size < max + 1)
		return -EINVAL;
	for (const char *p = raw; *p; p++) {
		int c = (unsigned char)*p;

		if (*p == '+') {
			c = ' ';
		} else if (*p == '%') {
			int hi = hex_value(p[1]), lo = hi < 0 ? -1 : hex_value(p[2]);

			if (lo < 0)
				return -EINVAL;
			c = hi * 16 + lo;
			p += 2;
		}
		if (c < 0x20 || c == 0x7f || n == max)
			return -EINVAL;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	if (!utf8_valid(out))
		return -EINVAL;
	while (n && out[n - 1] == ' ')
		out[--n] = '\0';
	lead = strspn(out, " ");
	memmove(out, out + lead, n - lead + 1);
	return 0;
}

/* The iconv name of a DICOM character set (a SpecificCharacterSet value
 * without code extensions); NULL: ASCII only (ISO_IR 6, none, or one
 * whose escape sequences this does not follow). */
static const char *iconv_charset(const char *charset)
{
	static const struct {
		const char *dicom, *iconv;
	} sets[] = {
		{ "ISO_IR 100", "ISO-8859-1" }, { "ISO_IR 101", "ISO-8859-2" },
		{ "ISO_IR 109", "ISO-8859-3" }, { "ISO_IR 110", "ISO-8859-4" },
		{ "ISO_IR 144", "ISO-8859-5" }, { "ISO_IR 127", "ISO-8859-6" },
		{ "ISO_IR 126", "ISO-8859-7" }, { "ISO_IR 138", "ISO-8859-8" },
		{ "ISO_IR 148", "ISO-8859-9" }, { "ISO_IR 203", "ISO-8859-15" },
		{ "ISO_IR 166", "TIS-620" },    { "ISO_IR 192", "UTF-8" },
		{ "GB18030", "GB18030" },       { "GBK", "GBK" },
	};

	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		if (strcmp(charset, sets[i].dicom) == 0)
			return sets[i].iconv;
	return NULL;
}

/*
 * A dataset's text (in its SpecificCharacterSet) as UTF-8 for JSON: what
 * cannot be converted is '?', so the answer is always valid JSON text.
 */
static void add_dicom_text(cJSON *o, const char *key, const char *charset, const char *in)
{
	char buf[1024], *outp = buf, *inp = (char *)in;
	size_t left = strlen(in), room = sizeof(buf) - 1;
	const char *from = iconv_charset(charset);
	iconv_t cd = from ? iconv_open("UTF-8", from) : (iconv_t)-1;

	while (left && room) {
		if (cd != (iconv_t)-1) {
			if (iconv(cd, &inp, &left, &outp, &room) != (size_t)-1 || errno == E2BIG)
				break;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
		/* A byte that is not a character of the set, or not ASCII. */
		*outp++ = cd == (iconv_t)-1 && (unsigned char)*inp < 0x80 ? *inp : '?';
		inp++;
		left--;
		room--;
	}
	*outp = '\0';
	if (cd != (iconv_t)-1)
		iconv_close(cd);
	cJSON_AddStringToObject(o, key, buf);
}

struct queue_job {
	struct op__api_job base;
	int state;                            /* OP_STATE_*, or -1: all */
	char dest[OP_DEST_NAME_MAX + 1];      /* "": the instances' own states */
	char search[OP_SPOOL_SEARCH_MAX + 1]; /* PHI (a name or an ID): never logged */
	unsigned per_page;
	long page; /* from 1 */
};

static void queue_work(struct op__api_job *job)
{
	const struct queue_job *j = (const struct queue_job *)job;
	unsigned per_page = j->per_page, n = 0;
	op_spool_study *studies = calloc(per_page, sizeof(*studies));
	uint64_t total = 0;
	cJSON *o, *arr;
	char t[32];

	if (!studies ||
	    op_spool_studies(job->spool, *j->dest ? j->dest : NULL, j->state,
			     *j->search ? j->search : NULL, (unsigned)((j->page - 1) * per_page),
			     per_page, studies, &n, &total) < 0) {
		free(studies);
		op__api_job_error(job, 503,
				  "the spool database cannot be read (see the uplink's log)");
		return;
	}
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "page", (double)j->page);
	cJSON_AddNumberToObject(o, "per_page", per_page);
	cJSON_AddNumberToObject(o, "total", (double)total);
	if (*j->dest)
		cJSON_AddStringToObject(o, "destination", j->dest);
	arr = cJSON_AddArrayToObject(o, "studies");
	for (unsigned i = 0; i < n; i++) {
		const op_spool_study *s = &studies[i];
		cJSON *x = cJSON_CreateObject(), *states;

		cJSON_AddStringToObject(x, "study_uid", s->study_uid);
		/* PHI: every client of this API is an authenticated
		 * administrator (a console session, Basic, the admin socket). */
		add_dicom_text(x, "patient_name", s->charset, s->patient_name);
		add_dicom_text(x, "patient_id", s->charset, s->patient_id);
		add_dicom_text(x, "accession_number", s->charset, s->accession_number);
		cJSON_AddStringToObject(x, "study_date", s->study_date);
		add_dicom_text(x, "study_description", s->charset, s->study_description);
		cJSON_AddStringToObject(x, "modality", s->modality);
		cJSON_AddStringToObject(x, "modalities", s->modalities);
		cJSON_AddStringToObject(x, "calling_aet", s->calling_aet);
		cJSON_AddNumberToObject(x, "instances", (double)s->instances);
		cJSON_AddNumberToObject(x, "bytes", (double)s->bytes);
		states = cJSON_AddObjectToObject(x, "states");
		for (int k = 0; k < OP_SPOOL_STATES; k++)
			if (s->by_state[k])
				cJSON_AddNumberToObject(states, op_spool_state_name(k),
							(double)s->by_state[k]);
		cJSON_AddNumberToObject(x, "attempts", s->attempts);
		if (s->last_error[0])
			cJSON_AddStringToObject(x, "last_error", s->last_error);
		else
			cJSON_AddNullToObject(x, "last_error");
		cJSON_AddBoolToObject(x, "urgent", s->urgent);
		iso_time(s->received_at, t, sizeof(t));
		cJSON_AddStringToObject(x, "received_at", t);
		iso_time(s->changed_at, t, sizeof(t));
		cJSON_AddStringToObject(x, "changed_at", t);
		cJSON_AddItemToArray(arr, x);
	}
	free(studies);
	op__api_job_json(job, 200, o);
}

void op__api_queue(op_api *api, op_httpd_req *req, const char *who)
{
	const char *query = op_request_query(op_httpd_request(req));
	long page = 1, per_page = 50;
	char state[32], dest[OP_DEST_NAME_MAX + 1] = "", search[OP_SPOOL_SEARCH_MAX + 1];
	int st = -1;
	struct queue_job *j;

	if (query_value(query, "state", state, sizeof(state)) == 0 && *state &&
	    (st = op_spool_state_parse(state)) < 0) {
		op__api_reply_error(req, 400, NULL,
				    "state must be one of queued, sending, sent, quarantined");
		return;
	}
	if (query_number(query, "page", 1, 1000000, &page) < 0 ||
	    query_number(query, "per_page", 1, PER_PAGE_MAX, &per_page) < 0) {
		op__api_reply_error(req, 400, NULL, "page must be 1 or more; per_page from 1 to %d",
				    PER_PAGE_MAX);
		return;
	}
	if (query_value(query, "destination", dest, sizeof(dest)) == 0 && *dest &&
	    !op__api_uplink_named(api, dest)) {
		op__api_reply_error(req, 404, NULL, "no destination %s", dest);
		return;
	}
	if (query_text(query, "search", OP_SPOOL_SEARCH_MAX, search, sizeof(search)) < 0) {
		op__api_reply_error(req, 400, NULL,
				    "search must be at most %d bytes of UTF-8 text, URL-encoded",
				    OP_SPOOL_SEARCH_MAX);
		return;
	}
	if (!(j = op__api_job_new(api, req, who, sizeof(*j))))
		return;
	j->state = st;
	snprintf(j->search, sizeof(j->search), "%s", search);
	snprintf(j->dest, sizeof(j->dest), "%s", dest);
	j->per_page = (unsigned)per_page;
	j->page = page;
	op__api_job_start_bounded(&j->base, queue_work, NULL);
}

struct audit_list_job {
	struct op__api_job base;
	unsigned limit; /* the newest entries, at most AUDIT_MAX */
};

static void audit_list_work(struct op__api_job *job)
{
	const struct audit_list_job *j = (const struct audit_list_job *)job;
	op_spool_audit_entry *e = calloc(j->limit, sizeof(*e));
	unsigned n = 0;
	cJSON *arr;
	char t[32];

	if (!e || op_spool_audit_list(job->spool, j->limit, e, &n) < 0) {
		free(e);
		op__api_job_error(job, 503,
				  "the spool database cannot be read (see the uplink's log)");
		return;
	}
	arr = cJSON_CreateArray();
	for (unsigned i = 0; i < n; i++) {
		cJSON *x = cJSON_CreateObject();

		iso_time(e[i].time, t, sizeof(t));
		cJSON_AddStringToObject(x, "time", t);
		cJSON_AddStringToObject(x, "who", e[i].who);
		cJSON_AddStringToObject(x, "from", e[i].origin);
		cJSON_AddStringToObject(x, "action", e[i].action);
		cJSON_AddStringToObject(x, "detail", e[i].detail);
		cJSON_AddItemToArray(arr, x);
	}
	free(e);
	op__api_job_json(job, 200, arr);
}

void op__api_audit_list(op_api *api, op_httpd_req *req, const char *who)
{
	long limit = 100;
	struct audit_list_job *j;

	if (query_number(op_request_query(op_httpd_request(req)), "limit", 1, AUDIT_MAX, &limit) <
	    0) {
		op__api_reply_error(req, 400, NULL, "limit must be from 1 to %d", AUDIT_MAX);
		return;
	}
	if (!(j = op__api_job_new(api, req, who, sizeof(*j))))
		return;
	j->limit = (unsigned)limit;
	op__api_job_start_bounded(&j->base, audit_list_work, NULL);
}
