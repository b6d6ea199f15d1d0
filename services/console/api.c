/*
 * api: the endpoints of docs/API.md on the console's HTTP server.
 *
 * A request goes: route -> authenticate (the Unix socket is trusted; on
 * TCP a session cookie, or the password by HTTP Basic or /api/login) ->
 * the endpoint. Endpoints copy what they need on the loop into a job and
 * do the rest on the thread pool (spool queries and writes, Argon2
 * verification, files, the C-ECHO); the job's answer is sent back on the
 * loop.
 */
#include "console/api.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <fcntl.h>
#include <inttypes.h>
#include <mbedtls/sha256.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "common/clock.h"
#include "common/file.h"
#include "common/log.h"
#include "common/spool.h"
#include "console/httpd.h"
#include "console/echo.h"
#include "console/linktest.h"
#include "uplink/control.h"

#define SESSIONS 64
#define PEERS 64
#define LOGIN_FAILURES 5 /* in LOGIN_WINDOW_MS, then 429 until it ends */
#define LOGIN_WINDOW_MS 60000
#define PER_PAGE_MAX 500
#define PASSWORD_MAX 1099 /* a longer one is refused unchecked */
#define AUDIT_MAX 1000
#define ECHO_TIMEOUT_MS 5000
#define STATIC_MAX (1 << 20)
#define FIRMWARE_MAX (1ULL << 30) /* a bundle is about 70 MB */
#define HEALTH_CALLING_AE "OUTPOST-HEALTH"
#define LINKTEST_TIMEOUT_S 15
#define JSON "application/json"

struct session {
	char token[65]; /* "" free */
	uint64_t last;  /* uv_now */
};

struct failures {
	char peer[64];
	uint64_t since; /* uv_now of the window's first failure */
	int n;
};

struct op_api {
	uv_loop_t *loop;
	op_api_host host;
	op_uplink *up; /* host.uplink */
	op_httpd *httpd;
	op_config cfg;
	struct session sessions[SESSIONS];
	struct failures failures[PEERS];
	/* A keyed hash of the last password that verified, so that scripts
	 * sending Basic on every request do not pay Argon2 every time. */
	unsigned char good_key[crypto_generichash_KEYBYTES];
	unsigned char good_mac[32];
	int good;
	int jobs; /* on the thread pool */
	int closing;
	op_linktest *linktest; /* running, or NULL */
	struct op__api_job *linktest_job;
	/* Argon2 takes 19 MiB a check: one at a time, the others wait in
	 * line, so a burst of logins cannot take the uplink over its memory. */
	int verifying;
	struct op__api_verify_job *verify_head, *verify_tail;
	struct op__api_firmware *firmware; /* a bundle being uploaded, or NULL */
};

/* What the status shows of the configuration, copied for the thread pool
 * (a reload may change the console's copy meanwhile). */
struct settings {
	char spool_dir[OP_DIR_MAX];
	uint64_t max_bytes, min_free_bytes;
	char cloud_url[1024];
	uint16_t receiver_port;
	char receiver_ae[OP_AE_MAX + 1];
};

typedef void (*endpoint)(op_api *api, op_httpd_req *req, const char *who);

/*
 * What every job has: the thread pool's plumbing, the request it answers,
 * who asked, from where and when, and the answer. Each endpoint's job is a
 * struct of its own with this header as its first member (struct
 * retry_job { struct op__api_job base; ... }), allocated by its size
 * (job_new()); work and done get the header and cast it back.
 */
struct op__api_job {
	uv_work_t w;
	size_t size; /* allocated, and wiped before free: one job holds a password */
	op_api *api;
	op_httpd_req *req;
	void (*work)(struct op__api_job *j);
	void (*done)(struct op__api_job *j); /* on the loop, before the answer */
	op_spool *spool;
	char who[16], from[64];
	int64_t t; /* when the request came, ms since the epoch */
	/* the answer */
	int status;
	char *body;
	size_t len;
	const char *ctype;
	char headers[512];
};

static void iso_time(int64_t ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* --- answers ------------------------------------------------------------------ */

static void reply_json(op_httpd_req *req, int status, cJSON *obj, const char *headers)
{
	char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;

	if (text)
		op_httpd_reply(req, status, JSON, headers, text, strlen(text));
	else
		op_httpd_reply(req, 500, JSON, NULL, "{\"error\": \"out of memory\"}", 26);
	free(text);
	cJSON_Delete(obj);
}

static void reply_error(op_httpd_req *req, int status, const char *headers, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void reply_error(op_httpd_req *req, int status, const char *headers, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	cJSON *o = cJSON_CreateObject();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddStringToObject(o, "error", msg);
	reply_json(req, status, o, headers);
}

/* A job's answer from JSON built on the thread pool. */
static void job_json(struct op__api_job *j, int status, cJSON *obj)
{
	j->status = status;
	j->ctype = JSON;
	j->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
	j->len = j->body ? strlen(j->body) : 0;
	cJSON_Delete(obj);
	if (!j->body)
		j->status = 500;
}

static void job_error(struct op__api_job *j, int status, const char *msg)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "error", msg);
	job_json(j, status, o);
}

/* --- jobs ----------------------------------------------------------------------- */

static void free_api(op_api *api)
{
	sodium_memzero(api->good_key, sizeof(api->good_key));
	free(api);
}

/* The answer, then the job: wiped, for the password a check holds. */
static void job_free(struct op__api_job *j)
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
			op_httpd_reply(j->req, 503, JSON, NULL, "{\"error\": \"stopping\"}", 21);
	}
	job_free(j);
	if (api->closing && api->jobs == 0)
		free_api(api);
}

/* A job of size bytes (an endpoint's struct, its header first), or NULL
 * with req answered. */
static void *job_new(op_api *api, op_httpd_req *req, const char *who, size_t size)
{
	struct op__api_job *j = calloc(1, size);

	if (!j) {
		op_httpd_reply(req, 503, JSON, NULL, "{\"error\": \"out of memory\"}", 26);
		return NULL;
	}
	j->size = size;
	j->api = api;
	j->req = req;
	j->spool = api->host.spool;
	snprintf(j->who, sizeof(j->who), "%s", who ? who : "");
	snprintf(j->from, sizeof(j->from), "%s", op_httpd_peer(req));
	j->t = op_clock_wall_ms();
	return j;
}

static void job_start(struct op__api_job *j, void (*work)(struct op__api_job *),
		      void (*done)(struct op__api_job *))
{
	j->work = work;
	j->done = done;
	j->w.data = j;
	if (uv_queue_work(j->api->loop, &j->w, job_work, job_after) < 0) {
		op_httpd_reply(j->req, 503, JSON, NULL, "{\"error\": \"busy\"}", 17);
		job_free(j);
		return;
	}
	j->api->jobs++;
}

/* Thread pool: records an operator action. */
static void audit(struct op__api_job *j, const char *action, const char *detail)
{
	char q[600];

	op_spool_audit(j->spool, j->t, j->who, j->from, action, detail);
	op_info("audit", "who=%s from=%s action=%s detail=%s", j->who, j->from, action,
		op_log_quote(q, sizeof(q), detail));
}

/* --- authentication --------------------------------------------------------------- */

static struct failures *failures_of(op_api *api, const char *peer, int create)
{
	struct failures *oldest = &api->failures[0];
	uint64_t now = uv_now(api->loop);

	for (int i = 0; i < PEERS; i++) {
		struct failures *f = &api->failures[i];

		if (now - f->since >= LOGIN_WINDOW_MS)
			f->n = 0;
		if (f->n && strcmp(f->peer, peer) == 0)
			return f;
		if (f->n == 0 || f->since < oldest->since)
			oldest = f;
	}
	if (!create)
		return NULL;
	snprintf(oldest->peer, sizeof(oldest->peer), "%s", peer);
	oldest->since = now;
	oldest->n = 0;
	return oldest;
}

/* Seconds until peer may try again, or 0. */
static int limited(op_api *api, const char *peer)
{
	struct failures *f = failures_of(api, peer, 0);

	if (!f || f->n < LOGIN_FAILURES)
		return 0;
	return (int)((LOGIN_WINDOW_MS - (uv_now(api->loop) - f->since)) / 1000) + 1;
}

static void mac_of(op_api *api, const char *password, unsigned char *mac)
{
	crypto_generichash(mac, 32, (const unsigned char *)password, strlen(password),
			   api->good_key, sizeof(api->good_key));
}

static const char *session_cookie(op_httpd_req *req, char *token, size_t size)
{
	const char *c = op_request_header(op_httpd_request(req), "Cookie"), *p;
	size_t n;

	if (!c)
		return NULL;
	for (p = c; (p = strstr(p, "outpost_session=")) != NULL; p++) {
		if (p != c && p[-1] != ' ' && p[-1] != ';')
			continue;
		p += strlen("outpost_session=");
		n = strcspn(p, "; ");
		if (n == 0 || n >= size)
			return NULL;
		memcpy(token, p, n);
		token[n] = '\0';
		return token;
	}
	return NULL;
}

static struct session *find_session(op_api *api, op_httpd_req *req)
{
	char token[128];
	uint64_t now = uv_now(api->loop);

	if (!session_cookie(req, token, sizeof(token)) || strlen(token) != 64)
		return NULL;
	for (int i = 0; i < SESSIONS; i++) {
		struct session *s = &api->sessions[i];

		if (!s->token[0])
			continue;
		if (now - s->last > (uint64_t)api->cfg.console.session_ttl * 1000) {
			s->token[0] = '\0';
			continue;
		}
		if (sodium_memcmp(s->token, token, 64) == 0) {
			s->last = now;
			return s;
		}
	}
	return NULL;
}

static void new_session(op_api *api, char *token)
{
	struct session *s = &api->sessions[0];
	unsigned char raw[32];

	for (int i = 0; i < SESSIONS; i++) {
		if (!api->sessions[i].token[0]) {
			s = &api->sessions[i];
			break;
		}
		if (api->sessions[i].last < s->last)
			s = &api->sessions[i];
	}
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(s->token, sizeof(s->token), raw, sizeof(raw));
	s->last = uv_now(api->loop);
	memcpy(token, s->token, sizeof(s->token));
}

static void unauthorized(op_httpd_req *req)
{
	const char *xrw = op_request_header(op_httpd_request(req), "X-Requested-With");

	/* The console's own requests get no WWW-Authenticate: a browser would
	 * pop up its password dialog over the page's login form. */
	reply_error(req, 401,
		    xrw && strcmp(xrw, "outpost-console") == 0
			    ? NULL
			    : "WWW-Authenticate: Basic realm=\"outpost\", charset=\"UTF-8\"\r\n",
		    "log in");
}

/* A password check on the thread pool: a login's, or a request's that
 * carries the password (HTTP Basic) and goes on to next. */
struct op__api_verify_job {
	struct op__api_job base;
	endpoint next;                      /* after a check that is not a login */
	struct op__api_verify_job *waiting; /* the next check in line */
	int login;
	int ok;                          /* the password verified */
	char password[PASSWORD_MAX + 1]; /* wiped with the job */
	char hash[sizeof(((op_console_config *)0)->password_hash)];
};

static void verify_work(struct op__api_job *job)
{
	struct op__api_verify_job *j = (struct op__api_verify_job *)job;

	j->ok = crypto_pwhash_str_verify(j->hash, j->password, strlen(j->password)) == 0;
	if (!j->ok)
		audit(job, "login", "failed: wrong password");
	else if (j->login)
		audit(job, "login", "ok");
}

static void verify_done(struct op__api_job *job);

static void next_verify(op_api *api)
{
	struct op__api_verify_job *j = api->verify_head;

	api->verifying = 0;
	if (!j || api->closing)
		return;
	api->verify_head = j->waiting;
	if (!api->verify_head)
		api->verify_tail = NULL;
	api->verifying = 1;
	job_start(&j->base, verify_work, verify_done);
}

static void verify_done(struct op__api_job *job)
{
	struct op__api_verify_job *j = (struct op__api_verify_job *)job;
	op_api *api = job->api;
	op_httpd_req *req = job->req;
	struct failures *f;
	char token[65];

	next_verify(api);
	free(job->body);
	job->body = NULL;
	if (!j->ok) {
		f = failures_of(api, job->from, 1);
		f->n++;
		op_warn("console.login", "result=failed peer=%s failures=%d", job->from, f->n);
		job->req = NULL;
		if (j->login)
			reply_error(req, 401, NULL, "wrong password");
		else
			unauthorized(req);
		return;
	}
	/* Only the hash this job verified against counts as good. */
	if (strcmp(j->hash, api->cfg.console.password_hash) == 0) {
		mac_of(api, j->password, api->good_mac);
		api->good = 1;
	}
	job->req = NULL;
	if (j->login) {
		cJSON *o = cJSON_CreateObject();
		char cookie[256];

		new_session(api, token);
		snprintf(cookie, sizeof(cookie),
			 "Set-Cookie: outpost_session=%s; HttpOnly; SameSite=Strict; Path=/%s\r\n",
			 token, op_httpd_is_tls(req) ? "; Secure" : "");
		op_info("console.login", "result=ok peer=%s", job->from);
		cJSON_AddBoolToObject(o, "ok", 1);
		reply_json(req, 200, o, cookie);
		return;
	}
	j->next(api, req, "admin");
}

/* Checks a password on the thread pool; on success a login gets a
 * session, another request goes on to next. */
static void check_password(op_api *api, op_httpd_req *req, const char *password, endpoint next,
			   int login)
{
	struct op__api_verify_job *j;
	int wait = limited(api, op_httpd_peer(req));
	unsigned char mac[32];

	if (wait) {
		reply_error(req, 429, NULL, "too many failed logins; try again in %d s", wait);
		return;
	}
	if (!login && api->good) {
		mac_of(api, password, mac);
		if (sodium_memcmp(mac, api->good_mac, sizeof(mac)) == 0) {
			next(api, req, "admin");
			return;
		}
	}
	if (strlen(password) > PASSWORD_MAX) {
		reply_error(req, 401, NULL, "wrong password");
		return;
	}
	if (!(j = job_new(api, req, "admin", sizeof(*j))))
		return;
	snprintf(j->password, sizeof(j->password), "%s", password);
	snprintf(j->hash, sizeof(j->hash), "%s", api->cfg.console.password_hash);
	j->next = next;
	j->login = login;
	if (api->verifying) {
		if (api->verify_tail)
			api->verify_tail->waiting = j;
		else
			api->verify_head = j;
		api->verify_tail = j;
		return;
	}
	api->verifying = 1;
	job_start(&j->base, verify_work, verify_done);
}

static void authenticate(op_api *api, op_httpd_req *req, endpoint next)
{
	const char *auth;
	unsigned char raw[768];
	size_t n;

	if (op_httpd_is_local(req)) {
		next(api, req, "local");
		return;
	}
	if (!*api->cfg.console.password_hash) {
		reply_error(req, 403, NULL,
			    "no console password is set: run outpostctl passwd on the appliance");
		return;
	}
	if (find_session(api, req)) {
		next(api, req, "admin");
		return;
	}
	auth = op_request_header(op_httpd_request(req), "Authorization");
	if (auth && strncasecmp(auth, "Basic ", 6) == 0 &&
	    sodium_base642bin(raw, sizeof(raw) - 1, auth + 6, strlen(auth + 6), NULL, &n, NULL,
			      sodium_base64_VARIANT_ORIGINAL) == 0) {
		char *colon;

		raw[n] = '\0';
		colon = memchr(raw, ':', n);
		if (colon) {
			check_password(api, req, colon + 1, next, 0);
			sodium_memzero(raw, sizeof(raw));
			return;
		}
	}
	unauthorized(req);
}

/* --- endpoints: login ------------------------------------------------------------------ */

static cJSON *parse_body(op_httpd_req *req)
{
	size_t len;
	const char *body = op_request_body(op_httpd_request(req), &len);

	return cJSON_ParseWithLength(body, len);
}

static void login(op_api *api, op_httpd_req *req)
{
	cJSON *o, *pw;

	if (!*api->cfg.console.password_hash) {
		reply_error(req, 403, NULL,
			    "no console password is set: run outpostctl passwd on the appliance");
		return;
	}
	o = parse_body(req);
	pw = cJSON_GetObjectItemCaseSensitive(o, "password");
	if (!cJSON_IsString(pw)) {
		cJSON_Delete(o);
		reply_error(req, 400, NULL, "expected {\"password\": \"...\"}");
		return;
	}
	check_password(api, req, pw->valuestring, NULL, 1);
	cJSON_Delete(o);
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

	audit(job, j->action, j->detail);
}

/* Audits on the thread pool and answers {"ok": true}. */
static void audit_and_reply(op_api *api, op_httpd_req *req, const char *who, const char *action,
			    const char *detail, cJSON *answer)
{
	struct audit_job *j = job_new(api, req, who, sizeof(*j));

	if (!j) {
		cJSON_Delete(answer);
		return;
	}
	snprintf(j->action, sizeof(j->action), "%s", action);
	snprintf(j->detail, sizeof(j->detail), "%s", detail);
	job_json(&j->base, 200, answer);
	job_start(&j->base, audit_work, NULL);
}

static void logout(op_api *api, op_httpd_req *req, const char *who)
{
	struct session *s = find_session(api, req);
	cJSON *o = cJSON_CreateObject();

	if (s)
		s->token[0] = '\0';
	cJSON_AddBoolToObject(o, "ok", 1);
	audit_and_reply(api, req, who, "logout", "",
			o); /* the cookie is cleared by the browser session's end */
}

/* --- endpoints: status and metrics ----------------------------------------------------- */

struct disk {
	uint64_t total, free;
	int ok;
};

static struct disk disk_of(const char *dir)
{
	struct statvfs v;
	struct disk d = { 0, 0, 0 };

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

static cJSON *rate_json(const op_uplink_view *v)
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

/* What needs the operator: credentials refused, a disk nearly full,
 * quarantined instances, the link down for long. */
static cJSON *alarms_json(const op_uplink_view *v, const struct settings *c,
			  const op_spool_stats *st, struct disk d, uint64_t spool_bytes,
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
		snprintf(msg, sizeof(msg),
			 "%" PRIu64 " instances are quarantined (refused by the cloud): see the "
			 "queue, fix the cause, retry",
			 st->state[OP_STATE_QUARANTINED].instances);
		add_alarm(alarms, "quarantine", "warning", msg);
	}
	if (strcmp(v->link, "down") == 0 && now - v->link_since > 15 * 60 * 1000) {
		snprintf(msg, sizeof(msg), "the cloud has been unreachable for %" PRId64 " min: %s",
			 (now - v->link_since) / 60000, v->link_reason);
		add_alarm(alarms, "link", "error", msg);
	}
	return alarms;
}

/*
 * NAME in the configuration file's folder (on the appliance /data/NAME),
 * or "" without a configuration file.
 */
static void beside_config(op_api *api, const char *name, char *out, size_t size)
{
	const char *config = api->host.config_path, *slash;

	if (!config)
		*out = '\0';
	else if (!(slash = strrchr(config, '/')))
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "%.*s/%s", (int)(slash - config), config, name);
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
	op_uplink_view view;
	struct settings settings;
};

struct status_job {
	struct view_job v;
	char firmware_dir[PATH_MAX]; /* beside the configuration file, or "" */
};

static void status_work(struct op__api_job *job)
{
	const struct status_job *j = (const struct status_job *)job;
	const op_uplink_view *v = &j->v.view;
	const struct settings *c = &j->v.settings;
	op_spool_stats st;
	struct disk d = disk_of(c->spool_dir);
	cJSON *o = cJSON_CreateObject(), *x, *q, *arr;
	uint64_t spool_bytes = 0;
	char t[32];

	if (op_spool_get_stats(job->spool, &st) < 0) {
		cJSON_Delete(o);
		job_error(job, 503, "the spool database cannot be read (see the uplink's log)");
		return;
	}
	cJSON_AddStringToObject(o, "version", OP_VERSION);
	cJSON_AddNumberToObject(o, "uptime", (double)((job->t - v->started_at) / 1000));
	iso_time(job->t, t, sizeof(t));
	cJSON_AddStringToObject(o, "time", t);

	x = cJSON_AddObjectToObject(o, "link");
	cJSON_AddStringToObject(x, "state", v->link);
	iso_time(v->link_since ? v->link_since : v->started_at, t, sizeof(t));
	cJSON_AddStringToObject(x, "since", t);
	cJSON_AddStringToObject(x, "reason", v->link_reason);
	cJSON_AddBoolToObject(x, "paused_by_operator", v->paused_by_operator);
	cJSON_AddStringToObject(x, "cloud", c->cloud_url);

	cJSON_AddItemToObject(o, "rate", rate_json(v));

	q = cJSON_AddObjectToObject(o, "queue");
	for (int i = 0; i < OP_SPOOL_STATES; i++) {
		x = cJSON_AddObjectToObject(q, op_spool_state_name(i));
		cJSON_AddNumberToObject(x, "instances", (double)st.state[i].instances);
		cJSON_AddNumberToObject(x, "bytes", (double)st.state[i].bytes);
		spool_bytes += st.state[i].bytes;
	}
	if (st.oldest_queued_at)
		cJSON_AddNumberToObject(q, "oldest_queued_age",
					(double)((job->t - st.oldest_queued_at) / 1000));
	else
		cJSON_AddNullToObject(q, "oldest_queued_age");
	cJSON_AddNumberToObject(q, "studies_queued", (double)st.studies_queued);

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

	arr = cJSON_AddArrayToObject(o, "last_errors");
	for (unsigned i = 0; i < v->n_errors; i++) {
		cJSON *e = cJSON_CreateObject();

		iso_time(v->errors[i].time, t, sizeof(t));
		cJSON_AddStringToObject(e, "time", t);
		cJSON_AddStringToObject(e, "event", v->errors[i].event);
		cJSON_AddStringToObject(e, "message", v->errors[i].message);
		cJSON_AddItemToArray(arr, e);
	}
	cJSON_AddItemToObject(o, "alarms", alarms_json(v, c, &st, d, spool_bytes, job->t));

	/* The appliance's root slot and its last update (outpost-health-gate). */
	x = cJSON_AddObjectToObject(o, "firmware");
	cJSON_AddItemToObject(x, "booted", keyvalue_json(j->firmware_dir, "booted"));
	cJSON_AddItemToObject(x, "last_update", keyvalue_json(j->firmware_dir, "last-update"));

	x = cJSON_AddObjectToObject(o, "counters");
	cJSON_AddNumberToObject(x, "received_instances", (double)st.counters.received_instances);
	cJSON_AddNumberToObject(x, "received_bytes", (double)st.counters.received_bytes);
	cJSON_AddNumberToObject(x, "uploaded_instances", (double)st.counters.uploaded_instances);
	cJSON_AddNumberToObject(x, "uploaded_bytes", (double)st.counters.uploaded_bytes);
	cJSON_AddNumberToObject(x, "retries", (double)st.counters.retries);
	cJSON_AddNumberToObject(x, "quarantined", (double)st.counters.quarantined);
	cJSON_AddNumberToObject(x, "associations_rejected",
				(double)st.counters.associations_rejected);
	job_json(job, 200, o);
}

static void settings_of(const op_api *api, struct settings *c)
{
	snprintf(c->spool_dir, sizeof(c->spool_dir), "%s", api->cfg.spool.dir);
	c->max_bytes = api->cfg.spool.max_bytes;
	c->min_free_bytes = api->cfg.spool.min_free_bytes;
	snprintf(c->cloud_url, sizeof(c->cloud_url), "%s", api->cfg.cloud.url);
	c->receiver_port = api->cfg.receiver.port;
	snprintf(c->receiver_ae, sizeof(c->receiver_ae), "%s", api->cfg.receiver.ae_title);
}

/* A job of size bytes that starts with a struct view_job, filled in. */
static void *view_job_new(op_api *api, op_httpd_req *req, const char *who, size_t size)
{
	struct view_job *j = job_new(api, req, who, size);

	if (!j)
		return NULL;
	op_uplink_get_view(api->up, &j->view);
	settings_of(api, &j->settings);
	return j;
}

static void with_view(op_api *api, op_httpd_req *req, const char *who,
		      void (*work)(struct op__api_job *))
{
	struct view_job *j = view_job_new(api, req, who, sizeof(*j));

	if (j)
		job_start(&j->base, work, NULL);
}

static void status(op_api *api, op_httpd_req *req, const char *who)
{
	struct status_job *j = view_job_new(api, req, who, sizeof(*j));

	if (!j)
		return;
	beside_config(api, "firmware", j->firmware_dir, sizeof(j->firmware_dir));
	job_start(&j->v.base, status_work, NULL);
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

static void metrics_work(struct op__api_job *job)
{
	const struct view_job *j = (const struct view_job *)job;
	const op_uplink_view *v = &j->view;
	const struct settings *c = &j->settings;
	op_spool_stats st;
	struct disk d = disk_of(c->spool_dir);
	struct text t = { 0 };

	if (op_spool_get_stats(job->spool, &st) < 0) {
		job_error(job, 503, "the spool database cannot be read (see the uplink's log)");
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
	metric(&t, "link_up", "gauge", "1 when the last exchange with the cloud succeeded.",
	       strcmp(v->link, "up") == 0);
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
	metric(&t, "disk_free_bytes", "gauge", "Free bytes on the spool's filesystem.", d.free);
	job->status = 200;
	job->ctype = "text/plain; version=0.0.4; charset=utf-8";
	job->body = t.p;
	job->len = t.len;
}

static void metrics(op_api *api, op_httpd_req *req, const char *who)
{
	with_view(api, req, who, metrics_work);
}

/* --- endpoints: the queue -------------------------------------------------------------------- */

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

struct queue_job {
	struct op__api_job base;
	int state; /* OP_STATE_*, or -1: all */
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

	if (!studies || op_spool_studies(job->spool, j->state, (unsigned)((j->page - 1) * per_page),
					 per_page, studies, &n, &total) < 0) {
		free(studies);
		job_error(job, 503, "the spool database cannot be read (see the uplink's log)");
		return;
	}
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "page", (double)j->page);
	cJSON_AddNumberToObject(o, "per_page", per_page);
	cJSON_AddNumberToObject(o, "total", (double)total);
	arr = cJSON_AddArrayToObject(o, "studies");
	for (unsigned i = 0; i < n; i++) {
		const op_spool_study *s = &studies[i];
		cJSON *x = cJSON_CreateObject(), *states;

		cJSON_AddStringToObject(x, "study_uid", s->study_uid);
		cJSON_AddStringToObject(x, "patient_id", s->patient_id);
		cJSON_AddStringToObject(x, "modality", s->modality);
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
	job_json(job, 200, o);
}

static void queue(op_api *api, op_httpd_req *req, const char *who)
{
	const char *query = op_request_query(op_httpd_request(req));
	long page = 1, per_page = 50;
	char state[32];
	int st = -1;
	struct queue_job *j;

	if (query_value(query, "state", state, sizeof(state)) == 0 && *state &&
	    (st = op_spool_state_parse(state)) < 0) {
		reply_error(req, 400, NULL,
			    "state must be one of queued, sending, sent, quarantined");
		return;
	}
	if (query_number(query, "page", 1, 1000000, &page) < 0 ||
	    query_number(query, "per_page", 1, PER_PAGE_MAX, &per_page) < 0) {
		reply_error(req, 400, NULL, "page must be 1 or more; per_page from 1 to %d",
			    PER_PAGE_MAX);
		return;
	}
	if (!(j = job_new(api, req, who, sizeof(*j))))
		return;
	j->state = st;
	j->per_page = (unsigned)per_page;
	j->page = page;
	job_start(&j->base, queue_work, NULL);
}

/* --- endpoints: operator actions ------------------------------------------------------------- */

struct retry_job {
	struct op__api_job base;
	char study[OP_UID_MAX + 1]; /* "": every quarantined instance */
};

static void retry_work(struct op__api_job *job)
{
	const struct retry_job *j = (const struct retry_job *)job;
	unsigned n = 0;
	char detail[160];
	cJSON *o;

	if (op_spool_retry_quarantined(job->spool, *j->study ? j->study : NULL, job->t, &n) < 0) {
		job_error(job, 503, "the spool database cannot be written (see the uplink's log)");
		return;
	}
	snprintf(detail, sizeof(detail), "%s%.*s requeued=%u", *j->study ? "study=" : "all",
		 OP_UID_MAX, j->study, n);
	audit(job, "retry", detail);
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "requeued", n);
	job_json(job, 200, o);
}

static void retry(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = parse_body(req), *study = cJSON_GetObjectItemCaseSensitive(o, "study");
	cJSON *all = cJSON_GetObjectItemCaseSensitive(o, "all");
	struct retry_job *j;

	if (!(cJSON_IsString(study) && *study->valuestring &&
	      strlen(study->valuestring) <= OP_UID_MAX) &&
	    !cJSON_IsTrue(all)) {
		cJSON_Delete(o);
		reply_error(req, 400, NULL,
			    "expected {\"study\": \"STUDY UID\"} or {\"all\": true}");
		return;
	}
	if ((j = job_new(api, req, who, sizeof(*j)))) {
		snprintf(j->study, sizeof(j->study), "%s",
			 cJSON_IsString(study) ? study->valuestring : "");
		job_start(&j->base, retry_work, NULL);
	}
	cJSON_Delete(o);
}

struct pause_job {
	struct op__api_job base;
	int paused; /* 0: resume */
};

static void pause_work(struct op__api_job *job)
{
	const struct pause_job *j = (const struct pause_job *)job;
	cJSON *o;

	if (op_spool_setting_set(job->spool, "paused", j->paused ? "1" : NULL) < 0) {
		job_error(job, 503, "the spool database cannot be written (see the uplink's log)");
		return;
	}
	audit(job, j->paused ? "pause" : "resume", "");
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "paused", j->paused);
	job_json(job, 200, o);
}

static void pause_done(struct op__api_job *job)
{
	const struct pause_job *j = (const struct pause_job *)job;

	if (job->status == 200)
		op_uplink_set_paused(job->api->up, j->paused);
}

static void set_paused(op_api *api, op_httpd_req *req, const char *who, int paused)
{
	struct pause_job *j = job_new(api, req, who, sizeof(*j));

	if (!j)
		return;
	j->paused = paused;
	job_start(&j->base, pause_work, pause_done);
}

static void pause_uploads(op_api *api, op_httpd_req *req, const char *who)
{
	set_paused(api, req, who, 1);
}

static void resume_uploads(op_api *api, op_httpd_req *req, const char *who)
{
	set_paused(api, req, who, 0);
}

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
		job_error(job, 503, "the spool database cannot be written (see the uplink's log)");
		return;
	}
	snprintf(detail, sizeof(detail), "rate=%s schedule=%s", *j->rate ? j->rate : "(config)",
		 *j->schedule ? j->schedule : "(config)");
	audit(job, "shaping", detail);
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
	job_json(job, 200, rate_json(&v));
}

static void shaping(op_api *api, op_httpd_req *req, const char *who)
{
	cJSON *o = parse_body(req), *rate = cJSON_GetObjectItemCaseSensitive(o, "rate");
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
		reply_error(req, 400, NULL,
			    "expected {\"rate\": \"8Mbit\" or null, \"schedule\": \"Mon-Fri "
			    "07:00-19:00 2Mbit; ...\" or null}");
		return;
	}
	if (cJSON_IsString(rate) &&
	    (op_rate_parse(rate->valuestring, &bps) < 0 || strlen(rate->valuestring) >= 64)) {
		reply_error(req, 400, NULL,
			    "rate: '%.64s' is not a rate (bits per second with k, M or G, e.g. "
			    "8Mbit; unlimited; 0 pauses)",
			    rate->valuestring);
		cJSON_Delete(o);
		return;
	}
	if (cJSON_IsString(schedule) &&
	    (strlen(schedule->valuestring) >= sizeof(v.schedule) ||
	     op_schedule_parse(schedule->valuestring, &parsed, why, sizeof(why)) < 0)) {
		reply_error(req, 400, NULL, "schedule: %s",
			    strlen(schedule->valuestring) >= sizeof(v.schedule) ? "too long" : why);
		cJSON_Delete(o);
		return;
	}
	if (!(j = job_new(api, req, who, sizeof(*j)))) {
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
	job_start(&j->base, shaping_work, shaping_done);
}

static void reload(op_api *api, op_httpd_req *req, const char *who)
{
	char before[sizeof(api->cfg.console.password_hash)], err[640];
	int changed;

	snprintf(before, sizeof(before), "%s", api->cfg.console.password_hash);
	if (api->host.reload(api->host.ctx, err, sizeof(err)) < 0) {
		reply_error(req, 400, NULL, "%s", err);
		return;
	}
	changed = strcmp(before, api->cfg.console.password_hash) != 0;
	cJSON *o = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ok", 1);
	audit_and_reply(api, req, who, changed ? "password" : "reload",
			changed ? "console password changed" : "configuration reloaded", o);
}

/* --- the site file, uploaded -------------------------------------------------------------- */

#define SITE_FILES 16
#define SITE_NAME_MAX 64

/* A site file's name: letters, digits, '.', '_', '-', not starting with '.'. */
static int site_name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n < SITE_NAME_MAX && name[0] != '.' &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
		       n;
}

static int remove_tree(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	return rmdir(dir) == 0 ? 0 : -errno;
}

/*
 * The upload (site.ini and its files, as JSON) is checked by loading the
 * current configuration followed by site.ini, then left as upload/site/
 * for the appliance's outpost-site.path unit, which provisions from it as
 * from a USB stick (as root) and reloads the services.
 */
struct site_job {
	struct op__api_job base;
	char *upload;          /* the request's body; the work frees it */
	char dir[PATH_MAX];    /* upload/ beside the configuration file */
	char config[PATH_MAX]; /* the configuration file */
};

static void site_work(struct op__api_job *job)
{
	struct site_job *j = (struct site_job *)job;
	char tmp[PATH_MAX + 16], dir[PATH_MAX + 16], check[PATH_MAX + 16], err[640];
	char path[PATH_MAX + SITE_NAME_MAX + 32];
	cJSON *o = cJSON_Parse(j->upload), *ini = cJSON_GetObjectItemCaseSensitive(o, "site.ini");
	cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files"), *f;
	op_config cfg;
	FILE *out = NULL, *cur = NULL;
	int n = 0, rc;

	free(j->upload);
	j->upload = NULL;
	snprintf(tmp, sizeof(tmp), "%s/site.tmp", j->dir);
	snprintf(dir, sizeof(dir), "%s/site", j->dir);
	if (mkdir(j->dir, 0750) < 0 && errno != EEXIST) {
		job_error(job, 500, "cannot write the upload directory (see [console] in README)");
		goto out;
	}
	if (!cJSON_IsString(ini) || (files && !cJSON_IsObject(files))) {
		job_error(job, 400,
			  "expected {\"site.ini\": \"...\", \"files\": {\"ca.pem\": \"...\"}}");
		goto out;
	}
	cJSON_ArrayForEach(f, files)
	{
		if (!cJSON_IsString(f) || !site_name_ok(f->string) || ++n > SITE_FILES ||
		    strcmp(f->string, "site.ini") == 0 || strcmp(f->string, "outpost.ini") == 0) {
			job_error(job, 400,
				  "files: at most 16, named with letters, digits, '.', '_', '-' "
				  "(not site.ini), each a string");
			goto out;
		}
	}
	/* The configuration in force, then the site file: what the services
	 * will load (the appliance starts from its defaults instead). */
	snprintf(check, sizeof(check), "%s/site.check.ini", j->dir);
	out = fopen(check, "we");
	cur = fopen(j->config, "re");
	if (out && cur) {
		char buf[4096];
		size_t k;

		while ((k = fread(buf, 1, sizeof(buf), cur)) > 0)
			fwrite(buf, 1, k, out);
		fprintf(out, "\n%s\n", ini->valuestring);
	}
	if (cur)
		fclose(cur);
	if (!out || fclose(out) != 0) {
		job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	rc = op_config_load(&cfg, check, err, sizeof(err));
	unlink(check);
	if (rc < 0) {
		char msg[700];

		snprintf(msg, sizeof(msg), "site.ini refused: %s",
			 strstr(err, ": ") ? strstr(err, ": ") + 2 : err);
		job_error(job, 400, msg);
		goto out;
	}
	remove_tree(tmp);
	if (mkdir(tmp, 0750) < 0) {
		job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/site.ini", tmp);
	rc = op_file_write(path, ini->valuestring, strlen(ini->valuestring), 0640);
	cJSON_ArrayForEach(f, files)
	{
		snprintf(path, sizeof(path), "%s/%s", tmp, f->string);
		if (rc == 0)
			rc = op_file_write(path, f->valuestring, strlen(f->valuestring), 0640);
	}
	/* The files' names, then the folder's: a power cut leaves the old
	 * site file or the whole new one. */
	if (rc == 0)
		rc = op_fsync_dir(tmp);
	remove_tree(dir);
	if (rc < 0 || op_rename_durable(tmp, dir) < 0) {
		remove_tree(tmp);
		job_error(job, 500, "cannot write the upload directory");
		goto out;
	}
	audit(job, "site", "site file uploaded");
	cJSON *a = cJSON_CreateObject();

	cJSON_AddBoolToObject(a, "accepted", 1);
	cJSON_AddStringToObject(a, "path", dir);
	job_json(job, 202, a);
out:
	cJSON_Delete(o);
}

static void site_upload(op_api *api, op_httpd_req *req, const char *who)
{
	const char *config = api->host.config_path;
	size_t len;
	const char *body = op_request_body(op_httpd_request(req), &len);
	struct site_job *j;

	if (!config) {
		reply_error(req, 409, NULL,
			    "this uplink runs without a configuration file in a data directory");
		return;
	}
	if (!(j = job_new(api, req, who, sizeof(*j))))
		return;
	beside_config(api, "upload", j->dir, sizeof(j->dir));
	snprintf(j->config, sizeof(j->config), "%s", config);
	j->upload = strndup(body, len);
	job_start(&j->base, site_work, NULL);
}

/* --- a firmware bundle, uploaded ------------------------------------------------------------ */

/*
 * The body is written to upload/firmware.part as it comes, then made
 * durable and renamed upload/update.raucb: the appliance's
 * outpost-update-upload.path unit installs it as root (outpostctl
 * update's installer, which checks the signature). One at a time, and
 * only with room left for the receiver's min_free_bytes.
 */
struct op__api_firmware {
	op_api *api;
	int fd;
	uint64_t bytes, expected;
	int err; /* a failed write's errno */
	mbedtls_sha256_context sha;
	char who[16];
	char part[PATH_MAX], dest[PATH_MAX];
};

static void firmware_free(struct op__api_firmware *fw)
{
	if (fw->fd >= 0)
		close(fw->fd);
	mbedtls_sha256_free(&fw->sha);
	fw->api->firmware = NULL;
	free(fw);
}

static int firmware_data(void *ctx, const void *data, size_t len)
{
	struct op__api_firmware *fw = ctx;
	const char *p = data;

	/* On the loop: a write to the page cache; the fsync is on the pool. */
	mbedtls_sha256_update_ret(&fw->sha, data, len);
	while (len > 0) {
		ssize_t n = write(fw->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fw->err = errno;
			return errno == ENOSPC || errno == EDQUOT ? 507 : 500;
		}
		p += n;
		len -= (size_t)n;
		fw->bytes += (uint64_t)n;
	}
	return 0;
}

/* A bundle received whole: made durable and renamed on the thread pool. */
struct firmware_job {
	struct op__api_job base;
	int fd; /* the part file's, open for the fsync */
	uint64_t bytes;
	char sha256[65]; /* hex */
	char part[PATH_MAX], dest[PATH_MAX];
};

static void firmware_work(struct op__api_job *job)
{
	const struct firmware_job *j = (const struct firmware_job *)job;
	char detail[200];
	cJSON *o;
	int rc = fsync(j->fd) == 0 ? 0 : -errno;

	close(j->fd);
	if (rc == 0)
		rc = op_rename_durable(j->part, j->dest);
	if (rc < 0) {
		/* Neither name stays: a bundle renamed but not synced would be
		 * installed after a 500. The destination was free when the
		 * upload began, and uploads go one at a time. */
		unlink(j->part);
		unlink(j->dest);
		snprintf(detail, sizeof(detail), "cannot keep the bundle: %s", strerror(-rc));
		job_error(job, rc == -ENOSPC ? 507 : 500, detail);
		return;
	}
	snprintf(detail, sizeof(detail), "bundle uploaded: %" PRIu64 " bytes, sha256 %s", j->bytes,
		 j->sha256);
	audit(job, "firmware", detail);
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "accepted", 1);
	cJSON_AddNumberToObject(o, "bytes", (double)j->bytes);
	cJSON_AddStringToObject(o, "sha256", j->sha256);
	cJSON_AddStringToObject(o, "path", j->dest);
	job_json(job, 202, o);
}

static void firmware_done(struct op__api_job *job)
{
	job->api->firmware = NULL; /* renamed: the next upload may start */
}

static void firmware_end(void *ctx, op_httpd_req *req, int status)
{
	struct op__api_firmware *fw = ctx;
	unsigned char sum[32];
	struct firmware_job *j;

	if (status != 0) {
		unlink(fw->part);
		op_warn("console.firmware",
			"who=%s result=failed bytes=%" PRIu64 " of=%" PRIu64 " reason=\"%s\"",
			fw->who, fw->bytes, fw->expected,
			status < 0      ? "the client went away"
			: status == 507 ? "disk full"
			: fw->err       ? strerror(fw->err)
					: "malformed body");
		if (status == 507)
			reply_error(req, 507, NULL,
				    "the disk filled up after %" PRIu64 " bytes of the bundle",
				    fw->bytes);
		else if (fw->err)
			reply_error(req, 500, NULL, "cannot write the bundle: %s",
				    strerror(fw->err));
		else
			reply_error(req, status > 0 ? status : 400, NULL,
				    "the upload did not complete");
		firmware_free(fw);
		return;
	}
	mbedtls_sha256_finish_ret(&fw->sha, sum);
	if (!(j = job_new(fw->api, req, fw->who, sizeof(*j)))) {
		unlink(fw->part);
		firmware_free(fw);
		return;
	}
	for (int i = 0; i < 32; i++)
		snprintf(j->sha256 + 2 * i, 3, "%02x", sum[i]);
	snprintf(j->part, sizeof(j->part), "%s", fw->part);
	snprintf(j->dest, sizeof(j->dest), "%s", fw->dest);
	j->fd = fw->fd;
	j->bytes = fw->bytes;
	fw->fd = -1;
	mbedtls_sha256_free(&fw->sha);
	free(fw); /* api->firmware stays set until the rename (firmware_done) */
	job_start(&j->base, firmware_work, firmware_done);
}

static void firmware_upload(op_api *api, op_httpd_req *req, const char *who)
{
	const op_request *r = op_httpd_request(req);
	const char *length = op_request_header(r, "Content-Length");
	uint64_t len = 0, min_free = api->cfg.spool.min_free_bytes;
	char dir[1024];
	struct op__api_firmware *fw;
	struct disk d;

	if (!api->host.config_path) {
		reply_error(req, 409, NULL,
			    "this uplink runs without a configuration file in a data directory");
		return;
	}
	if (op_httpd_streamed(req)) {
		len = length ? strtoull(length, NULL, 10) : 0;
	} else {
		size_t held;

		op_request_body(r, &held);
		len = held;
	}
	if (len == 0) {
		reply_error(req, 400, NULL, "send the bundle (.raucb) as the request body");
		return;
	}
	if (len > FIRMWARE_MAX) {
		reply_error(req, 413, NULL, "a bundle is at most 1 GiB");
		return;
	}
	if (api->firmware) {
		reply_error(req, 409, NULL, "another bundle is being uploaded");
		return;
	}
	beside_config(api, "upload", dir, sizeof(dir));
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		reply_error(req, 500, NULL, "cannot make %s: %s", dir, strerror(errno));
		return;
	}
	d = disk_of(dir);
	if (d.ok && d.free < len + min_free) {
		reply_error(req, 507, NULL,
			    "not enough free space: the bundle needs %" PRIu64
			    " MB and the receiver keeps %" PRIu64 " MB free ([spool] "
			    "min_free_bytes); %" PRIu64 " MB are free",
			    len >> 20, min_free >> 20, d.free >> 20);
		return;
	}
	if (!(fw = calloc(1, sizeof(*fw)))) {
		reply_error(req, 503, NULL, "out of memory");
		return;
	}
	fw->api = api;
	fw->expected = len;
	snprintf(fw->who, sizeof(fw->who), "%s", who);
	snprintf(fw->part, sizeof(fw->part), "%s/firmware.part", dir);
	snprintf(fw->dest, sizeof(fw->dest), "%s/update.raucb", dir);
	if (access(fw->dest, F_OK) == 0) {
		free(fw);
		reply_error(req, 409, NULL,
			    "an update is being installed: see firmware in /api/status for its "
			    "progress and result");
		return;
	}
	fw->fd = open(fw->part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fw->fd < 0) {
		reply_error(req, 500, NULL, "cannot write %s: %s", fw->part, strerror(errno));
		free(fw);
		return;
	}
	mbedtls_sha256_init(&fw->sha);
	mbedtls_sha256_starts_ret(&fw->sha, 0);
	api->firmware = fw;
	op_httpd_receive(req, firmware_data, firmware_end, fw);
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
		job_error(job, 503, "the spool database cannot be read (see the uplink's log)");
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
	job_json(job, 200, arr);
}

static void audit_list(op_api *api, op_httpd_req *req, const char *who)
{
	long limit = 100;
	struct audit_list_job *j;

	if (query_number(op_request_query(op_httpd_request(req)), "limit", 1, AUDIT_MAX, &limit) <
	    0) {
		reply_error(req, 400, NULL, "limit must be from 1 to %d", AUDIT_MAX);
		return;
	}
	if (!(j = job_new(api, req, who, sizeof(*j))))
		return;
	j->limit = (unsigned)limit;
	job_start(&j->base, audit_list_work, NULL);
}

/* The link test runs on the loop (https.c); its report is audited on the
 * thread pool, then answered. One at a time. */
static void test_link_report(void *ctx, cJSON *report)
{
	struct audit_job *j = ctx;
	op_api *api = j->base.api;
	cJSON *ok = cJSON_GetObjectItemCaseSensitive(report, "ok");

	api->linktest = NULL;
	api->linktest_job = NULL;
	if (cJSON_IsTrue(ok))
		op_uplink_link_verified(api->up);
	snprintf(j->action, sizeof(j->action), "test-link");
	snprintf(j->detail, sizeof(j->detail), "%s %s", cJSON_IsTrue(ok) ? "ok" : "failed",
		 *api->cfg.cloud.url ? api->cfg.cloud.url : "(unprovisioned)");
	job_json(&j->base, 200, report);
	job_start(&j->base, audit_work, NULL);
}

static void test_link(op_api *api, op_httpd_req *req, const char *who)
{
	const op_config *cfg = &api->cfg;
	struct audit_job *j;

	if (api->linktest_job) {
		reply_error(req, 409, NULL, "a link test is already running");
		return;
	}
	if (!(j = job_new(api, req, who, sizeof(*j))))
		return;
	api->linktest_job = &j->base;
	if (op_linktest_start(api->loop, op_uplink_tls(api->up), &cfg->cloud,
			      op_uplink_auth_header(api->up), LINKTEST_TIMEOUT_S, test_link_report,
			      j, &api->linktest) < 0) {
		api->linktest_job = NULL;
		op_httpd_reply(req, 503, JSON, NULL, "{\"error\": \"out of memory\"}", 26);
		job_free(&j->base);
	}
}

/* --- /healthz and the console's files --------------------------------------------------------- */

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
	const struct settings *c = &j->settings;
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
	job_json(job, spool_ok && echo_rc == 0 ? 200 : 503, o);
}

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" },
		{ ".mjs", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" },
		{ ".svg", "image/svg+xml" },
		{ ".png", "image/png" },
		{ ".ico", "image/x-icon" },
		{ ".json", "application/json" },
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

struct static_job {
	struct op__api_job base;
	char path[PATH_MAX]; /* under web_root */
};

static void static_work(struct op__api_job *job)
{
	const struct static_job *j = (const struct static_job *)job;
	FILE *f = fopen(j->path, "rbe");
	struct stat st;

	if (!f || fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
		if (f)
			fclose(f);
		job_error(job, 404, "not found");
		return;
	}
	job->body = malloc((size_t)st.st_size + 1);
	job->len = job->body ? fread(job->body, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	if (!job->body || job->len != (size_t)st.st_size) {
		free(job->body);
		job->body = NULL;
		job_error(job, 500, "cannot read the file");
		return;
	}
	job->status = 200;
	job->ctype = content_type(j->path);
	snprintf(job->headers, sizeof(job->headers),
		 "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "
		 "frame-ancestors 'none'\r\n");
}

static void static_file(op_api *api, op_httpd_req *req)
{
	const char *path = op_request_path(op_httpd_request(req));
	struct static_job *j;

	if (strcmp(path, "/") == 0)
		path = "/index.html";
	/* Names of the shipped files only: no "..", no hidden files. */
	if (path[0] != '/' || strstr(path, "/.") ||
	    strspn(path + 1, "abcdefghijklmnopqrstuvwxyz"
			     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			     "0123456789._-/") != strlen(path + 1)) {
		reply_error(req, 404, NULL, "not found");
		return;
	}
	if (!(j = job_new(api, req, NULL, sizeof(*j))))
		return;
	snprintf(j->path, sizeof(j->path), "%s%s", api->cfg.console.web_root, path);
	job_start(&j->base, static_work, NULL);
}

/* --- routing ------------------------------------------------------------------------------------ */

static const struct route {
	const char *method, *path;
	endpoint fn;
	int local_only;
} routes[] = {
	{ "GET", "/api/status", status, 0 },
	{ "GET", "/metrics", metrics, 0 },
	{ "GET", "/api/queue", queue, 0 },
	{ "POST", "/api/retry", retry, 0 },
	{ "POST", "/api/pause", pause_uploads, 0 },
	{ "POST", "/api/resume", resume_uploads, 0 },
	{ "PUT", "/api/shaping", shaping, 0 },
	{ "POST", "/api/test-link", test_link, 0 },
	{ "GET", "/api/audit", audit_list, 0 },
	{ "POST", "/api/logout", logout, 0 },
	{ "POST", "/api/reload", reload, 1 },
	{ "PUT", "/api/site", site_upload, 0 },
	{ "PUT", "/api/firmware", firmware_upload, 0 },
};

static void handle(void *ctx, op_httpd_req *req)
{
	op_api *api = ctx;
	const char *method = op_request_method(op_httpd_request(req)),
		   *path = op_request_path(op_httpd_request(req));
	int path_known = 0;

	/* Only a bundle's body is streamed (op_httpd_receive()). */
	if (op_httpd_streamed(req) &&
	    (strcmp(method, "PUT") != 0 || strcmp(path, "/api/firmware") != 0)) {
		reply_error(req, 413, NULL, "request body too large (at most 64 KiB)");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		if (strcmp(method, "GET") != 0) {
			reply_error(req, 405, "Allow: GET\r\n", "use GET");
			return;
		}
		with_view(api, req, NULL, healthz_work);
		return;
	}
	if (strcmp(path, "/api/login") == 0) {
		if (strcmp(method, "POST") != 0)
			reply_error(req, 405, "Allow: POST\r\n", "use POST");
		else if (op_httpd_is_local(req))
			reply_error(req, 400, NULL, "the local socket needs no login");
		else
			login(api, req);
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *r = &routes[i];

		if (strcmp(r->path, path) != 0 || (r->local_only && !op_httpd_is_local(req)))
			continue;
		path_known = 1;
		if (strcmp(r->method, method) == 0) {
			authenticate(api, req, r->fn);
			return;
		}
	}
	if (path_known)
		reply_error(req, 405, NULL, "method not allowed");
	else if (strncmp(path, "/api/", 5) == 0)
		reply_error(req, 404, NULL, "no such endpoint");
	else if (strcmp(method, "GET") != 0)
		reply_error(req, 405, "Allow: GET\r\n", "use GET");
	else
		static_file(api, req);
}

int op_api_open(uv_loop_t *loop, const op_config *cfg, const op_api_host *host, op_api **out)
{
	op_api *api = calloc(1, sizeof(*api));
	char err[512] = "", part[PATH_MAX];
	int rc;

	*out = NULL;
	if (!api)
		return -ENOMEM;
	api->loop = loop;
	api->host = *host;
	api->up = host->uplink;
	api->cfg = *cfg;
	crypto_generichash_keygen(api->good_key);
	rc = op_httpd_open(loop, &api->cfg.console, handle, api, &api->httpd, err, sizeof(err));
	if (rc < 0) {
		free_api(api);
		return rc;
	}
	/* A bundle's upload that a crash or a power cut stopped: its client
	 * got no answer and nobody finishes it, and it may be large. */
	beside_config(api, "upload/firmware.part", part, sizeof(part));
	if (*part && unlink(part) == 0)
		op_warn("console.firmware",
			"result=removed file=%s reason=\"an upload that a restart or a power cut "
			"stopped\"",
			part);
	if (!*api->cfg.console.password_hash && *api->cfg.console.listen)
		op_warn("console.password",
			"reason=\"no [console] password_hash: the console answers 403 over the "
			"network until one is set with outpostctl passwd\"");
	*out = api;
	return 0;
}

void op_api_configure(op_api *api, const op_config *cfg)
{
	op_console_config kept;

	if (!api)
		return;
	if (strcmp(cfg->console.listen, api->cfg.console.listen) != 0 ||
	    strcmp(cfg->console.socket, api->cfg.console.socket) != 0 ||
	    strcmp(cfg->console.tls_cert, api->cfg.console.tls_cert) != 0 ||
	    strcmp(cfg->console.tls_key, api->cfg.console.tls_key) != 0)
		op_warn("config.reload", "reason=\"[console] listen, socket, tls_cert and tls_key "
					 "take effect at the next start\"");
	if (strcmp(api->cfg.console.password_hash, cfg->console.password_hash) != 0) {
		memset(api->sessions, 0, sizeof(api->sessions));
		api->good = 0;
		op_info("console.password", "result=changed reason=\"sessions ended\"");
	}
	/* The listeners stay as they are; the password, the web root and the
	 * session lifetime change now. */
	kept = api->cfg.console;
	memcpy(kept.password_hash, cfg->console.password_hash, sizeof(kept.password_hash));
	memcpy(kept.web_root, cfg->console.web_root, sizeof(kept.web_root));
	kept.session_ttl = cfg->console.session_ttl;
	api->cfg = *cfg;
	api->cfg.console = kept;
}

void op_api_close(op_api *api)
{
	if (!api)
		return;
	while (api->verify_head) {
		struct op__api_verify_job *j = api->verify_head;

		api->verify_head = j->waiting;
		op_httpd_reply(j->base.req, 503, JSON, NULL, "{\"error\": \"stopping\"}", 21);
		job_free(&j->base);
	}
	if (api->linktest_job) {
		op_linktest_cancel(api->linktest);
		op_httpd_reply(api->linktest_job->req, 503, JSON, NULL, "{\"error\": \"stopping\"}",
			       21);
		job_free(api->linktest_job);
	}
	op_httpd_close(api->httpd);
	api->httpd = NULL;
	api->closing = 1;
	if (api->jobs == 0)
		free_api(api);
}
