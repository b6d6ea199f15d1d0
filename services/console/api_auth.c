/*
 * api_auth: who may use the console (see internal.h). The Unix socket is
 * trusted as the local administrator; over TCP a session cookie from
 * /api/login, or the password by HTTP Basic on each request. A password is
 * checked with Argon2 on the thread pool, one check at a time, at most
 * VERIFY_QUEUE waiting (503 beyond).
 *
 * Guessing is bounded where the guess comes in, not where its check ends
 * (a burst, or requests whose clients reset, would otherwise be checked
 * many times over the limit): each password to check counts as an
 * attempt when it arrives; a client with LOGIN_ATTEMPTS in LOGIN_WINDOW_MS
 * is refused (429) until the window ends, and all clients together get
 * LOGIN_BUDGET a window. A client's count is kept for its whole window:
 * when OP__API_PEERS clients are counted, a new one is refused rather than
 * an old one forgotten. A password that verifies gives its attempt back.
 */
#include "console/internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"

#define LOGIN_ATTEMPTS 5 /* a client's, in LOGIN_WINDOW_MS, then 429 until it ends */
#define LOGIN_BUDGET 20  /* every client's, in LOGIN_WINDOW_MS */
#define LOGIN_WINDOW_MS 60000
#define VERIFY_QUEUE 8    /* checks waiting for the one running */
#define PASSWORD_MAX 1099 /* a longer one is refused unchecked */

/* --- sessions and failures ------------------------------------------------------- */

/* peer's attempts in its window, or NULL; with create a free entry for
 * it, or NULL when every entry is in its window. */
static struct op__api_attempts *attempts_of(op_api *api, const char *peer, int create)
{
	struct op__api_attempts *free_entry = NULL;
	uint64_t now = uv_now(api->loop);

	for (int i = 0; i < OP__API_PEERS; i++) {
		struct op__api_attempts *a = &api->attempts[i];

		if (a->n && now - a->since >= LOGIN_WINDOW_MS)
			a->n = 0;
		if (a->n && strcmp(a->peer, peer) == 0)
			return a;
		if (a->n == 0 && !free_entry)
			free_entry = a;
	}
	if (!create || !free_entry)
		return NULL;
	snprintf(free_entry->peer, sizeof(free_entry->peer), "%s", peer);
	free_entry->since = now;
	free_entry->n = 0;
	return free_entry;
}

/* Counts an attempt of peer's. 0, or the seconds until one may be made,
 * with why in *why. */
static int count_attempt(op_api *api, const char *peer, const char **why)
{
	uint64_t now = uv_now(api->loop);
	struct op__api_attempts *a = attempts_of(api, peer, 1);

	if (now - api->budget_since >= LOGIN_WINDOW_MS) {
		api->budget_since = now;
		api->budget_n = 0;
	}
	if (a && a->n >= LOGIN_ATTEMPTS) {
		*why = "too many failed logins";
		return (int)((LOGIN_WINDOW_MS - (now - a->since)) / 1000) + 1;
	}
	if (api->budget_n >= LOGIN_BUDGET || !a) {
		*why = "too many logins on this console";
		return (int)((LOGIN_WINDOW_MS - (now - api->budget_since)) / 1000) + 1;
	}
	a->n++;
	api->budget_n++;
	return 0;
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

static struct op__api_session *find_session(op_api *api, op_httpd_req *req)
{
	char token[128];
	uint64_t now = uv_now(api->loop);

	if (!session_cookie(req, token, sizeof(token)) || strlen(token) != 64)
		return NULL;
	for (int i = 0; i < OP__API_SESSIONS; i++) {
		struct op__api_session *s = &api->sessions[i];

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
	struct op__api_session *s = &api->sessions[0];
	unsigned char raw[32];

	for (int i = 0; i < OP__API_SESSIONS; i++) {
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

/* No WWW-Authenticate challenge: a browser that answered one would send
 * the password with every request, forms posted by other sites included.
 * Scripts send Basic unasked. */
static void unauthorized(op_httpd_req *req)
{
	op__api_reply_error(req, 401, NULL, "log in");
}

int op__api_same_origin(op_httpd_req *req)
{
	const op_request *r = op_httpd_request(req);
	const char *custom = op_request_header(r, "X-Outpost-Request"), *origin, *host;
	char want[320];

	/* A custom header: a page of another site cannot send one without
	 * the console allowing it (CORS), which it never does. The Unix socket
	 * is no browser's. */
	if (op_httpd_is_local(req) || (custom && *custom))
		return 1;
	origin = op_request_header(r, "Origin");
	host = op_request_header(r, "Host");
	if (origin && host) {
		snprintf(want, sizeof(want), "%s://%s", op_httpd_is_tls(req) ? "https" : "http",
			 host);
		if (strcasecmp(origin, want) == 0)
			return 1;
	}
	op__api_reply_error(req, 403, NULL,
			    "cross-site request refused: a request that changes something needs "
			    "the header X-Outpost-Request: 1 (the console's page and outpostctl "
			    "send it), or an Origin equal to the console's address");
	return 0;
}

void op__api_end_sessions(op_api *api)
{
	memset(api->sessions, 0, sizeof(api->sessions));
	api->good = 0;
}

/* --- password checks -------------------------------------------------------------- */

/* A password check on the thread pool: a login's, or a request's that
 * carries the password (HTTP Basic) and goes on to next. */
struct op__api_verify_job {
	struct op__api_job base;
	op__api_endpoint next;              /* after a check that is not a login */
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
		op__api_audit(job, "login", "failed: wrong password");
	else if (j->login)
		op__api_audit(job, "login", "ok");
}

static void verify_done(struct op__api_job *job);
static void next_verify(op_api *api);

static void start_verify(op_api *api, struct op__api_verify_job *j)
{
	api->verifying = 1;
	api->counters.password_checks++;
	/* (refused: answered 500 and freed) the next in line does not wait
	 * for another attempt to arrive */
	if (op__api_job_start(&j->base, verify_work, verify_done) < 0)
		next_verify(api);
}

static void next_verify(op_api *api)
{
	struct op__api_verify_job *j = api->verify_head;

	api->verifying = 0;
	/* A check whose client has gone is not made: it counted already. */
	while (j && op_httpd_gone(j->base.req)) {
		api->verify_head = j->waiting;
		api->verify_waiting--;
		op_httpd_reply(j->base.req, 503, OP__API_JSON, NULL, "{}", 2); /* frees it */
		op__api_job_free(&j->base);
		j = api->verify_head;
	}
	if (!j) {
		api->verify_tail = NULL;
		return;
	}
	if (api->closing)
		return;
	api->verify_head = j->waiting;
	api->verify_waiting--;
	if (!api->verify_head)
		api->verify_tail = NULL;
	start_verify(api, j);
}

static void verify_done(struct op__api_job *job)
{
	struct op__api_verify_job *j = (struct op__api_verify_job *)job;
	op_api *api = job->api;
	op_httpd_req *req = job->req;
	struct op__api_attempts *a = attempts_of(api, job->from, 0);
	char token[65];

	next_verify(api);
	free(job->body);
	job->body = NULL;
	if (!j->ok) {
		op_warn("console.login", "result=failed peer=%s attempts=%d", job->from,
			a ? a->n : 0);
		job->req = NULL;
		if (j->login)
			op__api_reply_error(req, 401, NULL, "wrong password");
		else
			unauthorized(req);
		return;
	}
	if (a && a->n > 0)
		a->n--; /* the right password is no guess */
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
		op__api_reply_json(req, 200, o, cookie);
		return;
	}
	j->next(api, req, "admin");
}

/* Checks a password on the thread pool; on success a login gets a
 * session, another request goes on to next. */
static void check_password(op_api *api, op_httpd_req *req, const char *password,
			   op__api_endpoint next, int login)
{
	struct op__api_verify_job *j;
	struct op__api_attempts *a = attempts_of(api, op_httpd_peer(req), 0);
	const char *why = "";
	unsigned char mac[32];
	char retry[32];
	int wait;

	/* A locked client is refused even its right password. */
	if (!a || a->n < LOGIN_ATTEMPTS) {
		if (!login && api->good) {
			mac_of(api, password, mac);
			if (sodium_memcmp(mac, api->good_mac, sizeof(mac)) == 0) {
				next(api, req, "admin");
				return;
			}
		}
		if (api->verifying && api->verify_waiting >= VERIFY_QUEUE) {
			api->counters.busy++;
			op__api_reply_error(req, 503, "Retry-After: 1\r\n",
					    "too many password checks waiting; try again");
			return;
		}
	}
	if ((wait = count_attempt(api, op_httpd_peer(req), &why)) > 0) {
		api->counters.busy++;
		snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", wait);
		op__api_reply_error(req, 429, retry, "%s; try again in %d s", why, wait);
		return;
	}
	if (strlen(password) > PASSWORD_MAX) {
		op__api_reply_error(req, 401, NULL, "wrong password");
		return;
	}
	if (!(j = op__api_job_new(api, req, "admin", sizeof(*j))))
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
		api->verify_waiting++;
		return;
	}
	start_verify(api, j);
}

void op__api_cancel_checks(op_api *api)
{
	while (api->verify_head) {
		struct op__api_verify_job *j = api->verify_head;

		api->verify_head = j->waiting;
		api->verify_waiting--;
		op_httpd_reply(j->base.req, 503, OP__API_JSON, NULL, "{\"error\": \"stopping\"}",
			       21);
		op__api_job_free(&j->base);
	}
}

/* --- authentication --------------------------------------------------------------- */

void op__api_authenticate(op_api *api, op_httpd_req *req, op__api_endpoint next)
{
	const char *auth;
	unsigned char raw[768];
	size_t n;

	if (op_httpd_is_local(req)) {
		next(api, req, "local");
		return;
	}
	if (!*api->cfg.console.password_hash) {
		op__api_reply_error(
			req, 403, NULL,
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

/* --- endpoints: login, logout ----------------------------------------------------- */

void op__api_login(op_api *api, op_httpd_req *req)
{
	cJSON *o, *pw;

	if (!*api->cfg.console.password_hash) {
		op__api_reply_error(
			req, 403, NULL,
			"no console password is set: run outpostctl passwd on the appliance");
		return;
	}
	o = op__api_parse_body(req);
	pw = cJSON_GetObjectItemCaseSensitive(o, "password");
	if (!cJSON_IsString(pw)) {
		cJSON_Delete(o);
		op__api_reply_error(req, 400, NULL, "expected {\"password\": \"...\"}");
		return;
	}
	check_password(api, req, pw->valuestring, NULL, 1);
	cJSON_Delete(o);
}

void op__api_logout(op_api *api, op_httpd_req *req, const char *who)
{
	struct op__api_session *s = find_session(api, req);
	cJSON *o = cJSON_CreateObject();

	if (s)
		s->token[0] = '\0';
	cJSON_AddBoolToObject(o, "ok", 1);
	op__api_audit_and_reply(api, req, who, "logout", "",
				o); /* the cookie is cleared by the browser session's end */
}
