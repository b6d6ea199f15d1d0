/*
 * uplink: outpost-uplink's upload engine. Takes batches of one study from
 * the spool, sends each as one STOW-RS request on one of [cloud]
 * connections keep-alive HTTPS connections, and records each instance's
 * outcome in the spool: sent, retried later (exponential back-off with
 * jitter), or quarantined with the cloud's reason.
 *
 * The link is up, down (probed with back-off by one connection, never
 * hammered) or paused (credentials refused: an alarm, no retries burnt).
 * Sent objects beyond keep_sent_bytes are evicted.
 *
 * One libuv loop; spool work (sqlite, fsync) and file reads run on libuv's
 * thread pool. The process that hosts the engine (main.c) owns the loop,
 * the spool and the signals; what an operator may ask of a running
 * engine is control.h.
 *
 * Loop thread only.
 */
#ifndef OP_UPLINK_H
#define OP_UPLINK_H

#include <uv.h>

#include "common/config.h"
#include "common/spool.h"
#include "uplink/shaper.h"

typedef struct op_uplink op_uplink;

/* The engine of destination dest ("cloud" or a [destination NAME] of
 * cfg): takes the spool and the [shaping] bucket that every destination
 * shares (both still the caller's, closed after op_uplink_close()), and
 * loads TLS and credentials. What a crash left 'sending' is the caller's
 * to requeue first (op_spool_requeue_sending). Returns 0, -ENOENT when
 * cfg has no such destination, or a negative errno after logging why. */
int op_uplink_open(uv_loop_t *loop, const op_config *cfg, op_spool *spool, const char *dest,
		   op_shaper *shaper, op_uplink **out);

/* Starts sending; returns at once (the loop runs it). The cloud's engine
 * feeds systemd's watchdog; the host says when it is ready. */
int op_uplink_start(op_uplink *up);

/* Does this destination want copies (transfer_syntax)? Then the host
 * opens the encoder (encode.h) and gives it to every engine before
 * starting them. */
int op_uplink_wants_encoder(const op_uplink *up);
struct op_encoder;
void op_uplink_set_encoder(op_uplink *up, struct op_encoder *enc);

/* Stops: requests in flight are abandoned (their instances are queued
 * again at the next start) and the engine's handles close, so that the
 * loop can end. */
void op_uplink_stop(op_uplink *up);

/* Accepts NULL. The loop must have ended. */
void op_uplink_close(op_uplink *up);

#endif
