/*
 * encode: JPEG-LS copies for upload, on threads of their own (encode.h).
 *
 * Jobs are items (a batch, an index), taken in the order batches came; an
 * item whose object another thread is encoding waits for it and then uses
 * what it found. A batch is done when its last item is; done batches are
 * handed to the loop through one uv_async.
 */
#include "uplink/encode.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "dicom/jpls.h"

#define MAX_THREADS 64
#define ENCODE_NICE 10
/* While the receiver stores (it stored in the last RECEIVING_MS), a
 * thread rests OP_ENCODE_REST_TIMES as long as its last encoding took (at
 * most REST_MAX_MS) before the next: the encoder then works a quarter of
 * the time. A nice value alone is not enough: on a busy receiver's spare
 * core it slowed the ingest by 16-24% (a sibling hyperthread, memory
 * bandwidth, the disk; docs/BENCHMARKS.md). */
#define RECEIVING_MS 1000
#define RECEIVING_CHECK_MS 100
#define REST_MAX_MS 1000

struct job {
	op_encode_batch *b;
	unsigned i;
};

struct op_encoder {
	uv_loop_t *loop;
	op_spool *sp;
	uv_async_t async;
	pthread_t threads[MAX_THREADS];
	int n_threads;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* jobs queued, stop, an encoding ended */
	struct job *jobs;  /* a ring */
	size_t head, len, cap;
	char (*busy)[OP_HASH_HEX + 1]; /* objects being encoded, one per thread */
	op_encode_batch *done;         /* for the loop */
	int stop;
	int64_t stored_mark;  /* op_spool_stored_mark() when last looked */
	int64_t mark_at;      /* when that was (ms, monotonic) */
	int64_t receiving_at; /* when it last changed: the receiver stored */
};

int op_encode_syntax_codable(const char *ts)
{
	return strcmp(ts, "1.2.840.10008.1.2") == 0 || strcmp(ts, "1.2.840.10008.1.2.1") == 0 ||
	       strcmp(ts, "1.2.840.10008.1.2.2") == 0;
}

static uint64_t thread_cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The copy recorded for it, if its file is there as recorded (its hash
 * checked: a copy is made again rather than sent damaged). */
static int use_copy(op_spool *sp, op_spool_item *it, const op_spool_encoding *e)
{
	char path[OP_DIR_MAX + 128], hash[OP_HASH_HEX + 1];
	uint64_t size;

	op_spool_encoding_file(sp, it->hash, path, sizeof(path));
	if (op_spool_hash_file(path, hash, &size) < 0 || size != e->size ||
	    strcmp(hash, e->hash) != 0) {
		op_spool_encoding_drop(sp, it->hash); /* made again below */
		return 0;
	}
	it->encoded = 1;
	memcpy(it->file_hash, e->hash, sizeof(it->file_hash));
	it->file_size = e->size;
	snprintf(it->file_syntax, sizeof(it->file_syntax), "%s", OP_SYNTAX_JPEG_LS);
	return 1;
}

/* Encodes it's object, proves the copy and records what came of it. */
static void encode(op_encoder *enc, op_encode_batch *b, op_spool_item *it)
{
	char src[OP_DIR_MAX + 128], tmp[OP_DIR_MAX + 128], err[256];
	char sop[OP_LOG_QUOTED(OP_UID_MAX)], why[OP_LOG_QUOTED(sizeof(err))];
	op_spool_encoding e = { 0 };
	uint64_t t0 = thread_cpu_ms(), size;
	int rc;

	op_spool_object_file(enc->sp, it->hash, src, sizeof(src));
	if (op_spool_encoding_tmp(enc->sp, tmp, sizeof(tmp)) < 0) {
		op_error("uplink.encode",
			 "sop=%s error=\"cannot create a file in the spool's tmp/\"",
			 op_log_quote(sop, sizeof(sop), it->sop_instance_uid));
		return;
	}
	err[0] = '\0';
	rc = op_jpls_encode(src, tmp, err, sizeof(err));
	e.encode_ms = thread_cpu_ms() - t0;
	b->encode_ms += e.encode_ms;
	op_log_quote(sop, sizeof(sop), it->sop_instance_uid);
	op_log_quote(why, sizeof(why), err);
	if (rc == OP_JPLS_OK && op_spool_hash_file(tmp, e.hash, &size) == 0) {
		e.state = OP_ENCODING_COPY;
		e.size = size;
		rc = op_spool_encoding_put(enc->sp, it->hash, OP_SYNTAX_JPEG_LS, &e, tmp);
		if (rc == 0) {
			b->encoded++;
			b->in_bytes += it->size;
			op_debug("uplink.encode",
				 "sop=%s bytes=%" PRIu64 " encoded=%" PRIu64 " ms=%" PRIu64
				 " dest=%s",
				 sop, it->size, size, e.encode_ms, b->dest);
			use_copy(enc->sp, it, &e);
		} else {
			op_warn("uplink.encode", "sop=%s result=original reason=\"%s\" dest=%s",
				sop,
				rc == -EDQUOT ? "no room in the spool for the copy" : strerror(-rc),
				b->dest);
		}
		return;
	}
	unlink(tmp);
	if (rc == OP_JPLS_OK || rc == -EIO || rc == -ENOSPC || rc == -ENOMEM) {
		/* This time as received; tried again next time. */
		op_warn("uplink.encode", "sop=%s result=original reason=%s dest=%s", sop, why,
			b->dest);
		return;
	}
	if (rc == OP_JPLS_MISMATCH) {
		b->mismatches++;
		op_error("uplink.encode.mismatch", "sop=%s reason=%s dest=%s", sop, why, b->dest);
		snprintf(e.reason, sizeof(e.reason), "the copy failed its proof: %.200s", err);
	} else {
		snprintf(e.reason, sizeof(e.reason), "%s", err[0] ? err : "cannot be coded");
	}
	e.state = OP_ENCODING_ORIGINAL;
	op_spool_encoding_put(enc->sp, it->hash, OP_SYNTAX_JPEG_LS, &e, NULL);
}

/* Fills it's file_* (an encoder thread, enc->mu not held). */
static void prepare(op_encoder *enc, op_encode_batch *b, op_spool_item *it)
{
	op_spool_encoding e;

	op_spool_item_send_object(it);
	if (!op_encode_syntax_codable(it->transfer_syntax) || it->size > OP_ENCODE_MAX_BYTES)
		return;
	if (op_spool_encoding_get(enc->sp, it->hash, OP_SYNTAX_JPEG_LS, &e) < 0)
		return; /* logged; as received this time */
	if (e.state == OP_ENCODING_COPY && use_copy(enc->sp, it, &e))
		return;
	if (e.state == OP_ENCODING_ORIGINAL)
		return;
	encode(enc, b, it);
}

/* Claims hash for this thread (slot), after any other thread encoding
 * it has finished (what it found is then in the spool). */
static void claim_hash(op_encoder *enc, int slot, const char *hash)
{
	for (;;) {
		int other = 0;

		for (int t = 0; t < enc->n_threads; t++)
			other |= t != slot && strcmp(enc->busy[t], hash) == 0;
		if (!other)
			break;
		pthread_cond_wait(&enc->cv, &enc->mu);
	}
	memcpy(enc->busy[slot], hash, OP_HASH_HEX + 1);
}

/* Whether the receiver has stored lately (enc->mu held). */
static int receiving(op_encoder *enc, int64_t now)
{
	if (now - enc->mark_at >= RECEIVING_CHECK_MS) {
		int64_t v = op_spool_stored_mark(enc->sp);

		if (v != enc->stored_mark) {
			enc->stored_mark = v;
			enc->receiving_at = now;
		}
		enc->mark_at = now;
	}
	return enc->receiving_at && now - enc->receiving_at < RECEIVING_MS;
}

/* After an encoding that took worked_ms: rests while the receiver stores
 * (enc->mu held; given up while waiting). */
static void rest(op_encoder *enc, int64_t worked_ms)
{
	int64_t now = op_clock_mono_ms(), until;
	struct timespec ts;

	if (!receiving(enc, now))
		return;
	until = now + (worked_ms * OP_ENCODE_REST_TIMES < REST_MAX_MS
			       ? worked_ms * OP_ENCODE_REST_TIMES
			       : REST_MAX_MS);
	while (!enc->stop && op_clock_mono_ms() < until) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(until - op_clock_mono_ms()) * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&enc->cv, &enc->mu, &ts);
	}
}

struct thread_arg {
	op_encoder *enc;
	int slot;
};

static void *run(void *arg)
{
	op_encoder *enc = ((struct thread_arg *)arg)->enc;
	int slot = ((struct thread_arg *)arg)->slot;

	free(arg);
	/* Background work: the receiver (another process) and the loop go
	 * first when the CPU is short (Linux: the nice value is a thread's). */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), ENCODE_NICE) < 0)
		op_warn("uplink.encoder", "nice=%d error=\"%s\"", ENCODE_NICE, strerror(errno));
	pthread_mutex_lock(&enc->mu);
	for (;;) {
		int64_t t0, worked;
		struct job j;

		while (!enc->stop && enc->len == 0)
			pthread_cond_wait(&enc->cv, &enc->mu);
		if (enc->stop)
			break;
		j = enc->jobs[enc->head];
		enc->head = (enc->head + 1) % enc->cap;
		enc->len--;
		claim_hash(enc, slot, j.b->items[j.i].hash);
		pthread_mutex_unlock(&enc->mu);
		t0 = op_clock_mono_ms();
		prepare(enc, j.b, &j.b->items[j.i]);
		worked = op_clock_mono_ms() - t0;
		pthread_mutex_lock(&enc->mu);
		enc->busy[slot][0] = '\0';
		pthread_cond_broadcast(&enc->cv);
		if (--j.b->pending == 0) {
			j.b->next = enc->done;
			enc->done = j.b;
			uv_async_send(&enc->async);
		}
		rest(enc, worked);
	}
	pthread_mutex_unlock(&enc->mu);
	return NULL;
}

static void on_done(uv_async_t *a)
{
	op_encoder *enc = a->data;
	op_encode_batch *list, *next;

	pthread_mutex_lock(&enc->mu);
	list = enc->done;
	enc->done = NULL;
	pthread_mutex_unlock(&enc->mu);
	for (; list; list = next) {
		next = list->next;
		list->done(list);
	}
}

static void join_all(op_encoder *enc)
{
	pthread_mutex_lock(&enc->mu);
	enc->stop = 1;
	pthread_cond_broadcast(&enc->cv);
	pthread_mutex_unlock(&enc->mu);
	for (int t = 0; t < enc->n_threads; t++)
		pthread_join(enc->threads[t], NULL);
	enc->n_threads = 0;
}

int op_encoder_open(uv_loop_t *loop, op_spool *sp, int threads, op_encoder **out)
{
	op_encoder *enc = calloc(1, sizeof(*enc));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int rc = 0;

	*out = NULL;
	if (!enc)
		return -ENOMEM;
	if (threads <= 0)
		threads = cores > 1 ? (int)cores - 1 : 1;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	enc->loop = loop;
	enc->sp = sp;
	enc->stored_mark = op_spool_stored_mark(sp);
	enc->mark_at = op_clock_mono_ms();
	enc->busy = calloc((size_t)threads, sizeof(*enc->busy));
	if (!enc->busy) {
		free(enc);
		return -ENOMEM;
	}
	pthread_mutex_init(&enc->mu, NULL);
	pthread_cond_init(&enc->cv, NULL);
	for (int t = 0; t < threads; t++) {
		struct thread_arg *arg = malloc(sizeof(*arg));

		if (!arg) {
			rc = -ENOMEM;
			break;
		}
		arg->enc = enc;
		arg->slot = t;
		rc = -pthread_create(&enc->threads[t], NULL, run, arg);
		if (rc < 0) {
			free(arg);
			break;
		}
		enc->n_threads++;
	}
	if (rc < 0) {
		join_all(enc);
		op_encoder_free(enc);
		return rc;
	}
	/* Tests only: every copy fails its proof (the mismatch path, end to
	 * end). The environment of a service is root's to set. */
	if (getenv("OUTPOST_TEST_CORRUPT_JPLS")) {
		op_jpls_test_corrupt(1);
		op_warn("uplink.encoder", "test=corrupt reason=\"OUTPOST_TEST_CORRUPT_JPLS is set: "
					  "every copy is corrupted before its proof\"");
	}
	/* (no job is submitted before open returns: the threads send to it
	 * only later) */
	uv_async_init(loop, &enc->async, on_done);
	enc->async.data = enc;
	op_info("uplink.encoder", "threads=%d", enc->n_threads);
	*out = enc;
	return 0;
}

int op_encoder_resting(op_encoder *enc)
{
	int r;

	pthread_mutex_lock(&enc->mu);
	r = receiving(enc, op_clock_mono_ms());
	pthread_mutex_unlock(&enc->mu);
	return r;
}

void op_encoder_submit(op_encoder *enc, op_encode_batch *b)
{
	pthread_mutex_lock(&enc->mu);
	if (enc->len + b->n > enc->cap) {
		size_t cap = (enc->len + b->n) * 2;
		struct job *jobs = malloc(cap * sizeof(*jobs));

		if (!jobs) {
			/* Sent as received, this once. */
			pthread_mutex_unlock(&enc->mu);
			for (unsigned i = 0; i < b->n; i++)
				op_spool_item_send_object(&b->items[i]);
			b->done(b);
			return;
		}
		for (size_t k = 0; k < enc->len; k++)
			jobs[k] = enc->jobs[(enc->head + k) % enc->cap];
		free(enc->jobs);
		enc->jobs = jobs;
		enc->head = 0;
		enc->cap = cap;
	}
	b->pending = b->n;
	b->encoded = b->mismatches = 0;
	b->encode_ms = b->in_bytes = 0;
	for (unsigned i = 0; i < b->n; i++) {
		enc->jobs[(enc->head + enc->len) % enc->cap] = (struct job){ b, i };
		enc->len++;
	}
	pthread_cond_broadcast(&enc->cv);
	pthread_mutex_unlock(&enc->mu);
}

void op_encoder_stop(op_encoder *enc)
{
	if (!enc || enc->stop)
		return;
	join_all(enc);
	uv_close((uv_handle_t *)&enc->async, NULL);
}

void op_encoder_free(op_encoder *enc)
{
	if (!enc)
		return;
	pthread_mutex_destroy(&enc->mu);
	pthread_cond_destroy(&enc->cv);
	free(enc->jobs);
	free(enc->busy);
	free(enc);
}

int op_encoder_threads(const op_encoder *enc)
{
	return enc->n_threads;
}
