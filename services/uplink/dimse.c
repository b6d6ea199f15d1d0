/*
 * dimse: a batch to a DICOM node ([destination NAME] type = dicom) by
 * C-STORE, through the DCMTK shim's sender (dicom/send.h).
 *
 * The sender blocks, so a batch goes on libuv's thread pool: each spool
 * file's hash is checked there first (a damaged file is quarantined, never
 * sent), then one association carries the batch. Bandwidth is shaped as
 * for STOW-RS: before each PDU the worker asks the loop thread, which
 * alone touches the buckets (shaper.h), and waits for its answer (the
 * slot's pace_* fields, an async handle per engine); a pause or a stop
 * answers "stop", which aborts the association between PDUs. Outcomes:
 *
 *   status 0000, warnings (0001, Bxxx; logged)   sent
 *   A7xx, A9xx, the association broke or timed out  retry later (attempt counted)
 *   Cxxx and other failures, no accepted syntax  quarantined, with the reason
 *   no association (refused, rejected, timeout)  back to the queue, the link down
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "dicom/send.h"
#include "uplink/internal.h"

/* The longest a worker sleeps before asking the buckets again. */
#define PACE_NAP_NS (100 * 1000000ULL)

/* Is the file's content the one the spool indexed? */
static int file_intact(const char *path, const op_spool_item *it)
{
	char hex[OP_HASH_HEX + 1];
	uint64_t size;

	return op_spool_hash_file(path, hex, &size) == 0 && size == it->file_size &&
	       strcmp(hex, it->file_hash) == 0;
}

/* The sender's progress callback, on the worker: may these bytes go? */
static int pace(void *ctx, uint64_t bytes)
{
	struct slot *s = ctx;
	uint64_t wait;
	int stop;

	for (;;) {
		pthread_mutex_lock(&s->pace_mu);
		s->pace_want = bytes;
		s->pace_asked = 1;
		uv_async_send(&s->up->pace_async);
		while (s->pace_asked && !s->pace_stop)
			pthread_cond_wait(&s->pace_cv, &s->pace_mu);
		wait = s->pace_wait;
		stop = s->pace_stop;
		pthread_mutex_unlock(&s->pace_mu);
		if (stop || wait == OP_SHAPER_WAIT_FOREVER)
			return 1;
		if (wait == 0)
			return 0;
		if (wait > PACE_NAP_NS)
			wait = PACE_NAP_NS;
		struct timespec ts = { 0, (long)wait };
		nanosleep(&ts, NULL);
	}
}

void op__uplink_pace_answer(uv_async_t *a)
{
	op_uplink *up = a->data;
	uint64_t now = op_clock_mono_ns();

	for (int i = 0; i < up->n_slots; i++) {
		struct slot *s = &up->slots[i];

		pthread_mutex_lock(&s->pace_mu);
		if (s->pace_asked) {
			s->pace_wait =
				op_shaper_take2(up->shaper, &up->own, s->pace_want,
						s->items[0].priority >= OP_PRIORITY_HIGH, now);
			s->pace_asked = 0;
			pthread_cond_signal(&s->pace_cv);
		}
		pthread_mutex_unlock(&s->pace_mu);
	}
}

void op__uplink_dicom_stop(struct slot *s)
{
	pthread_mutex_lock(&s->pace_mu);
	s->pace_stop = 1;
	pthread_cond_signal(&s->pace_cv);
	pthread_mutex_unlock(&s->pace_mu);
}

static void dicom_work(uv_work_t *w)
{
	struct slot *s = w->data;
	op_uplink *up = s->up;
	const op_dicom_dest_config *d = &up->dicom;
	op_dicom_peer peer = { .port = d->port, .timeout_ms = up->cc.timeout * 1000 };
	op_dicom_item *items = s->ditems;
	op_dicom_result *res = s->dres;
	unsigned *map = s->dmap, n = 0;

	snprintf(peer.host, sizeof(peer.host), "%s", d->host);
	snprintf(peer.called_ae, sizeof(peer.called_ae), "%s", d->called_ae);
	snprintf(peer.calling_ae, sizeof(peer.calling_ae), "%s", d->calling_ae);
	s->dicom_rc = 0;
	s->dicom_err[0] = '\0';
	for (unsigned i = 0; i < s->n; i++) {
		op__uplink_item_file(up, &s->items[i], s->paths[i], sizeof(s->paths[i]));
		if (!file_intact(s->paths[i], &s->items[i])) {
			/* A damaged copy is made again (encode.c checks it). */
			s->results[i].verdict =
				s->items[i].encoded ? OP_VERDICT_REQUEUE : OP_VERDICT_QUARANTINE;
			snprintf(s->results[i].reason, sizeof(s->results[i].reason),
				 "%sspool file damaged: its content does not match its hash",
				 s->items[i].encoded ? "JPEG-LS copy: " : "");
			continue;
		}
		items[n] = (op_dicom_item){ s->paths[i], s->items[i].sop_class_uid,
					    s->items[i].sop_instance_uid, s->items[i].file_syntax,
					    s->items[i].encoded };
		map[n++] = i;
	}
	if (n == 0)
		return;
	s->dicom_rc =
		op_dicom_send(&peer, items, n, res, pace, s, s->dicom_err, sizeof(s->dicom_err));
	for (unsigned k = 0; k < n; k++) {
		op_stow_result *r = &s->results[map[k]];

		r->verdict = res[k].outcome == OP_DICOM_SENT    ? OP_VERDICT_SENT
			     : res[k].outcome == OP_DICOM_RETRY ? OP_VERDICT_RETRY
								: OP_VERDICT_QUARANTINE;
		snprintf(r->reason, sizeof(r->reason), "%s", res[k].reason);
		r->syntax_refused = res[k].syntax_refused;
	}
}

static void dicom_done(uv_work_t *w, int status)
{
	struct slot *s = w->data;
	op_uplink *up = s->up;
	char reason[320], sop[OP_LOG_QUOTED(OP_UID_MAX)], why[OP_LOG_QUOTED(256)];

	(void)status;
	s->request_over = 1;
	if (up->stopping) {
		/* Back they go at the next start ('sending' is requeued). */
		s->state = SLOT_IDLE;
		return;
	}
	if (s->dicom_rc == -ECANCELED) {
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, "paused", 0);
		return;
	}
	if (s->dicom_rc < 0) {
		snprintf(reason, sizeof(reason), "%s", s->dicom_err);
		op__uplink_link_failed(up, reason);
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, reason, 0);
		return;
	}
	op__uplink_link_ok(up);
	op__uplink_syntax_refused(s);
	for (unsigned i = 0; i < s->n; i++)
		if (s->results[i].verdict == OP_VERDICT_SENT && s->results[i].reason[0])
			op_warn("uplink.dicom.warning", "dest=%s sop=%s reason=%s", up->name,
				op_log_quote(sop, sizeof(sop), s->items[i].sop_instance_uid),
				op_log_quote(why, sizeof(why), s->results[i].reason));
	op__uplink_settle(s, 0);
}

void op__uplink_send_dicom(struct slot *s)
{
	op_uplink *up = s->up;

	s->state = SLOT_SENDING;
	s->request_over = 0;
	pthread_mutex_lock(&s->pace_mu);
	s->pace_stop = 0;
	s->pace_asked = 0;
	pthread_mutex_unlock(&s->pace_mu);
	if (s->items[0].priority >= OP_PRIORITY_HIGH && !s->urgent_sending) {
		s->urgent_sending = 1;
		up->shaper->urgent_active++;
	}
	s->work.data = s;
	if (uv_queue_work(up->loop, &s->work, dicom_work, dicom_done) < 0)
		op__uplink_settle_all(s, OP_VERDICT_REQUEUE, "cannot start the request", 0);
}
