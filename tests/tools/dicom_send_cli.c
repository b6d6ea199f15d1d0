/*
 * dicom_send_cli: op_dicom_send() (services/dicom/send.h) from the command
 * line, for the integration tests (tests/integration/test_dicom_send.py).
 * Test-only: built into build/tests/, never installed.
 *
 *   dicom_send_cli [--timeout-ms MS] [--stop-after BYTES] [--threads K]
 *                  [--max-bps BYTES] HOST PORT CALLED CALLING FILE...
 *
 * Reads each file's UIDs and transfer syntax with op_dicom_read_instance()
 * (as the uplink has them from the spool) and sends the files in one call,
 * or in K calls on K threads at once (file i on thread i % K). Prints a
 * line per file: "RESULT i OUTCOME status=0x.... ts=UID path=... reason=...",
 * then "RETURN rc err=..." per call and "BYTES n" (what progress counted).
 * --stop-after makes progress return nonzero once BYTES were counted;
 * --max-bps makes it sleep to keep under that rate (a blocking shaper).
 * Exits 0 when every call returned 0, 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dicom/dicom.h"
#include "dicom/send.h"

struct job {
	const op_dicom_peer *peer;
	op_dicom_item *items;
	unsigned *index; /* position of each item in the command line */
	unsigned n;
	op_dicom_result *res;
	int rc;
	char err[256];
};

static uint64_t stop_after;
static uint64_t max_bps;
static _Atomic uint64_t counted;
static struct timespec started;

static int progress(void *ctx, uint64_t bytes)
{
	uint64_t total = atomic_fetch_add(&counted, bytes) + bytes;

	(void)ctx;
	if (stop_after && total > stop_after)
		return 1;
	if (max_bps) {
		/* Sleep until total bytes fit the rate since the start. */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		double elapsed = (double)(now.tv_sec - started.tv_sec) +
				 (double)(now.tv_nsec - started.tv_nsec) / 1e9;
		double due = (double)total / (double)max_bps;
		if (due > elapsed) {
			double wait = due - elapsed;
			struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static void *run(void *arg)
{
	struct job *j = arg;

	j->rc = op_dicom_send(j->peer, j->items, j->n, j->res, progress, NULL, j->err,
			      sizeof(j->err));
	return NULL;
}

static int number(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	op_dicom_peer peer;
	uint64_t v, threads = 1;
	int a = 1, status = 0;
	unsigned n, t, i;

	memset(&peer, 0, sizeof(peer));
	peer.timeout_ms = 10000;
	signal(SIGPIPE, SIG_IGN);
	for (; a + 1 < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
		if (number(argv[a + 1], &v) != 0)
			goto usage;
		if (strcmp(argv[a], "--timeout-ms") == 0)
			peer.timeout_ms = (int)v;
		else if (strcmp(argv[a], "--stop-after") == 0)
			stop_after = v;
		else if (strcmp(argv[a], "--threads") == 0 && v >= 1 && v <= 64)
			threads = v;
		else if (strcmp(argv[a], "--max-bps") == 0)
			max_bps = v;
		else
			goto usage;
	}
	if (argc - a < 5)
		goto usage;
	snprintf(peer.host, sizeof(peer.host), "%s", argv[a]);
	if (number(argv[a + 1], &v) != 0)
		goto usage;
	peer.port = (int)v;
	snprintf(peer.called_ae, sizeof(peer.called_ae), "%s", argv[a + 2]);
	snprintf(peer.calling_ae, sizeof(peer.calling_ae), "%s", argv[a + 3]);
	a += 4;
	n = (unsigned)(argc - a);

	op_instance *inst = calloc(n, sizeof(*inst));
	op_dicom_item *items = calloc(n, sizeof(*items));
	op_dicom_result *res = calloc(n, sizeof(*res));
	unsigned *index = calloc(n, sizeof(*index));
	struct job *jobs = calloc(threads, sizeof(*jobs));
	pthread_t *tid = calloc(threads, sizeof(*tid));
	if (!inst || !items || !res || !index || !jobs || !tid) {
		fprintf(stderr, "dicom_send_cli: out of memory\n");
		return 1;
	}
	/* Items grouped by thread, so each job's slice is contiguous. */
	unsigned k = 0;
	for (t = 0; t < threads; t++) {
		jobs[t].peer = &peer;
		jobs[t].items = items + k;
		jobs[t].res = res + k;
		jobs[t].index = index + k;
		for (i = t; i < n; i += (unsigned)threads) {
			char err[256];
			if (op_dicom_read_instance(argv[a + i], NULL, 0, NULL, &inst[k], err,
						   sizeof(err)) != 0) {
				fprintf(stderr, "dicom_send_cli: %s: %s\n", argv[a + i], err);
				return 2;
			}
			items[k].path = argv[a + i];
			items[k].sop_class_uid = inst[k].sop_class_uid;
			items[k].sop_instance_uid = inst[k].sop_instance_uid;
			items[k].transfer_syntax = inst[k].transfer_syntax;
			index[k] = i;
			jobs[t].n++;
			k++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &started);
	for (t = 0; t < threads; t++)
		if (jobs[t].n && pthread_create(&tid[t], NULL, run, &jobs[t]) != 0)
			return 1;
	for (t = 0; t < threads; t++) {
		if (!jobs[t].n)
			continue;
		pthread_join(tid[t], NULL);
		for (i = 0; i < jobs[t].n; i++) {
			const op_dicom_result *r = &jobs[t].res[i];
			char st[16] = "none";
			if (r->status >= 0)
				snprintf(st, sizeof(st), "0x%04X", (unsigned)r->status);
			printf("RESULT %u %s status=%s ts=%s path=%s reason=%s\n", jobs[t].index[i],
			       op_dicom_outcome_name(r->outcome), st, r->transfer_syntax,
			       jobs[t].items[i].path, r->reason);
		}
		printf("RETURN %d err=%s\n", jobs[t].rc, jobs[t].err);
		if (jobs[t].rc != 0)
			status = 1;
	}
	printf("BYTES %" PRIu64 "\n", atomic_load(&counted));
	free(inst);
	free(items);
	free(res);
	free(index);
	free(jobs);
	free(tid);
	return status;
usage:
	fprintf(stderr, "usage: dicom_send_cli [--timeout-ms MS] [--stop-after BYTES] "
			"[--threads K] [--max-bps BYTES] HOST PORT CALLED CALLING FILE...\n");
	return 2;
}
