/*
 * api_job: the console's work on libuv's thread pool (see internal.h) and
 * its answers: a job is allocated by its endpoint's size, started, run on
 * the pool, finished on the loop and answered there, then wiped and freed.
 * Also the answers sent at once, and the audit log of operator actions.
 */
#include "console/internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/spool.h"

/* --- answers ------------------------------------------------------------------ */

void op__api_reply_json(op_httpd_req *req, int status, cJSON *obj, const char *headers)
{
	char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;

	if (text)
		op_httpd_reply(req, status, OP__API_JSON, headers, text, strlen(text));
	else
		op_httpd_reply(req, 500, OP__API_JSON, NULL, "{\"error\": \"out of memory\"}", 26);
	free(text);
	cJSON_Delete(obj);
}

void op__api_reply_error(op_httpd_req *req, int status, const char *headers, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	cJSON *o = cJSON_CreateObject();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "error", msg);
	op__api_reply_json(req, status, o, headers);
}

/* A job's answer from JSON built on the thread pool. */
void op__api_job_json(struct op__api_job *j, int status, cJSON *obj)
{
	j->status = status;
	j->ctype = OP__API_JSON;
	j->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
	j->len = j->body ? strlen(j->body) : 0;
	cJSON_Delete(obj);
	if (!j->body)
		j->status = 500;
}

void op__api_job_error(struct op__api_job *j, int status, const char *msg)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "error", msg);
	op__api_job_json(j, status, o);
}

cJSON *op__api_parse_body(op_httpd_req *req)
{
	size_t len;
	const char *body = op_request_body(op_httpd_request(req), &len);

	return cJSON_ParseWithLength(body, len);
}

/* --- jobs ----------------------------------------------------------------------- */

/* The answer, then the job: wiped, for the password a check holds. */
void op__api_job_free(struct op__api_job *j)
{
	free(j->body);
	sodium_memzero(j, j->size);
	free(j);
}

static void job_work(uv_work_t *w)
{
	struct op__api_job *j = w->data;

	j->work(j);
}

static void job_after(uv_work_t *w, int status)
{
	struct op__api_job *j = w->data;
	op_api *api = j->api;

	(void)status;
	api->jobs--;
	if (j->kind >= 0)
		api->kinds[j->kind].n--;
	if (api->closing) {
		free(j->body);
		j->body = NULL;
		j->status = 503;
	} else if (j->done) {
		j->done(j);
	}
	if (j->req) {
		if (j->body)
			op_httpd_reply(j->req, j->status, j->ctype,
				       j->headers[0] ? j->headers : NULL, j->body, j->len);
		else
			op_httpd_reply(j->req, 503, OP__API_JSON, NULL, "{\"error\": \"stopping\"}",
				       21);
	}
	op__api_job_free(j);
	if (api->closing && api->jobs == 0)
		op__api_free(api);
}

/* A job of size bytes (an endpoint's struct, its header first), or NULL
 * with req answered. */
void *op__api_job_new(op_api *api, op_httpd_req *req, const char *who, size_t size)
{
	struct op__api_job *j = calloc(1, size);

	if (!j) {
		op_httpd_reply(req, 503, OP__API_JSON, NULL, "{\"error\": \"out of memory\"}", 26);
		return NULL;
	}
	j->size = size;
	j->kind = -1;
	j->api = api;
	j->req = req;
	j->spool = api->host.spool;
	snprintf(j->who, sizeof(j->who), "%s", who ? who : "");
	snprintf(j->from, sizeof(j->from), "%s", op_httpd_peer(req));
	j->t = op_clock_wall_ms();
	return j;
}

/* Answers a job that cannot start 503 and frees it. */
static int refuse(struct op__api_job *j, int rc)
{
	j->api->counters.busy++;
	if (j->req)
		op_httpd_reply(j->req, 503, OP__API_JSON, "Retry-After: 1\r\n",
			       "{\"error\": \"busy, try again\"}", 28);
	op__api_job_free(j);
	return rc;
}

int op__api_job_start(struct op__api_job *j, void (*work)(struct op__api_job *),
		      void (*done)(struct op__api_job *))
{
	j->work = work;
	j->done = done;
	j->w.data = j;
	if (uv_queue_work(j->api->loop, &j->w, job_work, job_after) < 0)
		return refuse(j, -ENOMEM);
	j->api->jobs++;
	if (j->kind >= 0)
		j->api->kinds[j->kind].n++;
	return 0;
}

int op__api_job_start_bounded(struct op__api_job *j, void (*work)(struct op__api_job *),
			      void (*done)(struct op__api_job *))
{
	op_api *api = j->api;
	int free_slot = -1;

	for (int i = 0; i < OP__API_KINDS && j->kind < 0; i++) {
		if (api->kinds[i].work == work)
			j->kind = i;
		else if (api->kinds[i].n == 0 && free_slot < 0)
			free_slot = i;
	}
	if (j->kind < 0 && free_slot < 0)
		return refuse(j, -EBUSY); /* more kinds than OP__API_KINDS: a bug */
	if (j->kind < 0) {
		j->kind = free_slot;
		api->kinds[free_slot].work = work;
	}
	if (api->kinds[j->kind].n >= OP__API_JOBS_PER_KIND) {
		j->kind = -1;
		return refuse(j, -EBUSY);
	}
	return op__api_job_start(j, work, done);
}

/* --- the audit log -------------------------------------------------------------- */

void op__api_audit(struct op__api_job *j, const char *action, const char *detail)
{
	char q[600];

	op_spool_audit(j->spool, j->t, j->who, j->from, action, detail);
	op_info("audit", "who=%s from=%s action=%s detail=%s", j->who, j->from, action,
		op_log_quote(q, sizeof(q), detail));
}

/* An action done on the loop, recorded on the thread pool. */
struct audit_job {
	struct op__api_job base;
	char action[16];
	/* "failed " and the cloud's URL at the longest (test-link) */
	char detail[sizeof(((op_cloud_config *)0)->url) + 16];
};

static void audit_work(struct op__api_job *job)
{
	struct audit_job *j = (struct audit_job *)job;

	op__api_audit(job, j->action, j->detail);
}

struct op__api_job *op__api_audit_job_new(op_api *api, op_httpd_req *req, const char *who)
{
	struct audit_job *j = op__api_job_new(api, req, who, sizeof(*j));

	return j ? &j->base : NULL;
}

void op__api_audit_answer(struct op__api_job *job, const char *action, const char *detail,
			  cJSON *answer)
{
	struct audit_job *j = (struct audit_job *)job;

	snprintf(j->action, sizeof(j->action), "%s", action);
	snprintf(j->detail, sizeof(j->detail), "%s", detail);
	op__api_job_json(job, 200, answer);
	op__api_job_start(job, audit_work, NULL);
}

void op__api_audit_and_reply(op_api *api, op_httpd_req *req, const char *who, const char *action,
			     const char *detail, cJSON *answer)
{
	struct op__api_job *j = op__api_audit_job_new(api, req, who);

	if (!j) {
		cJSON_Delete(answer);
		return;
	}
	op__api_audit_answer(j, action, detail, answer);
}
