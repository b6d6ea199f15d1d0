/*
 * test_spool_query: services/common/spool_query.c, what C-FIND, C-MOVE and
 * C-GET read: the index written with each instance, PS3.4 C.2.2.2
 * matching at each level, the instances a retrieve sends, an evicted
 * instance gone from both, and an older spool indexed at recovery.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/spool.h"
#include "spool_fixture.h"

/* One instance of the test's little archive. */
struct row {
	const char *sop, *study, *series, *patient_id, *name, *date, *time, *accession, *modality,
		*series_number, *instance_number;
};

/* Two patients, three studies; DOE's first study is CT and SR. */
static const struct row rows[] = {
	{ "1.1.1", "2.1", "3.1", "PID-1", "Doe^John", "20200115", "101500", "ACC1", "CT", "1",
	  "2" },
	{ "1.1.2", "2.1", "3.1", "PID-1", "Doe^John", "20200115", "101500", "ACC1", "CT", "1",
	  "1" },
	{ "1.1.3", "2.1", "3.2", "PID-1", "Doe^John", "20200115", "101500", "ACC1", "SR", "2",
	  "1" },
	{ "1.2.1", "2.2", "3.3", "PID-1", "Doe^John", "20210301", "231000", "ACC2", "MR", "1",
	  "1" },
	{ "1.3.1", "2.3", "3.4", "PID-2", "Roe^Jane", "20191231", "080000", "ACC3", "CR", "1",
	  "1" },
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static void store_row(struct spool_fx *f, const struct row *r, unsigned seed)
{
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;
	unsigned char *data = spool_fx_content(f, r->sop, 300, seed);

	spool_fx_fill_inst(&in, r->sop);
	snprintf(in.study_uid, sizeof(in.study_uid), "%s", r->study);
	snprintf(in.series_uid, sizeof(in.series_uid), "%s", r->series);
	snprintf(in.patient_id, sizeof(in.patient_id), "%s", r->patient_id);
	snprintf(in.modality, sizeof(in.modality), "%s", r->modality);
	snprintf(in.qr.charset, sizeof(in.qr.charset), "ISO_IR 100");
	snprintf(in.qr.patient_name, sizeof(in.qr.patient_name), "%s", r->name);
	snprintf(in.qr.study_date, sizeof(in.qr.study_date), "%s", r->date);
	snprintf(in.qr.study_time, sizeof(in.qr.study_time), "%s", r->time);
	snprintf(in.qr.accession_number, sizeof(in.qr.accession_number), "%s", r->accession);
	snprintf(in.qr.series_number, sizeof(in.qr.series_number), "%s", r->series_number);
	snprintf(in.qr.instance_number, sizeof(in.qr.instance_number), "%s", r->instance_number);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, 300), 0);
	assert_int_equal(op_spool_object_finish(obj), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, NULL), 0);
}

static int setup(void **state)
{
	int rc = spool_fx_setup(state);

	for (size_t i = 0; rc == 0 && i < N_ROWS; i++)
		store_row(*state, &rows[i], 7);
	return rc;
}

#define QUERY_TEST(name) cmocka_unit_test_setup_teardown(name, setup, spool_fx_teardown)

/* What a query answered: each answer's values, '|'-joined, answers
 * sorted and ';'-joined, so a test compares one string. */
struct answers {
	char got[32][256];
	unsigned n;
	int stop_after; /* >0: the answer callback returns 1 after that many */
};

static int collect(void *ctx, const op_qr_key *v, unsigned n)
{
	struct answers *a = ctx;
	char *o = a->got[a->n];
	size_t len = 0;

	o[0] = '\0';
	for (unsigned k = 0; k < n; k++)
		len += (size_t)snprintf(o + len, sizeof(a->got[0]) - len, "%s%s", k ? "|" : "",
					v[k].value);
	a->n++;
	return a->stop_after && a->n >= (unsigned)a->stop_after;
}

static int by_text(const void *x, const void *y)
{
	return strcmp(x, y);
}

static const char *find(struct spool_fx *f, enum op_qr_level level, int patient_root,
			const op_qr_key *keys, unsigned n)
{
	static char joined[4096];
	struct answers a = { .n = 0 };
	char err[256] = "";
	int rc = op_spool_find(f->sp, level, patient_root, keys, n, collect, &a, err, sizeof(err));

	if (rc != 0)
		fail_msg("find: %d (%s)", rc, err);
	qsort(a.got, a.n, sizeof(a.got[0]), by_text);
	size_t len = 0;

	joined[0] = '\0';
	for (unsigned i = 0; i < a.n; i++)
		len += (size_t)snprintf(joined + len, sizeof(joined) - len, "%s%s", i ? ";" : "",
					a.got[i]);
	return joined;
}

#define STUDY_UID 0x0020000D
#define SERIES_UID 0x0020000E
#define SOP_UID 0x00080018
#define PATIENT_ID 0x00100020
#define PATIENT_NAME 0x00100010
#define STUDY_DATE 0x00080020
#define STUDY_TIME 0x00080030
#define ACCESSION 0x00080050
#define MODALITIES 0x00080061
#define MODALITY 0x00080060
#define STUDY_SERIES 0x00201206
#define STUDY_INSTANCES 0x00201208
#define INSTANCE_NUMBER 0x00200013

/* Study level: single value, universal matching, the study's counts and
 * modalities answered. */
static void test_find_study_single_and_universal(void **state)
{
	op_qr_key k[] = { { STUDY_UID, "" },       { PATIENT_ID, "PID-1" }, { MODALITIES, "" },
			  { STUDY_SERIES, "" },    { STUDY_INSTANCES, "" }, { ACCESSION, "" },
			  { INSTANCE_NUMBER, "" }, { 0x00080005, "" } };

	assert_string_equal(find(*state, OP_QR_STUDY, 0, k, 8),
			    "2.1|PID-1|CT\\SR|2|3|ACC1||ISO_IR 100;"
			    "2.2|PID-1|MR|1|1|ACC2||ISO_IR 100");
}

/* Wildcards on a person's name ignore case; on other text they do not. */
static void test_find_wildcards(void **state)
{
	op_qr_key name[] = { { STUDY_UID, "" }, { PATIENT_NAME, "doe*" } };
	op_qr_key q[] = { { STUDY_UID, "" }, { ACCESSION, "ACC?" } };
	op_qr_key lower[] = { { STUDY_UID, "" }, { ACCESSION, "acc*" } };

	assert_string_equal(find(*state, OP_QR_STUDY, 0, name, 2), "2.1|Doe^John;2.2|Doe^John");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, q, 2), "2.1|ACC1;2.2|ACC2;2.3|ACC3");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, lower, 2), "");
}

/* Date ranges, open either side, and a time range by prefix. */
static void test_find_ranges(void **state)
{
	op_qr_key closed[] = { { STUDY_UID, "" }, { STUDY_DATE, "20200101-20201231" } };
	op_qr_key from[] = { { STUDY_UID, "" }, { STUDY_DATE, "20200115-" } };
	op_qr_key until[] = { { STUDY_UID, "" }, { STUDY_DATE, "-20200114" } };
	op_qr_key time[] = { { STUDY_UID, "" }, { STUDY_TIME, "1000-1015" } };

	assert_string_equal(find(*state, OP_QR_STUDY, 0, closed, 2), "2.1|20200115");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, from, 2), "2.1|20200115;2.2|20210301");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, until, 2), "2.3|20191231");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, time, 2), "2.1|101500");
}

/* A malformed range is refused with the reason, not matched as text. */
static void test_find_bad_range(void **state)
{
	struct spool_fx *f = *state;
	op_qr_key k[] = { { STUDY_DATE, "2020-01-01" } };
	struct answers a = { .n = 0 };
	char err[256] = "";

	assert_int_equal(op_spool_find(f->sp, OP_QR_STUDY, 0, k, 1, collect, &a, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "not a date range"));
	assert_int_equal(a.n, 0);
}

/* UID lists; ModalitiesInStudy matches a study by any of its series. */
static void test_find_lists(void **state)
{
	op_qr_key uids[] = { { STUDY_UID, "2.1\\2.3\\9.9" } };
	op_qr_key mods[] = { { STUDY_UID, "" }, { MODALITIES, "SR\\CR" } };

	assert_string_equal(find(*state, OP_QR_STUDY, 0, uids, 1), "2.1;2.3");
	assert_string_equal(find(*state, OP_QR_STUDY, 0, mods, 2), "2.1|CT\\SR;2.3|CR");
}

/* Series and image levels; a key below the level is answered empty and
 * does not match; the patient level exists in the Patient Root only. */
static void test_find_levels(void **state)
{
	struct spool_fx *f = *state;
	op_qr_key series[] = { { STUDY_UID, "2.1" },
			       { SERIES_UID, "" },
			       { MODALITY, "" },
			       { 0x00201209, "" },
			       { SOP_UID, "9.9" } };
	op_qr_key image[] = { { SERIES_UID, "3.1" }, { SOP_UID, "" }, { INSTANCE_NUMBER, "" } };
	op_qr_key patient[] = {
		{ PATIENT_ID, "" }, { PATIENT_NAME, "" }, { 0x00201200, "" }, { 0x00201204, "" }
	};
	struct answers a = { .n = 0 };
	char err[256];

	assert_string_equal(find(f, OP_QR_SERIES, 0, series, 5), "2.1|3.1|CT|2|;2.1|3.2|SR|1|");
	assert_string_equal(find(f, OP_QR_IMAGE, 0, image, 3), "3.1|1.1.1|2;3.1|1.1.2|1");
	assert_string_equal(find(f, OP_QR_PATIENT, 1, patient, 4),
			    "PID-1|Doe^John|2|4;PID-2|Roe^Jane|1|1");
	assert_int_equal(
		op_spool_find(f->sp, OP_QR_PATIENT, 0, patient, 4, collect, &a, err, sizeof(err)),
		-EINVAL);
}

/* The answer callback's nonzero return (a C-CANCEL) stops the query and
 * is returned. */
static void test_find_stopped(void **state)
{
	struct spool_fx *f = *state;
	op_qr_key k[] = { { SOP_UID, "" } };
	struct answers a = { .n = 0, .stop_after = 2 };
	char err[256];

	assert_int_equal(op_spool_find(f->sp, OP_QR_IMAGE, 0, k, 1, collect, &a, err, sizeof(err)),
			 1);
	assert_int_equal(a.n, 2);
}

/* A retrieve: the instances under the entity, in series and instance
 * number order, with their files; it must name its level's unique key. */
static void test_retrieve(void **state)
{
	struct spool_fx *f = *state;
	op_qr_key study[] = { { STUDY_UID, "2.1" } };
	op_qr_key none[] = { { PATIENT_NAME, "Doe*" } };
	op_qr_instance *items = NULL;
	unsigned n = 99;
	char err[256] = "", path[4096];

	assert_int_equal(
		op_spool_retrieve(f->sp, OP_QR_STUDY, 0, study, 1, &items, &n, err, sizeof(err)),
		0);
	assert_int_equal(n, 3);
	assert_string_equal(items[0].sop_instance_uid, "1.1.2");
	assert_string_equal(items[1].sop_instance_uid, "1.1.1");
	assert_string_equal(items[2].sop_instance_uid, "1.1.3");
	assert_int_equal(items[0].size, 300);
	op_spool_object_file(f->sp, items[0].hash, path, sizeof(path));
	assert_true(spool_fx_file_equals(path, spool_fx_content(f, "1.1.2", 300, 7), 300));
	free(items);

	assert_int_equal(
		op_spool_retrieve(f->sp, OP_QR_STUDY, 0, none, 1, &items, &n, err, sizeof(err)),
		-EINVAL);
	assert_null(items);
	assert_non_null(strstr(err, "(0020,000D)"));
}

/* Settles as sent the instance sop, or all when sop is NULL (the others
 * stay 'sending'); claims study by study until nothing is left. */
static void send_all(struct spool_fx *f, const char *sop)
{
	op_spool_item it[8];
	unsigned n;

	do {
		spool_fx_claim(f, 8, 1 << 20, it, &n);
		for (unsigned i = 0; i < n; i++)
			if (!sop || strcmp(it[i].sop_instance_uid, sop) == 0)
				spool_fx_settle_one(f, &it[i], OP_VERDICT_SENT, 0, NULL, 1);
	} while (n);
}

/* An evicted instance is found no more, by a query nor a retrieve. */
static void test_evicted_not_found(void **state)
{
	struct spool_fx *f = *state;
	op_qr_key k[] = { { SOP_UID, "" } };
	op_qr_key series[] = { { SERIES_UID, "3.4" } };
	op_qr_instance *items = NULL;
	unsigned n, evicted;
	uint64_t freed;
	char err[256];

	send_all(f, "1.3.1");
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 1);
	assert_string_equal(find(f, OP_QR_IMAGE, 0, k, 1), "1.1.1;1.1.2;1.1.3;1.2.1");
	/* The study's own row went with its last instance. */
	op_qr_key studies[] = { { STUDY_UID, "" }, { STUDY_INSTANCES, "" }, { STUDY_SERIES, "" } };
	assert_string_equal(find(f, OP_QR_STUDY, 0, studies, 3), "2.1|3|2;2.2|1|1");
	assert_int_equal(
		op_spool_retrieve(f->sp, OP_QR_SERIES, 0, series, 1, &items, &n, err, sizeof(err)),
		0);
	assert_int_equal(n, 0);
	free(items);
	sqlite3 *db = spool_fx_db_open(f);
	assert_int_equal(spool_fx_db_int(db, "SELECT COUNT(*) FROM qr_index", NULL), 4);
	sqlite3_close(db);
}

/* keep_sent_days keeps what was sent within the days from the cache's
 * trim; making room still takes it. */
static void test_keep_sent_days(void **state)
{
	struct spool_fx *f = *state;
	unsigned evicted;
	uint64_t freed;

	f->limits.keep_sent_days = 1;
	op_spool_set_limits(f->sp, &f->limits);
	send_all(f, NULL);
	/* Sent an hour ago, but one two days ago. */
	spool_fx_db_exec(f, "UPDATE instances SET state_changed_at ="
			    " (unixepoch() - 3600) * 1000 WHERE sop_instance_uid != '1.3.1'");
	spool_fx_db_exec(f, "UPDATE instances SET state_changed_at ="
			    " (unixepoch() - 2 * 86400) * 1000 WHERE sop_instance_uid = '1.3.1'");
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 1);
	assert_int_equal(spool_fx_rows(f), N_ROWS - 1);
	f->limits.keep_sent_days = 0;
	op_spool_set_limits(f->sp, &f->limits);
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, N_ROWS - 1);
}

/* A replacement that moves an instance to another study moves its counts
 * and the study's attributes with it. */
static void test_replacement_moves_counts(void **state)
{
	struct spool_fx *f = *state;
	struct row moved = rows[2]; /* 1.1.3, the SR series of study 2.1 */
	op_qr_key k[] = { { STUDY_UID, "" },
			  { STUDY_INSTANCES, "" },
			  { STUDY_SERIES, "" },
			  { MODALITIES, "" },
			  { ACCESSION, "" } };

	moved.study = "2.9";
	moved.accession = "ACC9";
	store_row(f, &moved, 8); /* other bytes, same UID: a new version */
	assert_string_equal(find(f, OP_QR_STUDY, 0, k, 5),
			    "2.1|2|1|CT|ACC1;2.2|1|1|MR|ACC2;2.3|1|1|CR|ACC3;2.9|1|1|SR|ACC9");
}

/* Recovery's reader for an older spool: the name from the file's SOP. */
static int reader(void *ctx, const char *path, op_instance *inst, char *err, size_t errlen)
{
	unsigned *calls = ctx;

	(void)path;
	(void)err;
	(void)errlen;
	(*calls)++;
	snprintf(inst->qr.patient_name, sizeof(inst->qr.patient_name), "Read^Back");
	return 0;
}

/* A spool from before the index: its rows are indexed once, at recovery,
 * by reading their files. */
static void test_older_spool_indexed(void **state)
{
	struct spool_fx *f = *state;
	op_spool_recovery rep;
	op_qr_key k[] = { { PATIENT_NAME, "read^back" }, { SOP_UID, "" } };
	unsigned calls = 0;

	spool_fx_db_exec(f, "DELETE FROM qr_index");
	assert_string_equal(find(f, OP_QR_IMAGE, 0, k, 2), "");
	assert_int_equal(op_spool_recover(f->sp, reader, &calls, &rep), 0);
	assert_int_equal(rep.qr_indexed, N_ROWS);
	assert_int_equal(calls, N_ROWS);
	assert_string_equal(find(f, OP_QR_IMAGE, 0, k, 2),
			    "Read^Back|1.1.1;Read^Back|1.1.2;Read^Back|1.1.3;"
			    "Read^Back|1.2.1;Read^Back|1.3.1");
	assert_int_equal(op_spool_recover(f->sp, reader, &calls, &rep), 0);
	assert_int_equal(rep.qr_indexed, 0);
	assert_int_equal(calls, N_ROWS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		QUERY_TEST(test_find_study_single_and_universal),
		QUERY_TEST(test_find_wildcards),
		QUERY_TEST(test_find_ranges),
		QUERY_TEST(test_find_bad_range),
		QUERY_TEST(test_find_lists),
		QUERY_TEST(test_find_levels),
		QUERY_TEST(test_find_stopped),
		QUERY_TEST(test_retrieve),
		QUERY_TEST(test_evicted_not_found),
		QUERY_TEST(test_keep_sent_days),
		QUERY_TEST(test_replacement_moves_counts),
		QUERY_TEST(test_older_spool_indexed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
