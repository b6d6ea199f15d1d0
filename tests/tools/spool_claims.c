/*
 * spool_claims: times the uplink's side of the spool on a large spool
 * (issue 19: "the uplink's claim and settle at most 5 ms each"), through
 * the spool's own API, with the spool's own fsyncs. Test-only: built into
 * build/tests/, never installed; tests/bench/bench_scale.py runs it on the
 * spool tests/tools/spool_fill made.
 *
 *   spool_claims [--claims N] [--backoff K] [--max-items M]
 *                [--commits C --empty EMPTY] DIR
 *     --claims N     timed claim/settle cycles (200)
 *     --backoff K    studies put in back-off first (2000; 0: none)
 *     --max-items M  instances a claim may take (100)
 *     --commits C    also time C receiver commits on DIR against C on a
 *                    new spool in EMPTY (a directory that does not exist)
 *
 * What it does, on the default destination's queue:
 * 1. back-off: claims K studies and settles them REQUEUE with their next
 *    attempt a day away: the queue's oldest rows are then not due, as
 *    after a cloud refused them, and a claim must pass over them;
 * 2. N cycles, each timed on its own: op_spool_claim (now), then
 *    op_spool_settle of what it claimed as REQUEUE due at once (so that
 *    the spool's states are what they were: a cycle claims the same
 *    study again), then op_spool_next_due and op_spool_get_stats;
 * 3. puts the back-off studies back: claims with a clock two days ahead
 *    (they are due then, and first) and requeues them due at once.
 * A claim that returns nothing in step 2 is a failure (the queue is
 * empty: fill with queued studies).
 * 4. with --commits: the receiver's write of an instance (begin, write,
 *    commit: the fdatasync, the rename, the directory's fsync and the
 *    row's transaction), timed from begin to commit's return, alternately
 *    on DIR and on the empty spool, C of each; 300-byte objects in one new
 *    study per run (patient "SPOOL_CLAIMS", no study date: no C-FIND of
 *    the query bench matches it), left queued in DIR.
 *
 * Prints "claims: ..." lines and a last line
 * "RESULT claim_ms_median=X claim_ms_worst=X settle_ms_median=X ...".
 * Exits 0 on success, 1 on a failure, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/spool.h"

#define DAY_MS (24 * 3600 * 1000LL)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* "name_median=X name_worst=X" of v (sorted in place). */
static void summary(const char *name, double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	printf(" %s_ms_median=%.2f %s_ms_p95=%.2f %s_ms_worst=%.2f", name, v[n / 2], name,
	       v[n * 95 / 100 > 0 ? n * 95 / 100 - 1 : 0], name, v[n - 1]);
}

/* Claims at now and settles what it got as REQUEUE due at due.
 * *n: how many were claimed; the times, when asked for, in ms. */
static int claim_requeue(op_spool *sp, int64_t now, int64_t due, unsigned max, op_spool_item *items,
			 op_spool_settlement *st, unsigned *n, double *claim_ms, double *settle_ms)
{
	double t0 = now_ms(), t1;
	int rc =
		op_spool_claim(sp, OP_SPOOL_DEFAULT_DESTINATION, now, max, UINT64_MAX, 0, items, n);

	t1 = now_ms();
	if (claim_ms)
		*claim_ms = t1 - t0;
	if (rc < 0 || *n == 0)
		return rc;
	for (unsigned k = 0; k < *n; k++)
		st[k] = (op_spool_settlement){ .id = items[k].id,
					       .hash = items[k].hash,
					       .verdict = OP_VERDICT_REQUEUE,
					       .next_attempt_at = due };
	rc = op_spool_settle(sp, OP_SPOOL_DEFAULT_DESTINATION, st, *n, now);
	if (settle_ms)
		*settle_ms = now_ms() - t1;
	return rc;
}

/* One instance of the study made for this run, written and committed;
 * *ms: from begin to commit's return. */
static int commit_one(op_spool *sp, const char *study, unsigned i, double *ms)
{
	op_spool_object *obj = NULL;
	op_instance in;
	enum op_spool_outcome outcome;
	unsigned char payload[300];
	double t0 = now_ms();
	int rc;

	memset(&in, 0, sizeof(in));
	snprintf(in.study_uid, sizeof(in.study_uid), "%s", study);
	snprintf(in.series_uid, sizeof(in.series_uid), "%s.1", study);
	snprintf(in.sop_instance_uid, sizeof(in.sop_instance_uid), "%s.1.%u", study, i);
	snprintf(in.sop_class_uid, sizeof(in.sop_class_uid), "1.2.840.10008.5.1.4.1.1.2");
	snprintf(in.transfer_syntax, sizeof(in.transfer_syntax), "1.2.840.10008.1.2.1");
	snprintf(in.patient_id, sizeof(in.patient_id), "SPOOL_CLAIMS");
	snprintf(in.modality, sizeof(in.modality), "CT");
	snprintf(in.calling_aet, sizeof(in.calling_aet), "SPOOL_CLAIMS");
	in.priority = OP_PRIORITY_MEDIUM;
	for (size_t k = 0; k < sizeof(payload); k++)
		payload[k] = (unsigned char)(k * 31 + i);
	memcpy(payload, in.sop_instance_uid, strlen(in.sop_instance_uid)); /* unique bytes */
	rc = op_spool_object_begin(sp, &obj);
	if (rc == 0)
		rc = op_spool_object_write(obj, payload, sizeof(payload));
	if (rc < 0) {
		op_spool_object_abort(obj);
		return rc;
	}
	rc = op_spool_object_commit(obj, &in, &outcome, NULL);
	*ms = now_ms() - t0;
	return rc;
}

/* C commits on big and on empty, alternately. */
static int time_commits(op_spool *big, const char *empty_dir, unsigned c, double *t_big,
			double *t_empty)
{
	op_spool_limits limits = { 0 };
	op_spool *empty = NULL;
	char study[64];
	int rc = op_spool_open(empty_dir, &limits, &empty);

	if (rc < 0) {
		fprintf(stderr, "spool_claims: %s: %s\n", empty_dir, strerror(-rc));
		return rc;
	}
	snprintf(study, sizeof(study), "2.25.%" PRId64, wall_ms());
	for (unsigned i = 0; rc == 0 && i < c; i++) {
		rc = commit_one(i % 2 ? empty : big, study, i, i % 2 ? &t_empty[i] : &t_big[i]);
		if (rc == 0)
			rc = commit_one(i % 2 ? big : empty, study, i,
					i % 2 ? &t_big[i] : &t_empty[i]);
	}
	op_spool_close(empty);
	return rc;
}

static int number(const char *s, unsigned long max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	unsigned claims = 200, backoff = 2000, max = 100, commits = 0, n, backed = 0, restored = 0;
	const char *dir = NULL, *empty = NULL;
	op_spool_limits limits = { 0 };
	op_spool *sp = NULL;
	op_spool_item *items = NULL;
	op_spool_settlement *st = NULL;
	double *t_claim = NULL, *t_settle = NULL, *t_due = NULL, *t_stats = NULL, t0;
	double *t_big = NULL, *t_empty = NULL;
	int rc;

	for (int a = 1; a < argc; a++) {
		unsigned *v = strcmp(argv[a], "--claims") == 0      ? &claims
			      : strcmp(argv[a], "--backoff") == 0   ? &backoff
			      : strcmp(argv[a], "--max-items") == 0 ? &max
			      : strcmp(argv[a], "--commits") == 0   ? &commits
								    : NULL;

		if (v && a + 1 < argc && number(argv[++a], 10000000, v) == 0)
			continue;
		if (strcmp(argv[a], "--empty") == 0 && a + 1 < argc) {
			empty = argv[++a];
			continue;
		}
		if (v || argv[a][0] == '-' || dir) {
			fprintf(stderr, "usage: spool_claims [--claims N] [--backoff K]"
					" [--max-items M] DIR\n");
			return 2;
		}
		dir = argv[a];
	}
	if (!dir || claims == 0 || max == 0 || (commits && !empty)) {
		fprintf(stderr,
			"usage: spool_claims [--claims N] [--backoff K] [--max-items M] DIR\n");
		return 2;
	}
	op_log_set_level(OP_LOG_WARN);
	items = calloc(max, sizeof(*items));
	st = calloc(max, sizeof(*st));
	t_claim = calloc(claims, sizeof(double));
	t_settle = calloc(claims, sizeof(double));
	t_due = calloc(claims, sizeof(double));
	t_stats = calloc(claims, sizeof(double));
	t_big = calloc(commits + 1, sizeof(double));
	t_empty = calloc(commits + 1, sizeof(double));
	if (!items || !st || !t_claim || !t_settle || !t_due || !t_stats || !t_big || !t_empty)
		return 1;
	t0 = now_ms();
	if ((rc = op_spool_open(dir, &limits, &sp)) < 0) {
		fprintf(stderr, "spool_claims: %s: %s\n", dir, strerror(-rc));
		return 1;
	}
	printf("claims: spool opened in %.0f ms\n", now_ms() - t0);

	t0 = now_ms();
	for (; backed < backoff; backed++) {
		int64_t now = wall_ms();

		rc = claim_requeue(sp, now, now + DAY_MS, max, items, st, &n, NULL, NULL);
		if (rc < 0 || n == 0)
			break;
	}
	printf("claims: %u studies put in back-off (due in a day) in %.0f ms\n", backed,
	       now_ms() - t0);
	for (unsigned i = 0; rc == 0 && i < claims; i++) {
		int64_t now = wall_ms(), when;
		op_spool_stats stats;
		double t;

		rc = claim_requeue(sp, now, now, max, items, st, &n, &t_claim[i], &t_settle[i]);
		if (rc == 0 && n == 0) {
			fprintf(stderr,
				"spool_claims: nothing due to claim: fill with queued studies\n");
			rc = -ENOENT;
		}
		t = now_ms();
		if (rc == 0)
			rc = op_spool_next_due(sp, OP_SPOOL_DEFAULT_DESTINATION, &when);
		t_due[i] = now_ms() - t;
		t = now_ms();
		if (rc == 0)
			rc = op_spool_get_stats(sp, NULL, &stats);
		t_stats[i] = now_ms() - t;
	}
	/* The back-off studies back as they were: due now, and first. */
	for (int r2 = 0; r2 == 0 && restored < backed; restored++) {
		int64_t now = wall_ms();

		r2 = claim_requeue(sp, now + 2 * DAY_MS, now, max, items, st, &n, NULL, NULL);
		if (r2 < 0 || n == 0)
			break;
	}
	if (rc == 0 && commits)
		rc = time_commits(sp, empty, commits, t_big, t_empty);
	op_spool_close(sp);
	if (rc < 0) {
		fprintf(stderr, "spool_claims: %s\n", strerror(-rc));
		return 1;
	}
	printf("claims: %u cycles timed; %u back-off studies requeued\n", claims, restored);
	printf("RESULT claims=%u backoff=%u", claims, backed);
	summary("claim", t_claim, claims);
	summary("settle", t_settle, claims);
	summary("next_due", t_due, claims);
	summary("stats", t_stats, claims);
	if (commits) {
		summary("commit_big", t_big, commits);
		summary("commit_empty", t_empty, commits);
	}
	printf("\n");
	free(items);
	free(st);
	free(t_claim);
	free(t_settle);
	free(t_due);
	free(t_stats);
	free(t_big);
	free(t_empty);
	return restored == backed ? 0 : 1;
}
