/*
 * api_actions: what an operator may do (see internal.h): retry or discard
 * quarantined instances, pause and resume uploading, set the shaping rate and
 * schedule, reload the configuration, test the link to the cloud. What
 * persists is written to the spool on the thread pool, then applied to the
 * engine on the loop (uplink/control.h); every action is audited.
 */
#include "console/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/parse.h"
#include "common/schedule.h"
#include "common/spool.h"
#include "console/echo.h"

#define LINKTEST_TIMEOUT_S 15

/* --- the queue: retry, pause, resume ------------------------------------------------------- */

struct retry_job {
	struct op__api_job base;
	char study[OP_UID_MAX + 1];      /* "": every quarantined instance */
	char dest[OP_DEST_NAME_MAX + 1]; /* "": every destination */
};

static void retry_work(struct op__api_job *job)
{
	const struct retry_job *j = (const struct retry_job *)job;
	unsigned n = 0;
	char detail[160];
	cJSON *o;

	int rc = op_spool_retry_quarantined(job->spool, *j->dest ? j->dest : NULL,
					    *j->study ? j->study : NULL, job->t, &n);

	if (rc == -ENOENT) {
		char msg[OP_UID_MAX + 80];

		snprintf(msg, sizeof(msg),
			 "no study %.*s in the spool (check the Study Instance UID)", OP_UID_MAX,
			 j->study);
		op__api_job_error(job, 404, msg);
		return;
	}
	if (rc < 0) {
		op__api_job_error(job, 503,
				  "the spool database cannot be written (see the uplink's log)");
		return;
	}
	snprintf(detail, sizeof(detail), "%s%.*s requeued=%u%s%s", *j->study ? "study=" : "all",
		 OP_UID_MAX, j->study, n, *j->dest ? " destination=" : "", j->dest);
	op__api_audit(job, "retry", detail);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "requeued", n);
	op__api_job_json(job, 200, o);
}

void op__api_retry(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = op__api_parse_body(req), *study = cJSON_GetObjectItemCaseSensitive(o, "study");
	cJSON *all = cJSON_GetObjectItemCaseSensitive(o, "all");
	struct retry_job *j;
	char dest[OP_DEST_NAME_MAX + 1];

	if (!(cJSON_IsString(study) && *study->valuestring &&
	      strlen(study->valuestring) <= OP_UID_MAX) &&
	    !cJSON_IsTrue(all)) {
		cJSON_Delete(o);
		op__api_reply_error(req, 400, NULL,
				    "expected {\"study\": \"STUDY UID\"} or {\"all\": true}");
		return;
	}
	if (op__api_destination_arg(api, req, o, dest, sizeof(dest)) < 0) {
		cJSON_Delete(o);
		return;
	}
	if ((j = op__api_job_new(api, req, who, sizeof(*j)))) {
		snprintf(j->study, sizeof(j->study), "%s",
			 cJSON_IsString(study) ? study->valuestring : "");
		snprintf(j->dest, sizeof(j->dest), "%s", dest);
		op__api_job_start(&j->base, retry_work, NULL);
	}
	cJSON_Delete(o);
}

/* Discarding a quarantined study: the operator names it twice (study and
 * confirm), so that no slip or replayed body drops another. */
struct discard_job {
	struct op__api_job base;
	char study[OP_UID_MAX + 1];
};

static void discard_work(struct op__api_job *job)
{
	const struct discard_job *j = (const struct discard_job *)job;
	unsigned n = 0;
	uint64_t bytes = 0;
	char detail[160];
	cJSON *o;
	int rc = op_spool_discard_quarantined(job->spool, j->study, &n, &bytes);

	if (rc == -ENOENT) {
		op__api_job_error(job, 409,
				  "the study has no quarantined instance (queued, sending and "
				  "sent instances are never discarded)");
		return;
	}
	if (rc < 0) {
		op__api_job_error(job, 503,
				  "the spool database cannot be written (see the uplink's log)");
		return;
	}
	snprintf(detail, sizeof(detail), "study=%.*s instances=%u bytes=%" PRIu64, OP_UID_MAX,
		 j->study, n, bytes);
	op__api_audit(job, "discard", detail);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "discarded", n);
	cJSON_AddNumberToObject(o, "bytes", (double)bytes);
	op__api_job_json(job, 200, o);
}

void op__api_discard(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = op__api_parse_body(req), *study = cJSON_GetObjectItemCaseSensitive(o, "study");
	cJSON *confirm = cJSON_GetObjectItemCaseSensitive(o, "confirm");
	struct discard_job *j;

	if (!cJSON_IsString(study) || !*study->valuestring ||
	    strlen(study->valuestring) > OP_UID_MAX || !cJSON_IsString(confirm) ||
	    strcmp(study->valuestring, confirm->valuestring) != 0) {
		cJSON_Delete(o);
		op__api_reply_error(req, 400, NULL,
				    "expected {\"study\": \"STUDY UID\", \"confirm\": \"STUDY "
				    "UID\"} (the same UID twice, to confirm)");
		return;
	}
	if ((j = op__api_job_new(api, req, who, sizeof(*j)))) {
		snprintf(j->study, sizeof(j->study), "%s", study->valuestring);
		op__api_job_start(&j->base, discard_work, NULL);
	}
	cJSON_Delete(o);
}

struct pause_job {
	struct op__api_job base;
	int paused; /* 0: resume */
	/* The destinations it applies to (all, or the one named), and each
	 * pause's time as kept in the spool (pause_work). */
	op_uplink *ups[OP_DEST_MAX + 1];
	int n;
	int64_t since[OP_DEST_MAX + 1];
	char dest[OP_DEST_NAME_MAX + 1]; /* "": every destination */
};

static void pause_work(struct op__api_job *job)
{
	struct pause_job *j = (struct pause_job *)job;
	char since[32], key_paused[64], key_since[64];
	long long kept;
	cJSON *o;

	for (int i = 0; i < j->n; i++) {
		op_uplink_setting_key(j->ups[i], "paused", key_paused, sizeof(key_paused));
		op_uplink_setting_key(j->ups[i], "paused.since", key_since, sizeof(key_since));
		/* When: the console's "paused by the operator since 14:41", the
		 * same after a restart. A second pause keeps the first one's
		 * time. */
		j->since[i] = job->t;
		if (j->paused &&
		    op_spool_setting_get(job->spool, key_since, since, sizeof(since)) == 0 &&
		    op_parse_int(since, 0, INT64_MAX, &kept) == 0)
			j->since[i] = kept;
		snprintf(since, sizeof(since), "%" PRId64, j->since[i]);
		if (op_spool_setting_set(job->spool, key_since, j->paused ? since : NULL) < 0 ||
		    op_spool_setting_set(job->spool, key_paused, j->paused ? "1" : NULL) < 0) {
			op__api_job_error(job, 503,
					  "the spool database cannot be written (see the uplink's "
					  "log)");
			return;
		}
	}
	snprintf(key_paused, sizeof(key_paused), "%s%s", *j->dest ? "destination=" : "", j->dest);
	op__api_audit(job, j->paused ? "pause" : "resume", key_paused);
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "paused", j->paused);
	if (*j->dest)
		cJSON_AddStringToObject(o, "destination", j->dest);
	op__api_job_json(job, 200, o);
}

static void pause_done(struct op__api_job *job)
{
	const struct pause_job *j = (const struct pause_job *)job;

	if (job->status == 200)
		for (int i = 0; i < j->n; i++)
			op_uplink_set_paused(j->ups[i], j->paused, j->since[i]);
}

static void set_paused(op_api *api, op_httpd_req *req, const char *who, int paused)
{
	cJSON *o = op__api_parse_body(req);
	char dest[OP_DEST_NAME_MAX + 1];
	struct pause_job *j;

	if (op__api_destination_arg(api, req, o, dest, sizeof(dest)) < 0) {
		cJSON_Delete(o);
		return;
	}
	cJSON_Delete(o);
	if (!(j = op__api_job_new(api, req, who, sizeof(*j))))
		return;
	j->paused = paused;
	snprintf(j->dest, sizeof(j->dest), "%s", dest);
	for (int i = 0; i < api->n_ups; i++)
		if (!*dest || strcmp(op_uplink_name(api->ups[i]), dest) == 0)
			j->ups[j->n++] = api->ups[i];
	op__api_job_start(&j->base, pause_work, pause_done);
}

void op__api_pause(op_api *api, op_httpd_req *req, const char *who)
{
	set_paused(api, req, who, 1);
}

void op__api_resume(op_api *api, op_httpd_req *req, const char *who)
{
	set_paused(api, req, who, 0);
}

/* --- shaping ------------------------------------------------------------------------------- */

/* The console's rate and schedule, "" for none: the configuration's. */
struct shaping_job {
	struct op__api_job base;
	char rate[64];
	char schedule[sizeof(((op_uplink_view *)0)->schedule)];
};

static void shaping_work(struct op__api_job *job)
{
	const struct shaping_job *j = (const struct shaping_job *)job;
	char detail[2400];

	if (op_spool_setting_set(job->spool, "shaping.rate", *j->rate ? j->rate : NULL) < 0 ||
	    op_spool_setting_set(job->spool, "shaping.schedule",
				 *j->schedule ? j->schedule : NULL) < 0) {
		op__api_job_error(job, 503,
				  "the spool database cannot be written (see the uplink's log)");
		return;
	}
	snprintf(detail, sizeof(detail), "rate=%s schedule=%s", *j->rate ? j->rate : "(config)",
		 *j->schedule ? j->schedule : "(config)");
	op__api_audit(job, "shaping", detail);
	job->status = 200;
}

static void shaping_done(struct op__api_job *job)
{
	const struct shaping_job *j = (const struct shaping_job *)job;
	uint64_t rate;
	op_uplink_view v;

	if (job->status != 200)
		return;
	op_rate_parse(j->rate, &rate);
	op_uplink_set_shaping(job->api->up, *j->rate ? &rate : NULL,
			      *j->schedule ? j->schedule : NULL);
	op_uplink_get_view(job->api->up, &v);
	op__api_job_json(job, 200, op__api_rate_json(&v));
}

void op__api_shaping(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = op__api_parse_body(req), *rate = cJSON_GetObjectItemCaseSensitive(o, "rate");
	cJSON *schedule = cJSON_GetObjectItemCaseSensitive(o, "schedule");
	op_uplink_view v;
	op_schedule parsed;
	char why[256];
	uint64_t bps;
	struct shaping_job *j;

	if (!cJSON_IsObject(o) || (!rate && !schedule) ||
	    (rate && !cJSON_IsString(rate) && !cJSON_IsNull(rate)) ||
	    (schedule && !cJSON_IsString(schedule) && !cJSON_IsNull(schedule))) {
		cJSON_Delete(o);
		op__api_reply_error(
			req, 400, NULL,
			"expected {\"rate\": \"8Mbit\" or null, \"schedule\": \"Mon-Fri "
			"07:00-19:00 2Mbit; ...\" or null}");
		return;
	}
	if (cJSON_IsString(rate) &&
	    (op_rate_parse(rate->valuestring, &bps) < 0 || strlen(rate->valuestring) >= 64)) {
		op__api_reply_error(
			req, 400, NULL,
			"rate: '%.64s' is not a rate (bits per second with k, M or G, e.g. "
			"8Mbit; unlimited; 0 pauses)",
			rate->valuestring);
		cJSON_Delete(o);
		return;
	}
	if (cJSON_IsString(schedule) &&
	    (strlen(schedule->valuestring) >= sizeof(v.schedule) ||
	     op_schedule_parse(schedule->valuestring, &parsed, why, sizeof(why)) < 0)) {
		op__api_reply_error(req, 400, NULL, "schedule: %s",
				    strlen(schedule->valuestring) >= sizeof(v.schedule) ? "too long"
											: why);
		cJSON_Delete(o);
		return;
	}
	if (!(j = op__api_job_new(api, req, who, sizeof(*j)))) {
		cJSON_Delete(o);
		return;
	}
	/* A key left out keeps what the console set before. */
	op_uplink_get_view(api->up, &v);
	if (rate)
		snprintf(j->rate, sizeof(j->rate), "%s",
			 cJSON_IsString(rate) ? rate->valuestring : "");
	else if (strcmp(v.rate_source, "console") == 0)
		op_rate_format(v.configured_rate, j->rate, sizeof(j->rate));
	if (schedule)
		snprintf(j->schedule, sizeof(j->schedule), "%s",
			 cJSON_IsString(schedule) ? schedule->valuestring : "");
	else if (strcmp(v.schedule_source, "console") == 0)
		snprintf(j->schedule, sizeof(j->schedule), "%s", v.schedule);
	cJSON_Delete(o);
	op__api_job_start(&j->base, shaping_work, shaping_done);
}

/* --- the configuration and the link -------------------------------------------------------- */

void op__api_reload(op_api *api, op_httpd_req *req, const char *who)
{
	char before[sizeof(api->cfg.console.password_hash)], err[640];
	int changed;

	snprintf(before, sizeof(before), "%s", api->cfg.console.password_hash);
	if (api->host.reload(api->host.ctx, err, sizeof(err)) < 0) {
		op__api_reply_error(req, 400, NULL, "%s", err);
		return;
	}
	changed = strcmp(before, api->cfg.console.password_hash) != 0;
	cJSON *o = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ok", 1);
	op__api_audit_and_reply(api, req, who, changed ? "password" : "reload",
				changed ? "console password changed" : "configuration reloaded", o);
}

/*
 * A test of the links: the destination named, or every one, one after
 * another - a stow-rs destination by linktest.c's steps, a dicom one by a
 * C-ECHO (echo.h, on the thread pool). The answer is the one report, or,
 * for all of them, the cloud's report with "ok" true only when every test
 * passed and "destinations" holding every report.
 */
struct linkrun {
	struct op__api_job *job; /* NULL once cancelled */
	op_api *api;
	op_uplink *ups[OP_DEST_MAX + 1];
	int n, next, single, all_ok;
	cJSON *reports;
	/* the C-ECHO in flight */
	uv_work_t work;
	op_dicom_dest_config peer;
	int timeout_ms, echo_rc, echo_running;
	int64_t echo_ms;
	char echo_detail[256];
};

static void linkrun_step(struct linkrun *r);

static void linkrun_add(struct linkrun *r, op_uplink *up, cJSON *report)
{
	cJSON *ok = cJSON_GetObjectItemCaseSensitive(report, "ok");

	cJSON_AddStringToObject(report, "destination", op_uplink_name(up));
	if (cJSON_IsTrue(ok))
		op_uplink_link_verified(up);
	else
		r->all_ok = 0;
	cJSON_AddItemToArray(r->reports, report);
}

static void test_link_report(void *ctx, cJSON *report)
{
	struct linkrun *r = ctx;

	r->api->linktest = NULL;
	linkrun_add(r, r->ups[r->next - 1], report);
	linkrun_step(r);
}

static void echo_work(uv_work_t *w)
{
	struct linkrun *r = w->data;
	int64_t t0 = op_clock_mono_ms();

	r->echo_rc = op_echo(r->peer.host, r->peer.port, r->peer.called_ae, r->peer.calling_ae,
			     r->timeout_ms, r->echo_detail, sizeof(r->echo_detail));
	r->echo_ms = op_clock_mono_ms() - t0;
}

static void echo_done(uv_work_t *w, int status)
{
	struct linkrun *r = w->data;
	cJSON *report, *steps, *step;
	char peer[320];

	(void)status;
	r->echo_running = 0;
	if (!r->job) { /* cancelled while the echo ran */
		cJSON_Delete(r->reports);
		free(r);
		return;
	}
	report = cJSON_CreateObject();
	cJSON_AddBoolToObject(report, "ok", r->echo_rc == 0);
	snprintf(peer, sizeof(peer), "%s:%u (%s)", r->peer.host, r->peer.port, r->peer.called_ae);
	cJSON_AddStringToObject(report, "peer", peer);
	steps = cJSON_AddArrayToObject(report, "steps");
	step = cJSON_CreateObject();
	cJSON_AddStringToObject(step, "step", "echo");
	cJSON_AddBoolToObject(step, "ok", r->echo_rc == 0);
	cJSON_AddNumberToObject(step, "ms", (double)r->echo_ms);
	cJSON_AddStringToObject(step, "detail", r->echo_detail);
	cJSON_AddItemToArray(steps, step);
	linkrun_add(r, r->ups[r->next - 1], report);
	linkrun_step(r);
}

static void linkrun_step(struct linkrun *r)
{
	op_api *api = r->api;
	struct op__api_job *j = r->job;
	cJSON *answer;
	char detail[256];
	size_t len = 0;

	while (r->next < r->n) {
		op_uplink *up = r->ups[r->next++];
		const op_cloud_config *cc = op_uplink_cloud_config(up);

		if (op_uplink_dicom_peer(up, &r->peer)) {
			r->timeout_ms = LINKTEST_TIMEOUT_S * 1000;
			r->work.data = r;
			r->echo_running = 1;
			if (uv_queue_work(api->loop, &r->work, echo_work, echo_done) == 0)
				return;
			snprintf(r->echo_detail, sizeof(r->echo_detail), "cannot start the echo");
			r->echo_rc = -ENOMEM;
			echo_done(&r->work, 0);
			return;
		}
		if (op_linktest_start(api->loop, op_uplink_tls(up), cc, op_uplink_auth_header(up),
				      LINKTEST_TIMEOUT_S, test_link_report, r, &api->linktest) == 0)
			return;
		r->all_ok = 0;
	}
	/* Every test done: answer. */
	api->linktest_job = NULL;
	api->linkrun = NULL;
	if (r->single || cJSON_GetArraySize(r->reports) == 0) {
		answer = cJSON_DetachItemFromArray(r->reports, 0);
		if (!answer)
			answer = cJSON_CreateObject();
	} else {
		answer = cJSON_Duplicate(cJSON_GetArrayItem(r->reports, 0), 1);
		cJSON_ReplaceItemInObjectCaseSensitive(answer, "ok", cJSON_CreateBool(r->all_ok));
		cJSON_AddItemToObject(answer, "destinations", r->reports);
		r->reports = NULL;
	}
	len += (size_t)snprintf(detail, sizeof(detail), "%s", r->all_ok ? "ok" : "failed");
	for (int i = 0; i < r->n && len < sizeof(detail); i++)
		len += (size_t)snprintf(detail + len, sizeof(detail) - len, " %s",
					op_uplink_name(r->ups[i]));
	cJSON_Delete(r->reports);
	free(r);
	op__api_audit_answer(j, "test-link", detail, answer);
}

void op__api_test_link(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = op__api_parse_body(req);
	char dest[OP_DEST_NAME_MAX + 1];
	struct linkrun *r;

	if (api->linktest_job) {
		cJSON_Delete(o);
		op__api_reply_error(req, 409, NULL, "a link test is already running");
		return;
	}
	if (op__api_destination_arg(api, req, o, dest, sizeof(dest)) < 0) {
		cJSON_Delete(o);
		return;
	}
	cJSON_Delete(o);
	if (!(r = calloc(1, sizeof(*r))) || !(r->reports = cJSON_CreateArray()) ||
	    !(r->job = op__api_audit_job_new(api, req, who))) {
		if (r)
			cJSON_Delete(r->reports);
		free(r);
		if (!r)
			op_httpd_reply(req, 503, OP__API_JSON, NULL,
				       "{\"error\": \"out of memory\"}", 26);
		return;
	}
	r->api = api;
	r->all_ok = 1;
	r->single = *dest != '\0';
	for (int i = 0; i < api->n_ups; i++)
		if (!*dest || strcmp(op_uplink_name(api->ups[i]), dest) == 0)
			r->ups[r->n++] = api->ups[i];
	api->linktest_job = r->job;
	api->linkrun = r;
	linkrun_step(r);
}

void op__api_cancel_test_link(op_api *api)
{
	struct linkrun *r = api->linkrun;

	if (!api->linktest_job)
		return;
	op_linktest_cancel(api->linktest);
	api->linktest = NULL;
	op_httpd_reply(api->linktest_job->req, 503, OP__API_JSON, NULL, "{\"error\": \"stopping\"}",
		       21);
	op__api_job_free(api->linktest_job);
	api->linktest_job = NULL;
	api->linkrun = NULL;
	/* An echo in flight frees the run when it returns. */
	if (r && r->echo_running) {
		r->job = NULL;
		return;
	}
	if (r) {
		cJSON_Delete(r->reports);
		free(r);
	}
}
