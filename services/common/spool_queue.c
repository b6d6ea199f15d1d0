/*
 * spool_queue: the uplink's side of the spool (see spool.h): claiming the
 * next batch, settling it, requeueing what a crash left 'sending', when
 * the next row is due; and evicting sent objects, which the uplink does to
 * keep its cache at keep_sent_bytes and the receiver to make room.
 */
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

struct victim {
	sqlite3_int64 id;
	char hash[OP_HASH_HEX + 1];
	uint64_t size;
};

/* Plans which sent objects go: oldest sent first, while the sent cache is
 * above keep_sent (of those sent before the keep_sent_days limit), or
 * until want bytes are planned. */
static int plan_eviction(op_spool *sp, uint64_t keep_sent, uint64_t want, struct victim **out,
			 size_t *n_out)
{
	int64_t kept_since;
	sqlite3_stmt *st = NULL;
	struct victim *v = NULL;
	size_t n = 0, cap = 0;
	uint64_t sent = 0, planned = 0;
	int rc = sqlite3_prepare_v2(
		sp->db, "SELECT COALESCE(SUM(size), 0) FROM instances WHERE state = 'sent'", -1,
		&st, NULL);

	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
		sent = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_ROW)
		return op__spool_sql_fail(sp, "evict", rc);
	pthread_mutex_lock(&sp->mu);
	kept_since = op_clock_wall_ms() - (int64_t)sp->limits.keep_sent_days * 86400000;
	pthread_mutex_unlock(&sp->mu);
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT id, hash, size, state_changed_at FROM instances"
				" WHERE state = 'sent' ORDER BY state_changed_at, id",
				-1, &st, NULL);
	while (rc == SQLITE_OK && (sent > keep_sent || planned < want) &&
	       (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		/* In sent order: from here on every row is within the days. */
		if (planned >= want && sqlite3_column_int64(st, 3) >= kept_since) {
			rc = SQLITE_DONE;
			break;
		}
		if (n == cap) {
			struct victim *nv = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
			if (!nv) {
				rc = SQLITE_NOMEM;
				break;
			}
			v = nv;
		}
		v[n].id = sqlite3_column_int64(st, 0);
		snprintf(v[n].hash, sizeof(v[n].hash), "%s", sqlite3_column_text(st, 1));
		v[n].size = (uint64_t)sqlite3_column_int64(st, 2);
		sent -= v[n].size;
		planned += v[n].size;
		n++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK && rc != SQLITE_DONE) {
		free(v);
		return op__spool_sql_fail(sp, "evict", rc);
	}
	*out = v;
	*n_out = n;
	return 0;
}

/* Evicts (rows first, then files: a crash in between leaves an orphan that
 * recovery re-indexes, never a row without its file). Caller holds tx_mu. */
int op__spool_evict(op_spool *sp, uint64_t keep_sent, uint64_t want, unsigned *n_out,
		    uint64_t *freed)
{
	struct victim *v = NULL;
	sqlite3_stmt *st = NULL;
	char path[PATH_MAX];
	uint64_t copies = 0;
	size_t n = 0;
	int rc;

	*n_out = 0;
	*freed = 0;
	rc = plan_eviction(sp, keep_sent, want, &v, &n);
	if (rc < 0 || n == 0)
		goto out;
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	/* The instance is 'sent' only when every delivery is. */
	rc = sqlite3_prepare_v2(sp->db,
				"DELETE FROM deliveries WHERE instance_id = ?1 AND"
				" (SELECT state FROM instances WHERE id = ?1) = 'sent'",
				-1, &st, NULL);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(st, 1, v[i].id);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(sp->db,
					"DELETE FROM instances WHERE id = ? AND state = 'sent'", -1,
					&st, NULL);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(st, 1, v[i].id);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
		if (op__spool_encoding_forget(sp, v[i].hash, 0, &copies) < 0)
			rc = SQLITE_IOERR;
	if (rc != SQLITE_OK || (rc = op__spool_exec(sp, "COMMIT")) < 0) {
		rc = rc < 0 ? rc : op__spool_sql_fail(sp, "evict", rc);
		op__spool_exec(sp, "ROLLBACK");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (op__spool_hash_in_use(sp, v[i].hash) == 0) {
			op_spool_object_file(sp, v[i].hash, path, sizeof(path));
			unlink(path);
			op__spool_encoding_unlink(sp, v[i].hash, 0);
		}
		*freed += v[i].size;
	}
	*freed += copies;
	*n_out = (unsigned)n;
	pthread_mutex_lock(&sp->mu);
	sp->usage.bytes -= *freed;
	sp->usage.objects -= n;
	pthread_mutex_unlock(&sp->mu);
	op_info("spool.evict", "objects=%zu bytes=%" PRIu64, n, *freed);
out:
	free(v);
	return rc;
}

int op_spool_evict_sent(op_spool *sp, uint64_t keep_sent_bytes, unsigned *evicted, uint64_t *freed)
{
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_evict(sp, keep_sent_bytes, 0, evicted, freed);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_requeue_sending(op_spool *sp, unsigned *count)
{
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	/* Every delivery 'sending' goes back, so every instance 'sending'
	 * (the summary of its deliveries) becomes 'queued'. */
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc == 0)
		rc = op__spool_exec(
			sp, "UPDATE deliveries SET state = 'queued' WHERE state = 'sending'");
	*count = rc == 0 ? (unsigned)sqlite3_changes(sp->db) : 0;
	if (rc == 0)
		rc = op__spool_exec(
			sp, "UPDATE instances SET state = 'queued' WHERE state = 'sending'");
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0) {
		op__spool_exec(sp, "ROLLBACK");
		*count = 0;
	}
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

static int claim_rows(op_spool *sp, const char *dest, int64_t now, unsigned max_items,
		      uint64_t max_bytes, int min_priority, op_spool_item *items, unsigned *n)
{
	sqlite3_stmt *st = NULL;
	char study[OP_UID_MAX + 1] = "";
	uint64_t bytes = 0;
	int rc;

	/* What was put off and is due now joins the ready (deliveries_ready,
	 * spool.c): the claim below then reads the queue's first row. Both
	 * name their index: without statistics sqlite would take
	 * deliveries_queue, which holds the rows put off too. */
	rc = op__spool_prepare(
		sp,
		"UPDATE deliveries INDEXED BY deliveries_later"
		" SET next_attempt_at = 0 WHERE destination = ?1"
		" AND state = 'queued' AND next_attempt_at > 0 AND next_attempt_at <= ?2",
		&st);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, dest);
		sqlite3_bind_int64(st, 2, now);
		rc = sqlite3_step(st);
	}
	op__spool_done(st);
	st = NULL;
	if (rc != SQLITE_DONE)
		return op__spool_sql_fail(sp, "claim", rc);
	rc = op__spool_prepare(sp,
			       "SELECT study_uid FROM deliveries INDEXED BY deliveries_ready"
			       " WHERE destination = ?2"
			       " AND state = 'queued' AND next_attempt_at = 0 AND priority >= ?1"
			       " ORDER BY priority DESC, received_at, instance_id LIMIT 1",
			       &st);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int(st, 1, min_priority);
		op__spool_bind_text(st, 2, dest);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			snprintf(study, sizeof(study), "%s", sqlite3_column_text(st, 0));
	}
	op__spool_done(st);
	st = NULL;
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return op__spool_sql_fail(sp, "claim", rc);
	rc = op__spool_prepare(sp,
			       "SELECT i.id, i.sop_instance_uid, i.hash, i.size, d.attempts,"
			       " d.priority, i.sop_class_uid, i.transfer_syntax"
			       " FROM deliveries d JOIN instances i"
			       " ON i.id = d.instance_id WHERE d.destination = ?4"
			       " AND d.study_uid = ?1 AND d.state = 'queued'"
			       " AND d.next_attempt_at <= ?2 ORDER BY d.received_at, d.instance_id"
			       " LIMIT ?3",
			       &st);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, study);
		sqlite3_bind_int64(st, 2, now);
		sqlite3_bind_int(st, 3, (int)max_items);
		op__spool_bind_text(st, 4, dest);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		op_spool_item *it = &items[*n];
		uint64_t size = (uint64_t)sqlite3_column_int64(st, 3);

		rc = SQLITE_OK;
		if (*n > 0 && bytes + size > max_bytes)
			break; /* the first item goes alone, however large */
		/* An instance that failed before goes alone: a cloud that drops
		 * one instance may drop the rest of its request with it (Orthanc
		 * does), and one bad instance must not hold its study back. */
		if (*n > 0 && (items[0].attempts > 0 || sqlite3_column_int(st, 4) > 0))
			break;
		memset(it, 0, sizeof(*it));
		it->id = sqlite3_column_int64(st, 0);
		snprintf(it->sop_instance_uid, sizeof(it->sop_instance_uid), "%s",
			 sqlite3_column_text(st, 1));
		snprintf(it->study_uid, sizeof(it->study_uid), "%s", study);
		snprintf(it->hash, sizeof(it->hash), "%s", sqlite3_column_text(st, 2));
		it->size = size;
		it->attempts = sqlite3_column_int(st, 4);
		it->priority = sqlite3_column_int(st, 5);
		snprintf(it->sop_class_uid, sizeof(it->sop_class_uid), "%s",
			 sqlite3_column_text(st, 6));
		snprintf(it->transfer_syntax, sizeof(it->transfer_syntax), "%s",
			 sqlite3_column_text(st, 7));
		op_spool_item_send_object(it);
		bytes += size;
		(*n)++;
	}
	op__spool_done(st);
	st = NULL;
	if (rc != SQLITE_OK && rc != SQLITE_DONE)
		return op__spool_sql_fail(sp, "claim", rc);
	rc = op__spool_prepare(sp,
			       "UPDATE deliveries SET state = 'sending', state_changed_at = ?1"
			       " WHERE instance_id = ?2 AND destination = ?3",
			       &st);
	for (unsigned i = 0; i < *n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, items[i].id);
		op__spool_bind_text(st, 3, dest);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	op__spool_done(st);
	if (rc != SQLITE_OK)
		return op__spool_sql_fail(sp, "claim", rc);
	for (unsigned i = 0; i < *n; i++)
		if ((rc = op__spool_refresh(sp, items[i].id, now)) < 0)
			return rc;
	return 0;
}

int op_spool_claim(op_spool *sp, const char *dest, int64_t now, unsigned max_items,
		   uint64_t max_bytes, int min_priority, op_spool_item *items, unsigned *n)
{
	int rc;

	*n = 0;
	if (max_items == 0)
		return -EINVAL;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc == 0)
		rc = claim_rows(sp, dest, now, max_items, max_bytes, min_priority, items, n);
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0) {
		op__spool_exec(sp, "ROLLBACK");
		*n = 0;
	}
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

/* The counters of one settled instance, in the settlement's transaction.
 * Returns SQLITE_DONE or the error. */
static int count_verdict(op_spool *sp, const char *dest, const op_spool_settlement *s)
{
	sqlite3_stmt *st = NULL;
	int64_t size = 0;
	char name[OP_DEST_NAME_MAX + 32];
	int rc;

	switch (s->verdict) {
	case OP_VERDICT_SENT:
		rc = op__spool_prepare(sp, "SELECT size FROM instances WHERE id = ?", &st);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s->id);
			if ((rc = sqlite3_step(st)) == SQLITE_ROW)
				size = sqlite3_column_int64(st, 0);
		}
		op__spool_done(st);
		if (rc != SQLITE_ROW)
			return rc;
		if (op__spool_counter_add(sp, "uploaded_instances", 1) < 0 ||
		    op__spool_counter_add(sp, "uploaded_bytes", (uint64_t)size) < 0)
			return SQLITE_ERROR;
		/* Each destination's own, besides the totals. */
		snprintf(name, sizeof(name), "%s:uploaded_instances", dest);
		if (op__spool_counter_add(sp, name, 1) < 0)
			return SQLITE_ERROR;
		snprintf(name, sizeof(name), "%s:uploaded_bytes", dest);
		return op__spool_counter_add(sp, name, (uint64_t)size) < 0 ? SQLITE_ERROR
									   : SQLITE_DONE;
	case OP_VERDICT_RETRY:
		snprintf(name, sizeof(name), "%s:retries", dest);
		return op__spool_counter_add(sp, "retries", 1) < 0 ||
				       op__spool_counter_add(sp, name, 1) < 0
			       ? SQLITE_ERROR
			       : SQLITE_DONE;
	case OP_VERDICT_QUARANTINE:
		/* Deliveries, not events: one retried and refused again by the
		 * same destination counts once. */
		rc = op__spool_prepare(
			sp,
			"INSERT OR IGNORE INTO quarantined_once (destination, sop_instance_uid)"
			" SELECT ?2, sop_instance_uid FROM instances WHERE id = ?1",
			&st);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s->id);
			op__spool_bind_text(st, 2, dest);
			rc = sqlite3_step(st);
		}
		op__spool_done(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (sqlite3_changes(sp->db) == 0)
			return SQLITE_DONE;
		snprintf(name, sizeof(name), "%s:quarantined", dest);
		return op__spool_counter_add(sp, "quarantined", 1) < 0 ||
				       op__spool_counter_add(sp, name, 1) < 0
			       ? SQLITE_ERROR
			       : SQLITE_DONE;
	default: return SQLITE_DONE;
	}
}

int op_spool_settle(op_spool *sp, const char *dest, const op_spool_settlement *s, unsigned n,
		    int64_t now)
{
	/* ?1 instance, ?2 the hash sent, ?3 now, ?4 next attempt, ?5 error,
	 * ?6 destination. */
#define SENT_THIS                                                                                  \
	" WHERE instance_id = ?1 AND destination = ?6 AND state = 'sending'"                       \
	" AND (SELECT hash FROM instances WHERE id = ?1) = ?2"
	static const char *const sql[] = {
		[OP_VERDICT_SENT] = "UPDATE deliveries SET state = 'sent', attempts = attempts + 1,"
				    " last_error = NULL, state_changed_at = ?3" SENT_THIS,
		[OP_VERDICT_RETRY] =
			"UPDATE deliveries SET state = 'queued', attempts = attempts + 1,"
			" next_attempt_at = ?4, last_error = ?5, state_changed_at = ?3" SENT_THIS,
		[OP_VERDICT_QUARANTINE] = "UPDATE deliveries SET state = 'quarantined',"
					  " attempts = attempts + 1, last_error = ?5,"
					  " state_changed_at = ?3" SENT_THIS,
		[OP_VERDICT_REQUEUE] =
			"UPDATE deliveries SET state = 'queued', next_attempt_at = ?4,"
			" last_error = ?5, state_changed_at = ?3" SENT_THIS,
	};
#undef SENT_THIS
	unsigned *gone = calloc(n ? n : 1, sizeof(*gone)), n_gone = 0;
	uint64_t freed = 0;
	int rc;

	if (!gone)
		return -ENOMEM;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	for (unsigned i = 0; i < n && rc == 0; i++) {
		sqlite3_stmt *st = NULL;
		int r;

		if ((unsigned)s[i].verdict >= sizeof(sql) / sizeof(sql[0])) {
			rc = -EINVAL;
			break;
		}
		r = op__spool_prepare(sp, sql[s[i].verdict], &st);
		if (r == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s[i].id);
			op__spool_bind_text(st, 2, s[i].hash);
			sqlite3_bind_int64(st, 3, now);
			sqlite3_bind_int64(st, 4, s[i].next_attempt_at);
			op__spool_bind_text(st, 5, s[i].error);
			op__spool_bind_text(st, 6, dest);
			r = sqlite3_step(st);
		}
		op__spool_done(st);
		st = NULL;
		if (r == SQLITE_DONE && sqlite3_changes(sp->db) == 1)
			r = count_verdict(sp, dest, &s[i]);
		/* The row was replaced by a newer version while this one was
		 * sent: queue the newer one. */
		else if (r == SQLITE_DONE && sqlite3_changes(sp->db) == 0) {
			r = op__spool_prepare(
				sp,
				"UPDATE deliveries SET state = 'queued', state_changed_at = ?3"
				" WHERE instance_id = ?1 AND destination = ?4 AND state = 'sending'"
				" AND (SELECT hash FROM instances WHERE id = ?1) != ?2",
				&st);
			if (r == SQLITE_OK) {
				sqlite3_bind_int64(st, 1, s[i].id);
				op__spool_bind_text(st, 2, s[i].hash);
				sqlite3_bind_int64(st, 3, now);
				op__spool_bind_text(st, 4, dest);
				r = sqlite3_step(st);
			}
			op__spool_done(st);
		}
		if (r != SQLITE_DONE)
			rc = op__spool_sql_fail(sp, "settle", r);
		else
			rc = op__spool_refresh(sp, s[i].id, now);
		/* Sent everywhere: its copy, if any, is needed no more. */
		if (rc == 0 && s[i].verdict == OP_VERDICT_SENT) {
			rc = op__spool_encoding_forget(sp, s[i].hash, 1, &freed);
			if (rc > 0)
				gone[n_gone++] = i;
			rc = rc < 0 ? rc : 0;
		}
	}
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
	for (unsigned k = 0; rc == 0 && k < n_gone; k++)
		op__spool_encoding_unlink(sp, s[gone[k]].hash, k == 0 ? freed : 0);
	pthread_mutex_unlock(&sp->tx_mu);
	free(gone);
	return rc;
}

int op_spool_next_due(op_spool *sp, const char *dest, int64_t *when)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*when = INT64_MAX;
	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(
		sp->db,
		"SELECT CASE WHEN EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_ready"
		" WHERE destination = ?1 AND state = 'queued' AND next_attempt_at = 0)"
		" THEN 0 ELSE (SELECT MIN(next_attempt_at) FROM deliveries"
		" WHERE destination = ?1 AND state = 'queued' AND next_attempt_at > 0)"
		" END",
		-1, &st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, dest);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		*when = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc == SQLITE_ROW ? 0 : op__spool_sql_fail(sp, "next_due", rc);
}
