/*
 * spool_commit: storage commitment requests (see spool.h), from the
 * N-ACTION that asks to the N-EVENT-REPORT that answers.
 *
 * A request is a row in commitments and one row per instance in
 * commitment_items; each item's result is written once decided and never
 * changes after, so a report says the same whenever it goes. What
 * decides: with cloud set, the instance's delivery to the cloud (sent:
 * committed; quarantined: failed; otherwise waiting until the deadline),
 * or, for an instance routed elsewhere only, the instance's own state;
 * without it, the instance's row (it is on disk whenever it has one).
 *
 * Writes take tx_mu like every other transaction on sp->db.
 */
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reported requests kept for the record; older ones go. */
#define REPORTED_KEEP "1000"

static int fail(op_spool *sp, int rc)
{
	return op__spool_sql_fail(sp, "commitment", rc);
}

int op_spool_commit_request(op_spool *sp, const char *transaction_uid, const char *calling_aet,
			    int cloud, int64_t now, int64_t deadline, int64_t due,
			    const op_commit_item *items, unsigned n, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (n == 0 || n > OP_COMMIT_MAX_ITEMS)
		return -EINVAL;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = sqlite3_prepare_v2(sp->db,
				"INSERT INTO commitments (transaction_uid, calling_aet, cloud,"
				" received_at, deadline, next_attempt_at, state)"
				" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, transaction_uid);
		op__spool_bind_text(st, 2, calling_aet);
		sqlite3_bind_int(st, 3, cloud);
		sqlite3_bind_int64(st, 4, now);
		sqlite3_bind_int64(st, 5, deadline);
		sqlite3_bind_int64(st, 6, due);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	st = NULL;
	*id = sqlite3_last_insert_rowid(sp->db);
	if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(
			sp->db,
			"INSERT INTO commitment_items (commitment_id, seq, sop_class_uid,"
			" sop_instance_uid) VALUES (?1, ?2, ?3, ?4)",
			-1, &st, NULL);
	for (unsigned i = 0; rc == SQLITE_OK && i < n; i++) {
		sqlite3_bind_int64(st, 1, *id);
		sqlite3_bind_int(st, 2, (int)i);
		op__spool_bind_text(st, 3, items[i].sop_class_uid);
		op__spool_bind_text(st, 4, items[i].sop_instance_uid);
		rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_reset(st) : SQLITE_IOERR;
	}
	sqlite3_finalize(st);
	rc = rc == SQLITE_OK || rc == SQLITE_DONE ? op__spool_exec(sp, "COMMIT") : fail(sp, rc);
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
out:
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

/* What the spool says of one instance now (OP_COMMIT_*). */
static uint16_t decide(sqlite3_stmt *st, const op_commit_item *it, int cloud)
{
	uint16_t result = OP_COMMIT_NO_SUCH_INSTANCE;

	sqlite3_reset(st);
	op__spool_bind_text(st, 1, it->sop_instance_uid);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *class = (const char *)sqlite3_column_text(st, 0);
		const char *state = (const char *)sqlite3_column_text(st, 1);
		const unsigned char *to_cloud = sqlite3_column_text(st, 2);

		if (to_cloud) /* the cloud's word, when it was sent there */
			state = (const char *)to_cloud;
		if (strcmp(class, it->sop_class_uid) != 0)
			result = OP_COMMIT_CLASS_CONFLICT;
		else if (!cloud || strcmp(state, "sent") == 0)
			result = OP_COMMIT_OK;
		else if (strcmp(state, "quarantined") == 0)
			result = OP_COMMIT_PROCESSING_FAILURE;
		else
			result = OP_COMMIT_WAITING;
	}
	return result;
}

/* Reads request id's row and items into out (decided items as kept). */
static int load(op_spool *sp, int64_t id, op_commitment_txn *out)
{
	sqlite3_stmt *st = NULL;
	unsigned cap = 0;
	int rc = sqlite3_prepare_v2(
		sp->db,
		"SELECT transaction_uid, calling_aet, cloud, received_at, deadline,"
		" attempts FROM commitments WHERE id = ? AND state = 'pending'",
		-1, &st, NULL);

	memset(out, 0, sizeof(*out));
	out->id = id;
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW) {
		snprintf(out->transaction_uid, sizeof(out->transaction_uid), "%s",
			 sqlite3_column_text(st, 0));
		snprintf(out->calling_aet, sizeof(out->calling_aet), "%s",
			 sqlite3_column_text(st, 1));
		out->cloud = sqlite3_column_int(st, 2);
		out->received_at = sqlite3_column_int64(st, 3);
		out->deadline = sqlite3_column_int64(st, 4);
		out->attempts = (unsigned)sqlite3_column_int(st, 5);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return fail(sp, rc);
	rc = sqlite3_prepare_v2(
		sp->db,
		"SELECT sop_class_uid, sop_instance_uid, result FROM commitment_items"
		" WHERE commitment_id = ? ORDER BY seq",
		-1, &st, NULL);
	if (rc == SQLITE_OK)
		sqlite3_bind_int64(st, 1, id);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (out->n == cap) {
			op_commit_item *more =
				realloc(out->items, (cap = cap ? 2 * cap : 16) * sizeof(*more));
			if (!more) {
				rc = SQLITE_NOMEM;
				break;
			}
			out->items = more;
		}
		op_commit_item *it = &out->items[out->n++];
		snprintf(it->sop_class_uid, sizeof(it->sop_class_uid), "%s",
			 sqlite3_column_text(st, 0));
		snprintf(it->sop_instance_uid, sizeof(it->sop_instance_uid), "%s",
			 sqlite3_column_text(st, 1));
		it->result = sqlite3_column_type(st, 2) == SQLITE_NULL
				     ? OP_COMMIT_WAITING
				     : (uint16_t)sqlite3_column_int(st, 2);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		free(out->items);
		out->items = NULL;
		return fail(sp, rc);
	}
	return 0;
}

int op_spool_commit_get(op_spool *sp, int64_t id, int64_t now, op_commitment_txn *out)
{
	sqlite3_stmt *ask = NULL, *keep = NULL;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = load(sp, id, out);
	if (rc < 0)
		goto out;
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = sqlite3_prepare_v2(
		sp->db,
		"SELECT i.sop_class_uid, i.state, d.state FROM instances i LEFT JOIN deliveries d"
		" ON d.instance_id = i.id AND d.destination = '" OP_SPOOL_DEFAULT_DESTINATION "'"
		" WHERE i.sop_instance_uid = ?",
		-1, &ask, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(sp->db,
					"UPDATE commitment_items SET result = ?3"
					" WHERE commitment_id = ?1 AND seq = ?2",
					-1, &keep, NULL);
	out->final = 1;
	for (unsigned i = 0; rc == SQLITE_OK && i < out->n; i++) {
		op_commit_item *it = &out->items[i];

		if (it->result != OP_COMMIT_WAITING)
			continue;
		it->result = decide(ask, it, out->cloud);
		if (it->result == OP_COMMIT_WAITING && now >= out->deadline)
			it->result = OP_COMMIT_PROCESSING_FAILURE;
		if (it->result == OP_COMMIT_WAITING) {
			out->final = 0;
			continue;
		}
		sqlite3_reset(keep);
		sqlite3_bind_int64(keep, 1, id);
		sqlite3_bind_int(keep, 2, (int)i);
		sqlite3_bind_int(keep, 3, it->result);
		rc = sqlite3_step(keep) == SQLITE_DONE ? SQLITE_OK : SQLITE_IOERR;
	}
	sqlite3_finalize(ask);
	sqlite3_finalize(keep);
	rc = rc == SQLITE_OK ? op__spool_exec(sp, "COMMIT") : fail(sp, rc);
	if (rc < 0) {
		op__spool_exec(sp, "ROLLBACK");
		free(out->items);
		out->items = NULL;
	}
out:
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_commit_due(op_spool *sp, int64_t now, int64_t *ids, unsigned max, unsigned *n)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		sp->ro,
		"SELECT id FROM commitments WHERE state = 'pending'"
		" AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2",
		-1, &st, NULL);

	*n = 0;
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_int(st, 2, (int)max);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			ids[(*n)++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : op__spool_fail_on(sp, sp->ro, "commitment", rc);
}

/* Runs sql on request id (?1) with ?2 and ?3, under tx_mu. */
static int update(op_spool *sp, const char *sql, int64_t id, int64_t a, const char *b)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(sp->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, a);
		if (b)
			op__spool_bind_text(st, 3, b);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	rc = rc == SQLITE_DONE ? 0 : fail(sp, rc);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_commit_reported(op_spool *sp, int64_t id, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = sqlite3_prepare_v2(sp->db,
				"UPDATE commitments SET state = 'reported', reported_at = ?2,"
				" last_error = NULL WHERE id = ?1",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, now);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	rc = rc == SQLITE_DONE ? 0 : fail(sp, rc);
	/* The record is bounded: the oldest reported ones go. */
	if (rc == 0)
		rc = op__spool_exec(sp, "DELETE FROM commitment_items WHERE commitment_id IN"
					" (SELECT id FROM commitments WHERE state = 'reported'"
					" ORDER BY id DESC LIMIT -1 OFFSET " REPORTED_KEEP ")");
	if (rc == 0)
		rc = op__spool_exec(
			sp, "DELETE FROM commitments WHERE state = 'reported'"
			    " AND id NOT IN (SELECT id FROM commitments"
			    " WHERE state = 'reported' ORDER BY id DESC LIMIT " REPORTED_KEEP ")");
	rc = rc == 0 ? op__spool_exec(sp, "COMMIT") : rc;
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
out:
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_commit_later(op_spool *sp, int64_t id, int64_t next, const char *error)
{
	if (!error)
		return update(sp, "UPDATE commitments SET next_attempt_at = ?2 WHERE id = ?1", id,
			      next, NULL);
	return update(sp,
		      "UPDATE commitments SET next_attempt_at = ?2, last_error = ?3,"
		      " attempts = attempts + 1 WHERE id = ?1",
		      id, next, error);
}

int op_spool_commit_pending(op_spool *sp, uint64_t *pending, int64_t *oldest)
{
	sqlite3_stmt *st = NULL;
	int rc =
		sqlite3_prepare_v2(sp->ro,
				   "SELECT COUNT(*), COALESCE(MIN(received_at), 0) FROM commitments"
				   " WHERE state = 'pending'",
				   -1, &st, NULL);

	*pending = 0;
	*oldest = 0;
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*pending = (uint64_t)sqlite3_column_int64(st, 0);
		*oldest = sqlite3_column_int64(st, 1);
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : op__spool_fail_on(sp, sp->ro, "commitment", rc);
}
