/*
 * uplink: batches from the spool to the cloud by STOW-RS (see uplink.h).
 *
 * Each connection is a slot going round: claim a batch (thread pool) ->
 * send it (the body read from the spool files chunk by chunk, each file's
 * hash checked as it streams, so a damaged file is never completed on the
 * wire) -> settle every instance (thread pool) -> claim again.
 *
 * Outcomes, per instance:
 *   in ReferencedSOPSequence                      sent
 *   FailureReason A7xx, 0110, 0213; HTTP 5xx;
 *     a request cut, reset or timed out           retry later (attempt counted)
 *   any other FailureReason; HTTP 409             quarantined, with the reason
 *   the connection or TLS failed before sending;
 *     HTTP 401/403; HTTP 413                      back to the queue, no attempt
 * 401/403 pause the uplink (an alarm) until the credentials change or
 * retry_max_delay passes; 413 halves the request size from then on (one
 * instance too large on its own is quarantined); connection, TLS and 5xx
 * failures take the link down: until a probe succeeds, only one
 * connection tries, with exponential back-off and jitter.
 *
 * This file is the slots' round and the engine's life cycle. The body is
 * streamed by body.c, the link's state and credentials are link.c's, what
 * the operator sees and sets (shaping among it) is control.c's; they share
 * internal.h.
 */
#include "uplink/uplink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/spool.h"
#include "uplink/control.h"
#include "uplink/https.h"
#include "uplink/internal.h"
#include "uplink/shaper.h"
#include "uplink/stow.h"
#include "uplink/tls.h"

#define TICK_MS 250
/* Answers accepted (2xx) that never confirmed an instance before it is
 * quarantined as refused by the cloud. */
#define UNCONFIRMED_LIMIT 5

/* --- settling ------------------------------------------------------------------- */

static void settle_done(uv_work_t *w, int status)
{
	struct slot *s = w->data;

	(void)status;
	if (s->work_rc < 0)
		op_error("uplink.settle",
			 "slot=%d error=\"%s\" reason=\"the rows stay 'sending' "
			 "and are queued again at the next start\"",
			 s->index, strerror(-s->work_rc));
	s->state = SLOT_IDLE;
	/* This slot, and any other idle one: the answer may have brought the
	 * link up, and the others would otherwise wait for the next tick. */
	op__uplink_claim(s);
	for (int i = 0; i < s->up->n_slots; i++)
		op__uplink_claim(&s->up->slots[i]);
}

static void settle_work(uv_work_t *w)
{
	struct slot *s = w->data;
	op_uplink *up = s->up;
	unsigned evicted = 0;

	s->work_rc = op_spool_settle(up->spool, up->name, s->settle, s->n, op_clock_wall_ms());
	s->evicted_bytes = 0;
	if (s->work_rc == 0)
		op_spool_evict_sent(up->spool, s->keep_sent, &evicted, &s->evicted_bytes);
}

/* Records every instance's verdict (s->results) and logs the batch. */
void op__uplink_settle(struct slot *s, int http_status)
{
	op_uplink *up = s->up;
	unsigned counts[4] = { 0 };
	uint64_t bytes = 0, wire = 0, took;
	int64_t now = op_clock_wall_ms();
	char sop[OP_LOG_QUOTED(OP_UID_MAX)], study[OP_LOG_QUOTED(OP_UID_MAX)];
	char why[OP_LOG_QUOTED(sizeof(s->results[0].reason))];

	for (unsigned i = 0; i < s->n; i++) {
		op_spool_settlement *t = &s->settle[i];
		op_stow_result *r = &s->results[i];

		t->id = s->items[i].id;
		t->hash = s->items[i].hash;
		t->next_attempt_at = 0;
		if (r->unconfirmed && s->items[i].attempts + 1 >= UNCONFIRMED_LIMIT) {
			r->verdict = OP_VERDICT_QUARANTINE;
			snprintf(r->reason, sizeof(r->reason),
				 "the cloud accepted the request %d times but never confirmed "
				 "storing the instance",
				 UNCONFIRMED_LIMIT);
		}
		t->verdict = r->verdict;
		t->error = r->reason[0] ? r->reason : NULL;
		if (r->verdict == OP_VERDICT_RETRY)
			t->next_attempt_at = now + op__uplink_backoff_ms(s->items[i].attempts + 1,
									 up->cc.retry_max_delay);
		else if (r->verdict == OP_VERDICT_REQUEUE && up->link == LINK_DOWN)
			t->next_attempt_at = up->next_probe_at;
		counts[r->verdict]++;
		if (r->verdict == OP_VERDICT_SENT) {
			bytes += s->items[i].size;
			wire += s->items[i].file_size;
		}
		if (r->verdict == OP_VERDICT_SENT && s->items[i].encoded) {
			up->comp.sent_copies++;
			up->comp.bytes_before += s->items[i].size;
			up->comp.bytes_after += s->items[i].file_size;
		}
		/* UIDs came from a modality, reasons from the cloud. */
		op_log_quote(sop, sizeof(sop), s->items[i].sop_instance_uid);
		op_log_quote(why, sizeof(why), r->reason);
		if (r->verdict == OP_VERDICT_QUARANTINE) {
			op_error("uplink.quarantine", "sop=%s study=%s reason=%s dest=%s", sop,
				 op_log_quote(study, sizeof(study), s->items[i].study_uid), why,
				 up->name);
			op__uplink_note_error(up, "uplink.quarantine", r->reason,
					      s->items[i].study_uid, s->items[i].sop_instance_uid);
		} else if (r->verdict == OP_VERDICT_RETRY)
			op_warn("uplink.retry", "sop=%s attempts=%d reason=%s dest=%s", sop,
				s->items[i].attempts + 1, why, up->name);
	}
	/* What a request moves per second: for transfer_syntax = auto. */
	took = uv_now(up->loop) - s->sent_at;
	if (wire >= 65536 && took > 0) {
		uint64_t rate = wire * 1000 / took;

		up->request_rate = up->request_rate ? (up->request_rate * 3 + rate) / 4 : rate;
		op__uplink_check_compression(up);
	}
	op_info("uplink.batch",
		"slot=%d study=%s instances=%u http=%d sent=%u retry=%u quarantined=%u requeued=%u "
		"bytes=%" PRIu64 " dest=%s",
		s->index, s->n ? s->items[0].study_uid : "", s->n, http_status,
		counts[OP_VERDICT_SENT], counts[OP_VERDICT_RETRY], counts[OP_VERDICT_QUARANTINE],
		counts[OP_VERDICT_REQUEUE], bytes, up->name);
	if (counts[OP_VERDICT_SENT])
		up->last_upload_at = now;
	if (s->urgent_sending) {
		s->urgent_sending = 0;
		up->shaper->urgent_active--;
	}
	s->state = SLOT_SETTLING;
	s->work.data = s;
	s->keep_sent = up->cfg.spool.keep_sent_bytes;
	if (uv_queue_work(up->loop, &s->work, settle_work, settle_done) < 0) {
		s->work_rc = -EIO;
		settle_done(&s->work, 0);
	}
}

void op__uplink_settle_all(struct slot *s, enum op_spool_verdict v, const char *reason,
			   int http_status)
{
	for (unsigned i = 0; i < s->n; i++) {
		s->results[i].verdict = v;
		snprintf(s->results[i].reason, sizeof(s->results[i].reason), "%.*s",
			 (int)sizeof(s->results[i].reason) - 1, reason);
	}
	op__uplink_settle(s, http_status);
}

/* --- responses ------------------------------------------------------------------ */

static uint64_t batch_bytes(const struct slot *s)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < s->n; i++)
		total += s->items[i].file_size;
	return total;
}

static void on_response(void *ctx, op_https *c, const op_http_response *r)
{
	struct slot *s = ctx;
	op_uplink *up = s->up;
	const char *uids[1000];
	const char *body;
	size_t len;
	int status = op_http_response_status(r);
	enum op_stow_action action;

	(void)c;
	s->request_over = 1;
	if (!s->fs_busy) /* else the read in flight closes it when done */
		op__uplink_close_file(s);
	for (unsigned i = 0; i < s->n; i++)
		uids[i] = s->items[i].sop_instance_uid;
	body = op_http_response_body(r, &len);
	action = op_stow_interpret(status, op_http_response_content_type(r), body, len, uids, s->n,
				   s->results);
	if (op__uplink_syntax_refused(s) && action == OP_STOW_PAUSE && status == 415)
		action = OP_STOW_OK; /* the originals go next, nothing to pause for */
	switch (action) {
	case OP_STOW_OK: op__uplink_link_ok(up); break;
	case OP_STOW_LINK_DOWN:
		snprintf(s->small, sizeof(s->small), "the cloud answered HTTP %d", status);
		op__uplink_link_failed(up, s->small);
		break;
	case OP_STOW_PAUSE:
		snprintf(s->small, sizeof(s->small),
			 status == 401 || status == 403
				 ? "the cloud refused the credentials (HTTP %d)"
				 : "the cloud refused the request itself (HTTP %d): check [cloud] "
				   "url and "
				   "client_cert",
			 status);
		up->next_probe_at = op_clock_wall_ms() + (int64_t)up->cc.retry_max_delay * 1000;
		op__uplink_set_link(up, LINK_PAUSED, s->small);
		break;
	case OP_STOW_SPLIT:
		if (s->n == 1) {
			s->results[0].verdict = OP_VERDICT_QUARANTINE;
			snprintf(s->results[0].reason, sizeof(s->results[0].reason),
				 "HTTP 413: the instance alone is too large for the cloud");
		}
		up->batch_bytes = batch_bytes(s) / 2;
		op_warn("uplink.split", "batch_max_bytes=%" PRIu64 " reason=\"HTTP 413\"",
			up->batch_bytes);
		break;
	}
	op__uplink_settle(s, status);
}

static void on_failure(void *ctx, op_https *c, enum op_https_stage stage, const char *why)
{
	struct slot *s = ctx;
	op_uplink *up = s->up;
	char reason[320];

	(void)c;
	s->request_over = 1;
	if (!s->fs_busy) /* else the read in flight closes it when done */
		op__uplink_close_file(s);
	op_https_close(s->conn);
	s->conn = NULL;
	switch (stage) {
	case OP_HTTPS_STALE:
		if (!s->stale_retried) {
			/* The server closed the idle connection as we reused it:
			 * nothing was done; send again on a new one, once the
			 * file operation in flight (if any) has finished. */
			s->stale_retried = 1;
			if (s->fs_busy)
				s->resend_after_fs = 1;
			else
				op__uplink_send_batch(s);
			return;
		}
		/* fall through */
	case OP_HTTPS_SEND:
	case OP_HTTPS_RECEIVE:
	case OP_HTTPS_TIMEOUT:
		snprintf(reason, sizeof(reason), "request failed (%s): %s",
			 stage == OP_HTTPS_TIMEOUT ? "timeout" : "connection", why);
		op__uplink_link_failed(up, reason);
		op__uplink_settle_all(s, OP_VERDICT_RETRY, reason, 0);
		return;
	case OP_HTTPS_CONNECT:
	case OP_HTTPS_TLS:
		snprintf(reason, sizeof(reason), "%s: %s",
			 stage == OP_HTTPS_TLS ? "TLS" : "cannot connect", why);
		op__uplink_link_failed(up, reason);
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, reason, 0);
		return;
	case OP_HTTPS_BODY:
		/* damaged_file() has set every verdict. */
		op__uplink_settle(s, 0);
		return;
	}
}

/* --- sending -------------------------------------------------------------------- */

void op__uplink_send_batch(struct slot *s)
{
	op_uplink *up = s->up;
	const op_cloud_config *c = &up->cc;
	op_https_handler h = { s, op__uplink_next_chunk, on_response, on_failure };
	uint64_t sizes[1000], length;
	char head[2048], host[300];
	int n, rc;

	s->sent_at = uv_now(up->loop);
	if (up->type == OP_DEST_DICOM) {
		op__uplink_send_dicom(s);
		return;
	}
	if (c->auth == OP_AUTH_BEARER)
		op__uplink_load_auth(up, 0); /* a token changed on disk is used at once */
	for (unsigned i = 0; i < s->n; i++)
		sizes[i] = s->items[i].file_size;
	op_stow_boundary(s->boundary);
	length = op_stow_body_length(s->boundary, sizes, s->n);
	if (c->port == 443)
		snprintf(host, sizeof(host), "%s", c->host);
	else
		snprintf(host, sizeof(host), "%s:%u", c->host, c->port);
	/* No "Expect: 100-continue": Orthanc never answers it. */
	n = snprintf(head, sizeof(head),
		     "POST %s/studies HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "User-Agent: outpost-uplink/" OP_VERSION "\r\n"
		     "Accept: application/dicom+json\r\n"
		     "Content-Type: multipart/related; type=\"application/dicom\"; boundary=%s\r\n"
		     "Content-Length: %" PRIu64 "\r\n"
		     "%s"
		     "Connection: keep-alive\r\n\r\n",
		     c->path, host, s->boundary, length, up->auth);
	s->phase = BODY_HEAD;
	s->part = 0;
	s->request_over = 0;
	s->state = SLOT_SENDING;
	if (s->conn && !op_https_reusable(s->conn)) {
		op_https_close(s->conn);
		s->conn = NULL;
	}
	if (!s->conn) {
		op_https_options opt = { c->host,    c->port,  c->timeout,
					 up->shaper, &up->own, up->scavenger };

		rc = op_https_open(up->loop, up->tls, &opt, &s->conn);
		if (rc < 0) {
			op__uplink_settle_all(s, OP_VERDICT_REQUEUE, "cannot open a connection", 0);
			return;
		}
	}
	op_https_set_urgent(s->conn, s->items[0].priority >= OP_PRIORITY_HIGH);
	if (s->items[0].priority >= OP_PRIORITY_HIGH && !s->urgent_sending) {
		s->urgent_sending = 1;
		up->shaper->urgent_active++;
	}
	rc = op_https_request(s->conn, head, (size_t)n, &h);
	if (rc < 0) {
		op_https_close(s->conn);
		s->conn = NULL;
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, "cannot start the request", 0);
	}
}

/* --- claiming ------------------------------------------------------------------- */

static void claim_work(uv_work_t *w)
{
	struct slot *s = w->data;

	s->work_rc = op_spool_claim(s->up->spool, s->up->name, op_clock_wall_ms(), s->claim_items,
				    s->claim_bytes, s->urgent_lane ? 2 : 0, s->items, &s->n);
}

/* The encoder has prepared the slot's batch (loop thread). */
static void encoded(op_encode_batch *b)
{
	struct slot *s = b->ctx;
	op_uplink *up = s->up;

	up->comp.encoded += b->encoded;
	up->comp.encode_ms += b->encode_ms;
	up->encoded_in_bytes += b->in_bytes;
	up->comp.mismatches += b->mismatches;
	if (up->stopping) {
		s->state = SLOT_IDLE; /* back they go at the next start */
		return;
	}
	op__uplink_send_batch(s);
}

/* transfer_syntax = auto: until the encoder has measured itself, it is
 * taken to code this many bytes a second per thread (a noisy 512x512 CT
 * slice codes at about 13 MB/s here, a smooth one at 30: docs). */
#define AUTO_ENCODER_GUESS (10ULL << 20)

static void set_mode(op_uplink *up, const char *mode, const char *why)
{
	op_uplink_compression *c = &up->comp;
	int changed = !c->mode || strcmp(c->mode, mode) != 0;

	c->mode = mode;
	snprintf(c->why, sizeof(c->why), "%s", why);
	if (changed)
		op_info("uplink.compression", "mode=%s reason=\"%s\" dest=%s", mode, why, up->name);
}

/*
 * auto: a copy is worth it while the encoder codes faster than the link
 * moves bytes - then the link sets the pace and carries a half or a third
 * of them; otherwise the encoder would. The link's pace is what one
 * request moved per second times the connections, or the shaping rate in
 * force when that is lower; the encoder's, what it coded per CPU second
 * times its threads, a quarter of that while the receiver is storing (the
 * encoder rests then). A tenth either way before changing its mind.
 */
static void auto_decide(op_uplink *up)
{
	uint64_t link = UINT64_MAX, enc, limit = up->shaper->rate;
	int threads = op_encoder_threads(up->encoder);
	int jpls = up->comp.mode && strcmp(up->comp.mode, "jpeg-ls") == 0;
	int measured = up->comp.encode_ms && up->encoded_in_bytes >= (4ULL << 20), resting;
	char why[192];

	if (up->own.rate < limit)
		limit = up->own.rate;
	if (limit != OP_RATE_UNLIMITED && limit > 0)
		link = limit / 8;
	if (up->request_rate && up->request_rate * (uint64_t)up->cc.connections < link)
		link = up->request_rate * (uint64_t)up->cc.connections;
	enc = measured ? up->encoded_in_bytes * 1000 / up->comp.encode_ms : AUTO_ENCODER_GUESS;
	enc *= (uint64_t)threads;
	resting = op_encoder_resting(up->encoder);
	if (resting)
		enc /= 1 + OP_ENCODE_REST_TIMES;
	if (link == UINT64_MAX) {
		set_mode(up, "original", "auto: the link's pace is not known yet");
		return;
	}
	snprintf(why, sizeof(why),
		 "auto: the link moves %.1f MB/s, the encoder codes %.1f MB/s%s%s",
		 (double)link / 1e6, (double)enc / 1e6, measured ? "" : " (not measured yet)",
		 resting ? " (a quarter of its pace while the receiver stores)" : "");
	if (!jpls && enc > link + link / 10)
		set_mode(up, "jpeg-ls", why);
	else if (jpls && enc < link - link / 10)
		set_mode(up, "original", why);
	else
		snprintf(up->comp.why, sizeof(up->comp.why), "%s", why);
}

void op__uplink_apply_compression(op_uplink *up, const char *why)
{
	op_uplink_compression *c = &up->comp;
	char text[160];

	up->syntax_refused = 0;
	c->setting = op_config_tsyntax_name(up->cc.transfer_syntax);
	c->mode = NULL;
	snprintf(text, sizeof(text), "transfer_syntax = %s (%s)", c->setting, why);
	if (up->cc.transfer_syntax == OP_TS_ORIGINAL)
		set_mode(up, "original", text);
	else if (!up->encoder)
		set_mode(up, "original", "the encoder starts with the uplink: restart it");
	else if (up->cc.transfer_syntax == OP_TS_JPEGLS)
		set_mode(up, "jpeg-ls", text);
	else
		auto_decide(up);
}

void op__uplink_check_compression(op_uplink *up)
{
	if (up->cc.transfer_syntax == OP_TS_AUTO && up->encoder && !up->syntax_refused)
		auto_decide(up);
}

int op__uplink_syntax_refused(struct slot *s)
{
	op_uplink *up = s->up;
	int any = 0;

	for (unsigned i = 0; i < s->n; i++) {
		op_stow_result *r = &s->results[i];

		if (!r->syntax_refused || !s->items[i].encoded)
			continue;
		r->verdict = OP_VERDICT_REQUEUE;
		snprintf(r->reason, sizeof(r->reason), "%s",
			 "the destination refused JPEG-LS: the original goes instead");
		up->comp.refused++;
		any = 1;
	}
	if (any && !up->syntax_refused) {
		up->syntax_refused = 1;
		up->comp.mode = "original";
		snprintf(up->comp.why, sizeof(up->comp.why),
			 "the destination refused JPEG-LS (until the configuration is read again)");
		op_warn("uplink.compression", "mode=original reason=\"%s\" dest=%s", up->comp.why,
			up->name);
	}
	return any;
}

static void claim_done(uv_work_t *w, int status)
{
	struct slot *s = w->data;

	(void)status;
	if (s->work_rc < 0 || s->n == 0 || s->up->stopping) {
		if (s->work_rc < 0)
			op_error("uplink.claim", "slot=%d error=\"%s\"", s->index,
				 strerror(-s->work_rc));
		if (s->n > 0) /* stopping: back they go at the next start */
			s->n = 0;
		s->state = SLOT_IDLE;
		return;
	}
	s->stale_retried = 0;
	for (unsigned i = 0; i < s->n; i++)
		memset(&s->results[i], 0, sizeof(s->results[i]));
	if (strcmp(s->up->comp.mode, "jpeg-ls") == 0) {
		s->eb = (op_encode_batch){
			.items = s->items, .n = s->n, .dest = s->up->name, .done = encoded, .ctx = s
		};
		op_encoder_submit(s->up->encoder, &s->eb);
		return;
	}
	op__uplink_send_batch(s);
}

void op__uplink_claim(struct slot *s)
{
	op_uplink *up = s->up;
	int64_t now = op_clock_wall_ms();

	/* A file read of the last request still in flight holds s->fs. A rate
	 * of 0 (the schedule's pause) sends nothing. */
	if (s->state != SLOT_IDLE || s->fs_busy || up->stopping || up->link == LINK_UNPROVISIONED ||
	    up->shaper->rate == 0 || up->operator_paused)
		return;
	if (up->link == LINK_PAUSED || up->link == LINK_DOWN) {
		/* One probe at a time, when its back-off has passed. */
		if (now < up->next_probe_at)
			return;
		for (int i = 0; i < up->n_slots; i++)
			if (&up->slots[i] != s && up->slots[i].state != SLOT_IDLE)
				return;
	}
	s->state = SLOT_CLAIMING;
	s->work.data = s;
	s->claim_items = s->cap;
	s->claim_bytes = up->cc.batch_max_bytes;
	if (up->batch_bytes && up->batch_bytes < s->claim_bytes)
		s->claim_bytes = up->batch_bytes; /* the first instance still goes, alone */
	if (uv_queue_work(up->loop, &s->work, claim_work, claim_done) < 0)
		s->state = SLOT_IDLE;
}

static void on_tick(uv_timer_t *t)
{
	op_uplink *up = t->data;

	/* A token rewritten on disk may end a pause at once. */
	if (up->link == LINK_PAUSED && up->cc.auth == OP_AUTH_BEARER &&
	    op__uplink_load_auth(up, 0)) {
		op_info("uplink.auth", "result=reloaded reason=\"token_file changed\"");
		up->next_probe_at = 0;
	}
	op__uplink_apply_rate(up, "schedule");
	op__uplink_count_throughput(up);
	op__uplink_check_compression(up);
	/* The loop came round: systemd's watchdog is fed from here. */
	if (up->watchdog_ms && uv_now(up->loop) - up->watchdog_at >= (uint64_t)up->watchdog_ms) {
		up->watchdog_at = uv_now(up->loop);
		op_notify_watchdog();
	}
	for (int i = 0; i < up->n_slots; i++)
		op__uplink_claim(&up->slots[i]);
}

/* --- life cycle ----------------------------------------------------------------- */

static int make_slots(op_uplink *up)
{
	unsigned cap = (unsigned)up->cc.batch_max_instances;

	/* One more connection than [cloud] connections, kept for urgent
	 * studies: one arriving behind a long backlog starts at once instead
	 * of after the requests in flight. */
	up->n_slots = up->cc.connections + 1;
	for (int i = 0; i < up->n_slots; i++) {
		struct slot *s = &up->slots[i];

		memset(s, 0, sizeof(*s));
		s->up = up;
		s->index = i;
		s->urgent_lane = i == up->n_slots - 1;
		s->fd = -1;
		s->cap = cap;
		s->items = calloc(cap, sizeof(*s->items));
		s->settle = calloc(cap, sizeof(*s->settle));
		s->results = calloc(cap, sizeof(*s->results));
		s->chunk = malloc(CHUNK);
		pthread_mutex_init(&s->pace_mu, NULL);
		pthread_cond_init(&s->pace_cv, NULL);
		if (!s->items || !s->settle || !s->results || !s->chunk)
			return -ENOMEM;
		if (up->type != OP_DEST_DICOM)
			continue;
		s->paths = calloc(cap, sizeof(*s->paths));
		s->ditems = calloc(cap, sizeof(*s->ditems));
		s->dres = calloc(cap, sizeof(*s->dres));
		s->dmap = calloc(cap, sizeof(*s->dmap));
		if (!s->paths || !s->ditems || !s->dres || !s->dmap)
			return -ENOMEM;
	}
	return 0;
}

static void free_slots(op_uplink *up)
{
	for (int i = 0; i < up->n_slots; i++) {
		struct slot *s = &up->slots[i];

		op_https_close(s->conn);
		op__uplink_close_file(s);
		free(s->items);
		free(s->settle);
		free(s->results);
		free(s->chunk);
		free(s->paths);
		free(s->ditems);
		free(s->dres);
		free(s->dmap);
		pthread_mutex_destroy(&s->pace_mu);
		pthread_cond_destroy(&s->pace_cv);
	}
	up->n_slots = 0;
}

void op_uplink_stop(op_uplink *up)
{
	if (up->stopping)
		return;
	up->stopping = 1;
	uv_timer_stop(&up->tick);
	/* Requests in flight are abandoned: their rows stay 'sending' and are
	 * queued again at the next start. A file read still in flight finds
	 * its request over. */
	for (int i = 0; i < up->n_slots; i++) {
		up->slots[i].request_over = 1;
		op_https_close(up->slots[i].conn);
		up->slots[i].conn = NULL;
		op__uplink_dicom_stop(&up->slots[i]);
	}
	uv_close((uv_handle_t *)&up->tick, NULL);
	if (up->pace_open)
		uv_close((uv_handle_t *)&up->pace_async, NULL);
	up->pace_open = 0;
}

int op_uplink_open(uv_loop_t *loop, const op_config *cfg, op_spool *spool, const char *dest,
		   op_shaper *shaper, op_uplink **out)
{
	op_uplink *up = calloc(1, sizeof(*up));
	const op_cloud_config *cc = op__uplink_section(cfg, dest);
	int rc = 0;

	*out = NULL;
	if (!up)
		return -ENOMEM;
	if (!cc) {
		free(up);
		return -ENOENT;
	}
	up->loop = loop;
	up->cfg = *cfg;
	up->cc = *cc;
	snprintf(up->name, sizeof(up->name), "%s", dest);
	for (int i = 0; i < cfg->n_destinations; i++) {
		if (strcmp(cfg->destinations[i].name, dest) == 0) {
			up->type = cfg->destinations[i].type;
			up->dicom = cfg->destinations[i].dicom;
		}
	}
	up->spool = spool;
	up->shaper = shaper;
	/* The cloud's engine, which the host always opens, sets the shared
	 * bucket's rate (control.c). */
	up->drives_shaper = strcmp(dest, OP_SPOOL_DEFAULT_DESTINATION) == 0;
	up->seen_rate = shaper->rate;
	up->seen_burst = shaper->burst;
	up->link = LINK_UNPROVISIONED;
	op_shaper_init(&up->own, op_clock_mono_ns());
	op__uplink_apply_own_rate(up);
	if (rc == 0)
		rc = make_slots(up);
	up->started_at = op_clock_wall_ms();
	if (rc == 0)
		op__uplink_load_settings(up);
	up->throughput_minute = up->started_at / 60000;
	op__uplink_test_clock(up);
	if (cfg->shaping.scavenger) {
		up->scavenger = op__uplink_scavenger_available();
		if (up->scavenger)
			op_info("uplink.scavenger", "result=on");
		else
			op_error("uplink.scavenger",
				 "result=unavailable reason=\"this kernel offers no TCP-LP "
				 "(tcp_lp module): uploads use the default congestion control\"");
	}
	if (rc == 0)
		rc = op__uplink_apply_cloud(up, "start");
	if (rc < 0) {
		op_uplink_close(up);
		return rc;
	}
	*out = up;
	return 0;
}

void op_uplink_set_encoder(op_uplink *up, op_encoder *enc)
{
	up->encoder = enc;
}

int op_uplink_wants_encoder(const op_uplink *up)
{
	return up->cc.transfer_syntax != OP_TS_ORIGINAL;
}

int op_uplink_start(op_uplink *up)
{
	op__uplink_apply_compression(up, "start");
	uv_timer_init(up->loop, &up->tick);
	up->tick.data = up;
	uv_async_init(up->loop, &up->pace_async, op__uplink_pace_answer);
	up->pace_async.data = up;
	up->pace_open = 1;
	uv_timer_start(&up->tick, on_tick, 0, TICK_MS);
	op__uplink_apply_rate(up, "start");
	/* One engine feeds systemd's watchdog: the cloud's, which every host
	 * runs (the others share its loop). */
	if (up->drives_shaper) {
		up->watchdog_ms = op_notify_watchdog_ms();
		if (up->watchdog_ms > TICK_MS)
			up->watchdog_ms -= TICK_MS; /* the tick's own granularity */
		if (up->watchdog_ms)
			op_notify_watchdog();
		up->watchdog_at = uv_now(up->loop);
	}
	return 0;
}

void op_uplink_close(op_uplink *up)
{
	if (!up)
		return;
	free_slots(up);
	op_tls_close(up->tls);
	free(up);
}
