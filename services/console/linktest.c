/*
 * linktest: the cloud, step by step (see linktest.h).
 */
#include "console/linktest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/https.h"

enum step { STEP_RESOLVE, STEP_TLS, STEP_AUTH, STEP_QIDO, STEPS };
static const char *const step_names[STEPS] = { "resolve", "tls", "auth", "qido" };

struct op_linktest {
	uv_loop_t *loop;
	op_tls *tls;
	op_cloud_config cloud;
	char auth[1024];
	int timeout_s;
	op_linktest_cb cb;
	void *ctx;

	uv_getaddrinfo_t resolver;
	int resolving;
	int cancelled;
	op_https *conn;
	uint64_t step_start;
	cJSON *steps;
	int failed;
};

static void add_step(op_linktest *t, enum step s, int ok, const char *detail)
{
	cJSON *o = cJSON_CreateObject();
	uint64_t now = uv_now(t->loop);

	cJSON_AddStringToObject(o, "step", step_names[s]);
	cJSON_AddBoolToObject(o, "ok", ok);
	cJSON_AddNumberToObject(o, "ms", (double)(now - t->step_start));
	cJSON_AddStringToObject(o, "detail", detail);
	cJSON_AddItemToArray(t->steps, o);
	t->step_start = now;
	if (!ok)
		t->failed = 1;
}

/* Reports (the steps not reached are skipped) and frees. */
static void linktest_free(op_linktest *t)
{
	op_tls_close(t->tls);
	free(t);
}

static void finish(op_linktest *t, enum step next)
{
	cJSON *report = cJSON_CreateObject();

	for (int s = next; s < STEPS; s++) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "step", step_names[s]);
		cJSON_AddBoolToObject(o, "ok", 0);
		cJSON_AddNumberToObject(o, "ms", 0);
		cJSON_AddStringToObject(o, "detail", "skipped");
		cJSON_AddItemToArray(t->steps, o);
	}
	cJSON_AddBoolToObject(report, "ok", !t->failed && next == STEPS);
	cJSON_AddStringToObject(report, "url", t->cloud.url);
	cJSON_AddItemToObject(report, "steps", t->steps);
	t->steps = NULL;
	op_https_close(t->conn);
	t->conn = NULL;
	t->cb(t->ctx, report);
	linktest_free(t);
}

static void no_body(void *ctx, op_https *c)
{
	(void)ctx;
	op_https_body_write(c, NULL, 0);
}

static void on_response(void *ctx, op_https *c, const op_http_response *r)
{
	op_linktest *t = ctx;
	int status = op_http_response_status(r);
	char detail[300];
	size_t len;
	const char *body = op_http_response_body(r, &len);

	(void)c;
	add_step(t, STEP_TLS, 1, "TLS handshake and certificate verified");
	t->step_start = uv_now(t->loop);
	if (status == 401 || status == 403) {
		snprintf(detail, sizeof(detail),
			 "HTTP %d: the cloud refused the credentials ([cloud] auth)", status);
		add_step(t, STEP_AUTH, 0, detail);
		finish(t, STEP_QIDO);
		return;
	}
	add_step(t, STEP_AUTH, 1,
		 *t->auth ? "credentials accepted"
			  : "no credentials configured ([cloud] auth = none)");
	if (status / 100 == 2) {
		snprintf(detail, sizeof(detail), "HTTP %d, %zu bytes%s", status, len,
			 status == 204 || (len > 0 && body[0] == '[') ? "" : " (not a JSON array)");
		add_step(t, STEP_QIDO, 1, detail);
	} else {
		snprintf(detail, sizeof(detail), "HTTP %d from GET %.200s/studies?limit=1", status,
			 t->cloud.path);
		add_step(t, STEP_QIDO, 0, detail);
	}
	finish(t, STEPS);
}

static void on_failure(void *ctx, op_https *c, enum op_https_stage stage, const char *why)
{
	op_linktest *t = ctx;
	char detail[400];

	(void)c;
	if (stage == OP_HTTPS_CONNECT || stage == OP_HTTPS_TLS) {
		snprintf(detail, sizeof(detail), "%s: %s",
			 stage == OP_HTTPS_CONNECT ? "cannot connect" : "TLS failed", why);
		add_step(t, STEP_TLS, 0, detail);
		finish(t, STEP_AUTH);
		return;
	}
	add_step(t, STEP_TLS, 1, "TLS handshake and certificate verified");
	snprintf(detail, sizeof(detail), "the request failed: %s", why);
	add_step(t, STEP_AUTH, 0, detail);
	finish(t, STEP_QIDO);
}

static void request(op_linktest *t)
{
	static const op_https_handler h = { NULL, no_body, on_response, on_failure };
	op_https_handler handler = h;
	op_https_options opt = { t->cloud.host, t->cloud.port, t->timeout_s, NULL, NULL, 0 };
	char head[2048];
	int n;

	handler.ctx = t;
	n = snprintf(head, sizeof(head),
		     "GET %s/studies?limit=1 HTTP/1.1\r\nHost: %s\r\n"
		     "Accept: application/dicom+json\r\nUser-Agent: outpost/" OP_VERSION "\r\n"
		     "%sConnection: close\r\n\r\n",
		     t->cloud.path, t->cloud.host, t->auth);
	if (n <= 0 || (size_t)n >= sizeof(head) ||
	    op_https_open(t->loop, t->tls, &opt, &t->conn) < 0 ||
	    op_https_request(t->conn, head, (size_t)n, &handler) < 0) {
		add_step(t, STEP_TLS, 0, "cannot start the request");
		finish(t, STEP_AUTH);
	}
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	op_linktest *t = req->data;
	char addr[INET6_ADDRSTRLEN] = "?", detail[400];

	t->resolving = 0;
	if (t->cancelled) {
		if (res)
			uv_freeaddrinfo(res);
		linktest_free(t);
		return;
	}
	if (status < 0) {
		snprintf(detail, sizeof(detail), "cannot resolve %s: %s", t->cloud.host,
			 uv_strerror(status));
		add_step(t, STEP_RESOLVE, 0, detail);
		finish(t, STEP_TLS);
		return;
	}
	if (res->ai_family == AF_INET)
		uv_ip4_name((struct sockaddr_in *)res->ai_addr, addr, sizeof(addr));
	else if (res->ai_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, addr, sizeof(addr));
	uv_freeaddrinfo(res);
	snprintf(detail, sizeof(detail), "%s is %s", t->cloud.host, addr);
	add_step(t, STEP_RESOLVE, 1, detail);
	request(t);
}

int op_linktest_start(uv_loop_t *loop, op_tls *tls, const op_cloud_config *cloud,
		      const char *auth_header, int timeout_s, op_linktest_cb cb, void *ctx,
		      op_linktest **out)
{
	op_linktest *t = calloc(1, sizeof(*t));
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->steps = cJSON_CreateArray();
	if (!t->steps) {
		free(t);
		return -ENOMEM;
	}
	t->loop = loop;
	t->tls = op_tls_ref(tls);
	t->cloud = *cloud;
	snprintf(t->auth, sizeof(t->auth), "%s", auth_header);
	t->timeout_s = timeout_s;
	t->cb = cb;
	t->ctx = ctx;
	t->step_start = uv_now(loop);
	if (!tls || !*cloud->url) {
		add_step(t, STEP_RESOLVE, 0,
			 "no cloud is configured ([cloud] url is empty): the box is unprovisioned");
		finish(t, STEP_TLS);
		return 0;
	}
	t->resolver.data = t;
	if (uv_getaddrinfo(loop, &t->resolver, on_resolved, cloud->host, NULL, &hints) < 0) {
		add_step(t, STEP_RESOLVE, 0, "cannot start resolving");
		finish(t, STEP_TLS);
		return 0;
	}
	t->resolving = 1;
	*out = t;
	return 0;
}

void op_linktest_cancel(op_linktest *t)
{
	if (!t)
		return;
	if (t->resolving) { /* freed when the resolver answers */
		t->cancelled = 1;
		uv_cancel((uv_req_t *)&t->resolver);
		return;
	}
	op_https_close(t->conn);
	cJSON_Delete(t->steps);
	linktest_free(t);
}
