/*
 * test_spool_queue: services/common/spool_queue.c, the uplink's side:
 * claims (one study at a time, urgent first, within limits), every
 * verdict of a settlement, the requeue after a crash, and the eviction of
 * sent objects. The helpers are in spool_fixture.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/spool.h"
#include "spool_fixture.h"

static void state_of(struct spool_fx *f, const char *sop, char *out, size_t size)
{
	sqlite3 *db = spool_fx_db_open(f);

	spool_fx_db_text(db, "SELECT state FROM instances WHERE sop_instance_uid = ?", sop, out,
			 size);
	sqlite3_close(db);
}

/* One study per batch: the study of the oldest due row, its rows oldest
 * first, marked 'sending'. */
static void test_spool_claim_one_study_oldest_first(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[8];
	unsigned n;
	char st[32];

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "2.1", "9.2", 1, 300, NULL);
	spool_fx_store_study(f, "1.2", "9.1", 1, 300, NULL);
	spool_fx_claim(f, 8, 1 << 20, it, &n);
	assert_int_equal(n, 2);
	assert_string_equal(it[0].sop_instance_uid, "1.1");
	assert_string_equal(it[1].sop_instance_uid, "1.2");
	assert_string_equal(it[0].study_uid, "9.1");
	assert_int_equal(it[0].size, 300);
	state_of(f, "1.1", st, sizeof(st));
	assert_string_equal(st, "sending");
	spool_fx_claim(f, 8, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
	spool_fx_claim(f, 8, 1 << 20, it, &n);
	assert_int_equal(n, 0);
}

/* An urgent study goes before an older routine one. */
static void test_spool_claim_urgent_first(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n;

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "2.1", "9.2", 2, 300, NULL);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
	assert_int_equal(it[0].priority, 2);
}

/* The connection kept for urgent studies claims only those. */
static void test_spool_claim_min_priority(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n;

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, NULL);
	assert_int_equal(op_spool_claim(f->sp, "cloud", INT64_MAX / 2, 4, 1 << 20, 2, it, &n), 0);
	assert_int_equal(n, 0);
	spool_fx_store_study(f, "2.1", "9.2", 2, 300, NULL);
	assert_int_equal(op_spool_claim(f->sp, "cloud", INT64_MAX / 2, 4, 1 << 20, 2, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
}

/* At most max_items and max_bytes; a first row over max_bytes goes alone. */
static void test_spool_claim_limits(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[8];
	unsigned n;
	char sop[16];

	for (int i = 0; i < 6; i++) {
		snprintf(sop, sizeof(sop), "1.%d", i);
		spool_fx_store_study(f, sop, "9.1", 1, 1000, NULL);
	}
	spool_fx_claim(f, 3, 1 << 20, it, &n);
	assert_int_equal(n, 3);
	spool_fx_claim(f, 8, 2500, it, &n);
	assert_int_equal(n, 2);
	assert_string_equal(it[0].sop_instance_uid, "1.3");
	spool_fx_claim(f, 8, 10, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "1.5");
	assert_int_equal(op_spool_claim(f->sp, "cloud", 0, 0, 10, 0, it, &n), -EINVAL);
}

/* Rows put off (a retry's back-off) wait aside: a claim takes what is due
 * behind them, and they come back in their place in the queue when their
 * time has come (deliveries_ready and deliveries_later). */
static void test_spool_claim_passes_over_what_is_put_off(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n;
	int64_t due;

	spool_fx_store_study(f, "2.1", "8.1", 1, 300, NULL);
	spool_fx_store_study(f, "2.2", "8.2", 1, 300, NULL);
	spool_fx_store_study(f, "2.3", "8.3", 1, 300, NULL);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 1000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
	spool_fx_settle_one(f, &it[0], OP_VERDICT_RETRY, 5000, "HTTP 503", 1000);
	assert_int_equal(op_spool_next_due(f->sp, "cloud", &due), 0);
	assert_int_equal(due, 0); /* 2.2 and 2.3 */
	assert_int_equal(op_spool_claim(f->sp, "cloud", 1000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.2");
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 1000);
	/* Due again: before 2.3, which came later. */
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
	spool_fx_settle_one(f, &it[0], OP_VERDICT_REQUEUE, 9000, "paused", 5000);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.3");
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 5000);
	assert_int_equal(op_spool_next_due(f->sp, "cloud", &due), 0);
	assert_int_equal(due, 9000);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 8999, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 9000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "2.1");
}

/* Every verdict, and when retries are due again. */
static void test_spool_settle_verdicts(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n;
	int64_t due;
	char st[32], err[64];
	sqlite3 *db;

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "1.2", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "1.3", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "1.4", "9.1", 1, 300, NULL);
	assert_int_equal(op_spool_next_due(f->sp, "cloud", &due), 0);
	assert_int_equal(due, 0);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 4);
	assert_int_equal(op_spool_next_due(f->sp, "cloud", &due), 0);
	assert_true(due == INT64_MAX);

	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 1000);
	spool_fx_settle_one(f, &it[1], OP_VERDICT_RETRY, 5000, "HTTP 503", 1000);
	spool_fx_settle_one(f, &it[2], OP_VERDICT_QUARANTINE, 0, "FailureReason C000", 1000);
	spool_fx_settle_one(f, &it[3], OP_VERDICT_REQUEUE, 2000, "paused: HTTP 401", 1000);

	db = spool_fx_db_open(f);
	spool_fx_db_text(db, "SELECT state FROM instances WHERE sop_instance_uid = ?", "1.1", st,
			 sizeof(st));
	assert_string_equal(st, "sent");
	assert_int_equal(
		spool_fx_db_int(db, "SELECT attempts FROM instances WHERE sop_instance_uid = ?",
				"1.1"),
		1);
	spool_fx_db_text(db, "SELECT state FROM instances WHERE sop_instance_uid = ?", "1.2", st,
			 sizeof(st));
	assert_string_equal(st, "queued");
	assert_int_equal(
		spool_fx_db_int(db, "SELECT attempts FROM instances WHERE sop_instance_uid = ?",
				"1.2"),
		1);
	spool_fx_db_text(db, "SELECT last_error FROM instances WHERE sop_instance_uid = ?", "1.2",
			 err, sizeof(err));
	assert_string_equal(err, "HTTP 503");
	spool_fx_db_text(db, "SELECT state FROM instances WHERE sop_instance_uid = ?", "1.3", st,
			 sizeof(st));
	assert_string_equal(st, "quarantined");
	spool_fx_db_text(db, "SELECT last_error FROM instances WHERE sop_instance_uid = ?", "1.3",
			 err, sizeof(err));
	assert_string_equal(err, "FailureReason C000");
	/* A requeue is not an attempt. */
	assert_int_equal(
		spool_fx_db_int(db, "SELECT attempts FROM instances WHERE sop_instance_uid = ?",
				"1.4"),
		0);
	sqlite3_close(db);

	assert_int_equal(op_spool_next_due(f->sp, "cloud", &due), 0);
	assert_int_equal(due, 2000);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 1999, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 0);
	/* An instance attempted before goes alone; the others together. */
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "1.2");
	assert_int_equal(it[0].attempts, 1);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "1.4");
	assert_int_equal(it[0].attempts, 0);
}

/* A newer version arriving while the old one is sent is not marked sent,
 * nor sent alongside: settling the old one queues it. */
static void test_spool_settle_after_replace(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[2];
	unsigned n;
	char st[32], old_hash[OP_HASH_HEX + 1], new_hash[OP_HASH_HEX + 1];

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, old_hash);
	spool_fx_claim(f, 2, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	spool_fx_store_study(f, "1.1", "9.1", 1, 400, new_hash);
	assert_string_not_equal(old_hash, new_hash);
	/* Not claimable while the old version is in flight. */
	state_of(f, "1.1", st, sizeof(st));
	assert_string_equal(st, "sending");
	spool_fx_claim(f, 2, 1 << 20, it + 1, &n);
	assert_int_equal(n, 0);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 1000);
	state_of(f, "1.1", st, sizeof(st));
	assert_string_equal(st, "queued");
	spool_fx_claim(f, 2, 1 << 20, it, &n);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].hash, new_hash);
}

/* After a crash, rows left 'sending' are queued again. */
static void test_spool_requeue_sending(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n, count;
	char st[32];

	spool_fx_store_study(f, "1.1", "9.1", 1, 300, NULL);
	spool_fx_store_study(f, "1.2", "9.1", 1, 300, NULL);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 2);
	op_spool_close(f->sp);
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	assert_int_equal(op_spool_requeue_sending(f->sp, &count), 0);
	assert_int_equal(count, 2);
	state_of(f, "1.2", st, sizeof(st));
	assert_string_equal(st, "queued");
	assert_int_equal(op_spool_requeue_sending(f->sp, &count), 0);
	assert_int_equal(count, 0);
}

/* Sent objects above keep_sent_bytes go, oldest sent first, rows and files;
 * unsent objects never do. */
static void test_spool_evict_sent(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[8];
	op_spool_usage u;
	unsigned n, evicted;
	uint64_t freed;
	char hash[5][OP_HASH_HEX + 1], path[PATH_MAX], sop[16];

	for (int i = 0; i < 5; i++) {
		snprintf(sop, sizeof(sop), "1.%d", i);
		spool_fx_store_study(f, sop, "9.1", 1, 1000, hash[i]);
	}
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 4);
	/* Sent in the order 3, 2, 1, 0: 3 is the oldest sent. */
	for (int i = 3; i >= 0; i--)
		spool_fx_settle_one(f, &it[i], OP_VERDICT_SENT, 0, NULL, 1000 + (3 - i));
	assert_int_equal(op_spool_evict_sent(f->sp, 2500, &evicted, &freed), 0);
	assert_int_equal(evicted, 2);
	assert_int_equal(freed, 2000);
	for (int i = 0; i < 5; i++) {
		spool_fx_object_path(f, hash[i], path, sizeof(path));
		assert_int_equal(spool_fx_exists(path), i == 0 || i == 1 || i == 4);
	}
	op_spool_get_usage(f->sp, &u);
	assert_int_equal(u.objects, 3);
	assert_int_equal(u.bytes, 3000);
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 2);
	spool_fx_object_path(f, hash[4], path, sizeof(path));
	assert_true(spool_fx_exists(path)); /* queued: never evicted */
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 0);
}

/* At max_bytes the receiver makes room by evicting sent objects, and
 * refuses only when everything left is unsent. */
static void test_spool_makes_room_from_sent(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	op_spool_object *obj = NULL;
	unsigned n;
	char first[OP_HASH_HEX + 1], path[PATH_MAX];

	f->limits.max_bytes = 3000;
	op_spool_set_limits(f->sp, &f->limits);
	spool_fx_store_study(f, "1.1", "9.1", 1, 1000, first);
	spool_fx_store_study(f, "1.2", "9.1", 1, 1000, NULL);
	spool_fx_store_study(f, "1.3", "9.2", 1, 1000, NULL);
	spool_fx_claim(f, 4, 1 << 20, it, &n);
	assert_int_equal(n, 2);
	spool_fx_settle_one(f, &it[0], OP_VERDICT_SENT, 0, NULL, 1000);
	spool_fx_settle_one(f, &it[1], OP_VERDICT_SENT, 0, NULL, 1001);
	spool_fx_store_study(f, "1.4", "9.3", 1, 1000, NULL);
	spool_fx_object_path(f, first, path, sizeof(path));
	assert_false(spool_fx_exists(path));
	spool_fx_store_study(f, "1.5", "9.3", 1, 1000, NULL);
	/* Three unsent objects fill the spool: nothing more fits. */
	assert_int_equal(op_spool_object_begin(f->sp, &obj), -EDQUOT);
}

/* Stores sop (study 9.9) for the destinations in dests ("" = the
 * default, NULL = routed nowhere). */
static void store_routed(struct spool_fx *f, const char *sop, const char *dests)
{
	unsigned char *data = spool_fx_content(f, sop, 1000, 7);
	op_spool_object *obj;
	enum op_spool_outcome outcome;
	op_instance in;

	spool_fx_fill_inst(&in, sop);
	snprintf(in.study_uid, sizeof(in.study_uid), "9.9");
	snprintf(in.destinations, sizeof(in.destinations), "%s", dests ? dests : "");
	in.local_only = dests == NULL;
	assert_int_equal(op_spool_object_begin(f->sp, &obj), 0);
	assert_int_equal(op_spool_object_write(obj, data, 1000), 0);
	assert_int_equal(op_spool_object_commit(obj, &in, &outcome, NULL), 0);
	usleep(2000);
}

static void settle_at(struct spool_fx *f, const char *dest, const op_spool_item *it,
		      enum op_spool_verdict v, const char *error)
{
	op_spool_settlement s = { it->id, it->hash, v, 0, error };

	assert_int_equal(op_spool_settle(f->sp, dest, &s, 1, 5000), 0);
}

static void assert_delivery(struct spool_fx *f, const char *sop, const char *dest,
			    const char *state)
{
	sqlite3 *db = spool_fx_db_open(f);
	char sql[256], text[64];

	snprintf(sql, sizeof(sql),
		 "SELECT d.state FROM deliveries d JOIN instances i ON i.id = d.instance_id"
		 " WHERE i.sop_instance_uid = ?1 AND d.destination = '%s'",
		 dest);
	spool_fx_db_text(db, sql, sop, text, sizeof(text));
	sqlite3_close(db);
	assert_string_equal(text, state);
}

/* Each destination has its own queue: one being sent does not hide the
 * instance from another, and the instance stays until both have it. */
static void test_spool_destinations_independent(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[4];
	unsigned n, evicted;
	uint64_t freed;
	char text[32];

	store_routed(f, "1.1", "cloud,ai,ai");
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, &it[1], &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(op_spool_claim(f->sp, "ai", 5000, 4, 1 << 20, 0, &it[1], &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(op_spool_claim(f->sp, "other", 5000, 4, 1 << 20, 0, &it[2], &n), 0);
	assert_int_equal(n, 0);

	settle_at(f, "cloud", &it[0], OP_VERDICT_SENT, NULL);
	assert_delivery(f, "1.1", "cloud", "sent");
	spool_fx_row_text(f, "1.1", "state", text, sizeof(text));
	assert_string_equal(text, "sending");
	settle_at(f, "ai", &it[1], OP_VERDICT_RETRY, "connection refused");
	spool_fx_row_text(f, "1.1", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
	spool_fx_row_text(f, "1.1", "last_error", text, sizeof(text));
	assert_string_equal(text, "connection refused");
	/* Not evictable: the AI service does not have it yet. */
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 0);

	assert_int_equal(op_spool_claim(f->sp, "ai", 5000, 4, 1 << 20, 0, &it[1], &n), 0);
	assert_int_equal(n, 1);
	settle_at(f, "ai", &it[1], OP_VERDICT_SENT, NULL);
	spool_fx_row_text(f, "1.1", "state", text, sizeof(text));
	assert_string_equal(text, "sent");
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 1);
	assert_int_equal(spool_fx_rows(f), 0);
	sqlite3 *db = spool_fx_db_open(f);
	assert_int_equal(spool_fx_db_int(db, "SELECT COUNT(*) FROM deliveries", NULL), 0);
	sqlite3_close(db);
}

/* A delivery quarantined at one destination keeps the object; the
 * operator's retry of that destination queues only its delivery. */
static void test_spool_destination_quarantine_keeps(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[2];
	op_spool_stats st;
	unsigned n, evicted;
	uint64_t freed;
	char text[32];

	store_routed(f, "1.2", "cloud,pacs");
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(op_spool_claim(f->sp, "pacs", 5000, 4, 1 << 20, 0, &it[1], &n), 0);
	settle_at(f, "cloud", &it[0], OP_VERDICT_SENT, NULL);
	settle_at(f, "pacs", &it[1], OP_VERDICT_QUARANTINE, "C-STORE failed: status 0xC000");
	spool_fx_row_text(f, "1.2", "state", text, sizeof(text));
	assert_string_equal(text, "quarantined");
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 0);

	assert_int_equal(op_spool_get_stats(f->sp, "pacs", &st), 0);
	assert_int_equal(st.state[OP_STATE_QUARANTINED].instances, 1);
	assert_int_equal(st.state[OP_STATE_SENT].instances, 0);
	assert_int_equal(st.counters.quarantined, 1);
	assert_int_equal(st.counters.uploaded_instances, 0);
	assert_int_equal(op_spool_get_stats(f->sp, "cloud", &st), 0);
	assert_int_equal(st.state[OP_STATE_SENT].instances, 1);
	assert_int_equal(st.counters.uploaded_instances, 1);

	/* The study list of one destination: its deliveries' states. */
	op_spool_study studies[2];
	uint64_t total;
	assert_int_equal(op_spool_studies(f->sp, "pacs", OP_STATE_QUARANTINED, NULL, 0, 2, studies,
					  &n, &total),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(studies[0].by_state[OP_STATE_QUARANTINED], 1);
	assert_non_null(strstr(studies[0].last_error, "0xC000"));
	assert_int_equal(op_spool_studies(f->sp, "cloud", OP_STATE_QUARANTINED, NULL, 0, 2, studies,
					  &n, &total),
			 0);
	assert_int_equal(n, 0);
	assert_int_equal(total, 0);
	assert_int_equal(op_spool_retry_quarantined(f->sp, "cloud", NULL, 6000, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(op_spool_retry_quarantined(f->sp, "pacs", NULL, 6000, &n), 0);
	assert_int_equal(n, 1);
	assert_delivery(f, "1.2", "pacs", "queued");
	assert_delivery(f, "1.2", "cloud", "sent");
	spool_fx_row_text(f, "1.2", "state", text, sizeof(text));
	assert_string_equal(text, "queued");
}

/* Routed nowhere ([routing] default = none): kept like the sent cache. */
static void test_spool_local_only(void **state)
{
	struct spool_fx *f = *state;
	op_spool_item it[2];
	unsigned n;
	char text[32];
	char names[4][OP_DEST_NAME_MAX + 1];

	store_routed(f, "1.3", NULL);
	store_routed(f, "1.4", "");
	spool_fx_row_text(f, "1.3", "state", text, sizeof(text));
	assert_string_equal(text, "sent");
	assert_int_equal(op_spool_claim(f->sp, "cloud", 5000, 4, 1 << 20, 0, it, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].sop_instance_uid, "1.4");
	assert_int_equal(op_spool_destinations(f->sp, names, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "cloud");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		SPOOL_FX_TEST(test_spool_claim_one_study_oldest_first),
		SPOOL_FX_TEST(test_spool_claim_urgent_first),
		SPOOL_FX_TEST(test_spool_claim_min_priority),
		SPOOL_FX_TEST(test_spool_claim_limits),
		SPOOL_FX_TEST(test_spool_settle_verdicts),
		SPOOL_FX_TEST(test_spool_settle_after_replace),
		SPOOL_FX_TEST(test_spool_requeue_sending),
		SPOOL_FX_TEST(test_spool_evict_sent),
		SPOOL_FX_TEST(test_spool_makes_room_from_sent),
		SPOOL_FX_TEST(test_spool_destinations_independent),
		SPOOL_FX_TEST(test_spool_destination_quarantine_keeps),
		SPOOL_FX_TEST(test_spool_local_only),
		SPOOL_FX_TEST(test_spool_claim_passes_over_what_is_put_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
