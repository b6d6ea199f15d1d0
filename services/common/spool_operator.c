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

/* Column i of st's row into out; "" when NULL. */
static void column_text(sqlite3_stmt *st, int i, char *out, size_t size)
{
	const unsigned char *v = sqlite3_column_text(st, i);

	snprintf(out, size, "%s", v ? (const char *)v : "");
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
	/* Kept by triggers (spool.c, schema_tallies): nothing here scans the
	 * instances, however many the spool holds. */
	rc = sqlite3_prepare_v2(sp->ro,
				"SELECT state, instances, bytes FROM tallies WHERE scope = ?1", -1,
				&st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, dest ? dest : "");
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
	/* The oldest from the partial indexes of what waits (named: without
	 * statistics sqlite reads the instances' queue index instead, 11 ms
	 * at a million). */
	if (rc == SQLITE_DONE && dest)
		rc = sqlite3_prepare_v2(
			sp->ro,
			"SELECT (SELECT MIN(received_at) FROM deliveries"
			" WHERE destination = ?1 AND state IN ('queued', 'sending')),"
			" (SELECT COUNT(*) FROM waiting_studies WHERE scope = ?1)",
			-1, &st, NULL);
	else if (rc == SQLITE_DONE)
		rc = sqlite3_prepare_v2(sp->ro,
					"SELECT (SELECT MIN(received_at) FROM instances"
					" INDEXED BY instances_waiting"
					" WHERE state IN ('queued', 'sending')),"
					" (SELECT COUNT(*) FROM waiting_studies WHERE scope = ?1)",
					-1, &st, NULL);
	if (rc == SQLITE_OK)
		op__spool_bind_text(st, 1, dest ? dest : "");
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
	int rc = op__spool_prepare(sp,
				   "INSERT INTO counters (name, value) VALUES (?1, ?2)"
				   " ON CONFLICT (name) DO UPDATE SET value = value + ?2",
				   &st);

	if (rc == SQLITE_OK) {
		op__spool_bind_text(st, 1, name);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)delta);
		rc = sqlite3_step(st);
	}
	op__spool_done(st);
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

/* The search's patterns: pid_glob a prefix of the patient ID or the
 * accession number, GLOB's wildcards escaped; name_like a substring of the
 * name for LIKE ... ESCAPE '\', with the operator's wildcards and
 * separators (see op_spool_studies). */
static void search_patterns(const char *search, char *pid_glob, size_t glob_size, char *name_like,
			    size_t like_size)
{
	size_t g = 0, l = 0;

	name_like[l++] = '%';
	for (const char *p = search; *p && g + 4 < glob_size && l + 4 < like_size; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '*' || c == '?' || c == '[') {
			pid_glob[g++] = '[';
			pid_glob[g++] = (char)c;
			pid_glob[g++] = ']';
		} else {
			pid_glob[g++] = (char)c;
		}
		if (c == ' ' || c == ',' || c == '^') {
			if (name_like[l - 1] != '%')
				name_like[l++] = '%';
		} else if (c == '*') {
			name_like[l++] = '%';
		} else if (c == '?') {
			name_like[l++] = '_';
		} else {
			if (c == '%' || c == '_' || c == '\\')
				name_like[l++] = '\\';
			name_like[l++] = (char)c;
		}
	}
	pid_glob[g++] = '*';
	pid_glob[g] = '\0';
	if (name_like[l - 1] != '%')
		name_like[l++] = '%';
	name_like[l] = '\0';
}

int op_spool_studies(op_spool *sp, const char *dest, int state, const char *search, unsigned offset,
		     unsigned limit, op_spool_study *out, unsigned *n, uint64_t *total)
{
	/*
	 * Parameters: ?1 the state filter (NULL: all), ?2 limit, ?3 offset,
	 * ?4 the destination (NULL: the instances' own states), ?5 and ?6 the
	 * search's patterns. The rows a study is chosen by are "i": instances,
	 * or one destination's deliveries (their states, attempts and
	 * errors).
	 */
	static const char from_all[] = " FROM instances i WHERE ?4 IS NULL";
	static const char from_dest[] = " FROM deliveries d JOIN instances i ON i.id = "
					"d.instance_id WHERE d.destination = ?4";
	static const char state_all[] =
		" AND (?1 IS NULL OR i.study_uid IN (SELECT study_uid FROM instances WHERE state = "
		"?1))";
	static const char state_dest[] =
		" AND (?1 IS NULL OR d.study_uid IN (SELECT study_uid FROM deliveries"
		" WHERE destination = ?4 AND state = ?1))";
	/* Patient ID and accession by prefix (their indexes serve GLOB); the
	 * name needs a scan of the index rows. */
	static const char searched[] =
		" AND i.study_uid IN (SELECT s.study_uid FROM instances s WHERE s.patient_id GLOB "
		"?5"
		" UNION SELECT s.study_uid FROM qr_index q JOIN instances s ON s.id = q.instance_id"
		" WHERE q.accession_number GLOB ?5"
		" UNION SELECT s.study_uid FROM qr_index q JOIN instances s ON s.id = q.instance_id"
		" WHERE q.patient_name LIKE ?6 ESCAPE '\\')";
	/* The page first, then the attributes of its studies only: their
	 * instances (of the destination, with one) and index rows. The last
	 * error is the one of the study's most recently changed row that has
	 * one. */
	/* Without a search, the page's studies come from study_tallies (a
	 * row a study, in the order of their last change: spool.c), and only
	 * their rows are read. */
	static const char tallied[] =
		"tp AS (SELECT study_uid FROM study_tallies WHERE scope = COALESCE(?4, '')"
		" AND (?1 IS NULL OR CASE ?1 WHEN 'queued' THEN queued WHEN 'sending' THEN sending"
		" WHEN 'sent' THEN sent ELSE quarantined END > 0)"
		" ORDER BY changed_at DESC, study_uid LIMIT ?2 OFFSET ?3),";
	static const char in_page_all[] = " AND i.study_uid IN (SELECT study_uid FROM tp)";
	static const char in_page_dest[] = " AND d.study_uid IN (SELECT study_uid FROM tp)";
	static const char list[] =
		"WITH %s page AS (SELECT %s.study_uid AS study_uid, MAX(i.patient_id) AS "
		"patient_id,"
		" MAX(i.modality) AS modality, COUNT(*) AS n, SUM(i.size) AS bytes,"
		" SUM(%s.state = 'queued') AS queued, SUM(%s.state = 'sending') AS sending,"
		" SUM(%s.state = 'sent') AS sent, SUM(%s.state = 'quarantined') AS quarantined,"
		" MAX(%s.attempts) AS attempts, MAX(%s.priority) AS priority,"
		" MIN(%s.received_at) AS received_at, MAX(%s.state_changed_at) AS changed_at"
		"%s%s%s GROUP BY 1 ORDER BY changed_at DESC, 1 LIMIT ?2 OFFSET %s)"
		" SELECT p.study_uid, p.patient_id, p.modality, p.n, p.bytes, p.queued, p.sending,"
		" p.sent, p.quarantined, p.attempts, p.priority, p.received_at, p.changed_at,"
		" (SELECT e.last_error FROM %s e WHERE e.study_uid = p.study_uid%s"
		"  AND e.last_error IS NOT NULL ORDER BY e.state_changed_at DESC LIMIT 1),"
		" MAX(q.patient_name), MAX(q.accession_number), MAX(q.study_date),"
		" MAX(q.study_description), MAX(q.charset),"
		" replace(group_concat(DISTINCT NULLIF(x.modality, '')), ',', '\\'),"
		" MAX(x.calling_aet)"
		" FROM page p JOIN instances x ON x.study_uid = p.study_uid"
		" LEFT JOIN qr_index q ON q.instance_id = x.id"
		" WHERE ?4 IS NULL OR EXISTS (SELECT 1 FROM deliveries w"
		"  WHERE w.instance_id = x.id AND w.destination = ?4)"
		" GROUP BY p.study_uid ORDER BY p.changed_at DESC, p.study_uid";
	static const char count_tallied[] =
		"SELECT COUNT(*) FROM study_tallies WHERE scope = COALESCE(?4, '')"
		" AND (?1 IS NULL OR CASE ?1 WHEN 'queued' THEN queued WHEN 'sending' THEN sending"
		" WHEN 'sent' THEN sent ELSE quarantined END > 0)%s";
	static const char count_all[] = "SELECT COUNT(DISTINCT i.study_uid) FROM instances i"
					" WHERE (?1 IS NULL OR i.state = ?1)%s";
	static const char count_dest[] =
		"SELECT COUNT(DISTINCT i.study_uid) FROM deliveries i"
		" WHERE i.destination = ?4 AND (?1 IS NULL OR i.state = ?1)%s";
	const char *filter = op_spool_state_name(state), *t = dest ? "d" : "i";
	char sql[4096], pid_glob[3 * OP_SPOOL_SEARCH_MAX + 2],
		name_like[2 * OP_SPOOL_SEARCH_MAX + 3];
	sqlite3_stmt *st = NULL;
	int rc;

	*n = 0;
	*total = 0;
	if (search && strlen(search) > OP_SPOOL_SEARCH_MAX)
		return -EINVAL;
	if (search && *search)
		search_patterns(search, pid_glob, sizeof(pid_glob), name_like, sizeof(name_like));
	else
		search = NULL;
	snprintf(sql, sizeof(sql),
		 !search ? count_tallied
		 : dest  ? count_dest
			 : count_all,
		 search ? searched : "");
	rc = sqlite3_prepare_v2(sp->ro, sql, -1, &st, NULL);
	for (int pass = 0; pass < 2 && rc == SQLITE_OK; pass++) {
		op__spool_bind_text(st, 1, filter);
		sqlite3_bind_int64(st, 2, limit);
		sqlite3_bind_int64(st, 3, offset);
		op__spool_bind_text(st, 4, dest);
		op__spool_bind_text(st, 5, search ? pid_glob : NULL);
		op__spool_bind_text(st, 6, search ? name_like : NULL);
		if (pass == 0) {
			if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
				*total = (uint64_t)sqlite3_column_int64(st, 0);
				rc = SQLITE_OK;
			}
			sqlite3_finalize(st);
			st = NULL;
			if (rc != SQLITE_OK)
				break;
			snprintf(sql, sizeof(sql), list, search ? "" : tallied, t, t, t, t, t, t, t,
				 t, t, dest ? from_dest : from_all,
				 !search ? ""
				 : dest  ? state_dest
					 : state_all,
				 !search ? (dest ? in_page_dest : in_page_all) : searched,
				 search ? "?3" : "0", dest ? "deliveries" : "instances",
				 dest ? " AND e.destination = ?4" : "");
			rc = sqlite3_prepare_v2(sp->ro, sql, -1, &st, NULL);
		}
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
		/* NULL (no index row): "" */
		column_text(st, 14, s->patient_name, sizeof(s->patient_name));
		column_text(st, 15, s->accession_number, sizeof(s->accession_number));
		column_text(st, 16, s->study_date, sizeof(s->study_date));
		column_text(st, 17, s->study_description, sizeof(s->study_description));
		column_text(st, 18, s->charset, sizeof(s->charset));
		column_text(st, 19, s->modalities, sizeof(s->modalities));
		column_text(st, 20, s->calling_aet, sizeof(s->calling_aet));
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
