/*
 * test_spool_tallies: the status counts services/common/spool.c keeps by
 * trigger (tallies, waiting_studies) against the rows counted the slow
 * way, after every kind of write the spool makes: stores, duplicates,
 * replacements of another size, claims, settlements of each verdict,
 * requeues, evictions, discards, two destinations; and a spool that had
 * none (an older release's) counted once at open. The same for the
 * console's study list (study_tallies).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/spool.h"
#include "spool_fixture.h"

/* One scope's figures counted from the rows: states, the oldest waiting,
 * the studies waiting. */
static void count_rows(struct spool_fx *f, const char *dest, op_spool_stats *want)
{
	static const char *const states[] = { "queued", "sending", "sent", "quarantined" };
	sqlite3 *db = spool_fx_db_open(f);
	char sql[512];

	memset(want, 0, sizeof(*want));
	for (int s = 0; s < OP_SPOOL_STATES; s++) {
		if (dest)
			snprintf(sql, sizeof(sql),
				 "SELECT COUNT(*) || ' ' || COALESCE(SUM(i.size), 0) FROM "
				 "deliveries d"
				 " JOIN instances i ON i.id = d.instance_id WHERE d.destination = "
				 "'%s'"
				 " AND d.state = ?1",
				 dest);
		else
			snprintf(sql, sizeof(sql),
				 "SELECT COUNT(*) || ' ' || COALESCE(SUM(size), 0) FROM instances"
				 " WHERE state = ?1");
		char text[64];
		spool_fx_db_text(db, sql, states[s], text, sizeof(text));
		if (sscanf(text, "%" SCNu64 " %" SCNu64, &want->state[s].instances,
			   &want->state[s].bytes) != 2)
			fail_msg("%s: %s", sql, text);
	}
	snprintf(sql, sizeof(sql),
		 "SELECT COALESCE(MIN(received_at), 0) FROM %s WHERE state IN ('queued', "
		 "'sending')%s",
		 dest ? "deliveries" : "instances", dest ? " AND destination = ?1" : "");
	want->oldest_queued_at = spool_fx_db_int(db, sql, dest);
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(DISTINCT study_uid) FROM %s WHERE state IN ('queued', 'sending')%s",
		 dest ? "deliveries" : "instances", dest ? " AND destination = ?1" : "");
	want->studies_queued = (uint64_t)spool_fx_db_int(db, sql, dest);
	sqlite3_close(db);
}

/* study_tallies (the console's study list) holds what the rows say: a row
 * a study and scope, its counts by state and its last change. */
static void assert_study_tallies(struct spool_fx *f, const char *when)
{
#define STUDY_ROWS(scope, table, group)                                                            \
	"SELECT " scope ", study_uid, SUM(state = 'queued'), SUM(state = 'sending'),"              \
	" SUM(state = 'sent'), SUM(state = 'quarantined'), MAX(state_changed_at)"                  \
	" FROM " table " GROUP BY " group
	static const char sql[] = "WITH want AS (" STUDY_ROWS(
		"''", "instances",
		"study_uid") " UNION ALL " STUDY_ROWS("destination", "deliveries",
						      "destination, study_uid") ")"
										" SELECT (SELECT "
										"COUNT(*) FROM "
										"(SELECT * FROM "
										"study_tallies "
										"EXCEPT"
										" SELECT * FROM "
										"want)) * 1000 + "
										"(SELECT COUNT(*) "
										"FROM (SELECT * "
										"FROM want"
										" EXCEPT SELECT * "
										"FROM "
										"study_tallies))";
#undef STUDY_ROWS
	sqlite3 *db = spool_fx_db_open(f);
	long long wrong = spool_fx_db_int(db, sql, NULL);

	sqlite3_close(db);
	if (wrong != 0)
		fail_msg("%s: study_tallies has %lld rows the rows do not say, and lacks %lld",
			 when, wrong / 1000, wrong % 1000);
}

/* op_spool_get_stats says what the rows say, for the instances and for
 * each destination. */
static void assert_tallies(struct spool_fx *f, const char *when)
{
	const char *scopes[] = { NULL, "cloud", "pacs" };

	for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++) {
		op_spool_stats got, want;

		assert_int_equal(op_spool_get_stats(f->sp, scopes[i], &got), 0);
		count_rows(f, scopes[i], &want);
		for (int s = 0; s < OP_SPOOL_STATES; s++)
			if (got.state[s].instances != want.state[s].instances ||
			    got.state[s].bytes != want.state[s].bytes)
				fail_msg("%s, %s, %s: %" PRIu64 " instances %" PRIu64
					 " bytes, the rows say %" PRIu64 " %" PRIu64,
					 when, scopes[i] ? scopes[i] : "instances",
					 op_spool_state_name(s), got.state[s].instances,
					 got.state[s].bytes, want.state[s].instances,
					 want.state[s].bytes);
		if (got.oldest_queued_at != want.oldest_queued_at ||
		    got.studies_queued != want.studies_queued)
			fail_msg("%s, %s: oldest %" PRId64 " studies %" PRIu64
				 ", the rows say %" PRId64 " %" PRIu64,
				 when, scopes[i] ? scopes[i] : "instances", got.oldest_queued_at,
				 got.studies_queued, want.oldest_queued_at, want.studies_queued);
	}
	assert_study_tallies(f, when);
}

/* Stores len bytes as sop of study, routed to destinations. */
static void store(struct spool_fx *f, const char *sop, const char *study, size_t len, unsigned seed,
		  const char *destinations, enum op_spool_outcome want)
{
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	op_instance in;
	unsigned char *data = spool_fx_content(f, sop, len, seed);

	spool_fx_fill_inst(&in, sop);
	snprintf(in.study_uid, sizeof(in.study_uid), "%s", study);
	snprintf(in.destinations, sizeof(in.destinations), "%s", destinations);
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, len), 0);
	assert_int_equal(op_spool_object_finish(obj), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, NULL), 0);
	assert_int_equal(outcome, want);
}

/* Claims what dest has due and settles each with verdict v. */
static unsigned settle_all(struct spool_fx *f, const char *dest, enum op_spool_verdict v)
{
	op_spool_item it[16];
	unsigned n;

	assert_int_equal(op_spool_claim(f->sp, dest, INT64_MAX / 2, 16, 1 << 30, 0, it, &n), 0);
	for (unsigned i = 0; i < n; i++) {
		op_spool_settlement s = { it[i].id, it[i].hash, v, 0,
					  v == OP_VERDICT_SENT ? NULL : "refused" };
		assert_int_equal(op_spool_settle(f->sp, dest, &s, 1, 5), 0);
	}
	return n;
}

static void test_tallies_follow_every_write(void **state)
{
	struct spool_fx *f = *state;
	unsigned evicted, n;
	uint64_t bytes;

	assert_tallies(f, "empty");
	store(f, "1.1", "9.1", 100, 1, "cloud,pacs", OP_SPOOL_STORED);
	store(f, "1.2", "9.1", 200, 2, "cloud", OP_SPOOL_STORED);
	store(f, "1.3", "9.2", 300, 3, "pacs", OP_SPOOL_STORED);
	store(f, "1.4", "9.3", 400, 4, "cloud", OP_SPOOL_STORED);
	assert_tallies(f, "stored");
	store(f, "1.2", "9.1", 200, 2, "cloud", OP_SPOOL_DUPLICATE);
	store(f, "1.1", "9.1", 150, 5, "cloud,pacs", OP_SPOOL_REPLACED); /* another size */
	assert_tallies(f, "duplicate and replacement");
	assert_true(settle_all(f, "cloud", OP_VERDICT_SENT) > 0);
	assert_tallies(f, "cloud sent a study");
	assert_true(settle_all(f, "pacs", OP_VERDICT_QUARANTINE) > 0);
	assert_tallies(f, "pacs refused");
	assert_true(settle_all(f, "cloud", OP_VERDICT_RETRY) > 0);
	assert_tallies(f, "cloud retried");
	assert_int_equal(op_spool_requeue_sending(f->sp, &n), 0);
	assert_tallies(f, "requeued");
	store(f, "1.4", "9.4", 450, 6, "cloud", OP_SPOOL_REPLACED); /* moved study */
	assert_tallies(f, "replaced into another study");
	while (settle_all(f, "cloud", OP_VERDICT_SENT) > 0)
		;
	assert_tallies(f, "cloud sent all");
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &bytes), 0);
	assert_true(evicted > 0);
	assert_tallies(f, "evicted");
	assert_int_equal(op_spool_retry_quarantined(f->sp, "pacs", NULL, 6, &n), 0);
	assert_tallies(f, "quarantined retried");
	assert_true(settle_all(f, "pacs", OP_VERDICT_QUARANTINE) > 0);
	assert_int_equal(op_spool_discard_quarantined(f->sp, "9.2", &n, &bytes), 0);
	assert_true(n > 0);
	assert_tallies(f, "discarded");
}

/* A spool without tallies (an older release's) has them counted once at
 * open, and kept from then on. */
static void test_tallies_counted_for_an_older_spool(void **state)
{
	struct spool_fx *f = *state;

	store(f, "2.1", "8.1", 100, 1, "cloud,pacs", OP_SPOOL_STORED);
	store(f, "2.2", "8.2", 200, 2, "cloud", OP_SPOOL_STORED);
	assert_true(settle_all(f, "cloud", OP_VERDICT_SENT) > 0);
	op_spool_close(f->sp);
	f->sp = NULL;
	spool_fx_db_exec(
		f, "DROP TRIGGER tally_instance_in; DROP TRIGGER tally_instance_out;"
		   " DROP TRIGGER tally_instance_change; DROP TRIGGER tally_delivery_in;"
		   " DROP TRIGGER tally_delivery_out; DROP TRIGGER tally_delivery_change;"
		   " DROP TABLE tallies; DROP TABLE waiting_studies;"
		   " DROP TRIGGER study_tally_instance_in; DROP TRIGGER study_tally_instance_out;"
		   " DROP TRIGGER study_tally_instance_move;"
		   " DROP TRIGGER study_tally_instance_change;"
		   " DROP TRIGGER study_tally_delivery_in; DROP TRIGGER study_tally_delivery_out;"
		   " DROP TRIGGER study_tally_delivery_move;"
		   " DROP TRIGGER study_tally_delivery_change; DROP TABLE study_tallies");
	/* What the older release did meanwhile, with nothing to keep count. */
	spool_fx_db_exec(f,
			 "UPDATE deliveries SET state = 'quarantined' WHERE destination = 'pacs'");
	spool_fx_db_exec(f, "UPDATE instances SET state = 'quarantined' WHERE sop_instance_uid ="
			    " '2.1'");
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	assert_tallies(f, "reopened");
	store(f, "2.3", "8.3", 300, 3, "pacs", OP_SPOOL_STORED);
	assert_tallies(f, "stored after");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SPOOL_FX_TEST(test_tallies_follow_every_write),
		SPOOL_FX_TEST(test_tallies_counted_for_an_older_spool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
