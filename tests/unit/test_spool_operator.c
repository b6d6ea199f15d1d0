/*
 * test_spool_operator: services/common/spool_operator.c, the operator's
 * side: counters, studies, the retry of quarantined instances, settings
 * and the audit log. The helpers are in spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/spool.h"
#include "spool_fixture.h"

/* Counters follow what was acknowledged and settled, duplicates included,
 * and survive a reopen. */
static void test_spool_counters(void **state)
{
	struct spool_fx *f = *state;
	op_spool_stats st;
	op_spool_item it[4];
	char h[OP_HASH_HEX + 1];
	unsigned n;

	spool_fx_store_study(f, "1.1", "9.1", 1, 1000, h);
	spool_fx_store_study(f, "1.2", "9.1", 1, 2000, h);
	spool_fx_store_study(f, "1.3", "9.2", 1, 4000, h);
	spool_fx_store_ok(f, spool_fx_content(f, "1.3", 4000, 4000u ^ 3u), 4000, "1.3",
			  OP_SPOOL_DUPLICATE, NULL);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 2);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 1);
	/* Not due again before the next claim. */
	spool_fx_settle_one(f, &it[1], OP_VERDICT_RETRY, INT64_MAX / 2 + 1, "HTTP 503", 1);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "1.3");
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused", 1);
	assert_int_equal(op_spool_count(f->sp, "associations_rejected", 2), 0);

	op_spool_close(f->sp);
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	assert_int_equal(op_spool_get_stats(f->sp, NULL, &st), 0);
	assert_int_equal(st.counters.received_instances, 4);
	assert_int_equal(st.counters.received_bytes, 11000);
	assert_int_equal(st.counters.uploaded_instances, 1);
	assert_int_equal(st.counters.uploaded_bytes, 1000);
	assert_int_equal(st.counters.retries, 1);
	assert_int_equal(st.counters.quarantined, 1);
	assert_int_equal(st.counters.associations_rejected, 2);
	assert_int_equal(st.state[OP_STATE_SENT].instances, 1);
	assert_int_equal(st.state[OP_STATE_QUEUED].instances, 1);
	assert_int_equal(st.state[OP_STATE_QUEUED].bytes, 2000);
	assert_int_equal(st.state[OP_STATE_QUARANTINED].bytes, 4000);
	assert_int_equal(st.studies_queued, 1);
	assert_true(st.oldest_queued_at > 0);
}

/* Studies by the state of their instances, paged, most recent change first. */
static void test_spool_studies_and_retry(void **state)
{
	struct spool_fx *f = *state;
	op_spool_study s[4];
	op_spool_item it[4];
	char h[OP_HASH_HEX + 1];
	uint64_t total;
	unsigned n, requeued;

	spool_fx_store_study(f, "2.1", "8.1", 1, 100, h);
	spool_fx_store_study(f, "2.2", "8.1", 1, 100, h);
	spool_fx_store_study(f, "2.3", "8.2", 2, 300, h);
	spool_fx_claim(f, 4, 1 << 20, it, &n); /* the urgent study 8.2 */
	assert_string_equal(it[0].study_uid, "8.2");
	/* Settled after everything was received. */
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused: no",
			    INT64_C(4000000000000));

	assert_int_equal(op_spool_studies(f->sp, NULL, -1, NULL, 0, 4, s, &n, &total), 0);
	assert_int_equal(n, 2);
	assert_int_equal(total, 2);
	assert_string_equal(s[0].study_uid, "8.2"); /* changed last */
	assert_int_equal(s[0].by_state[OP_STATE_QUARANTINED], 1);
	assert_int_equal(s[0].attempts, 1);
	assert_true(s[0].urgent);
	assert_string_equal(s[0].last_error, "refused: no");
	assert_string_equal(s[0].patient_id, "PID-7");
	assert_int_equal(s[1].instances, 2);
	assert_int_equal(s[1].bytes, 200);
	assert_int_equal(s[1].by_state[OP_STATE_QUEUED], 2);
	assert_string_equal(s[1].last_error, "");

	assert_int_equal(
		op_spool_studies(f->sp, NULL, OP_STATE_QUARANTINED, NULL, 0, 4, s, &n, &total), 0);
	assert_int_equal(total, 1);
	assert_int_equal(n, 1);
	assert_int_equal(op_spool_studies(f->sp, NULL, -1, NULL, 1, 1, s, &n, &total), 0);
	assert_int_equal(n, 1);
	assert_string_equal(s[0].study_uid, "8.1");

	assert_int_equal(op_spool_retry_quarantined(f->sp, NULL, "8.1", 2, &requeued), 0);
	assert_int_equal(requeued, 0);
	/* A study the spool never had is not "0 requeued". */
	assert_int_equal(op_spool_retry_quarantined(f->sp, NULL, "8.9", 2, &requeued), -ENOENT);
	assert_int_equal(requeued, 0);
	assert_int_equal(op_spool_retry_quarantined(f->sp, NULL, NULL, 2, &requeued), 0);
	assert_int_equal(requeued, 1);
	assert_int_equal(op_spool_studies(f->sp, NULL, OP_STATE_QUEUED, NULL, 0, 4, s, &n, &total),
			 0);
	assert_int_equal(total, 2);
	assert_int_equal(s[0].attempts, 0);
}

/* The quarantined counter counts instances: a retried instance that the
 * cloud refuses again is not counted twice (issue 16); another is. */
static void test_spool_requarantine_counts_once(void **state)
{
	struct spool_fx *f = *state;
	op_spool_stats st;
	op_spool_item it[4];
	char h[OP_HASH_HEX + 1];
	unsigned n, requeued;

	spool_fx_store_study(f, "3.1", "7.1", 1, 100, h);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused", 1);
	assert_int_equal(op_spool_get_stats(f->sp, NULL, &st), 0);
	assert_int_equal(st.counters.quarantined, 1);
	assert_int_equal(op_spool_retry_quarantined(f->sp, NULL, NULL, 2, &requeued), 0);
	assert_int_equal(requeued, 1);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused again", 3);
	assert_int_equal(op_spool_get_stats(f->sp, NULL, &st), 0);
	assert_int_equal(st.state[OP_STATE_QUARANTINED].instances, 1);
	assert_int_equal(st.counters.quarantined, 1);
	/* Another instance is another count. */
	spool_fx_store_study(f, "3.2", "7.1", 1, 100, h);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused", 4);
	assert_int_equal(op_spool_get_stats(f->sp, NULL, &st), 0);
	assert_int_equal(st.counters.quarantined, 2);
}

/* Discard: only the study's quarantined rows and the files no other row
 * names; a study with nothing quarantined is left alone (-ENOENT). */
static void test_spool_discard_quarantined(void **state)
{
	struct spool_fx *f = *state;
	unsigned char *a = spool_fx_content(f, "1.2.9.1", 1000, 1);
	unsigned char *b = spool_fx_content(f, "1.2.9.2", 2000, 2);
	unsigned char *c = spool_fx_content(f, "1.2.9.3", 4000, 3);
	char ha[OP_HASH_HEX + 1], hb[OP_HASH_HEX + 1], hc[OP_HASH_HEX + 1], path[256];
	uint64_t bytes;
	unsigned n;

	spool_fx_store_ok(f, a, 1000, "1.2.9.1", OP_SPOOL_STORED, ha);
	spool_fx_store_ok(f, b, 2000, "1.2.9.2", OP_SPOOL_STORED, hb);
	spool_fx_store_ok(f, c, 4000, "1.2.9.3", OP_SPOOL_STORED, hc);
	/* b's bytes also under another study's SOP: its file must stay. */
	spool_fx_store_ok(f, b, 2000, "1.2.9.4", OP_SPOOL_STORED, NULL);
	spool_fx_db_exec(f, "UPDATE instances SET study_uid = '1.2.8' WHERE sop_instance_uid ="
			    " '1.2.9.4'");
	assert_int_equal(op_spool_discard_quarantined(f->sp, "1.2.826.0.1.1", &n, &bytes), -ENOENT);
	spool_fx_db_exec(f, "UPDATE instances SET state = 'quarantined' WHERE sop_instance_uid"
			    " IN ('1.2.9.1', '1.2.9.2', '1.2.9.4')");
	spool_fx_db_exec(f, "UPDATE instances SET state = 'sending' WHERE sop_instance_uid ="
			    " '1.2.9.3'");
	assert_int_equal(op_spool_discard_quarantined(f->sp, "1.2.826.0.1.1", &n, &bytes), 0);
	assert_int_equal(n, 2);
	assert_int_equal(bytes, 3000);
	assert_int_equal(spool_fx_rows(f), 2);
	spool_fx_object_path(f, ha, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	spool_fx_object_path(f, hb, path, sizeof(path));
	assert_true(spool_fx_exists(path));
	spool_fx_object_path(f, hc, path, sizeof(path));
	assert_true(spool_fx_exists(path));
	spool_fx_assert_usage_matches_index(f);
	assert_int_equal(op_spool_discard_quarantined(f->sp, "1.2.826.0.1.1", &n, &bytes), -ENOENT);
	assert_int_equal(n, 0);
}

/* One instance of study with what the operator recognises it by. */
struct labelled {
	const char *sop, *study, *pid, *name, *accession, *date, *description, *modality, *aet;
};

static void store_labelled(struct spool_fx *f, const struct labelled *l)
{
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;
	unsigned char *data = spool_fx_content(f, l->sop, 100, (unsigned)strlen(l->sop));

	spool_fx_fill_inst(&in, l->sop);
	snprintf(in.study_uid, sizeof(in.study_uid), "%s", l->study);
	snprintf(in.patient_id, sizeof(in.patient_id), "%s", l->pid);
	snprintf(in.modality, sizeof(in.modality), "%s", l->modality);
	snprintf(in.calling_aet, sizeof(in.calling_aet), "%s", l->aet);
	snprintf(in.qr.charset, sizeof(in.qr.charset), "ISO_IR 100");
	snprintf(in.qr.patient_name, sizeof(in.qr.patient_name), "%s", l->name);
	snprintf(in.qr.accession_number, sizeof(in.qr.accession_number), "%s", l->accession);
	snprintf(in.qr.study_date, sizeof(in.qr.study_date), "%s", l->date);
	snprintf(in.qr.study_description, sizeof(in.qr.study_description), "%s", l->description);
	in.priority = OP_PRIORITY_MEDIUM;
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, 100), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, NULL), 0);
	usleep(2000); /* a distinct received_at, hence a fixed order */
}

/* The study's numbers of matches for a search, and the first's UID. */
static unsigned search_count(struct spool_fx *f, const char *dest, int state, const char *search,
			     op_spool_study *s, uint64_t *total)
{
	unsigned n = 99;

	assert_int_equal(op_spool_studies(f->sp, dest, state, search, 0, 4, s, &n, total), 0);
	assert_int_equal(n, *total);
	return n;
}

/* What staff recognise a study by comes from the query index (issue 18):
 * the greatest of its instances', modalities distinct; a study whose
 * instances were never indexed shows "". */
static void test_spool_studies_show_the_index(void **state)
{
	static const struct labelled rows[] = {
		{ "6.1", "5.1", "PID-100", "DOE^JOHN", "ACC123", "20260101", "CT HEAD", "CT",
		  "CTSCANNER" },
		{ "6.2", "5.1", "PID-100", "DOE^JOHN", "ACC123", "20260101", "CT HEAD", "SR",
		  "CTSCANNER" },
		{ "6.3", "5.2", "XPID-9", "SMITH^ANNA", "A-9", "20251231", "MR KNEE", "MR",
		  "MRI1" },
	};
	struct spool_fx *f = *state;
	op_spool_study s[4];
	char h[OP_HASH_HEX + 1];
	uint64_t total;
	unsigned n;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		store_labelled(f, &rows[i]);
	spool_fx_store_study(f, "6.4", "5.3", 1, 100, h); /* no index attributes */
	{
		sqlite3 *db = spool_fx_db_open(f);

		/* As a spool from before the index, not yet back-filled. */
		assert_int_equal(
			sqlite3_exec(db,
				     "DELETE FROM qr_index WHERE instance_id ="
				     " (SELECT id FROM instances WHERE sop_instance_uid = '6.4')",
				     NULL, NULL, NULL),
			SQLITE_OK);
		sqlite3_close(db);
	}

	assert_int_equal(op_spool_studies(f->sp, NULL, -1, NULL, 0, 4, s, &n, &total), 0);
	assert_int_equal(n, 3);
	assert_string_equal(s[0].study_uid, "5.3");
	assert_string_equal(s[0].patient_name, "");
	assert_string_equal(s[0].modalities, "CT");
	assert_string_equal(s[0].calling_aet, "STORESCU");
	assert_string_equal(s[2].study_uid, "5.1");
	assert_int_equal(s[2].instances, 2);
	assert_string_equal(s[2].patient_id, "PID-100");
	assert_string_equal(s[2].patient_name, "DOE^JOHN");
	assert_string_equal(s[2].accession_number, "ACC123");
	assert_string_equal(s[2].study_date, "20260101");
	assert_string_equal(s[2].study_description, "CT HEAD");
	assert_string_equal(s[2].calling_aet, "CTSCANNER");
	assert_string_equal(s[2].charset, "ISO_IR 100");
	assert_true(strcmp(s[2].modalities, "CT\\SR") == 0 ||
		    strcmp(s[2].modalities, "SR\\CT") == 0);
	/* Paged: the attributes belong to the page's own studies. */
	assert_int_equal(op_spool_studies(f->sp, NULL, -1, NULL, 1, 1, s, &n, &total), 0);
	assert_int_equal(n, 1);
	assert_int_equal(total, 3);
	assert_string_equal(s[0].study_uid, "5.2");
	assert_string_equal(s[0].patient_name, "SMITH^ANNA");
	assert_string_equal(s[0].modalities, "MR");
	/* One destination's view has them too. */
	assert_int_equal(search_count(f, "cloud", -1, "ACC", s, &total), 1);
	assert_string_equal(s[0].accession_number, "ACC123");
	assert_string_equal(s[0].calling_aet, "CTSCANNER");
}

/* The search: patient ID and accession number by prefix, the name by
 * substring ignoring case, with wildcards and separators; bound, never
 * spliced; bounded. */
static void test_spool_studies_search(void **state)
{
	static const struct labelled rows[] = {
		{ "7.1", "4.1", "PID-100", "DOE^JOHN", "ACC123", "20260101", "CT HEAD", "CT",
		  "CT1" },
		{ "7.2", "4.2", "XPID-9", "SMITH^ANNA", "A_9", "20251231", "MR KNEE", "MR", "MR1" },
		{ "7.3", "4.3", "P%1", "O'BRIEN^PAT", "B*1", "20251230", "CR CHEST", "CR", "CR1" },
	};
	struct spool_fx *f = *state;
	op_spool_study s[4];
	char longer[OP_SPOOL_SEARCH_MAX + 2];
	op_spool_item it[4];
	uint64_t total;
	unsigned n;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		store_labelled(f, &rows[i]);

	assert_int_equal(search_count(f, NULL, -1, "PID-1", s, &total), 1);
	assert_string_equal(s[0].study_uid, "4.1");
	assert_int_equal(search_count(f, NULL, -1, "PID-100", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "PID", s, &total), 1); /* a prefix, not XPID */
	assert_int_equal(search_count(f, NULL, -1, "pid-100", s, &total), 0); /* IDs: case */
	assert_int_equal(search_count(f, NULL, -1, "ACC12", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "A_9", s, &total), 1);
	assert_string_equal(s[0].study_uid, "4.2");
	assert_int_equal(search_count(f, NULL, -1, "A_", s, &total), 1); /* '_' is literal */
	assert_int_equal(search_count(f, NULL, -1, "doe", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "oh", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "Doe John", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "doe, john", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "DOE^JOHN", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "s*h^a?na", s, &total), 1);
	assert_string_equal(s[0].study_uid, "4.2");
	/* Characters that mean something to SQL, LIKE or GLOB are text. */
	assert_int_equal(search_count(f, NULL, -1, "o'brien", s, &total), 1);
	assert_string_equal(s[0].study_uid, "4.3");
	assert_int_equal(search_count(f, NULL, -1, "P%", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "B*", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "B", s, &total), 1);
	assert_int_equal(search_count(f, NULL, -1, "%", s, &total), 0);
	assert_int_equal(search_count(f, NULL, -1, "x' OR '1'='1", s, &total), 0);
	assert_int_equal(search_count(f, NULL, -1, "nobody", s, &total), 0);
	/* "": no search. */
	assert_int_equal(search_count(f, NULL, -1, "", s, &total), 3);
	/* With the state filter and a destination. */
	spool_fx_claim(f, 1, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_QUARANTINE, 0, "refused", 1);
	assert_int_equal(search_count(f, NULL, OP_STATE_QUARANTINED, "doe", s, &total), 1);
	assert_int_equal(search_count(f, NULL, OP_STATE_QUARANTINED, "smith", s, &total), 0);
	assert_int_equal(search_count(f, "cloud", OP_STATE_QUARANTINED, "doe", s, &total), 1);
	assert_int_equal(search_count(f, "cloud", OP_STATE_QUEUED, "smith", s, &total), 1);
	assert_int_equal(search_count(f, "cloud", OP_STATE_QUEUED, "doe", s, &total), 0);
	/* At most OP_SPOOL_SEARCH_MAX bytes. */
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(op_spool_studies(f->sp, NULL, -1, longer, 0, 4, s, &n, &total), -EINVAL);
	longer[OP_SPOOL_SEARCH_MAX] = '\0';
	assert_int_equal(search_count(f, NULL, -1, longer, s, &total), 0);
}

static void test_spool_settings_and_audit(void **state)
{
	struct spool_fx *f = *state;
	op_spool_audit_entry e[3];
	char v[64], detail[128];
	unsigned n;

	assert_int_equal(op_spool_setting_get(f->sp, "paused", v, sizeof(v)), -ENOENT);
	assert_int_equal(op_spool_setting_set(f->sp, "paused", "1"), 0);
	assert_int_equal(op_spool_setting_set(f->sp, "paused", "2"), 0);
	assert_int_equal(op_spool_setting_get(f->sp, "paused", v, sizeof(v)), 0);
	assert_string_equal(v, "2");
	assert_int_equal(op_spool_setting_set(f->sp, "paused", NULL), 0);
	assert_int_equal(op_spool_setting_get(f->sp, "paused", v, sizeof(v)), -ENOENT);

	assert_int_equal(op_spool_audit(f->sp, 1000, "admin", "10.0.0.2", "pause", ""), 0);
	assert_int_equal(op_spool_audit(f->sp, 2000, "local", "local", "retry", "all"), 0);
	assert_int_equal(op_spool_audit_list(f->sp, 3, e, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].action, "retry"); /* newest first */
	assert_int_equal(e[0].time, 2000);
	assert_string_equal(e[1].who, "admin");
	assert_string_equal(e[1].origin, "10.0.0.2");
	assert_int_equal(op_spool_audit_list(f->sp, 1, e, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(op_spool_quick_check(f->sp, detail, sizeof(detail)), 0);
	assert_string_equal(detail, "quick_check: ok");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SPOOL_FX_TEST(test_spool_counters),
		SPOOL_FX_TEST(test_spool_studies_and_retry),
		SPOOL_FX_TEST(test_spool_studies_show_the_index),
		SPOOL_FX_TEST(test_spool_studies_search),
		SPOOL_FX_TEST(test_spool_discard_quarantined),
		SPOOL_FX_TEST(test_spool_requarantine_counts_once),
		SPOOL_FX_TEST(test_spool_settings_and_audit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
