/*
 * internal: what the files of the console's API (api.h) share, and no
 * other module may use. One file a job:
 *
 *   api.c          open, configure, close; routing; the console's files
 *   api_job.c      jobs on the thread pool and their answers; the audit log
 *   api_auth.c     sessions, logins, password checks, the failed-login limit
 *   api_status.c   /api/status, /metrics, /healthz, /api/queue, /api/audit
 *   api_actions.c  retry, pause and resume, shaping, reload, test-link
 *   api_upload.c   the site file and a firmware bundle, uploaded
 *
 * A request goes: route (api.c) -> authenticate (api_auth.c: the Unix
 * socket is trusted; on TCP a session cookie, or the password by HTTP
 * Basic or /api/login) -> the endpoint. Endpoints copy what they need on
 * the loop into a job and do the rest on the thread pool (spool queries
 * and writes, Argon2 verification, files, the C-ECHO); the job's answer is
 * sent back on the loop.
 *
 * Names here have the op__api_ prefix, as libuv's internal ones uv__.
 * Loop thread only, except where a function says "thread pool".
 */
#ifndef OP_CONSOLE_INTERNAL_H
#define OP_CONSOLE_INTERNAL_H

#include <cjson/cJSON.h>
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/config.h"
#include "common/spool.h"
#include "console/api.h"
#include "console/httpd.h"
#include "console/linktest.h"
#include "uplink/control.h"

/*
 * The files the console leaves beside the configuration file (on the
 * appliance in /data) for root's scripts, which spell the same names: a
 * change here is a change there too. OP__API_UPLOAD_DIR is made by
 * rootfs/deb/outpost-uplink.service. OP__API_UPLOAD_DIR/OP__API_SITE_DIR
 * is watched by rootfs/overlay/usr/lib/systemd/system/outpost-site.path,
 * and rootfs/overlay/usr/lib/outpost/provision (outpost-site.service, and
 * at boot) provisions from its OP__API_SITE_INI, writing outpost.ini beside
 * it. OP__API_UPLOAD_DIR/OP__API_FIRMWARE_BUNDLE is watched by
 * outpost-update-upload.path and installed by rootfs/overlay/usr/lib/
 * outpost/update. The others are the console's own.
 */
#define OP__API_UPLOAD_DIR "upload"
#define OP__API_SITE_DIR "site"                /* a site file to provision */
#define OP__API_SITE_INI "site.ini"            /* the site's keys, in OP__API_SITE_DIR */
#define OP__API_SITE_TMP "site.tmp"            /* the next OP__API_SITE_DIR, being written */
#define OP__API_SITE_CHECK "site.check.ini"    /* the configuration and site.ini, a check */
#define OP__API_FIRMWARE_PART "firmware.part"  /* a bundle being uploaded */
#define OP__API_FIRMWARE_BUNDLE "update.raucb" /* a bundle to install */

#define OP__API_JSON "application/json"
#define OP__API_SESSIONS 64
#define OP__API_PEERS 64 /* clients whose password attempts are counted */
#define OP__API_KINDS 8  /* kinds of bounded jobs (op__api_job_start_bounded()) */
#define OP__API_HEALTH_WAITERS 128

struct op__api_session {
	char token[65]; /* "" free */
	uint64_t last;  /* uv_now */
};

/* A client's password attempts in its window; free once the window has
 * ended, never before (a locked client stays locked). */
struct op__api_attempts {
	char peer[64];
	uint64_t since; /* uv_now of the window's first attempt */
	int n;
};

/* What /metrics shows of the console itself. */
struct op__api_counters {
	uint64_t password_checks; /* Argon2 verifications started */
	uint64_t health_checks;   /* spool quick_check + C-ECHO runs */
	uint64_t busy;            /* requests answered 503 or 429 for want of room */
};

struct op__api_job;
struct op__api_verify_job;
struct op__api_firmware;

struct op_api {
	uv_loop_t *loop;
	op_api_host host;
	op_uplink *up; /* host.uplink: the cloud's engine */
	/* Every destination's engine (the cloud's first); names never change. */
	op_uplink *ups[OP_DEST_MAX + 1];
	int n_ups;
	op_httpd *httpd;
	op_config cfg;
	struct op__api_session sessions[OP__API_SESSIONS];
	struct op__api_attempts attempts[OP__API_PEERS];
	uint64_t budget_since; /* the global budget's window (uv_now) */
	int budget_n;          /* password attempts in it, all clients */
	/* A keyed hash of the last password that verified, so that scripts
	 * sending Basic on every request do not pay Argon2 every time. */
	unsigned char good_key[crypto_generichash_KEYBYTES];
	unsigned char good_mac[32];
	int good;
	int jobs; /* on the thread pool */
	int closing;
	op_linktest *linktest; /* running, or NULL */
	struct op__api_job *linktest_job;
	struct linkrun *linkrun; /* the destinations being tested, or NULL */
	/* Argon2 takes 19 MiB a check: one at a time, the others wait in
	 * line, so a burst of logins cannot take the uplink over its memory. */
	int verifying;
	int verify_waiting; /* in line, at most VERIFY_QUEUE (api_auth.c) */
	struct op__api_verify_job *verify_head, *verify_tail;
	/* Bounded jobs running or queued, by kind (their work function). */
	struct {
		void (*work)(struct op__api_job *);
		int n;
	} kinds[OP__API_KINDS];
	/* /healthz: the last result, and who waits for the one check running
	 * (op__api_healthz()). */
	char *health_body;
	size_t health_len;
	int health_status;
	uint64_t health_at; /* uv_now, 0: none yet */
	int health_running;
	op_httpd_req *health_waiters[OP__API_HEALTH_WAITERS];
	int n_health_waiters;
	struct op__api_counters counters;
	/* The console certificate's SHA-256 (of its DER) as browsers show it,
	 * "AB:CD:...", or "" without TLS: /api/status shows it, so that an
	 * operator can check what the browser was shown. */
	char fingerprint[96];
	struct op__api_firmware *firmware; /* a bundle being uploaded, or NULL */
};

/* What the status shows of the configuration, copied for the thread pool
 * (a reload may change the console's copy meanwhile). */
struct op__api_settings {
	char spool_dir[OP_DIR_MAX];
	uint64_t max_bytes, min_free_bytes;
	char cloud_url[1024];
	uint16_t receiver_port;
	char receiver_ae[OP_AE_MAX + 1];
	char fingerprint[96];   /* the console certificate's SHA-256, or "" */
	uint32_t backlog_alarm; /* [console] backlog_alarm, seconds */
};

/* An endpoint, called once the request is authenticated; who is "local"
 * (the Unix socket) or "admin". It answers req, now or from a job. */
typedef void (*op__api_endpoint)(op_api *api, op_httpd_req *req, const char *who);

/*
 * What every job has: the thread pool's plumbing, the request it answers,
 * who asked, from where and when, and the answer. Each endpoint's job is a
 * struct of its own with this header as its first member (struct
 * retry_job { struct op__api_job base; ... }), allocated by its size
 * (op__api_job_new()); work and done get the header and cast it back.
 */
struct op__api_job {
	uv_work_t w;
	size_t size; /* allocated, and wiped before free: one job holds a password */
	op_api *api;
	op_httpd_req *req;
	void (*work)(struct op__api_job *j);
	void (*done)(struct op__api_job *j); /* on the loop, before the answer */
	op_spool *spool;
	int kind; /* its slot in api->kinds, or -1: not bounded */
	char who[16], from[64];
	int64_t t; /* when the request came, ms since the epoch */
	/* the answer */
	int status;
	char *body;
	size_t len;
	const char *ctype;
	char headers[512];
};

/* --- api.c ----------------------------------------------------------------- */

/* Frees the console once closed and its last job is done. */
void op__api_free(op_api *api);

/* NAME in the configuration file's folder (on the appliance /data/NAME),
 * or "" without a configuration file. */
void op__api_beside_config(op_api *api, const char *name, char *out, size_t size);

/* --- api_job.c: answers, jobs, the audit log ------------------------------- */

/* Answers now with obj (taken; NULL: out of memory). headers: complete
 * "Name: value\r\n" lines, or NULL. */
void op__api_reply_json(op_httpd_req *req, int status, cJSON *obj, const char *headers);
/* Answers now with {"error": "..."}. */
void op__api_reply_error(op_httpd_req *req, int status, const char *headers, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The request's body as JSON, or NULL (cJSON_Delete() it). */
cJSON *op__api_parse_body(op_httpd_req *req);

/* A job of size bytes (an endpoint's struct, its header first), zeroed
 * but for the header; NULL with req answered (503) when out of memory. */
void *op__api_job_new(op_api *api, op_httpd_req *req, const char *who, size_t size);
/* Runs work on the thread pool, then done (may be NULL) on the loop, then
 * sends the answer and frees the job. On failure req (if any) is answered
 * (503) and the job freed: -EBUSY or -ENOMEM. */
int op__api_job_start(struct op__api_job *j, void (*work)(struct op__api_job *),
		      void (*done)(struct op__api_job *));
/* The same for work anyone may ask for often (reads, files): at most
 * OP__API_JOBS_PER_KIND of one kind (work) run or wait on the thread pool,
 * which the uploads share; beyond, 503 with Retry-After. */
#define OP__API_JOBS_PER_KIND 4
int op__api_job_start_bounded(struct op__api_job *j, void (*work)(struct op__api_job *),
			      void (*done)(struct op__api_job *));
/* Frees the answer and the job, wiped. For a job never started. */
void op__api_job_free(struct op__api_job *j);
/* The job's answer: obj (taken; NULL: 500), or {"error": msg}. Thread
 * pool or loop. */
void op__api_job_json(struct op__api_job *j, int status, cJSON *obj);
void op__api_job_error(struct op__api_job *j, int status, const char *msg);

/* Thread pool: records an operator action, in the spool and the log. */
void op__api_audit(struct op__api_job *j, const char *action, const char *detail);
/* Audits an action done on the loop on the thread pool, then answers
 * answer (taken). */
void op__api_audit_and_reply(op_api *api, op_httpd_req *req, const char *who, const char *action,
			     const char *detail, cJSON *answer);
/* The same in two steps, for an action that ends later (test-link): the
 * job now (NULL with req answered), the audit and the answer when done. */
struct op__api_job *op__api_audit_job_new(op_api *api, op_httpd_req *req, const char *who);
void op__api_audit_answer(struct op__api_job *j, const char *action, const char *detail,
			  cJSON *answer);

/* --- api_auth.c ------------------------------------------------------------ */

/* Calls next(api, req, who) once req is authenticated, now or after a
 * password check on the thread pool; answers 401, 403 or 429 instead. */
void op__api_authenticate(op_api *api, op_httpd_req *req, op__api_endpoint next);
/* POST /api/login (TCP only) and POST /api/logout. */
void op__api_login(op_api *api, op_httpd_req *req);
void op__api_logout(op_api *api, op_httpd_req *req, const char *who);
/* Ends every session and forgets the password that verified last (the
 * password has changed). */
void op__api_end_sessions(op_api *api);
/* Answers the password checks waiting in line 503 and frees them. */
void op__api_cancel_checks(op_api *api);
/* Is a state-changing request (not GET or HEAD) from the console's own
 * page or a script, not a form another site made the browser send? 1, or
 * 0 with req answered 403. */
int op__api_same_origin(op_httpd_req *req);

/* --- api_status.c ---------------------------------------------------------- */

void op__api_status(op_api *api, op_httpd_req *req, const char *who);
void op__api_metrics(op_api *api, op_httpd_req *req, const char *who);
void op__api_healthz(op_api *api, op_httpd_req *req); /* no authentication */
/* Answers the /healthz requests waiting for a check 503. */
void op__api_cancel_healthz(op_api *api);
void op__api_queue(op_api *api, op_httpd_req *req, const char *who);
void op__api_audit_list(op_api *api, op_httpd_req *req, const char *who);

struct op__api_disk {
	uint64_t total, free;
	int ok; /* 0: statvfs() failed, the rest is 0 */
};
struct op__api_disk op__api_disk_of(const char *dir);
/* The shaping part of the status: {"current", "configured", "schedule",
 * "source", "schedule_source"}. */
cJSON *op__api_rate_json(const op_uplink_view *v);

/* --- api_actions.c --------------------------------------------------------- */

void op__api_retry(op_api *api, op_httpd_req *req, const char *who);
void op__api_discard(op_api *api, op_httpd_req *req, const char *who);
void op__api_pause(op_api *api, op_httpd_req *req, const char *who);
void op__api_resume(op_api *api, op_httpd_req *req, const char *who);
void op__api_shaping(op_api *api, op_httpd_req *req, const char *who);
void op__api_reload(op_api *api, op_httpd_req *req, const char *who); /* local only */
void op__api_test_link(op_api *api, op_httpd_req *req, const char *who);
/* Stops a running link test and answers it 503. */
void op__api_cancel_test_link(op_api *api);

/* --- api_upload.c ---------------------------------------------------------- */

void op__api_site_upload(op_api *api, op_httpd_req *req, const char *who);
void op__api_firmware_upload(op_api *api, op_httpd_req *req, const char *who);

/* The engine of destination name; NULL when there is none. A NULL or ""
 * name: NULL too (the caller means every destination). */
op_uplink *op__api_uplink_named(op_api *api, const char *name);

/* Reads {"destination": "NAME"} from a request body o (absent: every
 * destination, *out ""); answers 400 or 404 and returns -1 when it names
 * none. */
int op__api_destination_arg(op_api *api, op_httpd_req *req, const cJSON *o, char *out, size_t size);
#endif
