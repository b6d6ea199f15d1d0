/*
 * test_send: services/dicom/send.cc, the C-STORE sender, called directly
 * (the integration tests, test_dicom_send.py, drive it through
 * dicom_send_cli against more peers and faults): arguments it refuses,
 * nothing listening, a peer that accepts the connection and never answers,
 * and DCMTK's storescp +B receiving a batch from several threads at once,
 * every dataset byte for byte, progress counting every byte sent.
 *
 * storescp is started on a free loopback port and ended by PID
 * (echo_fixture.h); files are pydicom's samples.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dicom/send.h"
#include "echo_fixture.h"

#define PYDICOM_FILES "/usr/lib/python3/dist-packages/pydicom/data/test_files"
#define EXPLICIT_LE "1.2.840.10008.1.2.1"
#define IMPLICIT_LE "1.2.840.10008.1.2"

/* Distinct SOP Instance UIDs (storescp names its files by them). */
static const struct sample {
	const char *file, *prefix, *sop_class, *sop_instance, *ts;
} SAMPLES[] = {
	{ "CT_small.dcm", "CT", "1.2.840.10008.5.1.4.1.1.2",
	  "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322", EXPLICIT_LE },
	{ "rtplan.dcm", "RP", "1.2.840.10008.5.1.4.1.1.481.5",
	  "1.2.777.777.77.7.7777.7777.20030903150023", IMPLICIT_LE },
	{ "MR_small.dcm", "MR", "1.2.840.10008.5.1.4.1.1.4",
	  "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457", EXPLICIT_LE },
};
#define NSAMPLES (sizeof(SAMPLES) / sizeof(SAMPLES[0]))

static char paths[NSAMPLES][512];

static void items_of(op_dicom_item *items)
{
	struct stat sb;

	if (stat(PYDICOM_FILES, &sb) != 0) {
		print_message("pydicom's sample files are not installed (python3-pydicom)\n");
		skip();
	}
	for (size_t i = 0; i < NSAMPLES; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s", PYDICOM_FILES, SAMPLES[i].file);
		items[i].path = paths[i];
		items[i].sop_class_uid = SAMPLES[i].sop_class;
		items[i].sop_instance_uid = SAMPLES[i].sop_instance;
		items[i].transfer_syntax = SAMPLES[i].ts;
	}
}

static void peer_at(op_dicom_peer *p, uint16_t port, int timeout_ms)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->host, sizeof(p->host), "127.0.0.1");
	p->port = port;
	snprintf(p->called_ae, sizeof(p->called_ae), "STORESCP");
	snprintf(p->calling_ae, sizeof(p->calling_ae), "SENDTEST");
	p->timeout_ms = timeout_ms;
}

/* The bytes of a DICOM file after its File Meta Information group. */
static char *dataset_of(const char *path, size_t *len)
{
	size_t n;
	char *all = unit_read_file(path, &n);
	uint32_t gl;

	assert_true(n > 144 && memcmp(all + 128, "DICM", 4) == 0);
	memcpy(&gl, all + 140, 4); /* (0002,0000) UL, little endian host */
	size_t start = 144 + gl;
	assert_true(start <= n);
	memmove(all, all + start, n - start);
	*len = n - start;
	return all;
}

/* --- arguments and connections ----------------------------------------------------- */

static void test_send_refuses_bad_arguments(void **state)
{
	op_dicom_peer p;
	op_dicom_item items[NSAMPLES];
	op_dicom_result res[NSAMPLES];
	char err[256];

	(void)state;
	items_of(items);
	peer_at(&p, 0, 1000);
	assert_int_equal(op_dicom_send(&p, items, 1, res, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(res[0].outcome, OP_DICOM_RETRY);
	assert_int_equal(res[0].status, -1);
	peer_at(&p, 104, 1000);
	items[1].transfer_syntax = NULL;
	memset(res, 0x5a, sizeof(res));
	assert_int_equal(op_dicom_send(&p, items, 2, res, NULL, NULL, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "item 1 lacks its path, UIDs or transfer syntax");
	/* Every result is filled, even when nothing was tried. */
	assert_int_equal(res[0].outcome, OP_DICOM_RETRY);
	assert_int_equal(res[1].outcome, OP_DICOM_RETRY);
	assert_string_equal(op_dicom_outcome_name(OP_DICOM_QUARANTINE), "QUARANTINE");
}

static void test_send_nothing_listening(void **state)
{
	op_dicom_peer p;
	op_dicom_item items[NSAMPLES];
	op_dicom_result res[NSAMPLES];
	char err[256];

	(void)state;
	items_of(items);
	peer_at(&p, echo_free_port(), 2000);
	assert_int_equal(op_dicom_send(&p, items, NSAMPLES, res, NULL, NULL, err, sizeof(err)),
			 -ECONNREFUSED);
	assert_contains(err, "association failed");
	for (size_t i = 0; i < NSAMPLES; i++) {
		assert_int_equal(res[i].outcome, OP_DICOM_RETRY);
		assert_contains(res[i].reason, "not sent: association failed");
	}
}

/* A listening socket nobody accepts on: the kernel completes the TCP
 * handshake, and the A-ASSOCIATE-RQ is never answered. */
static void test_send_silent_peer_times_out(void **state)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	op_dicom_peer p;
	op_dicom_item items[NSAMPLES];
	op_dicom_result res[NSAMPLES];
	char err[256];
	int s = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	items_of(items);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s, 4), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	peer_at(&p, ntohs(a.sin_port), 1000);
	uint64_t t0 = echo_now_ms();
	int rc = op_dicom_send(&p, items, 1, res, NULL, NULL, err, sizeof(err));
	uint64_t took = echo_now_ms() - t0;
	close(s);
	assert_int_equal(rc, -ETIMEDOUT);
	assert_contains(err, "no answer within 1 s");
	assert_int_equal(res[0].outcome, OP_DICOM_RETRY);
	assert_in_range(took, 900, 4000);
}

/* --- storescp, several threads -------------------------------------------------------- */

struct call {
	op_dicom_peer peer;
	op_dicom_item items[NSAMPLES];
	op_dicom_result res[NSAMPLES];
	uint64_t bytes;
	int rc;
	char err[256];
};

static int count_bytes(void *ctx, uint64_t bytes)
{
	struct call *c = ctx;

	c->bytes += bytes;
	return 0;
}

static void *run_call(void *arg)
{
	struct call *c = arg;

	c->rc = op_dicom_send(&c->peer, c->items, NSAMPLES, c->res, count_bytes, c, c->err,
			      sizeof(c->err));
	return NULL;
}

static void test_send_storescp_threads(void **state)
{
	struct fx *f = *state;
	char port[8], log[128], out[128];
	uint16_t p = echo_free_port();
	enum { THREADS = 3 };
	struct call calls[THREADS];
	pthread_t tid[THREADS];
	uint64_t expected = 0;

	snprintf(port, sizeof(port), "%u", p);
	snprintf(log, sizeof(log), "%s/storescp.log", f->dir);
	snprintf(out, sizeof(out), "%s/in", f->dir);
	assert_int_equal(mkdir(out, 0700), 0);
	{
		char *argv[] = { "storescp", "+B", "-od", out, port, NULL };
		f->child = echo_spawn(argv, log);
	}
	assert_true(f->child > 0);
	echo_wait_listening(f->child, p, log);

	/* Each thread sends the same batch on its own association; storescp
	 * writes each instance to the same name, whichever comes last. */
	for (int t = 0; t < THREADS; t++) {
		memset(&calls[t], 0, sizeof(calls[t]));
		items_of(calls[t].items);
		peer_at(&calls[t].peer, p, 10000);
		assert_int_equal(pthread_create(&tid[t], NULL, run_call, &calls[t]), 0);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(tid[t], NULL);
	for (size_t i = 0; i < NSAMPLES; i++) {
		char got[256];
		size_t a, b;
		char *want = dataset_of(paths[i], &a);
		snprintf(got, sizeof(got), "%s/%s.%s", out, SAMPLES[i].prefix,
			 SAMPLES[i].sop_instance);
		char *have = dataset_of(got, &b);
		assert_int_equal(a, b);
		assert_memory_equal(want, have, a);
		/* and its C-STORE-RQ: group length, two UIDs padded to even,
		 * four US elements (PS3.7 9.3.1.1) */
		expected += a + 12 + 8 + (strlen(SAMPLES[i].sop_class) + 1) / 2 * 2 + 4 * 10 + 8 +
			    (strlen(SAMPLES[i].sop_instance) + 1) / 2 * 2;
		test_free(want);
		test_free(have);
	}
	for (int t = 0; t < THREADS; t++) {
		if (calls[t].rc != 0)
			fail_msg("thread %d: %d (%s)", t, calls[t].rc, calls[t].err);
		for (size_t i = 0; i < NSAMPLES; i++) {
			assert_int_equal(calls[t].res[i].outcome, OP_DICOM_SENT);
			assert_int_equal(calls[t].res[i].status, 0);
			assert_string_equal(calls[t].res[i].transfer_syntax, SAMPLES[i].ts);
			assert_string_equal(calls[t].res[i].reason, "");
		}
		assert_int_equal(calls[t].bytes, expected);
	}
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, echo_setup, echo_teardown)
	const struct CMUnitTest tests[] = {
		T(test_send_refuses_bad_arguments),
		T(test_send_nothing_listening),
		T(test_send_silent_peer_times_out),
		T(test_send_storescp_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
