/*
 * spool_claims: times the uplink's side of the spool on a large spool
 * (issue 19: "the uplink's claim and settle at most 5 ms each"), through
 * the spool's own API, with the spool's own fsyncs. Test-only: built into
 * build/tests/, never installed; tests/bench/bench_scale.py runs it on the
 * spool tests/tools/spool_fill made.
 *
 *   spool_claims [--claims N] [--backoff K] [--max-items M] DIR
 *     --claims N     timed claim/settle cycles (200)
 *     --backoff K    studies put in back-off first (2000; 0: none)
 *     --max-items M  instances a claim may take (100)
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
	unsigned claims = 200, backoff = 2000, max = 100, n, backed = 0, restored = 0;
	const char *dir = NULL;
	op_spool_limits limits = { 0 };
	op_spool *sp = NULL;
	op_spool_item *items = NULL;
	op_spool_settlement *st = NULL;
	double *t_claim = NULL, *t_settle = NULL, *t_due = NULL, *t_stats = NULL, t0;
	int rc;

	for (int a = 1; a < argc; a++) {
		unsigned *v = strcmp(argv[a], "--claims") == 0      ? &claims
			      : strcmp(argv[a], "--backoff") == 0   ? &backoff
			      : strcmp(argv[a], "--max-items") == 0 ? &max
								    : NULL;

		if (v && a + 1 < argc && number(argv[++a], 10000000, v) == 0)
			continue;
		if (v || argv[a][0] == '-' || dir) {
			fprintf(stderr, "usage: spool_claims [--claims N] [--backoff K]"
					" [--max-items M] DIR\n");
			return 2;
		}
		dir = argv[a];
	}
	if (!dir || claims == 0 || max == 0) {
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
	if (!items || !st || !t_claim || !t_settle || !t_due || !t_stats)
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
	printf("\n");
	free(items);
	free(st);
	free(t_claim);
	free(t_settle);
	free(t_due);
	free(t_stats);
	return restored == backed ? 0 : 1;
}
