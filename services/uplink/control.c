/*
 * control: what an operator may see of and ask of the engine (control.h),
 * and the shaping that follows from it: the token bucket's rate from the
 * weekly schedule or the operator's override, a rate of 0 pausing the
 * requests in flight. The operator's pause and shaping outlive a restart
 * in the spool's settings: the console writes them, the engine reads them
 * back when it opens.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/parse.h"
#include "uplink/internal.h"

/* --- shaping -------------------------------------------------------------------- */

/* A rate of 0 (a schedule's pause) ends the requests in flight: a server
 * would time out a body stalled for hours. Their instances go back to the
 * queue, no attempt counted. */
static void pause_requests(op_uplink *up, const char *why)
{
	for (int i = 0; i < up->n_slots; i++) {
		struct slot *s = &up->slots[i];

		if (s->state != SLOT_SENDING)
			continue;
		if (up->type == OP_DEST_DICOM) {
			/* Its worker stops at the next PDU and requeues. */
			op__uplink_dicom_stop(s);
			continue;
		}
		s->request_over = 1;
		if (!s->fs_busy)
			op__uplink_close_file(s);
		op_https_close(s->conn);
		s->conn = NULL;
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, why, 0);
	}
}

/* The operator's schedule, else [shaping]'s; and the rate outside it. */
static const op_schedule *schedule_in_force(const op_uplink *up)
{
	return *up->schedule_override ? &up->schedule_override_parsed : &up->cfg.shaping.parsed;
}

static uint64_t default_rate(const op_uplink *up)
{
	return up->rate_overridden ? up->rate_override : up->cfg.shaping.rate;
}

void op__uplink_apply_rate(op_uplink *up, const char *why)
{
	time_t t = time(NULL) + up->clock_offset;
	uint64_t rate, burst = up->cfg.shaping.burst;
	char text[32];
	struct tm tm;

	/* The bucket is shared by every destination; one engine (the
	 * cloud's) sets it from the schedule and the operator's settings,
	 * the others follow what it holds. */
	if (up->drives_shaper) {
		localtime_r(&t, &tm);
		rate = op_schedule_rate(schedule_in_force(up), default_rate(up), &tm);
		if (rate != up->shaper->rate || burst != up->shaped_burst) {
			op_shaper_set(up->shaper, rate, burst, op_clock_mono_ns());
			up->shaped_burst = burst;
			op_rate_format(rate, text, sizeof(text));
			op_info("uplink.rate", "rate=%s burst=%" PRIu64 " reason=%s", text,
				up->shaper->burst, why);
		}
	}
	if (up->shaper->rate == up->seen_rate && up->shaper->burst == up->seen_burst &&
	    up->rate_since)
		return;
	if (up->shaper->rate != up->seen_rate || !up->rate_since)
		up->rate_since = op_clock_wall_ms();
	up->seen_rate = up->shaper->rate;
	up->seen_burst = up->shaper->burst;
	if (up->seen_rate == 0)
		pause_requests(up, "paused: the shaping rate is 0");
	/* Writes held back at the old rate ask again at the new one; the
	 * connections stay up. */
	for (int i = 0; i < up->n_slots; i++)
		if (up->slots[i].conn)
			op_https_reshape(up->slots[i].conn);
}

/* TCP-LP (scavenger): checked once, so a kernel without it is reported
 * once, clearly, instead of failing quietly on every connection. */
int op__uplink_scavenger_available(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	ok = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "lp", 2) == 0;
	close(fd);
	return ok;
}

/* OUTPOST_TEST_CLOCK=YYYY-MM-DDTHH:MM:SS (local time) starts the schedule's
 * clock there: tests see a window boundary without waiting for it. */
void op__uplink_test_clock(op_uplink *up)
{
	const char *v = getenv("OUTPOST_TEST_CLOCK");
	struct tm tm = { 0 };
	char *end;

	if (!v)
		return;
	end = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end || *end) {
		op_error("uplink.clock", "OUTPOST_TEST_CLOCK=%s error=\"not YYYY-MM-DDTHH:MM:SS\"",
			 v);
		return;
	}
	tm.tm_isdst = -1;
	up->clock_offset = mktime(&tm) - time(NULL);
	op_warn("uplink.clock", "start=%s reason=\"test clock (OUTPOST_TEST_CLOCK)\"", v);
}

/* --- what the operator sees ----------------------------------------------------- */

void op__uplink_note_error(op_uplink *up, const char *event, const char *message, const char *study,
			   const char *sop)
{
	op_uplink_error *e = &up->errors[up->n_errors++ % OP_UPLINK_ERRORS];

	e->time = op_clock_wall_ms();
	snprintf(e->event, sizeof(e->event), "%s", event);
	snprintf(e->message, sizeof(e->message), "%s", message);
	snprintf(e->study_uid, sizeof(e->study_uid), "%s", study ? study : "");
	snprintf(e->sop_uid, sizeof(e->sop_uid), "%s", sop ? sop : "");
}

void op__uplink_count_throughput(op_uplink *up)
{
	int64_t minute = op_clock_wall_ms() / 60000;
	int64_t gap = minute - up->throughput_minute;

	if (gap > 0) {
		if (gap > OP_THROUGHPUT_MINUTES)
			gap = OP_THROUGHPUT_MINUTES;
		memmove(up->throughput, up->throughput + gap,
			(size_t)(OP_THROUGHPUT_MINUTES - gap) * sizeof(up->throughput[0]));
		memset(up->throughput + OP_THROUGHPUT_MINUTES - gap, 0,
		       (size_t)gap * sizeof(up->throughput[0]));
	}
	up->throughput_minute = minute;
	up->throughput[OP_THROUGHPUT_MINUTES - 1] += up->own.bytes - up->throughput_seen;
	up->throughput_seen = up->own.bytes;
}

void op_uplink_get_view(op_uplink *up, op_uplink_view *v)
{
	memset(v, 0, sizeof(*v));
	op__uplink_count_throughput(up);
	snprintf(v->name, sizeof(v->name), "%s", up->name);
	v->type = up->type == OP_DEST_DICOM ? "dicom" : "stow-rs";
	v->enabled = up->cc.enabled;
	if (up->type == OP_DEST_DICOM)
		snprintf(v->peer, sizeof(v->peer), "%s:%u (%s)", up->dicom.host, up->dicom.port,
			 up->dicom.called_ae);
	else
		snprintf(v->peer, sizeof(v->peer), "%.299s", up->cc.url);
	v->share = up->own.rate;
	v->cap = up->cc.rate;
	v->link = up->operator_paused ? "paused" : op__uplink_link_names[up->link];
	v->link_state = op__uplink_link_names[up->link];
	v->link_since = up->link_since;
	snprintf(v->link_reason, sizeof(v->link_reason), "%s",
		 up->operator_paused ? "paused by the operator" : up->link_reason);
	v->paused_by_operator = up->operator_paused;
	v->paused_since = up->paused_since;
	v->credentials_refused = up->link == LINK_PAUSED;
	v->rate = up->shaper->rate;
	v->rate_since = up->rate_since ? up->rate_since : up->started_at;
	v->last_upload_at = up->last_upload_at;
	{
		/* On the schedule's clock (a test clock may move it), told on
		 * the wall clock the operator reads. */
		time_t t = time(NULL) + up->clock_offset;
		struct tm tm;
		int minutes;

		localtime_r(&t, &tm);
		minutes = op_schedule_next_change(schedule_in_force(up), default_rate(up), &tm,
						  &v->rate_from_window);
		if (minutes > 0)
			v->rate_until =
				((int64_t)(t - up->clock_offset) - tm.tm_sec + 60LL * minutes) *
				1000;
	}
	v->configured_rate = up->rate_overridden ? up->rate_override : up->cfg.shaping.rate;
	v->rate_source = up->rate_overridden ? "console" : "config";
	snprintf(v->schedule, sizeof(v->schedule), "%s",
		 *up->schedule_override ? up->schedule_override : up->cfg.shaping.schedule);
	v->schedule_source = *up->schedule_override ? "console" : "config";
	v->started_at = up->started_at;
	memcpy(v->throughput, up->throughput, sizeof(v->throughput));
	for (unsigned i = 0; i < OP_UPLINK_ERRORS && i < up->n_errors; i++)
		v->errors[v->n_errors++] = up->errors[(up->n_errors - 1 - i) % OP_UPLINK_ERRORS];
	v->compression = up->comp;
}

op_tls *op_uplink_tls(op_uplink *up)
{
	return up->link == LINK_UNPROVISIONED ? NULL : up->tls;
}

const char *op_uplink_auth_header(const op_uplink *up)
{
	return up->auth;
}

/* --- what the operator asks ----------------------------------------------------- */

/* The operator's schedule, when it parses (it was checked when set);
 * else none. Returns 1 when taken. */
static int set_schedule_override(op_uplink *up, const char *text)
{
	char why[256];

	up->schedule_override[0] = '\0';
	if (!text || strlen(text) >= sizeof(up->schedule_override) ||
	    op_schedule_parse(text, &up->schedule_override_parsed, why, sizeof(why)) < 0)
		return 0;
	snprintf(up->schedule_override, sizeof(up->schedule_override), "%s", text);
	return 1;
}

void op__uplink_load_settings(op_uplink *up)
{
	char v[1024], key[64];
	uint64_t rate;

	op_uplink_setting_key(up, "paused", key, sizeof(key));
	if (op_spool_setting_get(up->spool, key, v, sizeof(v)) == 0 && strcmp(v, "1") == 0) {
		up->operator_paused = 1;
		/* When the operator paused (the console keeps it beside the
		 * pause): the pause's "since" outlives a restart. */
		up->paused_since = up->started_at;
		op_uplink_setting_key(up, "paused.since", key, sizeof(key));
		if (op_spool_setting_get(up->spool, key, v, sizeof(v)) == 0) {
			long long ms;

			if (op_parse_int(v, 0, INT64_MAX, &ms) == 0)
				up->paused_since = ms;
		}
		op_warn("uplink.paused",
			"reason=\"paused by the operator (console or outpostctl); resume there\" "
			"dest=%s",
			up->name);
	}
	if (op_spool_setting_get(up->spool, "shaping.rate", v, sizeof(v)) == 0 &&
	    op_rate_parse(v, &rate) == 0) {
		up->rate_overridden = 1;
		up->rate_override = rate;
		op_info("uplink.shaping", "rate=%s source=console", v);
	}
	if (op_spool_setting_get(up->spool, "shaping.schedule", v, sizeof(v)) == 0 &&
	    set_schedule_override(up, v))
		op_info("uplink.shaping", "schedule=\"%s\" source=console", v);
}

int op_uplink_reload(op_uplink *up, const op_config *new_cfg, char *err, size_t errlen)
{
	const op_cloud_config *cc = op__uplink_section(new_cfg, up->name);
	op_cloud_config next;

	if (!cc) {
		/* Removed from the file: it keeps its settings (its deliveries
		 * still wait) until the next start. */
		op_warn("config.reload",
			"destination=%s reason=\"no longer configured: it stops at the next "
			"start\"",
			up->name);
		cc = &up->cc;
	}
	next = *cc;
	if (next.connections != up->cc.connections ||
	    next.batch_max_instances != up->cc.batch_max_instances)
		op_warn("config.reload",
			"destination=%s reason=\"connections and batch_max_instances take "
			"effect at the next start\"",
			up->name);
	next.connections = up->cc.connections;
	next.batch_max_instances = up->cc.batch_max_instances;
	up->cfg = *new_cfg;
	up->cc = next;
	op__uplink_apply_own_rate(up);
	up->batch_bytes = 0;
	/* Idle connections were made with the old settings. */
	for (int i = 0; i < up->n_slots; i++) {
		if (up->slots[i].state == SLOT_IDLE) {
			op_https_close(up->slots[i].conn);
			up->slots[i].conn = NULL;
		}
	}
	op__uplink_apply_rate(up, "reload");
	op__uplink_apply_compression(up, "reload");
	if (op__uplink_apply_cloud(up, "reload") < 0) {
		snprintf(err, errlen, "TLS settings refused; the previous ones stay");
		return -EINVAL;
	}
	return 0;
}

void op_uplink_link_verified(op_uplink *up)
{
	if (up->link == LINK_STARTING)
		op__uplink_link_ok(up);
}

void op_uplink_set_paused(op_uplink *up, int paused, int64_t since)
{
	if (up->operator_paused == !!paused)
		return;
	up->operator_paused = !!paused;
	up->paused_since = paused ? since : 0;
	if (paused) {
		op_warn("uplink.paused", "reason=\"paused by the operator\" dest=%s", up->name);
		pause_requests(up, "paused by the operator");
		return;
	}
	op_info("uplink.resumed", "reason=\"resumed by the operator\" dest=%s", up->name);
	up->next_probe_at = 0;
	for (int i = 0; i < up->n_slots; i++)
		op__uplink_claim(&up->slots[i]);
}

void op_uplink_set_shaping(op_uplink *up, const uint64_t *rate, const char *schedule)
{
	up->rate_overridden = rate != NULL;
	up->rate_override = rate ? *rate : 0;
	set_schedule_override(up, schedule);
	op__uplink_apply_rate(up, "console");
	for (int i = 0; i < up->n_slots; i++)
		op__uplink_claim(&up->slots[i]);
}

int op_uplink_busy(const op_uplink *up)
{
	for (int i = 0; i < up->n_slots; i++)
		if (up->slots[i].state != SLOT_IDLE)
			return 1;
	return 0;
}

uint64_t op_uplink_bytes(const op_uplink *up)
{
	return up->own.bytes;
}

uint64_t op_uplink_share(const op_uplink *up, uint64_t *cap)
{
	*cap = up->cc.rate;
	return up->own.rate;
}

void op_uplink_set_share(op_uplink *up, uint64_t share)
{
	if (share == up->own.rate)
		return;
	op_shaper_set(&up->own, share, 0, op_clock_mono_ns());
	for (int i = 0; i < up->n_slots; i++)
		if (up->slots[i].conn)
			op_https_reshape(up->slots[i].conn);
}

const char *op_uplink_name(const op_uplink *up)
{
	return up->name;
}

void op_uplink_setting_key(const op_uplink *up, const char *base, char *out, size_t size)
{
	/* The cloud's keys are those of the releases before destinations. */
	if (strcmp(up->name, OP_SPOOL_DEFAULT_DESTINATION) == 0)
		snprintf(out, size, "%s", base);
	else
		snprintf(out, size, "%s:%s", base, up->name);
}

const op_cloud_config *op_uplink_cloud_config(const op_uplink *up)
{
	return &up->cc;
}

int op_uplink_dicom_peer(const op_uplink *up, op_dicom_dest_config *out)
{
	if (up->type != OP_DEST_DICOM)
		return 0;
	*out = up->dicom;
	return 1;
}
