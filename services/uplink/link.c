/*
 * link: what the engine knows of the cloud's link - up, down (probed by
 * one connection at a time after an exponential back-off with jitter),
 * paused (the cloud refused the credentials or the request itself),
 * starting or unprovisioned - and what it needs to reach the cloud: the
 * TLS configuration and the Authorization header, the token file re-read
 * when it changes.
 */
#include <errno.h>
#include <inttypes.h>
#include <mbedtls/base64.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/clock.h"
#include "common/log.h"
#include "uplink/internal.h"

#define FIRST_BACKOFF_MS 1000

const char *const op__uplink_link_names[] = { "up", "down", "paused", "unprovisioned", "starting" };

int64_t op__uplink_backoff_ms(int n, int cap_s)
{
	int64_t cap = (int64_t)cap_s * 1000, d = FIRST_BACKOFF_MS;

	for (int i = 1; i < n && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1));
}

void op__uplink_set_link(op_uplink *up, enum link_state state, const char *reason)
{
	if (up->link == state && strcmp(up->link_reason, reason) == 0)
		return;
	if (state == LINK_DOWN || state == LINK_PAUSED)
		op__uplink_note_error(up, "uplink.link", reason, NULL, NULL);
	if (up->link != state)
		up->link_since = op_clock_wall_ms();
	snprintf(up->link_reason, sizeof(up->link_reason), "%s", reason);
	up->link = state;
	if (state == LINK_UP)
		op_info("uplink.link", "state=up dest=%s", up->name);
	else if (state == LINK_PAUSED)
		op_error("uplink.alarm",
			 "state=paused dest=%s reason=\"%s\" action=\"check the destination's "
			 "credentials; sending resumes when they change\"",
			 up->name, reason);
	else
		op_log(up->link_failures ? OP_LOG_WARN : OP_LOG_INFO, "uplink.link",
		       "state=%s reason=\"%s\" dest=%s", op__uplink_link_names[state], reason,
		       up->name);
}

void op__uplink_link_failed(op_uplink *up, const char *reason)
{
	int64_t delay;

	up->link_failures++;
	delay = op__uplink_backoff_ms(up->link_failures, up->cc.retry_max_delay);
	up->next_probe_at = op_clock_wall_ms() + delay;
	op__uplink_set_link(up, LINK_DOWN, reason);
	op_info("uplink.backoff", "failures=%d next_probe_ms=%" PRId64 " dest=%s",
		up->link_failures, delay, up->name);
}

void op__uplink_link_ok(op_uplink *up)
{
	up->link_failures = 0;
	op__uplink_set_link(up, LINK_UP, "");
}

/* --- credentials ----------------------------------------------------------------- */

static int read_secret(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
		out[--n] = '\0';
	return 0;
}

int op__uplink_load_auth(op_uplink *up, int force)
{
	const op_cloud_config *c = &up->cc;
	char secret[512], plain[800], old[sizeof(up->auth)];
	unsigned char b64[1100];
	size_t len = 0;
	struct stat sb;
	int rc;

	snprintf(old, sizeof(old), "%s", up->auth);
	if (c->auth == OP_AUTH_NONE) {
		up->auth[0] = '\0';
	} else if (c->auth == OP_AUTH_BEARER) {
		if (stat(c->token_file, &sb) < 0) {
			op_error("uplink.auth", "token_file=%s error=\"%s\"", c->token_file,
				 strerror(errno));
			return 0;
		}
		if (!force && sb.st_mtim.tv_sec == up->token_mtime.tv_sec &&
		    sb.st_mtim.tv_nsec == up->token_mtime.tv_nsec && sb.st_size == up->token_size)
			return 0;
		up->token_mtime = sb.st_mtim;
		up->token_size = sb.st_size;
		if ((rc = read_secret(c->token_file, secret, sizeof(secret))) < 0) {
			op_error("uplink.auth", "token_file=%s error=\"%s\"", c->token_file,
				 strerror(-rc));
			return 0;
		}
		snprintf(up->auth, sizeof(up->auth), "Authorization: Bearer %s\r\n", secret);
	} else {
		if ((rc = read_secret(c->password_file, secret, sizeof(secret))) < 0) {
			op_error("uplink.auth", "password_file=%s error=\"%s\"", c->password_file,
				 strerror(-rc));
			return 0;
		}
		snprintf(plain, sizeof(plain), "%s:%s", c->username, secret);
		mbedtls_base64_encode(b64, sizeof(b64), &len, (const unsigned char *)plain,
				      strlen(plain));
		snprintf(up->auth, sizeof(up->auth), "Authorization: Basic %.*s\r\n", (int)len,
			 b64);
		sodium_memzero(plain, sizeof(plain));
	}
	sodium_memzero(secret, sizeof(secret));
	return strcmp(old, up->auth) != 0;
}

int op__uplink_apply_cloud(op_uplink *up, const char *why)
{
	char err[512];
	op_tls *tls = NULL;

	if (!up->cc.enabled) {
		op__uplink_set_link(up, LINK_UNPROVISIONED,
				    "disabled in the configuration (enabled = no)");
		return 0;
	}
	if (up->type == OP_DEST_DICOM) {
		op_info("uplink.destination",
			"dest=%s type=dicom peer=%s:%u called_ae=%s reason=%s", up->name,
			up->dicom.host, up->dicom.port, up->dicom.called_ae, why);
		if (up->link == LINK_UNPROVISIONED || up->link == LINK_PAUSED) {
			up->next_probe_at = 0;
			op__uplink_set_link(up, LINK_STARTING, "not yet connected");
		}
		return 0;
	}
	if (!*up->cc.url) {
		op__uplink_set_link(up, LINK_UNPROVISIONED, "no [cloud] url configured");
		return 0;
	}
	if (op_tls_open(&up->cc, &tls, err, sizeof(err)) < 0) {
		op_error("uplink.tls", "error=\"%s\"", err);
		return -EINVAL;
	}
	op_tls_close(up->tls);
	up->tls = tls;
	op__uplink_load_auth(up, 1);
	op_info("uplink.cloud", "url=%s dest=%s connections=%d auth=%s reason=%s", up->cc.url,
		up->name, up->cc.connections,
		up->cc.auth == OP_AUTH_NONE    ? "none"
		: up->cc.auth == OP_AUTH_BASIC ? "basic"
					       : "bearer",
		why);
	if (up->link == LINK_UNPROVISIONED || up->link == LINK_PAUSED) {
		up->next_probe_at = 0;
		op__uplink_set_link(up, LINK_STARTING, "not yet connected");
	}
	return 0;
}

const op_cloud_config *op__uplink_section(const op_config *cfg, const char *name)
{
	if (strcmp(name, OP_SPOOL_DEFAULT_DESTINATION) == 0)
		return &cfg->cloud;
	for (int i = 0; i < cfg->n_destinations; i++)
		if (strcmp(cfg->destinations[i].name, name) == 0)
			return &cfg->destinations[i].cloud;
	return NULL;
}

void op__uplink_apply_own_rate(op_uplink *up)
{
	if (up->own.rate != up->cc.rate)
		op_shaper_set(&up->own, up->cc.rate, 0, op_clock_mono_ns());
}
