/*
 * spool_query: what the site reads back from the cache (see spool.h): the
 * index C-FIND, C-MOVE and C-GET search, and the matching of PS3.4
 * C.2.2.2 turned into SQL.
 *
 * The index is one row per instance (qr_index, beside its instances row,
 * written in the same transaction); the study, series and patient an
 * answer describes are groups of those rows. An instance's study and
 * patient attributes are its own copy of them: a site's modality sends
 * the same values with every instance of a study, and a query that groups
 * rows answers with the greatest of them when they differ.
 *
 * Queries run on the read-only connection (sp->ro): they never wait for
 * the receiver's or the uplink's transactions nor make them wait.
 */
#include "common/spool.h"
#include "common/spool_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

/* How a key matches and answers. */
enum kind {
	K_TEXT,       /* single value or wildcards, case-sensitive */
	K_PN,         /* as K_TEXT, ignoring case (what workstations expect) */
	K_DATE,       /* single value or a range; YYYYMMDD */
	K_TIME,       /* single value or a range; HHMMSS.FFFFFF, compared by prefix */
	K_UID,        /* a list of UIDs */
	K_COUNT,      /* answered only (a number of related entities) */
	K_MODALITIES, /* ModalitiesInStudy: any series of the study with one of them */
};

/* The index's columns: an instance's attribute (expr over instances i and
 * qr_index q) or, for K_COUNT and K_MODALITIES, a group's (answered at
 * level only). */
static const struct column {
	uint32_t tag;
	enum op_qr_level level;
	enum kind kind;
	const char *expr;  /* over an instance's rows (i, q), grouped */
	const char *sexpr; /* over a study's row (s: qr_studies), for STUDY level */
} columns[] = {
	{ 0x00080005, OP_QR_IMAGE, K_TEXT, "q.charset", "s.charset" }, /* at every level */
	{ 0x00100010, OP_QR_PATIENT, K_PN, "q.patient_name", "s.patient_name" },
	{ 0x00100020, OP_QR_PATIENT, K_TEXT, "i.patient_id", "s.patient_id" },
	{ 0x00100030, OP_QR_PATIENT, K_DATE, "q.patient_birth_date", "s.patient_birth_date" },
	{ 0x00100040, OP_QR_PATIENT, K_TEXT, "q.patient_sex", "s.patient_sex" },
	{ 0x00201200, OP_QR_PATIENT, K_COUNT, "COUNT(DISTINCT i.study_uid)", NULL },
	{ 0x00201202, OP_QR_PATIENT, K_COUNT, "COUNT(DISTINCT i.series_uid)", NULL },
	{ 0x00201204, OP_QR_PATIENT, K_COUNT, "COUNT(*)", NULL },
	{ 0x00080020, OP_QR_STUDY, K_DATE, "q.study_date", "s.study_date" },
	{ 0x00080030, OP_QR_STUDY, K_TIME, "q.study_time", "s.study_time" },
	{ 0x00080050, OP_QR_STUDY, K_TEXT, "q.accession_number", "s.accession_number" },
	{ 0x00200010, OP_QR_STUDY, K_TEXT, "q.study_id", "s.study_id" },
	{ 0x0020000D, OP_QR_STUDY, K_UID, "i.study_uid", "s.study_uid" },
	{ 0x00081030, OP_QR_STUDY, K_TEXT, "q.study_description", "s.study_description" },
	{ 0x00080090, OP_QR_STUDY, K_PN, "q.referring_physician", "s.referring_physician" },
	{ 0x00080061, OP_QR_STUDY, K_MODALITIES,
	  "replace(group_concat(DISTINCT NULLIF(i.modality, '')), ',', '\\')",
	  "(SELECT replace(group_concat(DISTINCT NULLIF(modality, '')), ',', '\\')"
	  " FROM qr_series WHERE study_uid = s.study_uid)" },
	{ 0x00201206, OP_QR_STUDY, K_COUNT, "COUNT(DISTINCT i.series_uid)", "s.n_series" },
	{ 0x00201208, OP_QR_STUDY, K_COUNT, "COUNT(*)", "s.n_instances" },
	{ 0x0020000E, OP_QR_SERIES, K_UID, "i.series_uid", NULL },
	{ 0x00080060, OP_QR_SERIES, K_TEXT, "i.modality", NULL },
	{ 0x00200011, OP_QR_SERIES, K_TEXT, "q.series_number", NULL },
	{ 0x0008103E, OP_QR_SERIES, K_TEXT, "q.series_description", NULL },
	{ 0x00180015, OP_QR_SERIES, K_TEXT, "q.body_part", NULL },
	{ 0x00201209, OP_QR_SERIES, K_COUNT, "COUNT(*)", NULL },
	{ 0x00080018, OP_QR_IMAGE, K_UID, "i.sop_instance_uid", NULL },
	{ 0x00080016, OP_QR_IMAGE, K_UID, "i.sop_class_uid", NULL },
	{ 0x00200013, OP_QR_IMAGE, K_TEXT, "q.instance_number", NULL },
};

#define N_COLUMNS (sizeof(columns) / sizeof(columns[0]))

/* The entity of each level: the rows an answer groups. */
static const char *const group_by[] = { "i.patient_id", "i.study_uid", "i.series_uid", "i.id" };
static const char *const level_names[] = { "PATIENT", "STUDY", "SERIES", "IMAGE" };
/* The unique key a retrieve must name at its level (PS3.4 C.4.2.1.4). */
static const uint32_t unique_key[] = { 0x00100020, 0x0020000D, 0x0020000E, 0x00080018 };

/* Values bound in a query: at most this many (UID lists included). */
#define MAX_BINDS 512

const char *op_qr_level_name(enum op_qr_level level)
{
	return (unsigned)level <= OP_QR_IMAGE ? level_names[level] : NULL;
}

int op_qr_level_parse(const char *name)
{
	for (int i = 0; i <= OP_QR_IMAGE; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -EINVAL;
}

static const struct column *column_of(uint32_t tag)
{
	for (size_t i = 0; i < N_COLUMNS; i++)
		if (columns[i].tag == tag)
			return &columns[i];
	return NULL;
}

int op_qr_tag_known(uint32_t tag)
{
	return column_of(tag) != NULL;
}

/* --- the index ------------------------------------------------------------ */

int op__spool_qr_put(op_spool *sp, int64_t id, const op_instance *in)
{
	sqlite3_stmt *st = NULL;
	const op_qr_attrs *q = &in->qr;
	const char *const v[] = { in->study_uid,
				  in->series_uid,
				  in->patient_id,
				  in->modality,
				  q->charset,
				  q->patient_name,
				  q->patient_birth_date,
				  q->patient_sex,
				  q->study_date,
				  q->study_time,
				  q->accession_number,
				  q->study_id,
				  q->study_description,
				  q->referring_physician,
				  q->series_number,
				  q->series_description,
				  q->body_part,
				  q->instance_number };
	/* A DELETE first, not INSERT OR REPLACE: the series' and study's rows
	 * follow by the index's delete trigger, which a REPLACE skips. */
	int rc = op__spool_prepare(sp, "DELETE FROM qr_index WHERE instance_id = ?", &st);

	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_IOERR;
	}
	op__spool_done(st);
	st = NULL;
	if (rc == SQLITE_OK)
		rc = op__spool_prepare(
			sp,
			"INSERT INTO qr_index (instance_id, study_uid, series_uid, patient_id,"
			" modality, charset, patient_name, patient_birth_date, patient_sex,"
			" study_date, study_time, accession_number, study_id, study_description,"
			" referring_physician, series_number, series_description, body_part,"
			" instance_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
			"?12,"
			" ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
			&st);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		for (int i = 0; i < (int)(sizeof(v) / sizeof(v[0])); i++)
			op__spool_bind_text(st, i + 2, v[i]);
		rc = sqlite3_step(st);
	}
	op__spool_done(st);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "qr_index", rc);
}

/* Rows indexed per transaction, and how often progress is logged. */
#define BACKFILL_BATCH 500
#define BACKFILL_LOG_MS 5000

/* Up to BACKFILL_BATCH instances without an index row: ids, hashes, and
 * what the index copies from their rows (into rows[k]). */
static int unindexed(op_spool *sp, int64_t after, int64_t *ids, char (*hashes)[OP_HASH_HEX + 1],
		     op_instance *rows, unsigned *n)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(sp->db,
				    "SELECT i.id, i.hash, i.study_uid, i.series_uid, i.patient_id,"
				    " i.modality FROM instances i WHERE i.id > ?1 AND NOT"
				    " EXISTS (SELECT 1 FROM qr_index q WHERE q.instance_id = i.id)"
				    " ORDER BY i.id LIMIT ?2",
				    -1, &st, NULL);

	*n = 0;
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, after);
		sqlite3_bind_int(st, 2, BACKFILL_BATCH);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			op_instance *r = &rows[*n];

			ids[*n] = sqlite3_column_int64(st, 0);
			snprintf(hashes[*n], OP_HASH_HEX + 1, "%s", sqlite3_column_text(st, 1));
			snprintf(r->study_uid, sizeof(r->study_uid), "%s",
				 sqlite3_column_text(st, 2));
			snprintf(r->series_uid, sizeof(r->series_uid), "%s",
				 sqlite3_column_text(st, 3));
			snprintf(r->patient_id, sizeof(r->patient_id), "%s",
				 sqlite3_column_text(st, 4));
			snprintf(r->modality, sizeof(r->modality), "%s",
				 sqlite3_column_text(st, 5));
			(*n)++;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : op__spool_sql_fail(sp, "qr_index", rc);
}

int op__spool_qr_backfill(op_spool *sp, op_spool_reader read, void *ctx, unsigned *indexed)
{
	int64_t *ids = calloc(BACKFILL_BATCH, sizeof(*ids));
	char(*hashes)[OP_HASH_HEX + 1] = calloc(BACKFILL_BATCH, sizeof(*hashes));
	op_instance *inst = calloc(1, sizeof(*inst));
	op_instance *rows = calloc(BACKFILL_BATCH, sizeof(*rows));
	int64_t last = 0, t0 = op_clock_mono_ms(), logged = t0;
	unsigned n = 0, unreadable = 0;
	int rc;

	*indexed = 0;
	if (!ids || !hashes || !inst || !rows) {
		rc = -ENOMEM;
		goto out;
	}
	/* Reads happen outside the transactions: a slow disk does not hold
	 * the uplink's claims (recovery runs before the receiver listens). */
	while ((rc = unindexed(sp, last, ids, hashes, rows, &n)) == 0 && n > 0) {
		char path[PATH_MAX], err[256];

		pthread_mutex_lock(&sp->tx_mu);
		rc = op__spool_exec(sp, "BEGIN IMMEDIATE");
		for (unsigned k = 0; rc == 0 && k < n; k++) {
			memset(inst, 0, sizeof(*inst));
			op_spool_object_file(sp, hashes[k], path, sizeof(path));
			/* An unreadable file is indexed empty: found by its UIDs,
			 * and not read again at every start. */
			if (read(ctx, path, inst, err, sizeof(err)) < 0) {
				memset(&inst->qr, 0, sizeof(inst->qr));
				unreadable++;
			}
			/* The row's UIDs, not the file's: the index follows the
			 * spool. */
			rows[k].qr = inst->qr;
			rc = op__spool_qr_put(sp, ids[k], &rows[k]);
			last = ids[k];
		}
		rc = rc == 0 ? op__spool_exec(sp, "COMMIT") : rc;
		if (rc < 0)
			op__spool_exec(sp, "ROLLBACK");
		pthread_mutex_unlock(&sp->tx_mu);
		if (rc < 0)
			break;
		*indexed += n;
		if (op_clock_mono_ms() - logged >= BACKFILL_LOG_MS) {
			logged = op_clock_mono_ms();
			op_info("spool.qr_index", "dir=%s indexed=%u ms=%" PRId64, sp->dir,
				*indexed, logged - t0);
		}
	}
	if (rc == 0 && *indexed)
		op_info("spool.qr_index", "dir=%s indexed=%u unreadable=%u ms=%" PRId64 " done=1",
			sp->dir, *indexed, unreadable, op_clock_mono_ms() - t0);
out:
	free(ids);
	free(hashes);
	free(inst);
	free(rows);
	return rc;
}

/* --- matching -------------------------------------------------------------- */

/* A query being built: its SQL and the values bound to it, in order. */
struct query {
	char sql[16384];
	size_t len;
	char *binds[MAX_BINDS];
	unsigned n_binds;
	int overflow;
};

static void add(struct query *qy, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(qy->sql + qy->len, sizeof(qy->sql) - qy->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(qy->sql) - qy->len)
		qy->overflow = 1;
	else
		qy->len += (size_t)n;
}

/* Binds value[0, len) as the next '?'. */
static void bind(struct query *qy, const char *value, size_t len)
{
	char *copy = qy->n_binds < MAX_BINDS ? strndup(value, len) : NULL;

	if (!copy) {
		qy->overflow = 1;
		return;
	}
	qy->binds[qy->n_binds++] = copy;
	add(qy, "?");
}

static void query_free(struct query *qy)
{
	while (qy->n_binds)
		free(qy->binds[--qy->n_binds]);
}

/* A wildcard pattern in SQL's terms: GLOB (case-sensitive) or LIKE with
 * '\' as escape (ASCII case ignored). */
static void bind_pattern(struct query *qy, const char *v, int like)
{
	char pat[1024];
	size_t o = 0;

	for (; *v && o + 4 < sizeof(pat); v++) {
		if (like) {
			if (*v == '%' || *v == '_' || *v == '\\')
				pat[o++] = '\\';
			pat[o++] = *v == '*' ? '%' : *v == '?' ? '_' : *v;
		} else if (*v == '[') {
			memcpy(pat + o, "[[]", 3);
			o += 3;
		} else {
			pat[o++] = *v;
		}
	}
	if (*v)
		qy->overflow = 1;
	bind(qy, pat, o);
}

static int is_digits(const char *s, size_t n, int fraction)
{
	for (size_t i = 0; i < n; i++)
		if (!(s[i] >= '0' && s[i] <= '9') && !(fraction && s[i] == '.' && i >= 2))
			return 0;
	return 1;
}

/* A date or time bound: YYYYMMDD, or HH[MM[SS[.F{1,6}]]]. */
static int valid_bound(enum kind kind, const char *s, size_t n)
{
	if (kind == K_DATE)
		return n == 8 && is_digits(s, n, 0);
	return n >= 2 && n <= 13 && is_digits(s, n, 1);
}

/* A range (PS3.4 C.2.2.2.5): "a-b", "a-" or "-b". A time's upper bound
 * compares the value's prefix as long as the bound, so "-1200" takes in
 * 12:00:59. */
static int add_range(struct query *qy, const struct column *c, const char *v, char *err,
		     size_t errlen)
{
	const char *dash = strchr(v, '-');
	size_t lo = (size_t)(dash - v), hi = strlen(dash + 1);

	if (strchr(dash + 1, '-') || (lo == 0 && hi == 0) || (lo && !valid_bound(c->kind, v, lo)) ||
	    (hi && !valid_bound(c->kind, dash + 1, hi))) {
		snprintf(err, errlen, "(%04X,%04X) \"%s\" is not a %s range", c->tag >> 16,
			 c->tag & 0xffff, v, c->kind == K_DATE ? "date" : "time");
		return -EINVAL;
	}
	add(qy, "(%s != ''", c->expr);
	if (lo) {
		add(qy, " AND %s >= ", c->expr);
		bind(qy, v, lo);
	}
	if (hi) {
		if (c->kind == K_TIME)
			add(qy, " AND substr(%s, 1, %zu) <= ", c->expr, hi);
		else
			add(qy, " AND %s <= ", c->expr);
		bind(qy, dash + 1, hi);
	}
	add(qy, ")");
	return 0;
}

/* " AND expr IN (?, ...)" over the '\'-separated values of v. */
static void add_list(struct query *qy, const char *expr, const char *v)
{
	add(qy, "%s IN (", expr);
	for (const char *p = v;;) {
		size_t n = strcspn(p, "\\");
		bind(qy, p, n);
		if (!p[n])
			break;
		add(qy, ", ");
		p += n + 1;
	}
	add(qy, ")");
}

/* The condition a key puts on an instance's row, or none. */
static int add_match(struct query *qy, const struct column *c, const char *v, char *err,
		     size_t errlen)
{
	int wild = strpbrk(v, "*?") != NULL;

	add(qy, " AND ");
	switch (c->kind) {
	case K_UID: add_list(qy, c->expr, v); return 0;
	case K_DATE:
	case K_TIME:
		if (strchr(v, '-'))
			return add_range(qy, c, v, err, errlen);
		break;
	case K_PN:
		if (wild) {
			add(qy, "%s LIKE ", c->expr);
			bind_pattern(qy, v, 1);
			add(qy, " ESCAPE '\\'");
		} else {
			add(qy, "%s = ", c->expr);
			bind(qy, v, strlen(v));
			add(qy, " COLLATE NOCASE");
		}
		return 0;
	default: break;
	}
	if (wild) {
		add(qy, "%s GLOB ", c->expr);
		bind_pattern(qy, v, 0);
	} else {
		add(qy, "%s = ", c->expr);
		bind(qy, v, strlen(v));
	}
	return 0;
}

/* What applies to an instance's row: the keys at level and above with a
 * value (universal matching puts no condition). ModalitiesInStudy goes
 * to HAVING; counts only answer. */
static int add_where(struct query *qy, enum op_qr_level level, int studies, const op_qr_key *keys,
		     unsigned n, char *err, size_t errlen)
{
	if (studies)
		add(qy, " FROM qr_studies s WHERE 1");
	else
		add(qy, " FROM instances i LEFT JOIN qr_index q ON q.instance_id = i.id WHERE 1");
	for (unsigned k = 0; k < n; k++) {
		const struct column *c = column_of(keys[k].tag);
		struct column own;
		int rc;

		if (!c || c->level > level || !keys[k].value[0] || c->kind == K_COUNT ||
		    c->kind == K_MODALITIES || c->tag == 0x00080005)
			continue;
		own = *c;
		if (studies)
			own.expr = c->sexpr;
		if ((rc = add_match(qy, &own, keys[k].value, err, errlen)) < 0)
			return rc;
	}
	for (unsigned k = 0; k < n; k++) {
		const struct column *c = column_of(keys[k].tag);
		if (c && c->kind == K_MODALITIES && c->level <= level && keys[k].value[0]) {
			/* The study is matched by any of its series: every
			 * row of it stays, for the counts. */
			if (studies) {
				add(qy, " AND EXISTS (SELECT 1 FROM qr_series WHERE study_uid ="
					" s.study_uid AND ");
				add_list(qy, "modality", keys[k].value);
			} else {
				add(qy,
				    " AND i.study_uid IN (SELECT study_uid FROM instances WHERE ");
				add_list(qy, "modality", keys[k].value);
			}
			add(qy, ")");
		}
	}
	return 0;
}

static int prepare(op_spool *sp, struct query *qy, sqlite3_stmt **st, char *err, size_t errlen)
{
	int rc;

	if (qy->overflow) {
		snprintf(err, errlen, "the identifier is too large");
		return -EINVAL;
	}
	rc = sqlite3_prepare_v2(sp->ro, qy->sql, (int)qy->len, st, NULL);
	for (unsigned b = 0; rc == SQLITE_OK && b < qy->n_binds; b++)
		rc = op__spool_bind_text(*st, (int)b + 1, qy->binds[b]);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "the spool could not be read");
		return op__spool_fail_on(sp, sp->ro, "qr", rc);
	}
	return 0;
}

/* The end of a query's rows: 0, or why not. */
static int stepped(op_spool *sp, int rc, char *err, size_t errlen)
{
	if (rc == SQLITE_DONE)
		return 0;
	snprintf(err, errlen, "the spool could not be read");
	return op__spool_fail_on(sp, sp->ro, "qr", rc);
}

int op_spool_find(op_spool *sp, enum op_qr_level level, int patient_root, const op_qr_key *keys,
		  unsigned n, int (*answer)(void *ctx, const op_qr_key *values, unsigned n),
		  void *ctx, char *err, size_t errlen)
{
	struct query *qy = calloc(1, sizeof(*qy));
	op_qr_key *values = calloc(n ? n : 1, sizeof(*values));
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (!values || !qy) {
		rc = -ENOMEM;
		goto out;
	}
	if ((unsigned)level > OP_QR_IMAGE || (level == OP_QR_PATIENT && !patient_root)) {
		snprintf(err, errlen, "no %s level in this model",
			 op_qr_level_name(level) ? op_qr_level_name(level) : "such");
		rc = -EINVAL;
		goto out;
	}
	/* Each key's answer: its column (MAX() of a group's rows: one value
	 * for what the group shares), or '' when it is below the level or
	 * not indexed. STUDY level reads the studies' own rows. */
	int studies = level == OP_QR_STUDY;

	add(qy, "SELECT ");
	for (unsigned k = 0; k < n; k++) {
		const struct column *c = column_of(keys[k].tag);
		int own = c && (c->level <= level || c->tag == 0x00080005);

		if (own && (c->kind == K_COUNT || c->kind == K_MODALITIES))
			own = c->level == level;
		if (!own)
			add(qy, "%s''", k ? ", " : "");
		else if (studies)
			add(qy, "%s%s", k ? ", " : "", c->sexpr);
		else if (c->kind == K_COUNT || c->kind == K_MODALITIES)
			add(qy, "%s%s", k ? ", " : "", c->expr);
		else
			add(qy, "%sMAX(%s)", k ? ", " : "", c->expr);
	}
	if (n == 0)
		add(qy, "1");
	if ((rc = add_where(qy, level, studies, keys, n, err, errlen)) < 0)
		goto out;
	if (!studies)
		add(qy, " GROUP BY %s", group_by[level]);
	if ((rc = prepare(sp, qy, &st, err, errlen)) < 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (unsigned k = 0; k < n; k++) {
			const unsigned char *t = sqlite3_column_text(st, (int)k);
			values[k].tag = keys[k].tag;
			values[k].value = t ? (const char *)t : "";
		}
		if ((rc = answer(ctx, values, n)) != 0)
			goto out;
	}
	rc = stepped(sp, rc, err, errlen);
out:
	sqlite3_finalize(st);
	if (qy)
		query_free(qy);
	free(qy);
	free(values);
	return rc;
}

int op_spool_retrieve(op_spool *sp, enum op_qr_level level, int patient_root, const op_qr_key *keys,
		      unsigned n, op_qr_instance **out, unsigned *count, char *err, size_t errlen)
{
	struct query *qy = NULL;
	sqlite3_stmt *st = NULL;
	op_qr_instance *items = NULL;
	unsigned have = 0, cap = 0;
	int named = 0, rc = 0;

	*out = NULL;
	*count = 0;
	if ((unsigned)level > OP_QR_IMAGE || (level == OP_QR_PATIENT && !patient_root)) {
		snprintf(err, errlen, "no such level in this model");
		return -EINVAL;
	}
	for (unsigned k = 0; k < n; k++)
		named |= keys[k].tag == unique_key[level] && keys[k].value[0];
	if (!named) {
		/* Without it a retrieve would send the whole cache. */
		const struct column *c = column_of(unique_key[level]);
		snprintf(err, errlen, "a %s retrieve names its %s (%04X,%04X)", level_names[level],
			 c->kind == K_UID ? "UIDs" : "patient", c->tag >> 16, c->tag & 0xffff);
		return -EINVAL;
	}
	if (!(qy = calloc(1, sizeof(*qy))))
		return -ENOMEM;
	add(qy, "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, i.hash, i.size");
	if ((rc = add_where(qy, level, 0, keys, n, err, errlen)) < 0)
		goto out;
	add(qy, " ORDER BY i.study_uid, CAST(q.series_number AS INTEGER), i.series_uid,"
		" CAST(q.instance_number AS INTEGER), i.id");
	if ((rc = prepare(sp, qy, &st, err, errlen)) < 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (have == OP_QR_RETRIEVE_MAX) {
			snprintf(err, errlen,
				 "more than %u instances match: retrieve fewer at a time",
				 OP_QR_RETRIEVE_MAX);
			rc = -E2BIG;
			goto out;
		}
		if (have == cap) {
			unsigned grow = cap ? cap * 2 : 64;
			op_qr_instance *more = realloc(items, grow * sizeof(*items));
			if (!more) {
				rc = -ENOMEM;
				goto out;
			}
			items = more;
			cap = grow;
		}
		op_qr_instance *it = &items[have++];
		snprintf(it->sop_instance_uid, sizeof(it->sop_instance_uid), "%s",
			 sqlite3_column_text(st, 0));
		snprintf(it->sop_class_uid, sizeof(it->sop_class_uid), "%s",
			 sqlite3_column_text(st, 1));
		snprintf(it->transfer_syntax, sizeof(it->transfer_syntax), "%s",
			 sqlite3_column_text(st, 2));
		snprintf(it->hash, sizeof(it->hash), "%s", sqlite3_column_text(st, 3));
		it->size = (uint64_t)sqlite3_column_int64(st, 4);
	}
	rc = stepped(sp, rc, err, errlen);
out:
	sqlite3_finalize(st);
	query_free(qy);
	free(qy);
	if (rc < 0) {
		free(items);
	} else {
		*out = items;
		*count = have;
	}
	return rc;
}
