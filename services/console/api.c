/*
 * api: the console's API on its HTTP server (see api.h): open, configure
 * and close; each request routed to its endpoint through authentication;
 * the web console's own files. The endpoints are in the api_*.c files
 * (internal.h says which does what).
 */
#include "console/api.h"

#include <errno.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "console/internal.h"

#define STATIC_MAX (1 << 20)

/* --- the console's files ------------------------------------------------------------------ */

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
		op__api_job_error(job, 404, "not found");
		return;
	}
	job->body = malloc((size_t)st.st_size + 1);
	job->len = job->body ? fread(job->body, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	if (!job->body || job->len != (size_t)st.st_size) {
		free(job->body);
		job->body = NULL;
		op__api_job_error(job, 500, "cannot read the file");
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
		op__api_reply_error(req, 404, NULL, "not found");
		return;
	}
	if (!(j = op__api_job_new(api, req, NULL, sizeof(*j))))
		return;
	snprintf(j->path, sizeof(j->path), "%s%s", api->cfg.console.web_root, path);
	op__api_job_start_bounded(&j->base, static_work, NULL);
}

/* --- routing ------------------------------------------------------------------------------------ */

static const struct route {
	const char *method, *path;
	op__api_endpoint fn;
	int local_only;
} routes[] = {
	{ "GET", "/api/status", op__api_status, 0 },
	{ "GET", "/metrics", op__api_metrics, 0 },
	{ "GET", "/api/queue", op__api_queue, 0 },
	{ "POST", "/api/retry", op__api_retry, 0 },
	{ "POST", "/api/discard", op__api_discard, 0 },
	{ "POST", "/api/pause", op__api_pause, 0 },
	{ "POST", "/api/resume", op__api_resume, 0 },
	{ "PUT", "/api/shaping", op__api_shaping, 0 },
	{ "POST", "/api/test-link", op__api_test_link, 0 },
	{ "GET", "/api/audit", op__api_audit_list, 0 },
	{ "POST", "/api/logout", op__api_logout, 0 },
	{ "POST", "/api/reload", op__api_reload, 1 },
	{ "PUT", "/api/site", op__api_site_upload, 0 },
	{ "PUT", "/api/firmware", op__api_firmware_upload, 0 },
};

static void handle(void *ctx, op_httpd_req *req)
{
	op_api *api = ctx;
	const char *method = op_request_method(op_httpd_request(req)),
		   *path = op_request_path(op_httpd_request(req));
	int path_known = 0;

	/* HEAD is answered as GET without the body (op_httpd_reply() leaves
	 * it out), wherever GET is. */
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	/* Only a bundle's body is streamed (op_httpd_receive()). */
	if (op_httpd_streamed(req) &&
	    (strcmp(method, "PUT") != 0 || strcmp(path, "/api/firmware") != 0)) {
		op__api_reply_error(req, 413, NULL, "request body too large (at most 64 KiB)");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		if (strcmp(method, "GET") != 0) {
			op__api_reply_error(req, 405, "Allow: GET, HEAD\r\n", "use GET");
			return;
		}
		op__api_healthz(api, req);
		return;
	}
	/* Before anything else, the login included: a form another site's
	 * page posts must not even count as a login attempt. */
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && !op__api_same_origin(req))
		return;
	if (strcmp(path, "/api/login") == 0) {
		if (strcmp(method, "POST") != 0)
			op__api_reply_error(req, 405, "Allow: POST\r\n", "use POST");
		else if (op_httpd_is_local(req))
			op__api_reply_error(req, 400, NULL, "the local socket needs no login");
		else
			op__api_login(api, req);
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *r = &routes[i];

		if (strcmp(r->path, path) != 0 || (r->local_only && !op_httpd_is_local(req)))
			continue;
		path_known = 1;
		if (strcmp(r->method, method) == 0) {
			op__api_authenticate(api, req, r->fn);
			return;
		}
	}
	if (path_known)
		op__api_reply_error(req, 405, NULL, "method not allowed");
	else if (strncmp(path, "/api/", 5) == 0)
		op__api_reply_error(req, 404, NULL, "no such endpoint");
	else if (strcmp(method, "GET") != 0)
		op__api_reply_error(req, 405, "Allow: GET, HEAD\r\n", "use GET");
	else
		static_file(api, req);
}

/* The SHA-256 of the certificate in path (its first, in DER), "AB:CD:...";
 * "" when it cannot be read (then the TCP listener is off anyway). */
static void fingerprint_of(const char *path, char *out, size_t size)
{
	mbedtls_x509_crt crt;
	unsigned char sum[32];

	*out = '\0';
	mbedtls_x509_crt_init(&crt);
	if (*path && mbedtls_x509_crt_parse_file(&crt, path) == 0 &&
	    mbedtls_sha256_ret(crt.raw.p, crt.raw.len, sum, 0) == 0 && size >= 3 * sizeof(sum))
		for (size_t i = 0; i < sizeof(sum); i++)
			snprintf(out + 3 * i, size - 3 * i, "%02X%s", sum[i],
				 i + 1 < sizeof(sum) ? ":" : "");
	mbedtls_x509_crt_free(&crt);
}

/* --- open, configure, close -------------------------------------------------------------- */

void op__api_free(op_api *api)
{
	sodium_memzero(api->good_key, sizeof(api->good_key));
	free(api->health_body);
	free(api);
}

void op__api_beside_config(op_api *api, const char *name, char *out, size_t size)
{
	const char *config = api->host.config_path, *slash;

	if (!config)
		*out = '\0';
	else if (!(slash = strrchr(config, '/')))
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "%.*s/%s", (int)(slash - config), config, name);
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
	for (int i = 0; i < host->n_uplinks && i <= OP_DEST_MAX; i++)
		api->ups[api->n_ups++] = host->uplinks[i];
	if (api->n_ups == 0 && host->uplink)
		api->ups[api->n_ups++] = host->uplink;
	api->cfg = *cfg;
	crypto_generichash_keygen(api->good_key);
	if (*cfg->console.listen)
		fingerprint_of(cfg->console.tls_cert, api->fingerprint, sizeof(api->fingerprint));
	rc = op_httpd_open(loop, &api->cfg.console, handle, api, &api->httpd, err, sizeof(err));
	if (rc < 0) {
		op__api_free(api);
		return rc;
	}
	/* A bundle's upload that a crash or a power cut stopped: its client
	 * got no answer and nobody finishes it, and it may be large. */
	op__api_beside_config(api, OP__API_UPLOAD_DIR "/" OP__API_FIRMWARE_PART, part,
			      sizeof(part));
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
		op__api_end_sessions(api);
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
	op__api_cancel_checks(api);
	op__api_cancel_healthz(api);
	op__api_cancel_test_link(api);
	op_httpd_close(api->httpd);
	api->httpd = NULL;
	api->closing = 1;
	if (api->jobs == 0)
		op__api_free(api);
}

op_uplink *op__api_uplink_named(op_api *api, const char *name)
{
	for (int i = 0; name && *name && i < api->n_ups; i++)
		if (strcmp(op_uplink_name(api->ups[i]), name) == 0)
			return api->ups[i];
	return NULL;
}

int op__api_destination_arg(op_api *api, op_httpd_req *req, const cJSON *o, char *out, size_t size)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "destination");
	char msg[128];

	*out = '\0';
	if (!d || cJSON_IsNull(d))
		return 0;
	if (!cJSON_IsString(d) || strlen(d->valuestring) >= size) {
		op__api_reply_error(req, 400, NULL, "\"destination\" is a destination's name");
		return -1;
	}
	if (!op__api_uplink_named(api, d->valuestring)) {
		snprintf(msg, sizeof(msg), "no destination %.40s (see the status' destinations)",
			 d->valuestring);
		op__api_reply_error(req, 404, NULL, msg);
		return -1;
	}
	snprintf(out, size, "%s", d->valuestring);
	return 0;
}
