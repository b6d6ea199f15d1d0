/*
 * internal: what the files of the upload engine share, and no other file
 * may use: the engine (struct op_uplink), the slots its connections go
 * round in (struct slot), and the functions one of its files calls in
 * another, named op__uplink_ (libuv's uv__ tier). What the host and the
 * operator use is uplink.h and control.h.
 *
 * Loop thread only, unless a function says otherwise.
 */
#ifndef OP_UPLINK_INTERNAL_H
#define OP_UPLINK_INTERNAL_H

#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "common/config.h"
#include "common/spool.h"
#include "dicom/send.h"
#include "uplink/control.h"
#include "uplink/encode.h"
#include "uplink/https.h"
#include "uplink/shaper.h"
#include "uplink/stow.h"
#include "uplink/tls.h"
#include "uplink/uplink.h"

#define CHUNK (256 * 1024)
#define MAX_SLOTS 17 /* [cloud] connections (16 at most) and the urgent lane */

/* STARTING: nothing known yet; every connection may try (a failure takes
 * the link down, and from then on one probe at a time). */
enum link_state { LINK_UP, LINK_DOWN, LINK_PAUSED, LINK_UNPROVISIONED, LINK_STARTING };

enum slot_state { SLOT_IDLE, SLOT_CLAIMING, SLOT_SENDING, SLOT_SETTLING };
enum body_phase { BODY_HEAD, BODY_OPEN, BODY_READ, BODY_TAIL, BODY_CLOSE, BODY_END };

struct slot {
	op_uplink *up;
	int index;
	enum slot_state state;
	op_https *conn;

	/* the batch */
	op_spool_item *items;
	op_spool_settlement *settle;
	op_stow_result *results;
	unsigned n, cap;
	int stale_retried;
	int urgent_lane;     /* kept for urgent studies: claims nothing else */
	int urgent_sending;  /* counted in the shaper's urgent_active */
	int resend_after_fs; /* a stale request waits for s->fs to be free */

	/* the body being streamed */
	enum body_phase phase;
	unsigned part;
	uv_fs_t fs;
	int fs_busy;
	uv_file fd;
	uint64_t off;
	crypto_generichash_state hash;
	unsigned char *chunk;
	char boundary[OP_STOW_BOUNDARY_LEN + 1];
	char small[256];
	int request_over; /* answered or failed: the body source stops */

	/* A dicom destination's batch (dimse.c): the files, the sender's
	 * arguments and results, and the worker's ask to the buckets. */
	char (*paths)[OP_DIR_MAX + 128];
	op_dicom_item *ditems;
	op_dicom_result *dres;
	unsigned *dmap;
	int dicom_rc;
	char dicom_err[256];
	pthread_mutex_t pace_mu;
	pthread_cond_t pace_cv;
	uint64_t pace_want, pace_wait;
	int pace_asked, pace_stop;

	/* The batch at the encoder (encode.h), before it is sent. */
	op_encode_batch eb;
	uint64_t sent_at; /* uv_now when its request began */

	/* Work on the thread pool reads only these copies, made on the loop. */
	uv_work_t work;
	int work_rc;
	unsigned claim_items;
	uint64_t claim_bytes, keep_sent;
	uint64_t evicted_bytes;
};

struct op_uplink {
	uv_loop_t *loop;
	op_config cfg;
	/* The destination this engine sends to: "cloud" ([cloud]) or a
	 * [destination NAME]; cc is its section, taken from cfg. */
	char name[OP_DEST_NAME_MAX + 1];
	enum op_dest_type type;
	op_cloud_config cc;
	op_dicom_dest_config dicom; /* type dicom */
	uv_async_t pace_async;      /* a dicom worker asks the buckets (dimse.c) */
	int pace_open;
	op_spool *spool; /* the host's */
	op_tls *tls;
	struct slot slots[MAX_SLOTS];
	int n_slots;
	uv_timer_t tick;
	int stopping;

	enum link_state link;
	int64_t link_since, next_probe_at;
	int link_failures;
	char link_reason[256];

	/* A cloud that answered 413 takes smaller bodies than [cloud]
	 * batch_max_bytes: half the refused size, until SIGHUP or restart. */
	uint64_t batch_bytes;

	char auth[1024]; /* "Authorization: ...\r\n" or "" */
	struct timespec token_mtime;
	off_t token_size;

	op_shaper *shaper;     /* [shaping]: every byte written, every destination (the host's) */
	op_shaper own;         /* this destination's own rate, inside the shared bucket */
	int drives_shaper;     /* sets the shared bucket's rate: the cloud's engine does */
	uint64_t shaped_burst; /* the [shaping] burst it was last set to */
	uint64_t seen_rate, seen_burst; /* the bucket's, when this engine last acted on them */
	time_t clock_offset;            /* the schedule's clock: OUTPOST_TEST_CLOCK, for tests */
	int scavenger;                  /* TCP-LP, when the kernel has it */

	/* Set through the console, kept in the spool's settings: they
	 * override the configuration file until cleared. */
	int operator_paused;
	int64_t paused_since; /* ms since the epoch */
	int rate_overridden;
	uint64_t rate_override;
	char schedule_override[sizeof(((op_shaping_config *)0)->schedule)]; /* "" none */
	op_schedule schedule_override_parsed;

	int64_t started_at;
	int64_t rate_since;     /* the shaper's rate changed then (ms since the epoch) */
	int64_t last_upload_at; /* the cloud confirmed an instance then; 0: not since start */
	/* Bytes written per wall-clock minute, the last OP_THROUGHPUT_MINUTES. */
	uint64_t throughput[OP_THROUGHPUT_MINUTES];
	int64_t throughput_minute; /* minutes since the epoch of the last slot */
	uint64_t throughput_seen;  /* shaper.bytes already counted */
	op_uplink_error errors[OP_UPLINK_ERRORS];
	unsigned n_errors; /* ever recorded; the ring holds the last ones */

	/* transfer_syntax jpeg-ls: the host's encoder; NULL sends every
	 * object as received. A destination that refused the copies' syntax
	 * gets the originals until the configuration is read again. */
	op_encoder *encoder;
	int syntax_refused;
	op_uplink_compression comp; /* since start */
	/* transfer_syntax = auto: what one request moves per second (bytes
	 * on the wire over the request's time, smoothed; 0: not measured
	 * yet), and what the encoder made of how many bytes. */
	uint64_t request_rate;
	uint64_t encoded_in_bytes;

	int watchdog_ms; /* half of systemd's WatchdogSec; 0: none */
	uint64_t watchdog_at;
};

/* --- uplink.c: slots, claim, send, settle --------------------------------------- */

/* Claims a batch if this slot may send now (idle, its last file operation
 * over, the link, the rate and the operator allowing); the batch is sent
 * when the claim returns from the thread pool. */
void op__uplink_claim(struct slot *s);

/* Sends the slot's batch as one request, on its connection or a new one. */
void op__uplink_send_batch(struct slot *s);

/* Gives every instance of the slot's batch the same verdict and reason,
 * and settles the batch (the slot claims again when the spool has it). */
void op__uplink_settle_all(struct slot *s, enum op_spool_verdict v, const char *reason,
			   int http_status);

/* Records every instance's verdict (s->results) and settles the batch. */
void op__uplink_settle(struct slot *s, int http_status);

/* The copies of the batch the destination refused for their transfer
 * syntax (s->results' syntax_refused) go back to the queue, and from now
 * on the originals go instead; 1 if there was any. */
int op__uplink_syntax_refused(struct slot *s);

/* Decides whether copies are sent (transfer_syntax, the encoder, a
 * refusal) and says so in the log; at start and at every reload. */
void op__uplink_apply_compression(op_uplink *up, const char *why);

/* transfer_syntax = auto: decides again, from what was measured (each
 * tick). */
void op__uplink_check_compression(op_uplink *up);

/* --- dimse.c: a batch to a DICOM node by C-STORE ------------------------------- */

/* Sends the slot's batch on the thread pool (one association). */
void op__uplink_send_dicom(struct slot *s);

/* The async handle's callback: answers the workers' asks. */
void op__uplink_pace_answer(uv_async_t *a);

/* Makes the slot's worker stop at its next PDU (pause, stop). */
void op__uplink_dicom_stop(struct slot *s);

/* --- body.c: the batch's body from the spool files ------------------------------ */

/* The body source of the slot's request (op_https_handler's next): part
 * head, file chunks, CRLF, ..., closing delimiter. ctx is the slot. */
void op__uplink_next_chunk(void *ctx, op_https *c);

/* Closes the file being streamed, if any. */
void op__uplink_close_file(struct slot *s);

/* The file that goes on the wire for it: its object, or its copy. */
void op__uplink_item_file(const op_uplink *up, const op_spool_item *it, char *path, size_t size);

/* --- link.c: the link's state, back-off, credentials ---------------------------- */

/* The names of enum link_state, as logged and shown. */
extern const char *const op__uplink_link_names[];

/* The n-th back-off (n >= 1) in ms: min(cap_s seconds, 1 s * 2^(n-1)),
 * scaled by a random factor in [0.5, 1]. */
int64_t op__uplink_backoff_ms(int n, int cap_s);

/* Sets the link's state and reason, logging a change (a pause as an
 * alarm) and keeping down and paused in the errors the operator sees. */
void op__uplink_set_link(op_uplink *up, enum link_state state, const char *reason);

/* The link is down: the next probe waits the next back-off. */
void op__uplink_link_failed(op_uplink *up, const char *reason);

/* The link is up: the back-off starts again from the first. */
void op__uplink_link_ok(op_uplink *up);

/* Builds up->auth; the token file is re-read when it changed, or always
 * with force. Returns 1 when the credentials changed, else 0 (a file that
 * cannot be read is logged and the previous header kept). */
int op__uplink_load_auth(op_uplink *up, int force);

/* Takes [cloud] from up->cfg: its TLS configuration and credentials, and a
 * paused or unprovisioned link starts again; no url makes the link
 * unprovisioned. why is logged. -EINVAL, logged, when the TLS settings
 * cannot be loaded: the previous ones stay. */
int op__uplink_apply_cloud(op_uplink *up, const char *why);

/* The section of destination name in cfg ([cloud] for "cloud"); NULL
 * when cfg has no such destination. */
const op_cloud_config *op__uplink_section(const op_config *cfg, const char *name);

/* Gives the destination's own bucket its rate (cc.rate). */
void op__uplink_apply_own_rate(op_uplink *up);

/* --- control.c: the control interface, shaping, the operator's settings --------- */

/* Gives the shaper the rate that the schedule in force says for now (the
 * operator's rate and schedule before [shaping]'s). A change applies at
 * once on the open connections; a change to 0 ends the requests in flight
 * (their instances back to the queue, no attempt counted). why is logged
 * with the change. */
void op__uplink_apply_rate(op_uplink *up, const char *why);

/* 1 when the kernel offers TCP-LP ([shaping] scavenger), else 0. */
int op__uplink_scavenger_available(void);

/* Starts the schedule's clock at OUTPOST_TEST_CLOCK when it is set. */
void op__uplink_test_clock(op_uplink *up);

/* Takes what the operator set through the console (pause, rate,
 * schedule), kept in the spool's settings. */
void op__uplink_load_settings(op_uplink *up);

/* Keeps an error in the ring the operator sees (the last OP_UPLINK_ERRORS);
 * study and sop name the instance it is about (NULL: the link's). */
void op__uplink_note_error(op_uplink *up, const char *event, const char *message, const char *study,
			   const char *sop);

/* Adds what was written since the last call to the current minute. */
void op__uplink_count_throughput(op_uplink *up);

#endif
