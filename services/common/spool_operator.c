/*
 * spool_operator: the operator's side of the spool (see spool.h): the
 * counters, the stats and studies the console and the metrics show, the
 * retry and the discard of quarantined instances, the settings and the
 * audit log.
 *
 * Reads go through the spool's read-only connection (sp->ro), so that the
 * console never waits for the uplink's transactions nor makes them wait;
 * writes take tx_mu like every other transaction on sp->db.
 */
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

/* Audit entries kept: the oldest go beyond this. */
#define AUDIT_KEEP "10000"

static const char *const state_names[OP_SPOOL_STATES] = { "queued", "sending", "sent",
							  "quarantined" };

static int ro_fail(op_spool *sp, const char *what, int rc)
{
	return op__spool_fail_on(sp, sp->ro, what, rc);
}

const char *op_spool_state_name(int state)
{
	return state >= 0 && state < OP_SPOOL_STATES ? state_names[state] : NULL;
}

int op_spool_state_parse(const char *name)
{
	for (int i = 0; i < OP_SPOOL_STATES; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -EINVAL;
}

int op_spool_get_stats(op_spool *sp, const char *dest, op_spool_stats *out)
{
	sqlite3_stmt *st = NULL;
	size_t prefix = dest ? strlen(dest) + 1 : 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (dest)
		rc = sqlite3_prepare_v2(
			sp->ro,
			"SELECT d.state, COUNT(*), COALESCE(SUM(i.size), 0)"
			" FROM deliveries d JOIN instances i ON i.id = d.instance_id"
			" WHERE d.destination = ?1 GROUP BY d.state",
			-1, &st, NULL);
	else
		rc = sqlite3_prepare_v2(
			sp->ro,
			"SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM instances"
			" WHERE ?1 IS NULL GROUP BY state",
			-1, &st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, dest);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int i = op_spool_state_parse((const char *)sqlite3_column_text(st, 0));

		if (i >= 0) {
			out->state[i].instances = (uint64_t)sqlite3_column_int64(st, 1);
			out->state[i].bytes = (uint64_t)sqlite3_column_int64(st, 2);
		}
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE && dest)
		rc = sqlite3_prepare_v2(sp->ro,
					"SELECT MIN(received_at), COUNT(DISTINCT study_uid)"
					" FROM deliveries WHERE destination = ?1"
					" AND state IN ('queued', 'sending')",
					-1, &st, NULL);
	else if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(
			sp->ro,
			"SELECT MIN(received_at), COUNT(DISTINCT study_uid)"
			" FROM instances WHERE ?1 IS NULL AND state IN ('queued', 'sending')",
			-1, &st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, dest);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		out->oldest_queued_at = sqlite3_column_int64(st, 0); /* NULL: 0 */
		out->studies_queued = (uint64_t)sqlite3_column_int64(st, 1);
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(sp->ro, "SELECT name, value FROM counters", -1, &st, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		static const struct {
			const char *name;
			size_t offset;
		} names[] = {
#define C(f) { #f, offsetof(op_spool_counters, f) }
			C(received_instances),    C(received_bytes), C(uploaded_instances),
			C(uploaded_bytes),        C(retries),        C(quarantined),
			C(associations_rejected),
#undef C
		};
		const char *name = (const char *)sqlite3_column_text(st, 0);

		/* A destination's own counters are "NAME:counter". */
		if (dest && (strncmp(name, dest, prefix - 1) != 0 || name[prefix - 1] != ':')) {
			rc = SQLITE_OK;
			continue;
		}
		if (!dest && strchr(name, ':')) {
			rc = SQLITE_OK;
			continue;
		}
		name += prefix;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strcmp(name, names[i].name) == 0)
				*(uint64_t *)((char *)&out->counters + names[i].offset) =
					(uint64_t)sqlite3_column_int64(st, 1);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : ro_fail(sp, "stats", rc);
}

int op__spool_counter_add(op_spool *sp, const char *name, uint64_t delta)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db,
				    "INSERT INTO counters (name, value) VALUES (?1, ?2)"
				    " ON CONFLICT (name) DO UPDATE SET value = value + ?2",
				    -1, &st, NULL);

	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, name);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)delta);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "counter", rc);
}

int op_spool_count(op_spool *sp, const char *name, uint64_t delta)
{
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_counter_add(sp, name, delta);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

int op_spool_studies(op_spool *sp, const char *dest, int state, unsigned offset, unsigned limit,
		     op_spool_study *out, unsigned *n, uint64_t *total)
{
	/* One destination's view: its deliveries' states, attempts and
	 * errors. */
	static const char list_dest[] =
		"SELECT d.study_uid, MAX(i.patient_id), MAX(i.modality), COUNT(*), SUM(i.size),"
		" SUM(d.state = 'queued'), SUM(d.state = 'sending'), SUM(d.state = 'sent'),"
		" SUM(d.state = 'quarantined'), MAX(d.attempts), MAX(d.priority),"
		" MIN(d.received_at), MAX(d.state_changed_at),"
		" (SELECT e.last_error FROM deliveries e WHERE e.destination = ?4"
		"  AND e.study_uid = d.study_uid AND e.last_error IS NOT NULL"
		"  ORDER BY e.state_changed_at DESC LIMIT 1)"
		" FROM deliveries d JOIN instances i ON i.id = d.instance_id"
		" WHERE d.destination = ?4 AND (?1 IS NULL OR d.study_uid IN"
		"  (SELECT study_uid FROM deliveries WHERE destination = ?4 AND state = ?1))"
		" GROUP BY d.study_uid ORDER BY MAX(d.state_changed_at) DESC, d.study_uid"
		" LIMIT ?2 OFFSET ?3";
	/* ?1: the state filter, NULL for all. The last error is the one of
	 * the study's most recently changed row that has one. */
	static const char list[] =
		"SELECT study_uid, MAX(patient_id), MAX(modality), COUNT(*), SUM(size),"
		" SUM(state = 'queued'), SUM(state = 'sending'), SUM(state = 'sent'),"
		" SUM(state = 'quarantined'), MAX(attempts), MAX(priority), MIN(received_at),"
		" MAX(state_changed_at),"
		" (SELECT last_error FROM instances e WHERE e.study_uid = i.study_uid"
		"  AND e.last_error IS NOT NULL ORDER BY e.state_changed_at DESC LIMIT 1)"
		" FROM instances i"
		" WHERE ?1 IS NULL OR study_uid IN (SELECT study_uid FROM instances WHERE state = "
		"?1)"
		" GROUP BY study_uid ORDER BY MAX(state_changed_at) DESC, study_uid LIMIT ?2 "
		"OFFSET ?3";
	const char *filter = op_spool_state_name(state);
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	*total = 0;
	rc = sqlite3_prepare_v2(sp->ro,
				dest ? "SELECT COUNT(DISTINCT study_uid) FROM deliveries"
				       " WHERE destination = ?2 AND (?1 IS NULL OR state = ?1)"
				     : "SELECT COUNT(DISTINCT study_uid) FROM instances"
				       " WHERE ?1 IS NULL OR state = ?1",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, filter);
		if (dest)
			op__spool_bind_text(st, 2, dest);
		if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			*total = (uint64_t)sqlite3_column_int64(st, 0);
			rc = SQLITE_DONE;
		}
	}
	sqlite3_finalize(st);
	st = NULL;
	if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(sp->ro, dest ? list_dest : list, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, filter);
		sqlite3_bind_int64(st, 2, limit);
		sqlite3_bind_int64(st, 3, offset);
		if (dest)
			op__spool_bind_text(st, 4, dest);
	}
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		op_spool_study *s = &out[(*n)++];
		const unsigned char *err = sqlite3_column_text(st, 13);

		memset(s, 0, sizeof(*s));
		snprintf(s->study_uid, sizeof(s->study_uid), "%s", sqlite3_column_text(st, 0));
		snprintf(s->patient_id, sizeof(s->patient_id), "%s", sqlite3_column_text(st, 1));
		snprintf(s->modality, sizeof(s->modality), "%s", sqlite3_column_text(st, 2));
		s->instances = (uint64_t)sqlite3_column_int64(st, 3);
		s->bytes = (uint64_t)sqlite3_column_int64(st, 4);
		for (int i = 0; i < OP_SPOOL_STATES; i++)
			s->by_state[i] = (uint64_t)sqlite3_column_int64(st, 5 + i);
		s->attempts = sqlite3_column_int(st, 9);
		s->urgent = sqlite3_column_int(st, 10) >= OP_PRIORITY_HIGH;
		s->received_at = sqlite3_column_int64(st, 11);
		s->changed_at = sqlite3_column_int64(st, 12);
		if (err)
			snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		rc = *n < limit ? SQLITE_OK : SQLITE_DONE;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : ro_fail(sp, "studies", rc);
}

int op_spool_retry_quarantined(op_spool *sp, const char *dest, const char *study_uid, int64_t now,
			       unsigned *n)
{
	sqlite3_stmt *st = NULL;
	int rc, known = 1;

	*n = 0;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	/* A delivery whose file is missing stays quarantined: sending it would
	 * fail again at once. The receiver requeues it when the file comes
	 * back. The instances' summaries follow (RETURNING names them). */
	rc = sqlite3_prepare_v2(sp->db,
				"UPDATE deliveries SET state = 'queued', attempts = 0,"
				" next_attempt_at = 0, last_error = NULL, state_changed_at = ?2"
				" WHERE state = 'quarantined' AND (?1 IS NULL OR study_uid = ?1)"
				" AND (?3 IS NULL OR destination = ?3)"
				" AND last_error IS NOT '" OP__SPOOL_MISSING_REASON "'"
				" RETURNING instance_id",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, study_uid);
		sqlite3_bind_int64(st, 2, now);
		op__spool_bind_text(st, 3, dest);
	}
	int64_t *ids = NULL;
	size_t n_ids = 0;
	rc = rc == SQLITE_OK ? op__spool_step_ids(sp, st, &ids, &n_ids)
			     : op__spool_sql_fail(sp, "retry", rc);
	sqlite3_finalize(st);
	for (size_t i = 0; i < n_ids && rc == 0; i++)
		rc = op__spool_refresh(sp, ids[i], now);
	free(ids);
	/* Nothing requeued: a study the spool does not know at all is the
	 * operator's typo, not "0 requeued". */
	if (rc == 0 && n_ids == 0 && study_uid) {
		st = NULL;
		int r = sqlite3_prepare_v2(sp->db,
					   "SELECT 1 FROM instances WHERE study_uid = ? LIMIT 1",
					   -1, &st, NULL);
		if (r == SQLITE_OK) {
			op__spool_bind_text(st, 1, study_uid);
			r = sqlite3_step(st);
		}
		sqlite3_finalize(st);
		if (r == SQLITE_DONE)
			known = 0;
		else if (r != SQLITE_ROW)
			rc = op__spool_sql_fail(sp, "retry", r);
	}
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0)
		op__spool_exec(sp, "ROLLBACK");
	else
		*n = (unsigned)n_ids;
	if (rc == 0 && !known)
		rc = -ENOENT;
out:
	pthread_mutex_unlock(&sp->tx_mu);
	return rc;
}

/* A quarantined row to discard, and the file it names as it was seen
 * before the rows went (see op_spool_discard_quarantined). */
struct discarded {
	char hash[OP_HASH_HEX + 1];
	uint64_t size;
	ino_t ino; /* 0: no file */
};

static int plan_discard(op_spool *sp, const char *study_uid, struct discarded **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	struct discarded *v = NULL, *grown;
	size_t cap = 0;
	char path[PATH_MAX];
	struct stat sb;
	int rc;

	*n = 0;
	rc = sqlite3_prepare_v2(sp->db,
				"SELECT hash, size FROM instances"
				" WHERE study_uid = ? AND state = 'quarantined'",
				-1, &st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, study_uid);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			if (!(grown = realloc(v, cap * sizeof(*v)))) {
				rc = SQLITE_NOMEM;
				break;
			}
			v = grown;
		}
		snprintf(v[*n].hash, sizeof(v[*n].hash), "%s", sqlite3_column_text(st, 0));
		v[*n].size = (uint64_t)sqlite3_column_int64(st, 1);
		op_spool_object_file(sp, v[*n].hash, path, sizeof(path));
		v[*n].ino = stat(path, &sb) == 0 ? sb.st_ino : 0;
		++*n;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	*out = v;
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "discard", rc);
}

int op_spool_discard_quarantined(op_spool *sp, const char *study_uid, unsigned *n_out,
				 uint64_t *bytes_out)
{
	struct discarded *v = NULL;
	sqlite3_stmt *st = NULL;
	char path[PATH_MAX], q[OP_LOG_QUOTED(OP_UID_MAX)];
	struct stat sb;
	size_t n = 0;
	int rc;

	*n_out = 0;
	*bytes_out = 0;
	pthread_mutex_lock(&sp->tx_mu);
	rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
	if (rc < 0)
		goto out;
	rc = plan_discard(sp, study_uid, &v, &n);
	if (rc == 0 && n == 0) {
		op__spool_exec(sp, "ROLLBACK");
		rc = -ENOENT;
		goto out;
	}
	/* Only quarantined rows: one the uplink or the receiver just moved on
	 * (queued again, being sent) is not the operator's to drop. */
	if (rc == 0)
		rc = op__spool_exec_text(
			sp,
			"DELETE FROM deliveries WHERE instance_id IN (SELECT id FROM"
			" instances WHERE study_uid = ?1 AND state = 'quarantined')",
			study_uid);
	if (rc == 0 && (rc = sqlite3_prepare_v2(sp->db,
						"DELETE FROM instances WHERE study_uid = ? AND"
						" state = 'quarantined'",
						-1, &st, NULL)) == SQLITE_OK) {
		op__spool_bind_text(st, 1, study_uid);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "discard", rc);
	}
	sqlite3_finalize(st);
	if (rc == 0)
		rc = op__spool_exec(sp, "COMMIT");
	if (rc < 0) {
		op__spool_exec(sp, "ROLLBACK");
		goto out;
	}
	/* A file goes once no row names it, and only the very file seen
	 * before: the receiver may meanwhile have renamed the same content
	 * into place for a row it is about to commit. */
	for (size_t i = 0; i < n; i++) {
		op_spool_object_file(sp, v[i].hash, path, sizeof(path));
		if (v[i].ino && op__spool_hash_in_use(sp, v[i].hash) == 0 && stat(path, &sb) == 0 &&
		    sb.st_ino == v[i].ino)
			unlink(path);
		*bytes_out += v[i].size;
	}
	*n_out = (unsigned)n;
	pthread_mutex_lock(&sp->mu);
	sp->usage.bytes -= *bytes_out;
	sp->usage.objects -= n;
	pthread_mutex_unlock(&sp->mu);
	op_info("spool.discard", "study=%s instances=%zu bytes=%" PRIu64,
		op_log_quote(q, sizeof(q), study_uid), n, *bytes_out);
out:
	pthread_mutex_unlock(&sp->tx_mu);
	free(v);
	return rc;
}

int op_spool_setting_get(op_spool *sp, const char *key, char *value, size_t size)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(sp->ro, "SELECT value FROM settings WHERE key = ?", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, key);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			snprintf(value, size, "%s", sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : ro_fail(sp, "setting", rc);
}

int op_spool_setting_set(op_spool *sp, const char *key, const char *value)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(
		sp->db,
		value ? "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)"
		      : "DELETE FROM settings WHERE key = ?1",
		-1, &st, NULL);
	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, key);
		if (value)
			op__spool_bind_text(st, 2, value);
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&sp->tx_mu);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "setting", rc);
}

int op_spool_audit(op_spool *sp, int64_t now, const char *who, const char *origin,
		   const char *action, const char *detail)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&sp->tx_mu);
	rc = sqlite3_prepare_v2(sp->db,
				"INSERT INTO audit (time, who, origin, action, detail)"
				" VALUES (?, ?, ?, ?, ?)",
				-1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, now);
		op__spool_bind_text(st, 2, who);
		op__spool_bind_text(st, 3, origin);
		op__spool_bind_text(st, 4, action);
		op__spool_bind_text(st, 5, detail ? detail : "");
		rc = sqlite3_step(st);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE &&
	    sqlite3_last_insert_rowid(sp->db) % 100 == 0) /* now and then, not per row */
		rc = op__spool_exec(sp, "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) "
					"- " AUDIT_KEEP) == 0
			     ? SQLITE_DONE
			     : SQLITE_ERROR;
	pthread_mutex_unlock(&sp->tx_mu);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "audit", rc);
}

int op_spool_audit_list(op_spool *sp, unsigned limit, op_spool_audit_entry *out, unsigned *n)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	rc = sqlite3_prepare_v2(sp->ro,
				"SELECT time, who, origin, action, detail FROM audit"
				" ORDER BY id DESC LIMIT ?",
				-1, &st, NULL);
	if (rc == SQLITE_OK)
		sqlite3_bind_int64(st, 1, limit);
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		op_spool_audit_entry *e = &out[(*n)++];

		e->time = sqlite3_column_int64(st, 0);
		snprintf(e->who, sizeof(e->who), "%s", sqlite3_column_text(st, 1));
		snprintf(e->origin, sizeof(e->origin), "%s", sqlite3_column_text(st, 2));
		snprintf(e->action, sizeof(e->action), "%s", sqlite3_column_text(st, 3));
		snprintf(e->detail, sizeof(e->detail), "%s", sqlite3_column_text(st, 4));
		rc = *n < limit ? SQLITE_OK : SQLITE_DONE;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : ro_fail(sp, "audit", rc);
}

int op_spool_quick_check(op_spool *sp, char *detail, size_t size)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(sp->ro, "PRAGMA quick_check(1)", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(st, 0);

		snprintf(detail, size, "quick_check: %s", r ? r : "(null)");
		rc = r && strcmp(r, "ok") == 0 ? 0 : -EIO;
	} else {
		snprintf(detail, size, "quick_check failed: %s", sqlite3_errmsg(sp->ro));
		rc = op__spool_sql_err(rc) ? op__spool_sql_err(rc) : -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

int op_spool_destinations(op_spool *sp, char (*names)[OP_DEST_NAME_MAX + 1], unsigned max,
			  unsigned *n)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
		sp->ro, "SELECT DISTINCT destination FROM deliveries ORDER BY destination", -1, &st,
		NULL);

	*n = 0;
	while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		if (*n < max)
			snprintf(names[(*n)++], OP_DEST_NAME_MAX + 1, "%s",
				 sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : ro_fail(sp, "destinations", rc);
}

int op_spool_orphan_deliveries(op_spool *sp, const char *const *known, unsigned n_known,
			       int64_t now, unsigned *n)
{
	char names[64][OP_DEST_NAME_MAX + 1];
	unsigned n_names = 0;
	int rc;

	*n = 0;
	rc = op_spool_destinations(sp, names, 64, &n_names);
	for (unsigned i = 0; i < n_names && rc == 0; i++) {
		char reason[OP_DEST_NAME_MAX + 80];
		sqlite3_stmt *st = NULL;
		int64_t *ids = NULL;
		size_t n_ids = 0;
		int found = 0;

		for (unsigned k = 0; k < n_known; k++)
			found |= strcmp(names[i], known[k]) == 0;
		if (found)
			continue;
		snprintf(reason, sizeof(reason),
			 "destination %s is no longer configured (retry once it is back)",
			 names[i]);
		pthread_mutex_lock(&sp->tx_mu);
		rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
		if (rc == 0 && (rc = sqlite3_prepare_v2(
					sp->db,
					"UPDATE deliveries SET state = 'quarantined',"
					" last_error = ?2, state_changed_at = ?3"
					" WHERE destination = ?1 AND state IN ('queued', 'sending')"
					" RETURNING instance_id",
					-1, &st, NULL)) == SQLITE_OK) {
			op__spool_bind_text(st, 1, names[i]);
			op__spool_bind_text(st, 2, reason);
			sqlite3_bind_int64(st, 3, now);
			rc = op__spool_step_ids(sp, st, &ids, &n_ids);
			sqlite3_finalize(st);
		}
		for (size_t k = 0; k < n_ids && rc == 0; k++)
			rc = op__spool_refresh(sp, ids[k], now);
		free(ids);
		if (rc == 0)
			rc = op__spool_exec(sp, "COMMIT");
		else
			op__spool_exec(sp, "ROLLBACK");
		pthread_mutex_unlock(&sp->tx_mu);
		if (rc == 0 && n_ids) {
			*n += (unsigned)n_ids;
			op_warn("spool.orphans", "destination=%s deliveries=%zu reason=\"%s\"",
				names[i], n_ids, reason);
		}
	}
	return rc;
}
