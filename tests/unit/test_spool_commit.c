/*
 * test_spool_commit: services/common/spool_commit.c, storage commitment
 * requests from the N-ACTION to the report: each instance decided as the
 * mode says (local: in the spool; cloud: the cloud's delivery), results
 * kept once decided, the deadline, what is due, and a request surviving a
 * reopen of the spool.
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

/* spool_fx_fill_inst()'s SOP class. */
static char sop_class[OP_UID_MAX + 1];

static void item(op_commit_item *it, const char *cls, const char *sop)
{
	memset(it, 0, sizeof(*it));
	snprintf(it->sop_class_uid, sizeof(it->sop_class_uid), "%s", cls);
	snprintf(it->sop_instance_uid, sizeof(it->sop_instance_uid), "%s", sop);
}

static int setup(void **state)
{
	op_instance in;
	int rc = spool_fx_setup(state);
	struct spool_fx *f = *state;
	char h[OP_HASH_HEX + 1];

	spool_fx_fill_inst(&in, "x");
	snprintf(sop_class, sizeof(sop_class), "%s", in.sop_class_uid);
	if (rc == 0) {
		spool_fx_store_study(f, "1.1", "9.1", 1, 100, h);
		spool_fx_store_study(f, "1.2", "9.1", 1, 100, h);
	}
	return rc;
}

#define COMMIT_TEST(name) cmocka_unit_test_setup_teardown(name, setup, spool_fx_teardown)

/* Settles the claimed delivery of sop at the cloud with verdict v. */
static void settle(struct spool_fx *f, const char *sop, enum op_spool_verdict v)
{
	op_spool_item it[8];
	unsigned n;

	spool_fx_claim(f, 8, 1 << 20, it, &n);
	for (unsigned i = 0; i < n; i++)
		if (strcmp(it[i].sop_instance_uid, sop) == 0)
			spool_fx_settle_one(f, &it[i], v, 0,
					    v == OP_VERDICT_SENT ? NULL : "refused", 1);
		else
			spool_fx_settle_one(f, &it[i], OP_VERDICT_REQUEUE, 0, NULL, 1);
}

/* local: what the spool holds is committed; an unknown instance fails
 * with 0x0112, another SOP class with 0x0119; all decided at once. */
static void test_commit_local(void **state)
{
	struct spool_fx *f = *state;
	op_commit_item req[3];
	op_commitment_txn t;
	int64_t id = 0;

	item(&req[0], sop_class, "1.1");
	item(&req[1], sop_class, "7.7");
	item(&req[2], "1.2.840.10008.5.1.4.1.1.4", "1.2");
	assert_int_equal(
		op_spool_commit_request(f->sp, "2.25.1", "MOD", 0, 1000, 2000, 0, req, 3, &id), 0);
	assert_true(id > 0);
	assert_int_equal(op_spool_commit_get(f->sp, id, 1500, &t), 0);
	assert_true(t.final);
	assert_string_equal(t.transaction_uid, "2.25.1");
	assert_string_equal(t.calling_aet, "MOD");
	assert_int_equal(t.n, 3);
	assert_int_equal(t.items[0].result, OP_COMMIT_OK);
	assert_int_equal(t.items[1].result, OP_COMMIT_NO_SUCH_INSTANCE);
	assert_int_equal(t.items[2].result, OP_COMMIT_CLASS_CONFLICT);
	free(t.items);
}

/* cloud: waiting until the cloud's delivery settles: sent commits,
 * quarantined fails (0x0110); a result once decided stays, the instance
 * evicted since or not. */
static void test_commit_cloud(void **state)
{
	struct spool_fx *f = *state;
	op_commit_item req[2];
	op_commitment_txn t;
	int64_t id = 0;
	unsigned evicted;
	uint64_t freed;

	item(&req[0], sop_class, "1.1");
	item(&req[1], sop_class, "1.2");
	assert_int_equal(op_spool_commit_request(f->sp, "2.25.2", "MOD", 1, 1000, INT64_MAX / 2, 0,
						 req, 2, &id),
			 0);
	assert_int_equal(op_spool_commit_get(f->sp, id, 1500, &t), 0);
	assert_false(t.final);
	assert_int_equal(t.items[0].result, OP_COMMIT_WAITING);
	free(t.items);

	settle(f, "1.1", OP_VERDICT_SENT);
	assert_int_equal(op_spool_commit_get(f->sp, id, 1500, &t), 0);
	assert_false(t.final);
	assert_int_equal(t.items[0].result, OP_COMMIT_OK);
	assert_int_equal(t.items[1].result, OP_COMMIT_WAITING);
	free(t.items);

	/* 1.1 leaves the cache: it was committed, and stays so. */
	assert_int_equal(op_spool_evict_sent(f->sp, 0, &evicted, &freed), 0);
	assert_int_equal(evicted, 1);
	settle(f, "1.2", OP_VERDICT_QUARANTINE);
	assert_int_equal(op_spool_commit_get(f->sp, id, 1500, &t), 0);
	assert_true(t.final);
	assert_int_equal(t.items[0].result, OP_COMMIT_OK);
	assert_int_equal(t.items[1].result, OP_COMMIT_PROCESSING_FAILURE);
	free(t.items);
}

/* At the deadline, what still waits fails with 0x0110. */
static void test_commit_deadline(void **state)
{
	struct spool_fx *f = *state;
	op_commit_item req[1];
	op_commitment_txn t;
	int64_t id = 0;

	item(&req[0], sop_class, "1.1");
	assert_int_equal(
		op_spool_commit_request(f->sp, "2.25.3", "MOD", 1, 1000, 5000, 0, req, 1, &id), 0);
	assert_int_equal(op_spool_commit_get(f->sp, id, 4999, &t), 0);
	assert_false(t.final);
	free(t.items);
	assert_int_equal(op_spool_commit_get(f->sp, id, 5000, &t), 0);
	assert_true(t.final);
	assert_int_equal(t.items[0].result, OP_COMMIT_PROCESSING_FAILURE);
	free(t.items);
}

/* Due when next_attempt_at says; reported ones are neither due nor
 * pending; a request survives closing and reopening the spool. */
static void test_commit_due_and_reported(void **state)
{
	struct spool_fx *f = *state;
	op_commit_item req[1];
	op_commitment_txn t;
	int64_t id1 = 0, id2 = 0, ids[4], oldest;
	uint64_t pending;
	unsigned n;

	item(&req[0], sop_class, "1.1");
	assert_int_equal(
		op_spool_commit_request(f->sp, "2.25.4", "MOD", 0, 1000, 1000, 60000, req, 1, &id1),
		0);
	assert_int_equal(
		op_spool_commit_request(f->sp, "2.25.5", "MOD", 0, 2000, 2000, 0, req, 1, &id2), 0);
	assert_int_equal(op_spool_commit_due(f->sp, 3000, ids, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_true(ids[0] == id2);
	assert_int_equal(op_spool_commit_later(f->sp, id2, 90000, "connection refused"), 0);
	assert_int_equal(op_spool_commit_due(f->sp, 70000, ids, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_true(ids[0] == id1);

	op_spool_close(f->sp);
	assert_int_equal(op_spool_open(f->t.dir, &f->limits, &f->sp), 0);
	assert_int_equal(op_spool_commit_pending(f->sp, &pending, &oldest), 0);
	assert_int_equal(pending, 2);
	assert_int_equal(oldest, 1000);
	assert_int_equal(op_spool_commit_get(f->sp, id2, 3000, &t), 0);
	assert_int_equal(t.attempts, 1);
	free(t.items);
	assert_int_equal(op_spool_commit_reported(f->sp, id1, 3000), 0);
	assert_int_equal(op_spool_commit_get(f->sp, id1, 3000, &t), -ENOENT);
	assert_int_equal(op_spool_commit_due(f->sp, INT64_MAX / 2, ids, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(op_spool_commit_pending(f->sp, &pending, &oldest), 0);
	assert_int_equal(pending, 1);
}

/* No items, or too many: refused before anything is written. */
static void test_commit_bounds(void **state)
{
	struct spool_fx *f = *state;
	op_commit_item req[1];
	int64_t id = 0, oldest;
	uint64_t pending;

	item(&req[0], sop_class, "1.1");
	assert_int_equal(op_spool_commit_request(f->sp, "2.25.6", "MOD", 0, 1, 1, 0, req, 0, &id),
			 -EINVAL);
	assert_int_equal(op_spool_commit_request(f->sp, "2.25.6", "MOD", 0, 1, 1, 0, req,
						 OP_COMMIT_MAX_ITEMS + 1, &id),
			 -EINVAL);
	assert_int_equal(op_spool_commit_pending(f->sp, &pending, &oldest), 0);
	assert_int_equal(pending, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		COMMIT_TEST(test_commit_local),    COMMIT_TEST(test_commit_cloud),
		COMMIT_TEST(test_commit_deadline), COMMIT_TEST(test_commit_due_and_reported),
		COMMIT_TEST(test_commit_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
