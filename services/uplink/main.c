/*
 * outpost-uplink: the upload engine (uplink.h) and the operator's console
 * that steers it (console/api.h), in one process on one libuv loop. This
 * file is where the two meet: it owns the loop, the spool they share, the
 * signals and the configuration file, and gives the console the engine's
 * control interface (control.h).
 *
 *   outpost-uplink [--config FILE] [--check-config] [--pin CERT.pem]
 *
 * Exit status: 0 after a clean stop, 1 when it cannot run (spool, TLS
 * files), 2 for a bad command line or configuration file.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/spool.h"
#include "console/api.h"
#include "uplink/control.h"
#include "uplink/encode.h"
#include "uplink/fair.h"
#include "uplink/tls.h"
#include "uplink/uplink.h"

/* How often the destinations' shares of the bucket are recomputed. */
#define FAIR_MS 250

struct host {
	uv_loop_t loop;
	op_config cfg;
	const char *config_path; /* NULL: the embedded defaults */
	op_spool *spool;
	op_shaper shaper; /* [shaping]: one bucket for every destination */
	/* One engine per destination: [cloud] first, then each
	 * [destination NAME] in the file's order. */
	op_uplink *up[OP_DEST_MAX + 1];
	int n_up;
	/* Shares of the bucket between destinations (fair.h), recomputed on
	 * a timer from what each sent. */
	uv_timer_t fair_timer;
	int fair_open;
	uint64_t fair_bytes[OP_DEST_MAX + 1];
	/* What each sent, smoothed over about a second: a gap between two
	 * requests is not a destination wanting less. */
	uint64_t fair_used[OP_DEST_MAX + 1];
	uint64_t fair_at;    /* uv_now of the last computation */
	op_encoder *encoder; /* NULL: no destination wants copies */
	op_api *api;
	uv_signal_t sig[3];
	int signals; /* open */
};

/* SIGHUP and the console's reload: the file again, applied to both. */
static int reload(void *ctx, char *err, size_t errlen)
{
	struct host *h = ctx;
	op_config cfg;
	int rc;

	if (!h->config_path) {
		snprintf(err, errlen, "started without --config: nothing to reload");
		op_warn("config.reload", "reason=\"%s\"", err);
		return -ENOENT;
	}
	if (op_config_load(&cfg, h->config_path, err, errlen) < 0) {
		op_error("config.reload", "result=refused error=\"%s\"", err);
		return -EINVAL;
	}
	/* The spool stays where it was opened. */
	if (strcmp(cfg.spool.dir, h->cfg.spool.dir) != 0)
		op_warn("config.reload", "reason=\"[spool] dir takes effect at the next start\"");
	snprintf(cfg.spool.dir, sizeof(cfg.spool.dir), "%s", h->cfg.spool.dir);
	op_log_set_level(cfg.log_level);
	op_api_configure(h->api, &cfg);
	op_spool_set_limits(h->spool,
			    &(op_spool_limits){ cfg.spool.max_bytes, cfg.spool.min_free_bytes,
						cfg.spool.keep_sent_bytes,
						cfg.spool.keep_sent_days });
	rc = 0;
	for (int i = 0; i < h->n_up; i++) {
		int r = op_uplink_reload(h->up[i], &cfg, err, errlen);

		rc = rc < 0 ? rc : r;
	}
	if (cfg.n_destinations != h->cfg.n_destinations)
		op_warn("config.reload",
			"reason=\"destinations added or removed take effect at the next start\"");
	h->cfg = cfg;
	if (rc < 0) {
		op_error("config.reload", "result=partial reason=\"%s\"", err);
		return rc;
	}
	op_info("config.reload", "result=ok path=%s", h->config_path);
	return 0;
}

static void close_signals(struct host *h)
{
	if (!h->signals)
		return;
	for (int i = 0; i < 3; i++)
		uv_close((uv_handle_t *)&h->sig[i], NULL);
	h->signals = 0;
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct host *h = sig->data;
	char err[640];

	if (signum == SIGHUP) {
		reload(h, err, sizeof(err));
		return;
	}
	op_info("uplink.stopping", "signal=%d", signum);
	op_notify_stopping();
	close_signals(h);
	if (h->fair_open)
		uv_close((uv_handle_t *)&h->fair_timer, NULL);
	h->fair_open = 0;
	for (int i = 0; i < h->n_up; i++)
		op_uplink_stop(h->up[i]);
	/* The encodings in progress end first (their batches are dropped). */
	op_encoder_stop(h->encoder);
	op_api_close(h->api); /* its work in flight finishes, answering nobody */
	h->api = NULL;
}

static void on_fair(uv_timer_t *t)
{
	struct host *h = t->data;
	op_fair_dest d[OP_DEST_MAX + 1];
	uint64_t now = uv_now(&h->loop), ms = now - h->fair_at;

	if (ms == 0)
		return;
	for (int i = 0; i < h->n_up; i++) {
		uint64_t bytes = op_uplink_bytes(h->up[i]);

		d[i].active = op_uplink_busy(h->up[i]);
		d[i].share = op_uplink_share(h->up[i], &d[i].cap);
		uint64_t used = (bytes - h->fair_bytes[i]) * 8 * 1000 / ms;

		/* Up at once, down slowly. */
		h->fair_used[i] = (h->fair_used[i] * 3 + used) / 4;
		if (h->fair_used[i] < used)
			h->fair_used[i] = used;
		d[i].used = h->fair_used[i];
		h->fair_bytes[i] = bytes;
	}
	h->fair_at = now;
	op_fair_share(h->shaper.rate, d, h->n_up);
	for (int i = 0; i < h->n_up; i++)
		op_uplink_set_share(h->up[i], d[i].share);
}

/* The encoder, when a destination wants copies (encode.h); and what the
 * spool holds of objects no longer there goes. */
static int open_encoder(struct host *h)
{
	unsigned swept = 0;
	int want = 0, rc;

	for (int i = 0; i < h->n_up; i++)
		want |= op_uplink_wants_encoder(h->up[i]);
	rc = op_spool_encoding_sweep(h->spool, &swept);
	if (rc < 0 || !want)
		return rc;
	rc = op_encoder_open(&h->loop, h->spool, h->cfg.uplink.encode_threads, &h->encoder);
	for (int i = 0; rc == 0 && i < h->n_up; i++)
		op_uplink_set_encoder(h->up[i], h->encoder);
	return rc;
}

static int start(struct host *h)
{
	static const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	op_spool_limits limits = { h->cfg.spool.max_bytes, h->cfg.spool.min_free_bytes,
				   h->cfg.spool.keep_sent_bytes, h->cfg.spool.keep_sent_days };
	op_api_host api_host = { .spool = NULL, .reload = reload, .ctx = h };
	int rc;

	unsigned requeued = 0;

	rc = op_spool_open(h->cfg.spool.dir, &limits, &h->spool);
	if (rc == 0)
		rc = op_spool_requeue_sending(h->spool, &requeued);
	if (rc == 0 && requeued)
		op_info("uplink.recover",
			"requeued=%u reason=\"'sending' when the uplink stopped\"", requeued);
	op_shaper_init(&h->shaper, op_clock_mono_ns());
	if (rc == 0)
		rc = op_uplink_open(&h->loop, &h->cfg, h->spool, OP_SPOOL_DEFAULT_DESTINATION,
				    &h->shaper, &h->up[h->n_up++]);
	for (int i = 0; rc == 0 && i < h->cfg.n_destinations; i++)
		rc = op_uplink_open(&h->loop, &h->cfg, h->spool, h->cfg.destinations[i].name,
				    &h->shaper, &h->up[h->n_up++]);
	if (rc == 0) {
		const char *known[OP_DEST_MAX + 1];
		unsigned orphans = 0;

		for (int i = 0; i < h->n_up; i++)
			known[i] = op_uplink_name(h->up[i]);
		rc = op_spool_orphan_deliveries(h->spool, known, (unsigned)h->n_up,
						op_clock_wall_ms(), &orphans);
	}
	if (rc == 0)
		rc = open_encoder(h);
	if (rc < 0)
		return rc;
	api_host.uplink = h->up[0];
	api_host.uplinks = h->up;
	api_host.n_uplinks = h->n_up;
	api_host.spool = h->spool;
	api_host.config_path = h->config_path;
	for (int i = 0; i < 3; i++) {
		uv_signal_init(&h->loop, &h->sig[i]);
		h->sig[i].data = h;
		uv_signal_start(&h->sig[i], on_signal, signums[i]);
	}
	h->signals = 1;
	/* The console first: a client that saw "ready" finds it there. */
	rc = op_api_open(&h->loop, &h->cfg, &api_host, &h->api);
	for (int i = 0; rc == 0 && i < h->n_up; i++)
		rc = op_uplink_start(h->up[i]);
	if (rc == 0 && h->n_up > 1) {
		uv_timer_init(&h->loop, &h->fair_timer);
		h->fair_timer.data = h;
		h->fair_open = 1;
		h->fair_at = uv_now(&h->loop);
		uv_timer_start(&h->fair_timer, on_fair, FAIR_MS, FAIR_MS);
	}
	if (rc == 0) {
		op_info("uplink.ready", "spool=%s destinations=%d uid=%u gid=%u", h->cfg.spool.dir,
			h->n_up, (unsigned)geteuid(), (unsigned)getegid());
		op_notify_ready("uploading");
	}
	return rc;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: outpost-uplink [--config FILE] [--check-config] [--pin CERT.pem]\n"
		     "\n"
		     "  --config FILE    read FILE (INI); without it, the embedded defaults\n"
		     "  --check-config   validate the configuration, print it, exit\n"
		     "  --pin CERT.pem   print the pin_sha256 of a certificate's public key\n"
		     "  --version        print the version\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'k' },
		{ "pin", required_argument, NULL, 'p' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct host h; /* large (the configuration): not on the stack */
	char pin[64];
	int check = 0, opt, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': h.config_path = optarg; break;
		case 'k': check = 1; break;
		case 'p':
			if (op_tls_pin_of_file(optarg, pin, sizeof(pin)) < 0) {
				fprintf(stderr, "%s: not a PEM certificate\n", optarg);
				return 2;
			}
			printf("%s\n", pin);
			return 0;
		case 'V': printf("outpost-uplink %s\n", OP_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	rc = op_config_from_command_line(&h.cfg, h.config_path, check);
	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN); /* a peer closing mid-write is an error, not a death */
	op_info("uplink.start", "version=%s config=%s spool=%s", OP_VERSION,
		h.config_path ? h.config_path : "(embedded defaults)", h.cfg.spool.dir);
	uv_loop_init(&h.loop);
	rc = start(&h);
	if (rc == 0)
		uv_run(&h.loop, UV_RUN_DEFAULT);
	/* A start that failed half-way leaves handles to close. */
	close_signals(&h);
	op_api_close(h.api);
	op_encoder_stop(h.encoder);
	uv_run(&h.loop, UV_RUN_DEFAULT);
	for (int i = 0; i < h.n_up; i++)
		op_uplink_close(h.up[i]);
	op_encoder_free(h.encoder);
	op_spool_close(h.spool);
	uv_loop_close(&h.loop);
	op_info("uplink.stop", "result=%s", rc == 0 ? "ok" : "failed");
	return rc == 0 ? 0 : 1;
}
