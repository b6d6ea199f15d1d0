/*
 * uplink: outpost-uplink's core. Takes batches of one study from the spool,
 * sends each as one STOW-RS request on one of [cloud] connections
 * keep-alive HTTPS connections, and records each instance's outcome in the
 * spool: sent, retried later (exponential back-off with jitter), or
 * quarantined with the cloud's reason.
 *
 * The link is up, down (probed with back-off by one connection, never
 * hammered) or paused (credentials refused: an alarm, no retries burnt).
 * Sent objects beyond keep_sent_bytes are evicted.
 *
 * One libuv loop; spool work (sqlite, fsync) and file reads run on libuv's
 * thread pool.
 */
#ifndef OP_UPLINK_H
#define OP_UPLINK_H

#include <uv.h>

#include "common/config.h"

typedef struct op_uplink op_uplink;

/* Opens the spool (requeueing what a crash left 'sending') and loads TLS
 * and credentials. Returns 0 or a negative errno after logging why. */
int op_uplink_open(uv_loop_t *loop, const op_config *cfg, const char *config_path, op_uplink **out);

/* Starts sending; returns at once (the loop runs it). SIGTERM and SIGINT
 * stop it, SIGHUP reloads config_path. */
int op_uplink_start(op_uplink *up);

/* Accepts NULL. The loop must have ended. */
void op_uplink_close(op_uplink *up);

/* Reloads config_path (SIGHUP does the same). -EINVAL with the reason in
 * err when the file is refused (the running configuration stays). */
int op_uplink_reload(op_uplink *up, char *err, size_t errlen);

/* --- For the console (api.c); loop thread only ----------------------------- */

#define OP_THROUGHPUT_MINUTES 60
#define OP_UPLINK_ERRORS 10

typedef struct op_uplink_error {
	int64_t time; /* ms since the epoch */
	char event[32];
	char message[256];
} op_uplink_error;

/* What the uplink knows of itself, copied (work on the thread pool reads
 * the copy). */
typedef struct op_uplink_view {
	const char *link;   /* up, down, paused, starting, unprovisioned */
	int64_t link_since; /* ms since the epoch */
	char link_reason[256];
	int paused_by_operator;
	int credentials_refused;  /* paused by a 401/403 */
	uint64_t rate;            /* the shaper's now (OP_RATE_UNLIMITED) */
	uint64_t configured_rate; /* [shaping] rate, or the console's */
	char schedule[1024];      /* in force: the console's or [shaping]'s */
	const char *rate_source;  /* "config" or "console" */
	const char *schedule_source;
	int64_t started_at;
	uint64_t throughput[OP_THROUGHPUT_MINUTES]; /* bytes per minute, oldest first */
	op_uplink_error errors[OP_UPLINK_ERRORS];   /* newest first */
	unsigned n_errors;
	char spool_dir[3072];
	uint64_t max_bytes, min_free_bytes;
	char cloud_url[1024];
	uint16_t receiver_port;
	char receiver_ae[17];
} op_uplink_view;

void op_uplink_get_view(op_uplink *up, op_uplink_view *v);

struct op_spool;
struct op_spool *op_uplink_spool(op_uplink *up);
const op_config *op_uplink_config(const op_uplink *up);
/* The --config file, or NULL (the embedded defaults). */
const char *op_uplink_config_path(const op_uplink *up);

/* A test of the link passed: a link still "starting" (nothing exchanged
 * yet) is up. */
void op_uplink_link_verified(op_uplink *up);

/* Pauses (requests in flight end, their instances go back to the queue
 * with no attempt counted) or resumes uploading. Not persisted here. */
void op_uplink_set_paused(op_uplink *up, int paused);

/* The console's rate and schedule (NULL: the configuration file's),
 * applied at once on the open connections. Validated by the caller. */
void op_uplink_set_shaping(op_uplink *up, const uint64_t *rate, const char *schedule);

/* The cloud's TLS configuration and the Authorization header line
 * ("" when none), for a test of the link. NULL when unprovisioned. */
struct op_tls *op_uplink_tls(op_uplink *up);
const char *op_uplink_auth_header(const op_uplink *up);

#endif
