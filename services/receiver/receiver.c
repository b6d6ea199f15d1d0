/*
 * receiver: listening, admission and the store path (see receiver.h).
 *
 * Threads: the main thread accepts and reads signals; each connection gets
 * a detached thread that waits (up to acse_timeout, from the accept) for
 * the association request to be buffered and then runs the association in
 * the DCMTK shim. A silent or slow client therefore only ever holds its
 * own thread.
 *
 * Admission happens at accept, before a connection counts toward any
 * limit: a host outside allowed_hosts is closed at once, and connections
 * still waiting for their association request ("pending") are capped per
 * address (max_pending_per_host) and in all: past either cap the oldest
 * pending one is closed to make room, so that idle connections (slowloris)
 * can never lock a modality out - a modality's own connection is pending
 * only for the round trip its association request takes.
 */
#include "receiver/receiver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/spool.h"
#include "dicom/dicom.h"
#include "receiver/router.h"

/* Threads waiting for an association request, beyond max_associations,
 * before new connections are closed outright. */
#define EXTRA_CONNECTIONS 16
#define STOP_GRACE_SECONDS 10

struct conn;

struct op_receiver {
	op_spool *spool;
	op_dicom_net *net;
	int listen_fd;
	int port;

	pthread_mutex_t mu; /* everything below */
	pthread_cond_t idle;
	op_receiver_config policy; /* reloadable: admission and timeouts */
	int connections;           /* connection threads alive */
	int associations;          /* of them, serving an association */
	struct conn *pending;      /* of them, waiting for a request; oldest last */

	/* Hosts closed at accept since the last line about them (the accept
	 * thread's alone): a flood of them is one log line and one counter
	 * update a second, not a line and an fsync'd transaction each. */
	unsigned refused_held;
	char refused_last[INET_ADDRSTRLEN];
	int64_t refused_next_ms;

	/* Where an instance goes and what makes it urgent (reloadable; held
	 * while it is used). */
	pthread_rwlock_t urgent_lock;
	op_ae_list urgent_aets;
	op_ae_list trusted_aets; /* [priority] trust_priority_from */
	op_router *router;
	const char *config_path; /* for the router's messages */
	op_config *peers;        /* where a C-MOVE may send: [peer] and dicom [destination] */

	/* Storage commitment reports on new associations (commit_main). */
	pthread_t reporter;
	int reporter_started;
	pthread_mutex_t commit_mu; /* stop_reporter, commit_wake */
	pthread_cond_t commit_wake;
	int stop_reporter;
};

struct conn {
	op_receiver *rx;
	int fd;
	uint32_t ip;       /* host order */
	int displaced;     /* closed by accept_one() to make room (under rx->mu) */
	struct conn *next; /* in rx->pending, while pending */
};

static const char *status_name(uint16_t s)
{
	switch (s) {
	case OP_STATUS_SUCCESS: return "success";
	case OP_STATUS_OUT_OF_RESOURCES: return "out-of-resources";
	case OP_STATUS_CANNOT_UNDERSTAND: return "cannot-understand";
	case OP_STATUS_NOT_AUTHORIZED: return "not-authorized";
	default: return "processing-failure";
	}
}

/* --- handler called by the DCMTK shim -------------------------------------- */

static int listed(const op_ae_list *l, const char *aet)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->aet[i], aet) == 0)
			return 1;
	return 0;
}

static int host_allowed(const op_receiver_config *policy, uint32_t ip)
{
	return op_cidr_allows(policy->allowed_hosts, policy->n_allowed_hosts, ip);
}

static int admit(void *ctx, op_assoc *a)
{
	op_receiver *rx = ctx;
	struct in_addr ip;
	const char *why = NULL;
	char calling[64], called[64];
	int ok_aet, ok_host;

	pthread_mutex_lock(&rx->mu);
	ok_aet = rx->policy.allowed_calling_aets.n == 0 ||
		 listed(&rx->policy.allowed_calling_aets, a->calling_aet);
	ok_host = inet_pton(AF_INET, a->peer_ip, &ip) == 1
			  ? host_allowed(&rx->policy, ntohl(ip.s_addr))
			  : rx->policy.n_allowed_hosts == 0;
	a->may_query = rx->policy.allow_query;
	pthread_mutex_unlock(&rx->mu);
	if (!ok_aet)
		why = "calling AE title not in allowed_calling_aets";
	else if (!ok_host)
		why = "host not in allowed_hosts";
	op_log(why ? OP_LOG_WARN : OP_LOG_INFO, why ? "assoc.rejected" : "assoc.request",
	       "assoc=%lu peer=%s calling=%s called=%s%s%s%s", a->id, a->peer_ip,
	       op_log_quote(calling, sizeof(calling), a->calling_aet),
	       op_log_quote(called, sizeof(called), a->called_aet), why ? " reason=\"" : "",
	       why ? why : "", why ? "\"" : "");
	if (why)
		op_spool_count(rx->spool, "associations_rejected", 1);
	return why ? -EACCES : 0;
}

/*
 * A spool error -> the status answered, the comment sent with it and one
 * log line. The spool's own limits and a full filesystem are both "out of
 * resources" to the modality, but not to the engineer reading the log.
 */
static uint16_t refuse(const op_assoc *a, const op_store_req *r, int rc, char *comment, size_t size)
{
	uint16_t status = OP_STATUS_PROCESSING_FAILURE;
	const char *event = "store.failed", *text = "Outpost storage error";
	const char *why = strerror(-rc);
	enum op_log_level level = OP_LOG_ERROR;

	char sop[OP_LOG_QUOTED(OP_UID_MAX)], calling[OP_LOG_QUOTED(16)];

	if (rc == -EDQUOT || rc == -ENOSPC) {
		status = OP_STATUS_OUT_OF_RESOURCES;
		event = "store.refused";
		level = OP_LOG_WARN;
		text = rc == -EDQUOT ? "Outpost spool full" : "Outpost disk full";
		why = rc == -EDQUOT ? "spool limit reached (max_bytes or min_free_bytes)"
				    : "disk full (no space or no inodes left)";
	} else if (rc == -EPERM) {
		/* PS3.4 B.2.3 / PS3.7 C: "Refused: Not Authorized" - the
		 * request is understood and refused for who sent it, which a
		 * modality shows as a failure, not as a full disk. */
		status = OP_STATUS_NOT_AUTHORIZED;
		event = "store.refused";
		level = OP_LOG_WARN;
		text = "SOP Instance UID queued from another AE";
		why = "another calling AE title's unsent instance has this SOP Instance UID: "
		      "the original is kept";
	}
	if (comment)
		snprintf(comment, size, "%s", text);
	op_log(level, event, "assoc=%lu peer=%s calling=%s sop=%s status=%s reason=\"%s\"", a->id,
	       a->peer_ip, op_log_quote(calling, sizeof(calling), a->calling_aet),
	       op_log_quote(sop, sizeof(sop), r->sop_instance_uid), status_name(status), why);
	return status;
}

static op_spool_object *store_begin(void *ctx, const op_assoc *a, const op_store_req *r,
				    uint16_t *status)
{
	op_receiver *rx = ctx;
	op_spool_object *obj = NULL;
	int rc = op_spool_object_begin(rx->spool, &obj);

	if (rc < 0)
		*status = refuse(a, r, rc, NULL, 0);
	return obj;
}

static uint16_t store_end(void *ctx, const op_assoc *a, const op_store_req *r, op_spool_object *obj,
			  int recv_rc, char *comment, size_t size)
{
	op_receiver *rx = ctx;
	op_instance inst;
	op_router_origin origin = { a->calling_aet, a->called_aet, a->peer_ip };
	int urgent = 0, route_urgent = 0, urgent_aet, trusted;
	enum op_spool_outcome outcome;
	static const char *const outcomes[] = { "stored", "duplicate", "replaced" };
	char err[256] = "", hash[OP_HASH_HEX + 1];
	char sop[OP_LOG_QUOTED(OP_UID_MAX)], other[OP_LOG_QUOTED(OP_UID_MAX)];
	char why[OP_LOG_QUOTED(sizeof(err))];
	uint64_t bytes = op_spool_object_size(obj);
	int rc;

	op_log_quote(sop, sizeof(sop), r->sop_instance_uid);
	if (recv_rc == -ECONNABORTED) {
		op_spool_object_abort(obj);
		op_warn("store.aborted",
			"assoc=%lu sop=%s reason=\"association ended mid-dataset\"", a->id, sop);
		return OP_STATUS_PROCESSING_FAILURE;
	}
	rc = recv_rc < 0 ? recv_rc : op_spool_object_finish(obj);
	if (rc < 0) {
		op_spool_object_abort(obj);
		return refuse(a, r, rc, comment, size);
	}
	memset(&inst, 0, sizeof(inst));
	pthread_rwlock_rdlock(&rx->urgent_lock);
	rc = op_router_read(rx->router, op_spool_object_path(obj), &origin, &inst, &urgent,
			    &route_urgent, err, sizeof(err));
	urgent |= route_urgent;
	trusted = urgent_aet = listed(&rx->urgent_aets, a->calling_aet);
	if (!trusted)
		trusted = listed(&rx->trusted_aets, a->calling_aet);
	pthread_rwlock_unlock(&rx->urgent_lock);
	if (rc < 0) {
		op_spool_object_abort(obj);
		snprintf(comment, size, "%s", err);
		op_warn("store.rejected", "assoc=%lu sop=%s status=%s reason=%s", a->id, sop,
			status_name(OP_STATUS_CANNOT_UNDERSTAND),
			op_log_quote(why, sizeof(why), err));
		return OP_STATUS_CANNOT_UNDERSTAND;
	}
	if (strcmp(inst.sop_instance_uid, r->sop_instance_uid) != 0)
		op_warn("store.mismatch",
			"assoc=%lu command_sop=%s dataset_sop=%s reason=\"indexed by the dataset's "
			"SOP Instance UID\"",
			a->id, sop, op_log_quote(other, sizeof(other), inst.sop_instance_uid));
	snprintf(inst.calling_aet, sizeof(inst.calling_aet), "%s", a->calling_aet);
	/* Urgent: an urgent calling AE, an attribute of [priority]
	 * urgent_match, or the C-STORE's priority HIGH - believed only from
	 * trusted AEs (issue 15), since any LAN host could otherwise jump the
	 * queue. An untrusted HIGH counts as MEDIUM; LOW only delays the
	 * sender's own instances and is kept. */
	inst.priority = r->priority;
	if (urgent || urgent_aet) {
		inst.priority = OP_PRIORITY_HIGH;
	} else if (r->priority == OP_PRIORITY_HIGH && !trusted) {
		inst.priority = OP_PRIORITY_MEDIUM;
		op_info("store.priority",
			"assoc=%lu sop=%s calling=%s priority=medium reason=\"priority HIGH from "
			"an AE not in trust_priority_from or urgent_calling_aets\"",
			a->id, sop, op_log_quote(why, sizeof(why), a->calling_aet));
	}
	rc = op_spool_object_commit(obj, &inst, &outcome, hash);
	if (rc < 0)
		return refuse(a, r, rc, comment, size);
	op_info("store.ok",
		"assoc=%lu sop=%s study=%s bytes=%" PRIu64 " hash=%s result=%s urgent=%s", a->id,
		op_log_quote(sop, sizeof(sop), inst.sop_instance_uid),
		op_log_quote(other, sizeof(other), inst.study_uid), bytes, hash, outcomes[outcome],
		inst.priority == OP_PRIORITY_HIGH ? "yes" : "no");
	return OP_STATUS_SUCCESS;
}

/* --- query and retrieve --------------------------------------------------- */

/* The tags of an identifier, for the log: which attributes were asked and
 * matched on, never their values (PHI). */
static void key_tags(const op_qr_req *r, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	for (unsigned k = 0; k < r->n && o + 10 < size; k++)
		if (r->keys[k].value[0])
			o += (size_t)snprintf(out + o, size - o, "%s%08X", o ? "," : "",
					      (unsigned)r->keys[k].tag);
}

struct find_count {
	int (*answer)(void *actx, const op_qr_key *values, unsigned n);
	void *actx;
	unsigned matches;
};

static int count_answer(void *ctx, const op_qr_key *values, unsigned n)
{
	struct find_count *fc = ctx;

	fc->matches++;
	return fc->answer(fc->actx, values, n);
}

/* A spool query's error -> the status: A900 for what the identifier
 * asks that cannot be matched, A701 for a retrieve too large to count,
 * C000 when the spool cannot be read. */
static uint16_t qr_status(int rc, const char *err, char *comment, size_t size)
{
	if (rc >= 0)
		return OP_STATUS_SUCCESS;
	snprintf(comment, size, "%s", err[0] ? err : strerror(-rc));
	return rc == -EINVAL  ? OP_STATUS_IDENTIFIER_MISMATCH
	       : rc == -E2BIG ? OP_STATUS_TOO_MANY_MATCHES
			      : OP_STATUS_UNABLE_TO_PROCESS;
}

static uint16_t find(void *ctx, const op_assoc *a, const op_qr_req *r,
		     int (*answer)(void *actx, const op_qr_key *values, unsigned n), void *actx,
		     char *comment, size_t size)
{
	op_receiver *rx = ctx;
	struct find_count fc = { answer, actx, 0 };
	int64_t t0 = op_clock_mono_ms();
	char err[256] = "", keys[256], why[OP_LOG_QUOTED(sizeof(err))], calling[OP_LOG_QUOTED(16)];
	int rc = op_spool_find(rx->spool, r->level, r->patient_root, r->keys, r->n, count_answer,
			       &fc, err, sizeof(err));
	/* A positive rc: the SCU cancelled or went away (the shim answers). */
	uint16_t status = qr_status(rc, err, comment, size);

	key_tags(r, keys, sizeof(keys));
	op_log(status ? OP_LOG_WARN : OP_LOG_INFO, "qr.find",
	       "assoc=%lu calling=%s model=%s level=%s keys=%s matches=%u ms=%" PRId64
	       " status=%04X%s%s",
	       a->id, op_log_quote(calling, sizeof(calling), a->calling_aet),
	       r->patient_root ? "patient" : "study", op_qr_level_name(r->level),
	       keys[0] ? keys : "none", fc.matches, op_clock_mono_ms() - t0, status,
	       status ? " reason=" : "", status ? op_log_quote(why, sizeof(why), comment) : "");
	return status;
}

static uint16_t retrieve(void *ctx, const op_assoc *a, const op_qr_req *r, op_dicom_peer *dest,
			 op_qr_instance **items, unsigned *n, char *comment, size_t size)
{
	op_receiver *rx = ctx;
	op_peer_config peer;
	char err[256] = "", keys[256], why[OP_LOG_QUOTED(sizeof(err))], aet[OP_LOG_QUOTED(16)];
	char calling[OP_LOG_QUOTED(16)];
	const char *verb = dest ? "qr.move" : "qr.get";
	int rc = 0;

	key_tags(r, keys, sizeof(keys));
	op_log_quote(calling, sizeof(calling), a->calling_aet);
	if (dest) {
		pthread_rwlock_rdlock(&rx->urgent_lock);
		rc = op_config_peer_by_aet(rx->peers, r->move_destination, &peer);
		pthread_rwlock_unlock(&rx->urgent_lock);
		if (rc < 0) {
			snprintf(comment, size, "Move destination %s unknown to Outpost",
				 r->move_destination);
			op_warn(verb,
				"assoc=%lu calling=%s destination=%s status=%04X reason=\"no "
				"[peer] or dicom [destination] has this AE title\"",
				a->id, calling, op_log_quote(aet, sizeof(aet), r->move_destination),
				OP_STATUS_MOVE_DESTINATION_UNKNOWN);
			return OP_STATUS_MOVE_DESTINATION_UNKNOWN;
		}
		snprintf(dest->host, sizeof(dest->host), "%s", peer.host);
		dest->port = (int)peer.port;
		snprintf(dest->called_ae, sizeof(dest->called_ae), "%s", peer.ae_title);
		pthread_mutex_lock(&rx->mu);
		snprintf(dest->calling_ae, sizeof(dest->calling_ae), "%s", rx->policy.ae_title);
		dest->timeout_ms = rx->policy.dimse_timeout * 1000;
		pthread_mutex_unlock(&rx->mu);
	}
	rc = op_spool_retrieve(rx->spool, r->level, r->patient_root, r->keys, r->n, items, n, err,
			       sizeof(err));
	uint16_t status = qr_status(rc, err, comment, size);
	op_log(status ? OP_LOG_WARN : OP_LOG_INFO, verb,
	       "assoc=%lu calling=%s%s%s model=%s level=%s keys=%s instances=%u status=%04X%s%s",
	       a->id, calling, dest ? " destination=" : "",
	       dest ? op_log_quote(aet, sizeof(aet), r->move_destination) : "",
	       r->patient_root ? "patient" : "study", op_qr_level_name(r->level),
	       keys[0] ? keys : "none", rc == 0 ? *n : 0, status, status ? " reason=" : "",
	       status ? op_log_quote(why, sizeof(why), comment) : "");
	return status;
}

static int object_file(void *ctx, const op_qr_instance *it, char *out, size_t size)
{
	op_receiver *rx = ctx;
	char hex[OP_HASH_HEX + 1], sop[OP_LOG_QUOTED(OP_UID_MAX)];
	uint64_t bytes;

	op_spool_object_file(rx->spool, it->hash, out, size);
	if (op_spool_hash_file(out, hex, &bytes) == 0 && bytes == it->size &&
	    strcmp(hex, it->hash) == 0)
		return 0;
	op_warn("qr.damaged",
		"sop=%s reason=\"spool file damaged or missing: its content does not "
		"match its hash; not sent\"",
		op_log_quote(sop, sizeof(sop), it->sop_instance_uid));
	return -EBADMSG;
}

static void retrieve_end(void *ctx, const op_assoc *a, const op_qr_req *r, unsigned completed,
			 unsigned failed, unsigned warning, uint16_t status)
{
	(void)ctx;
	op_log(status == OP_STATUS_SUCCESS ? OP_LOG_INFO : OP_LOG_WARN,
	       r->move_destination[0] ? "qr.move_end" : "qr.get_end",
	       "assoc=%lu completed=%u failed=%u warning=%u status=%04X", a->id, completed, failed,
	       warning, status);
}

/* --- storage commitment ---------------------------------------------------- */

/* How often requests still waiting for the cloud are looked at again, and
 * the back-off of reports that could not be delivered. */
#define COMMIT_POLL_MS 2000
#define COMMIT_RETRY_MIN_MS 5000
#define COMMIT_RETRY_MAX_MS (10 * 60 * 1000)
/* Requests pending at once; beyond, new ones are refused (0x0213). */
#define COMMIT_PENDING_MAX 10000

static void wake_reporter(op_receiver *rx)
{
	pthread_mutex_lock(&rx->commit_mu);
	pthread_cond_signal(&rx->commit_wake);
	pthread_mutex_unlock(&rx->commit_mu);
}

static uint16_t commit_request(void *ctx, const op_assoc *a, const char *transaction_uid,
			       const op_commit_item *items, unsigned n, int64_t *id, char *comment,
			       size_t size)
{
	op_receiver *rx = ctx;
	int64_t now = op_clock_wall_ms(), deadline, due, oldest;
	uint64_t pending;
	char calling[OP_LOG_QUOTED(16)], txn[OP_LOG_QUOTED(OP_UID_MAX)], why[OP_LOG_QUOTED(128)];
	int cloud, rc;

	op_log_quote(calling, sizeof(calling), a->calling_aet);
	op_log_quote(txn, sizeof(txn), transaction_uid);
	if (n == 0) {
		op_warn("commit.refused",
			"assoc=%lu calling=%s transaction=%s status=0115 reason=%s", a->id, calling,
			txn, op_log_quote(why, sizeof(why), comment));
		return 0x0115;
	}
	if (op_spool_commit_pending(rx->spool, &pending, &oldest) == 0 &&
	    pending >= COMMIT_PENDING_MAX) {
		snprintf(comment, size, "Outpost has %u commitment requests pending",
			 COMMIT_PENDING_MAX);
		op_warn("commit.refused",
			"assoc=%lu calling=%s transaction=%s status=0213 reason=%s", a->id, calling,
			txn, op_log_quote(why, sizeof(why), comment));
		return 0x0213;
	}
	pthread_mutex_lock(&rx->mu);
	cloud = rx->policy.commitment == OP_COMMIT_CLOUD;
	deadline = now + (int64_t)rx->policy.commitment_timeout * 1000;
	/* Not the reporter's while this association may still carry it. */
	due = op_clock_wall_ms() + ((int64_t)rx->policy.dimse_timeout + 5) * 1000;
	pthread_mutex_unlock(&rx->mu);
	rc = op_spool_commit_request(rx->spool, transaction_uid, a->calling_aet, cloud, now,
				     deadline, due, items, n, id);
	if (rc < 0) {
		snprintf(comment, size, "Outpost storage error");
		op_error("commit.failed",
			 "assoc=%lu calling=%s transaction=%s status=0110 error=\"%s\"", a->id,
			 calling, txn, strerror(-rc));
		return OP_STATUS_PROCESSING_FAILURE;
	}
	op_info("commit.request",
		"assoc=%lu calling=%s transaction=%s instances=%u mode=%s id=%" PRId64, a->id,
		calling, txn, n, cloud ? "cloud" : "local", *id);
	return OP_STATUS_SUCCESS;
}

static int commit_report(void *ctx, int64_t id, op_commitment_txn *out)
{
	op_receiver *rx = ctx;
	int rc = op_spool_commit_get(rx->spool, id, op_clock_wall_ms(), out);

	if (rc < 0)
		return rc;
	if (!out->final) {
		free(out->items);
		out->items = NULL;
	}
	return out->final;
}

/* Logs a report that went, and records it. */
static void commit_delivered(op_receiver *rx, const op_commitment_txn *t, const char *how)
{
	char calling[OP_LOG_QUOTED(16)], txn[OP_LOG_QUOTED(OP_UID_MAX)];
	unsigned failed = 0;

	for (unsigned i = 0; i < t->n; i++)
		failed += t->items[i].result != OP_COMMIT_OK;
	op_spool_commit_reported(rx->spool, t->id, op_clock_wall_ms());
	op_log(failed ? OP_LOG_WARN : OP_LOG_INFO, "commit.report",
	       "id=%" PRId64 " calling=%s transaction=%s committed=%u failed=%u via=%s", t->id,
	       op_log_quote(calling, sizeof(calling), t->calling_aet),
	       op_log_quote(txn, sizeof(txn), t->transaction_uid), t->n - failed, failed, how);
}

static void commit_done(void *ctx, const op_assoc *a, int64_t id, int delivered)
{
	op_receiver *rx = ctx;
	op_commitment_txn t;

	(void)a;
	if (delivered && op_spool_commit_get(rx->spool, id, op_clock_wall_ms(), &t) == 0) {
		commit_delivered(rx, &t, "same-association");
		free(t.items);
		return;
	}
	/* The reporter's now, at once. */
	op_spool_commit_later(rx->spool, id, 0, NULL);
	wake_reporter(rx);
}

/* One due request: looked at again later while items wait, else its
 * report on a new association to the requester's AE. */
static void commit_one(op_receiver *rx, int64_t id)
{
	op_commitment_txn t;
	op_peer_config peer;
	op_dicom_peer dest;
	int64_t now = op_clock_wall_ms(), backoff;
	char err[256] = "", aet[OP_LOG_QUOTED(16)], why[OP_LOG_QUOTED(sizeof(err))];
	int rc;

	if (op_spool_commit_get(rx->spool, id, now, &t) < 0)
		return;
	if (!t.final) {
		op_spool_commit_later(rx->spool, id, now + COMMIT_POLL_MS, NULL);
		goto out;
	}
	memset(&dest, 0, sizeof(dest));
	pthread_rwlock_rdlock(&rx->urgent_lock);
	rc = op_config_peer_by_aet(rx->peers, t.calling_aet, &peer);
	pthread_rwlock_unlock(&rx->urgent_lock);
	pthread_mutex_lock(&rx->mu);
	snprintf(dest.calling_ae, sizeof(dest.calling_ae), "%s", rx->policy.ae_title);
	dest.timeout_ms = rx->policy.dimse_timeout * 1000;
	pthread_mutex_unlock(&rx->mu);
	if (rc < 0) {
		snprintf(err, sizeof(err), "no [peer] or dicom [destination] has AE title %s",
			 t.calling_aet);
	} else {
		snprintf(dest.host, sizeof(dest.host), "%s", peer.host);
		dest.port = (int)peer.port;
		snprintf(dest.called_ae, sizeof(dest.called_ae), "%s", peer.ae_title);
		rc = op_dicom_commit_report(&dest, &t, err, sizeof(err));
	}
	if (rc == 0) {
		commit_delivered(rx, &t, "new-association");
		goto out;
	}
	backoff = COMMIT_RETRY_MIN_MS << (t.attempts < 7 ? t.attempts : 7);
	if (backoff > COMMIT_RETRY_MAX_MS)
		backoff = COMMIT_RETRY_MAX_MS;
	op_spool_commit_later(rx->spool, id, now + backoff, err);
	op_warn("commit.retry",
		"id=%" PRId64 " calling=%s attempts=%u retry_in_ms=%" PRId64 " reason=%s", id,
		op_log_quote(aet, sizeof(aet), t.calling_aet), t.attempts + 1, backoff,
		op_log_quote(why, sizeof(why), err));
out:
	free(t.items);
}

static void *commit_main(void *arg)
{
	op_receiver *rx = arg;
	int64_t ids[32];
	unsigned n;

	pthread_mutex_lock(&rx->commit_mu);
	while (!rx->stop_reporter) {
		struct timespec until;

		pthread_mutex_unlock(&rx->commit_mu);
		if (op_spool_commit_due(rx->spool, op_clock_wall_ms(), ids, 32, &n) == 0)
			for (unsigned i = 0; i < n; i++)
				commit_one(rx, ids[i]);
		pthread_mutex_lock(&rx->commit_mu);
		if (n == 32 || rx->stop_reporter)
			continue;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&rx->commit_wake, &rx->commit_mu, &until);
	}
	pthread_mutex_unlock(&rx->commit_mu);
	return NULL;
}

static void assoc_end(void *ctx, const op_assoc *a, const char *how)
{
	op_receiver *rx = ctx;
	char q[256], calling[64], called[64];
	int limit;

	if (strcmp(how, "busy") == 0) {
		pthread_mutex_lock(&rx->mu);
		limit = rx->policy.max_associations;
		pthread_mutex_unlock(&rx->mu);
		/* Same event as the admission rejections, so that one search
		 * finds every modality that was turned away. */
		op_warn("assoc.rejected",
			"assoc=%lu peer=%s calling=%s called=%s reason=\"max_associations (%d) "
			"reached\" result=transient",
			a->id, a->peer_ip, op_log_quote(calling, sizeof(calling), a->calling_aet),
			op_log_quote(called, sizeof(called), a->called_aet), limit);
		op_spool_count(rx->spool, "associations_rejected", 1);
	}
	op_info("assoc.end", "assoc=%lu peer=%s how=%s", a->id, a->peer_ip,
		op_log_quote(q, sizeof(q), how));
}

/* --- connections ----------------------------------------------------------- */

/*
 * Waits until the association request is buffered on fd, so the shim reads
 * it without blocking. SO_RCVLOWAT makes poll(2) wake only once `need`
 * bytes are there, instead of at every segment.
 */
static int wait_for_request(int fd, int timeout_s)
{
	unsigned char buf[65536 + 6]; /* peeked: the shim reads them for real */
	int64_t deadline = op_clock_mono_ms() + timeout_s * 1000L;
	size_t need = 6;
	int rc, lowat;

	for (;;) {
		struct pollfd p = { fd, POLLIN | POLLRDHUP, 0 };
		int64_t left_ms;

		lowat = (int)need;
		setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
		left_ms = deadline - op_clock_mono_ms();
		if (left_ms <= 0)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)left_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		rc = op_dicom_pdu_ready(buf, (size_t)n, &need);
		if (rc != 0)
			break;
		/* Incomplete, and the peer has shut down its side: the rest can
		 * never arrive (and poll would report the socket readable at
		 * once, forever). */
		if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
			return -ECONNRESET;
	}
	lowat = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
	return rc < 0 ? rc : 0;
}

/* Caller holds rx->mu. */
static void unlink_pending(op_receiver *rx, struct conn *c)
{
	for (struct conn **pp = &rx->pending; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
}

static void *connection_main(void *arg)
{
	struct conn *c = arg;
	op_receiver *rx = c->rx;
	int acse_timeout, busy, displaced, rc;

	pthread_mutex_lock(&rx->mu);
	acse_timeout = rx->policy.acse_timeout;
	pthread_mutex_unlock(&rx->mu);
	rc = wait_for_request(c->fd, acse_timeout);
	/* No longer pending: accept_one() cannot shut fd down from now on. */
	pthread_mutex_lock(&rx->mu);
	unlink_pending(rx, c);
	displaced = c->displaced;
	pthread_mutex_unlock(&rx->mu);
	if (rc < 0 || displaced) {
		struct in_addr in = { htonl(c->ip) };
		char ip[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &in, ip, sizeof(ip));
		op_warn("assoc.dropped", "peer=%s reason=\"%s\"", ip,
			displaced          ? "idle, closed to make room for a newer connection "
					     "(max_pending_per_host or the connection limit)"
			: rc == -EPROTO    ? "not an A-ASSOCIATE-RQ"
			: rc == -ETIMEDOUT ? "no association request within acse_timeout"
					   : strerror(-rc));
		close(c->fd);
	} else {
		pthread_mutex_lock(&rx->mu);
		busy = rx->associations >= rx->policy.max_associations;
		if (!busy)
			rx->associations++;
		pthread_mutex_unlock(&rx->mu);
		op_dicom_serve(rx->net, c->fd, busy);
		pthread_mutex_lock(&rx->mu);
		if (!busy)
			rx->associations--;
		pthread_mutex_unlock(&rx->mu);
	}
	pthread_mutex_lock(&rx->mu);
	rx->connections--;
	pthread_cond_broadcast(&rx->idle);
	pthread_mutex_unlock(&rx->mu);
	free(c);
	return NULL;
}

/*
 * Makes room for a new connection from ip, under rx->mu: past
 * max_pending_per_host pending connections from ip, its oldest is closed;
 * at the connection limit, the oldest pending one of any host. Returns 1
 * when there is no room (every connection is serving an association).
 * The connection's own thread sees the shutdown and ends it.
 */
static int make_room(op_receiver *rx, uint32_t ip)
{
	struct conn *oldest_same = NULL, *oldest = NULL;
	int same = 0;

	for (struct conn *c = rx->pending; c; c = c->next) {
		if (c->displaced)
			continue;
		oldest = c;
		if (c->ip == ip) {
			oldest_same = c;
			same++;
		}
	}
	if (same < rx->policy.max_pending_per_host) {
		oldest_same = NULL;
		if (rx->connections < rx->policy.max_associations + EXTRA_CONNECTIONS)
			return 0;
	}
	struct conn *victim = oldest_same ? oldest_same : oldest;
	if (!victim)
		return 1;
	victim->displaced = 1;
	shutdown(victim->fd, SHUT_RDWR);
	return 0;
}

/* Logs and counts the hosts refused at accept, at most once a second
 * (see refused_held); returns the milliseconds until it may log again
 * while some are held, else -1. */
static int report_refused_hosts(op_receiver *rx)
{
	int64_t now = op_clock_mono_ms();

	if (!rx->refused_held)
		return -1;
	if (now < rx->refused_next_ms)
		return (int)(rx->refused_next_ms - now);
	op_warn("assoc.rejected", "peer=%s reason=\"host not in allowed_hosts\" connections=%u",
		rx->refused_last, rx->refused_held);
	op_spool_count(rx->spool, "associations_rejected", rx->refused_held);
	rx->refused_held = 0;
	rx->refused_next_ms = now + 1000;
	return -1;
}

static void accept_one(op_receiver *rx)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	pthread_attr_t attr;
	pthread_t t;
	struct conn *c;
	int fd, one = 1, full, allowed;
	uint32_t host;
	char ip[INET_ADDRSTRLEN];

	fd = accept4(rx->listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			op_error("listen.accept", "error=\"%s\"", strerror(errno));
		return;
	}
	/* DCMTK leaves Nagle on: each response would wait ~40 ms for an ACK. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
	host = ntohl(peer.sin_addr.s_addr);
	c = calloc(1, sizeof(*c));
	pthread_mutex_lock(&rx->mu);
	/* The allow-list first: a host outside it holds nothing, not even a
	 * place among the pending connections. 127.0.0.1 is the box itself
	 * (the uplink's health check echoes from it): it is let through to
	 * admit(), which answers it an A-ASSOCIATE-RJ that proves the
	 * receiver is up. */
	allowed = host == INADDR_LOOPBACK || host_allowed(&rx->policy, host);
	full = !allowed || !c || make_room(rx, host);
	if (!full) {
		rx->connections++;
		c->rx = rx;
		c->fd = fd;
		c->ip = host;
		c->next = rx->pending;
		rx->pending = c;
	}
	pthread_mutex_unlock(&rx->mu);
	if (full) {
		if (!allowed) {
			rx->refused_held++;
			snprintf(rx->refused_last, sizeof(rx->refused_last), "%s", ip);
			report_refused_hosts(rx);
		} else {
			op_warn("assoc.dropped", "peer=%s reason=\"too many connections\"", ip);
		}
		close(fd);
		free(c);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, connection_main, c) != 0) {
		op_error("listen.thread", "peer=%s error=\"cannot start a thread\"", ip);
		pthread_mutex_lock(&rx->mu);
		unlink_pending(rx, c);
		rx->connections--;
		pthread_mutex_unlock(&rx->mu);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

/* --- life cycle ------------------------------------------------------------ */

/* Says where instances go from now on (at start, and after a reload:
 * instances received before keep the destinations they were given). */
static void log_routes(const op_router *r, const op_config *cfg, const char *why)
{
	op_info("receiver.routes",
		"routes=%d destinations=%d default=%s applies_to=\"instances received from now "
		"on\" reason=%s",
		op_router_routes(r), cfg->n_destinations + 1,
		*cfg->routing.default_to ? cfg->routing.default_to : "none", why);
}

/* Recovery's reader: a file found without its row is routed on its
 * attributes alone (the association it came on is not known: conditions
 * on it do not hold). */
static int read_instance(void *ctx, const char *path, op_instance *inst, char *err, size_t len)
{
	op_receiver *rx = ctx;
	op_router_origin none = { NULL, NULL, NULL };
	int urgent, route_urgent, rc;

	rc = op_router_read(rx->router, path, &none, inst, &urgent, &route_urgent, err, len);
	if (rc == 0 && (urgent || route_urgent))
		inst->priority = OP_PRIORITY_HIGH;
	return rc;
}

static int listen_on(const op_receiver_config *rc, int *port_out)
{
	struct sockaddr_in sa = { 0 };
	socklen_t len = sizeof(sa);
	int fd, one = 1, err;

	sa.sin_family = AF_INET;
	sa.sin_port = htons(rc->port);
	inet_pton(AF_INET, rc->bind, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	*port_out = ntohs(sa.sin_port);
	return fd;
}

int op_receiver_open(const op_config *cfg, const char *config_path, op_receiver **out)
{
	op_receiver *rx = calloc(1, sizeof(*rx));
	op_spool_limits limits = { cfg->spool.max_bytes, cfg->spool.min_free_bytes,
				   cfg->spool.keep_sent_bytes, cfg->spool.keep_sent_days };
	op_spool_recovery rep;
	op_dicom_options opt = { cfg->receiver.ae_title, cfg->receiver.max_pdu,
				 cfg->receiver.acse_timeout, cfg->receiver.dimse_timeout,
				 cfg->log_level == OP_LOG_DEBUG };
	op_dicom_handler h = { NULL,         admit,          store_begin,   store_end,
			       assoc_end,    find,           retrieve,      object_file,
			       retrieve_end, commit_request, commit_report, commit_done };
	char err[640];
	int rc;

	*out = NULL;
	if (!rx)
		return -ENOMEM;
	rx->listen_fd = -1;
	rx->config_path = config_path;
	rx->policy = cfg->receiver;
	rx->urgent_aets = cfg->priority.urgent_calling_aets;
	rx->trusted_aets = cfg->priority.trust_priority_from;
	rx->peers = malloc(sizeof(*rx->peers));
	if (!rx->peers) {
		free(rx);
		return -ENOMEM;
	}
	*rx->peers = *cfg;
	pthread_mutex_init(&rx->mu, NULL);
	pthread_cond_init(&rx->idle, NULL);
	pthread_mutex_init(&rx->commit_mu, NULL);
	pthread_cond_init(&rx->commit_wake, NULL);
	pthread_rwlock_init(&rx->urgent_lock, NULL);
	h.ctx = rx;
	rc = op_router_open(cfg, config_path, &rx->router, err, sizeof(err));
	if (rc < 0)
		op_error("receiver.open", "error=\"%s\"", err);
	else
		rc = op_spool_open(cfg->spool.dir, &limits, &rx->spool);
	if (rc == 0)
		log_routes(rx->router, cfg, "start");
	if (rc == 0)
		rc = op_spool_recover(rx->spool, read_instance, rx, &rep);
	if (rc == 0 && (rc = op_dicom_net_open(&opt, &h, &rx->net)) < 0)
		op_error("receiver.open", "error=\"cannot set up DCMTK's network layer\"");
	if (rc == 0 && (rc = listen_on(&cfg->receiver, &rx->port)) < 0)
		op_error("receiver.listen", "bind=%s port=%u error=\"%s\"", cfg->receiver.bind,
			 cfg->receiver.port, strerror(-rc));
	if (rc < 0) {
		op_receiver_close(rx);
		return rc;
	}
	rx->listen_fd = rc;
	*out = rx;
	return 0;
}

int op_receiver_port(const op_receiver *rx)
{
	return rx->port;
}

static void reload(op_receiver *rx, const char *path)
{
	op_config cfg;
	op_config *peers, *old_peers;
	op_spool_limits limits;
	op_router *router = NULL, *old_router;
	char err[640];

	if (!path) {
		op_warn("config.reload", "reason=\"started without --config: nothing to reload\"");
		return;
	}
	if (op_config_load(&cfg, path, err, sizeof(err)) < 0 ||
	    op_router_open(&cfg, path, &router, err, sizeof(err)) < 0) {
		op_error("config.reload", "result=refused error=\"%s\"", err);
		return;
	}
	if (!(peers = malloc(sizeof(*peers)))) {
		op_router_close(router);
		op_error("config.reload", "result=refused error=\"out of memory\"");
		return;
	}
	*peers = cfg;
	pthread_rwlock_wrlock(&rx->urgent_lock);
	old_peers = rx->peers;
	rx->peers = peers;
	old_router = rx->router;
	rx->router = router;
	rx->urgent_aets = cfg.priority.urgent_calling_aets;
	rx->trusted_aets = cfg.priority.trust_priority_from;
	pthread_rwlock_unlock(&rx->urgent_lock);
	op_router_close(old_router);
	free(old_peers);
	log_routes(router, &cfg, "reload");
	limits = (op_spool_limits){ cfg.spool.max_bytes, cfg.spool.min_free_bytes,
				    cfg.spool.keep_sent_bytes, cfg.spool.keep_sent_days };
	op_spool_set_limits(rx->spool, &limits);
	pthread_mutex_lock(&rx->mu);
	if (strcmp(cfg.receiver.bind, rx->policy.bind) != 0 ||
	    cfg.receiver.port != rx->policy.port ||
	    strcmp(cfg.receiver.ae_title, rx->policy.ae_title) != 0 ||
	    cfg.receiver.max_pdu != rx->policy.max_pdu ||
	    cfg.receiver.dimse_timeout != rx->policy.dimse_timeout)
		op_warn("config.reload",
			"reason=\"bind, port, ae_title, max_pdu, dimse_timeout and "
			"[spool] dir take effect at the next start\"");
	/* Admission and limits apply at once; the listening address stays. */
	memcpy(cfg.receiver.bind, rx->policy.bind, sizeof(cfg.receiver.bind));
	cfg.receiver.port = rx->policy.port;
	rx->policy = cfg.receiver;
	pthread_mutex_unlock(&rx->mu);
	op_log_set_level(cfg.log_level);
	op_info("config.reload", "result=ok path=%s", path);
}

int op_receiver_run(op_receiver *rx, const char *config_path)
{
	sigset_t set;
	struct timespec deadline;
	int sfd, stop = 0, rc = 0, watchdog_ms = op_notify_watchdog_ms(), held_ms, timeout_ms;
	char status[128];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		return -errno;
	op_info("receiver.ready", "ae_title=%s bind=%s port=%d uid=%u gid=%u", rx->policy.ae_title,
		rx->policy.bind, rx->port, (unsigned)geteuid(), (unsigned)getegid());
	snprintf(status, sizeof(status), "receiving as %s on port %d", rx->policy.ae_title,
		 rx->port);
	op_notify_ready(status);
	rx->reporter_started = pthread_create(&rx->reporter, NULL, commit_main, rx) == 0;
	if (!rx->reporter_started)
		op_error("commit.reporter", "error=\"cannot start a thread\" reason=\"storage "
					    "commitment reports wait for the next start\"");
	while (!stop) {
		struct pollfd p[2] = { { rx->listen_fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		struct signalfd_siginfo si;
		int n;

		/* The watchdog is kept alive by this loop: a listener that no
		 * longer comes round is restarted by systemd. */
		if (watchdog_ms)
			op_notify_watchdog();
		held_ms = report_refused_hosts(rx);
		if (held_ms >= 0 && (!watchdog_ms || held_ms < watchdog_ms))
			timeout_ms = held_ms;
		else
			timeout_ms = watchdog_ms ? watchdog_ms : -1;
		n = poll(p, 2, timeout_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (p[0].revents & POLLIN)
			accept_one(rx);
		if ((p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			if (si.ssi_signo == SIGHUP)
				reload(rx, config_path);
			else
				stop = 1;
		}
	}
	op_notify_stopping();
	if (rx->reporter_started) {
		pthread_mutex_lock(&rx->commit_mu);
		rx->stop_reporter = 1;
		pthread_cond_signal(&rx->commit_wake);
		pthread_mutex_unlock(&rx->commit_mu);
		pthread_join(rx->reporter, NULL);
		rx->reporter_started = 0;
	}
	rx->refused_next_ms = 0; /* what is held is said before stopping */
	report_refused_hosts(rx);
	close(sfd);
	close(rx->listen_fd);
	rx->listen_fd = -1;
	/* Associations in progress may finish; an instance is only ever
	 * acknowledged after its commit, so cutting one short loses nothing. */
	op_info("receiver.stopping", "grace_seconds=%d", STOP_GRACE_SECONDS);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += STOP_GRACE_SECONDS;
	pthread_mutex_lock(&rx->mu);
	/* Connections still silent have nothing to lose: end them now. */
	for (struct conn *c = rx->pending; c; c = c->next) {
		if (!c->displaced)
			shutdown(c->fd, SHUT_RDWR);
		c->displaced = 1;
	}
	while (rx->connections > 0 &&
	       pthread_cond_timedwait(&rx->idle, &rx->mu, &deadline) != ETIMEDOUT)
		;
	if (rx->connections > 0)
		rc = -EBUSY;
	pthread_mutex_unlock(&rx->mu);
	return rc;
}

void op_receiver_close(op_receiver *rx)
{
	if (!rx)
		return;
	if (rx->listen_fd >= 0)
		close(rx->listen_fd);
	op_dicom_net_close(rx->net);
	op_spool_close(rx->spool);
	op_router_close(rx->router);
	free(rx->peers);
	pthread_mutex_destroy(&rx->commit_mu);
	pthread_cond_destroy(&rx->commit_wake);
	pthread_rwlock_destroy(&rx->urgent_lock);
	pthread_mutex_destroy(&rx->mu);
	pthread_cond_destroy(&rx->idle);
	free(rx);
}
