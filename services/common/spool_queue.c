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

#include "common/log.h"

struct victim {
	sqlite3_int64 id;
	char hash[OP_HASH_HEX + 1];
	uint64_t size;
};

/* Plans which sent objects go: oldest sent first, while the sent cache is
 * above keep_sent or until want bytes are planned. */
static int plan_eviction(op_spool *sp, uint64_t keep_sent, uint64_t want, struct victim **out,
			 size_t *n_out)
{
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
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT id, hash, size FROM instances WHERE state = 'sent'"
				" ORDER BY state_changed_at, id",
				-1, &st, NULL);
	while (rc == SQLITE_OK && (sent > keep_sent || planned < want) &&
	       (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
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
	rc = sqlite3_prepare_v2(sp->db, "DELETE FROM instances WHERE id = ? AND state = 'sent'", -1,
				&st, NULL);
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(st, 1, v[i].id);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK || (rc = op__spool_exec(sp, "COMMIT")) < 0) {
		rc = rc < 0 ? rc : op__spool_sql_fail(sp, "evict", rc);
		op__spool_exec(sp, "ROLLBACK");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (op__spool_hash_in_use(sp, v[i].hash) == 0) {
			op_spool_object_file(sp, v[i].hash, path, sizeof(path));
			unlink(path);
		}
		*freed += v[i].size;
	}
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
	rc = op__spool_exec(sp, "UPDATE instances SET state = 'queued' WHERE state = 'sending'");
	*count = rc == 0 ? (unsigned)sqlite3_changes(sp->db) : 0;
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

static int claim_rows(op_spool *sp, int64_t now, unsigned max_items, uint64_t max_bytes,
		      int min_priority, op_spool_item *items, unsigned *n)
{
	sqlite3_stmt *st = NULL;
	char study[OP_UID_MAX + 1] = "";
	uint64_t bytes = 0;
	int rc;

	rc = sqlite3_prepare_v2(sp->db,
				"SELECT study_uid FROM instances WHERE state = 'queued'"
				" AND next_attempt_at <= ? AND priority >= ?"
				" ORDER BY priority DESC, received_at, id LIMIT 1",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int(st, 2, min_priority);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			snprintf(study, sizeof(study), "%s", sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return op__spool_sql_fail(sp, "claim", rc);
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT id, sop_instance_uid, hash, size, attempts, priority"
				" FROM instances WHERE study_uid = ? AND state = 'queued'"
				" AND next_attempt_at <= ? ORDER BY received_at, id LIMIT ?",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, study);
		sqlite3_bind_int64(st, 2, now);
		sqlite3_bind_int(st, 3, (int)max_items);
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
		bytes += size;
		(*n)++;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc != SQLITE_OK && rc != SQLITE_DONE)
		return op__spool_sql_fail(sp, "claim", rc);
	rc = sqlite3_prepare_v2(sp->db,
				"UPDATE instances SET state = 'sending', state_changed_at = ?"
				" WHERE id = ?",
				-1, &st, NULL);
	for (unsigned i = 0; i < *n && rc == SQLITE_OK; i++) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int64(st, 2, items[i].id);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_OK ? 0 : op__spool_sql_fail(sp, "claim", rc);
}

int op_spool_claim(op_spool *sp, int64_t now, unsigned max_items, uint64_t max_bytes,
		   int min_priority, op_spool_item *items, unsigned *n)
{
	int rc;

	*n = 0;
	if (max_items == 0)
		return -EINVAL;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc == 0)
		rc = claim_rows(sp, now, max_items, max_bytes, min_priority, items, n);
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
static int count_verdict(op_spool *sp, const op_spool_settlement *s)
{
	sqlite3_stmt *st = NULL;
	int64_t size = 0;
	int rc;

	switch (s->verdict) {
	case OP_VERDICT_SENT:
		rc = sqlite3_prepare_v2(sp->db, "SELECT size FROM instances WHERE id = ?", -1, &st,
					NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s->id);
			if ((rc = sqlite3_step(st)) == SQLITE_ROW)
				size = sqlite3_column_int64(st, 0);
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_ROW)
			return rc;
		if (op__spool_counter_add(sp, "uploaded_instances", 1) < 0 ||
		    op__spool_counter_add(sp, "uploaded_bytes", (uint64_t)size) < 0)
			return SQLITE_ERROR;
		return SQLITE_DONE;
	case OP_VERDICT_RETRY:
		return op__spool_counter_add(sp, "retries", 1) < 0 ? SQLITE_ERROR : SQLITE_DONE;
	case OP_VERDICT_QUARANTINE:
		/* Instances, not events: one retried and refused again counts
		 * once. */
		rc = sqlite3_prepare_v2(sp->db,
					"INSERT OR IGNORE INTO quarantined_once (sop_instance_uid)"
					" SELECT sop_instance_uid FROM instances WHERE id = ?",
					-1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s->id);
			rc = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (sqlite3_changes(sp->db) == 0)
			return SQLITE_DONE;
		return op__spool_counter_add(sp, "quarantined", 1) < 0 ? SQLITE_ERROR : SQLITE_DONE;
	default: return SQLITE_DONE;
	}
}

int op_spool_settle(op_spool *sp, const op_spool_settlement *s, unsigned n, int64_t now)
{
	static const char *const sql[] = {
		[OP_VERDICT_SENT] = "UPDATE instances SET state = 'sent', attempts = attempts + 1,"
				    " last_error = NULL, state_changed_at = ?3"
				    " WHERE id = ?1 AND hash = ?2 AND state = 'sending'",
		[OP_VERDICT_RETRY] =
			"UPDATE instances SET state = 'queued', attempts = attempts + 1,"
			" next_attempt_at = ?4, last_error = ?5, state_changed_at = ?3"
			" WHERE id = ?1 AND hash = ?2 AND state = 'sending'",
		[OP_VERDICT_QUARANTINE] = "UPDATE instances SET state = 'quarantined',"
					  " attempts = attempts + 1, last_error = ?5,"
					  " state_changed_at = ?3"
					  " WHERE id = ?1 AND hash = ?2 AND state = 'sending'",
		[OP_VERDICT_REQUEUE] =
			"UPDATE instances SET state = 'queued', next_attempt_at = ?4,"
			" last_error = ?5, state_changed_at = ?3"
			" WHERE id = ?1 AND hash = ?2 AND state = 'sending'",
	};
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	for (unsigned i = 0; i < n && rc == 0; i++) {
		sqlite3_stmt *st = NULL;
		int r;

		if ((unsigned)s[i].verdict >= sizeof(sql) / sizeof(sql[0])) {
			rc = -EINVAL;
			break;
		}
		r = sqlite3_prepare_v2(sp->db, sql[s[i].verdict], -1, &st, NULL);
		if (r == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, s[i].id);
			op__spool_bind_text(st, 2, s[i].hash);
			sqlite3_bind_int64(st, 3, now);
			sqlite3_bind_int64(st, 4, s[i].next_attempt_at);
			op__spool_bind_text(st, 5, s[i].error);
			r = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		st = NULL;
		if (r == SQLITE_DONE && sqlite3_changes(sp->db) == 1)
			r = count_verdict(sp, &s[i]);
		/* The row was replaced by a newer version while this one was
		 * sent: queue the newer one. */
		else if (r == SQLITE_DONE && sqlite3_changes(sp->db) == 0) {
			r = sqlite3_prepare_v2(
				sp->db,
				"UPDATE instances SET state = 'queued', state_changed_at = ?3"
				" WHERE id = ?1 AND hash != ?2 AND state = 'sending'",
				-1, &st, NULL);
			if (r == SQLITE_OK) {
				sqlite3_bind_int64(st, 1, s[i].id);
				op__spool_bind_text(st, 2, s[i].hash);
				sqlite3_bind_int64(st, 3, now);
				r = sqlite3_step(st);
			}
			sqlite3_finalize(st);
		}
		if (r != SQLITE_DONE)
			rc = op__spool_sql_fail(sp, "settle", r);
	}
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_next_due(op_spool *sp, int64_t *when)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*when = INT64_MAX;
	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT MIN(next_attempt_at) FROM instances WHERE state = 'queued'",
				-1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		*when = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc == SQLITE_ROW ? 0 : op__spool_sql_fail(sp, "next_due", rc);
}
