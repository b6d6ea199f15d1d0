/*
 * control: what an operator may see of, and ask of, a running upload
 * engine - its state, pausing, the shaping rate, a new configuration, and
 * the cloud settings a test of the link needs. The console (services/
 * console/) is one such operator; the engine knows nothing of it, nor of
 * HTTP.
 *
 * Loop thread only.
 */
#ifndef OP_UPLINK_CONTROL_H
#define OP_UPLINK_CONTROL_H

#include <stdint.h>

#include "common/config.h"
#include "uplink/uplink.h"

#define OP_THROUGHPUT_MINUTES 60
#define OP_UPLINK_ERRORS 10

typedef struct op_uplink_error {
	int64_t time; /* ms since the epoch */
	char event[32];
	char message[256];
	char study_uid[65]; /* what the error is about; "" when the link's */
	char sop_uid[65];
} op_uplink_error;

/* What the engine knows of itself, copied (work on the thread pool reads
 * the copy). */
/* Compression for this destination (transfer_syntax), since start. */
typedef struct op_uplink_compression {
	const char *setting;   /* "original" or "jpeg-ls", as configured */
	const char *mode;      /* in force: "original" or "jpeg-ls" */
	char why[192];         /* why that mode is in force */
	uint64_t bytes_before; /* of the instances sent as copies, as received */
	uint64_t bytes_after;  /* the same copies' bytes */
	uint64_t sent_copies;  /* instances sent as copies */
	uint64_t encoded;      /* copies made for this destination */
	uint64_t encode_ms;    /* CPU time making and proving them */
	uint64_t mismatches;   /* proofs that failed: sent as received */
	uint64_t refused;      /* copies the destination refused: sent as received */
} op_uplink_compression;

typedef struct op_uplink_view {
	char name[OP_DEST_NAME_MAX + 1]; /* the destination */
	const char *type;                /* "stow-rs" or "dicom" */
	int enabled;
	char peer[300];   /* where it sends: the URL, or host:port (called AE) */
	uint64_t share;   /* its share of the bucket now (bits/s; OP_RATE_UNLIMITED) */
	uint64_t cap;     /* its own rate (bits/s; OP_RATE_UNLIMITED) */
	const char *link; /* up, down, paused, starting, unprovisioned */
	/* The same without the operator's pause ("paused" there: the cloud
	 * refused the credentials). */
	const char *link_state;
	int64_t link_since; /* ms since the epoch */
	char link_reason[256];
	int paused_by_operator;
	int64_t paused_since;     /* ms since the epoch, of the operator's pause */
	int credentials_refused;  /* paused by a 401/403 */
	uint64_t rate;            /* the shaper's now (OP_RATE_UNLIMITED) */
	int64_t rate_since;       /* ms since the epoch: the shaper's rate since then */
	int rate_from_window;     /* a window of the schedule gives the rate now */
	int64_t rate_until;       /* ms since the epoch: the rate changes then; 0: not this week */
	int64_t last_upload_at;   /* ms since the epoch of the last instance sent; 0: none yet */
	uint64_t configured_rate; /* [shaping] rate, or the operator's */
	char schedule[1024];      /* in force: the operator's or [shaping]'s */
	const char *rate_source;  /* "config" or "console" */
	const char *schedule_source;
	int64_t started_at;
	uint64_t throughput[OP_THROUGHPUT_MINUTES]; /* bytes per minute, oldest first */
	op_uplink_error errors[OP_UPLINK_ERRORS];   /* newest first */
	unsigned n_errors;
	op_uplink_compression compression;
} op_uplink_view;

void op_uplink_get_view(op_uplink *up, op_uplink_view *v);

/* Pauses (requests in flight end, their instances go back to the queue
 * with no attempt counted) or resumes uploading. since: when the pause
 * began (ms since the epoch), as the caller kept it with the pause, so
 * that it reads the same after a restart. Not persisted here. */
void op_uplink_set_paused(op_uplink *up, int paused, int64_t since);

/* The operator's rate and schedule (NULL: the configuration file's),
 * applied at once on the open connections. Validated by the caller. */
void op_uplink_set_shaping(op_uplink *up, const uint64_t *rate, const char *schedule);

/*
 * Takes a reloaded configuration: [cloud] (TLS files, credentials, URL,
 * timeouts), [shaping] and keep_sent_bytes apply to the next request;
 * connections and batch_max_instances at the next start (a warning says
 * so). -EINVAL with the reason in err when the new TLS settings cannot be
 * loaded: the previous ones stay.
 */
int op_uplink_reload(op_uplink *up, const op_config *cfg, char *err, size_t errlen);

/* A test of the link passed: a link still "starting" (nothing exchanged
 * yet) is up. */
void op_uplink_link_verified(op_uplink *up);

/* The cloud's TLS configuration and the Authorization header line
 * ("" when none), for a test of the link. NULL when unprovisioned. */
struct op_tls *op_uplink_tls(op_uplink *up);
const char *op_uplink_auth_header(const op_uplink *up);

/* The destination's section ([cloud] or its [destination NAME]). */
const op_cloud_config *op_uplink_cloud_config(const op_uplink *up);

/* A dicom destination's peer into *out: 1; 0 for a stow-rs one. */
int op_uplink_dicom_peer(const op_uplink *up, op_dicom_dest_config *out);

/* The destination's name ("cloud" or a [destination NAME]): fixed for the
 * engine's life, so any thread may read it. */
const char *op_uplink_name(const op_uplink *up);

/* The spool setting that keeps base ("paused", "paused.since") for this
 * destination: base itself for the cloud, "base:NAME" for the others.
 * Any thread. */
void op_uplink_setting_key(const op_uplink *up, const char *base, char *out, size_t size);

/* --- sharing the [shaping] bucket between destinations (the host's) ----- */

/* Has a request in flight (or a batch being claimed or settled)? */
int op_uplink_busy(const op_uplink *up);

/* Bytes this destination has written in all (its own bucket's count). */
uint64_t op_uplink_bytes(const op_uplink *up);

/* Its share now (bits/s) and, in *cap, its own `rate`. */
uint64_t op_uplink_share(const op_uplink *up, uint64_t *cap);

/* Gives it a new share (bits/s, at most its cap: see fair.h). */
void op_uplink_set_share(op_uplink *up, uint64_t share);

#endif
