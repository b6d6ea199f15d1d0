/*
 * encode: what a destination is sent of each instance - the object as
 * received, or its JPEG-LS Lossless copy (transfer_syntax = jpeg-ls).
 *
 * A claimed batch that a destination wants compressed goes to the encoder
 * before it is sent. The encoder's own threads ([uplink] encode_threads,
 * never the loop's nor libuv's pool, whose threads read the files being
 * sent) look each instance up in the spool: a copy made before is used as
 * it is; an instance never tried is encoded once, proven lossless
 * (dicom/jpls.h) and its copy put into the spool, or recorded as one that
 * goes as received (not codable; the proof failed - an error, with the SOP
 * Instance UID). Two destinations wanting the same instance at once share
 * one encoding. The batch then comes back to the loop thread.
 */
#ifndef OP_UPLINK_ENCODE_H
#define OP_UPLINK_ENCODE_H

#include <stdint.h>
#include <uv.h>

#include "common/spool.h"

/* Instances larger than this go as received: DCMTK's codec holds the
 * whole dataset, its copy and the decoded proof in memory at once. */
#define OP_ENCODE_MAX_BYTES (64ULL << 20)

typedef struct op_encoder op_encoder;
typedef struct op_encode_batch op_encode_batch;

struct op_encode_batch {
	/* In: the claimed items; out: each one's file_* and encoded set. */
	op_spool_item *items;
	unsigned n;
	const char *dest; /* for the log */
	/* Called on the loop thread once every item is prepared. */
	void (*done)(op_encode_batch *b);
	void *ctx;
	/* Out: what this batch cost (encodings made for it only). */
	unsigned encoded;    /* copies made */
	unsigned mismatches; /* proofs that failed */
	uint64_t encode_ms;  /* CPU time of encoding and proving */
	uint64_t in_bytes;   /* bytes of the objects encoded */
	/* The encoder's. */
	unsigned pending;
	op_encode_batch *next;
};

/* Starts threads encoder threads (0: the cores less one, at least 1) that
 * put copies into sp; done callbacks run on loop. */
int op_encoder_open(uv_loop_t *loop, op_spool *sp, int threads, op_encoder **out);

/* Prepares b's items (loop thread). */
void op_encoder_submit(op_encoder *e, op_encode_batch *b);

/* Loop thread: lets the encodings in progress finish (those not begun are
 * dropped: their batches are never done, and their rows stay 'sending'
 * until the next start), joins the threads and closes the loop handle. */
void op_encoder_stop(op_encoder *e);

/* After the loop has ended. Accepts NULL. */
void op_encoder_free(op_encoder *e);

/* How many threads encode. */
int op_encoder_threads(const op_encoder *e);

/* While the receiver is storing, each encoder thread rests this many times
 * as long as its last encoding took: the encoder codes at 1 / (1 + this)
 * of its pace, and the receiver goes first. */
#define OP_ENCODE_REST_TIMES 3

/* Is the receiver storing (it stored within the last second), so that the
 * encoder rests? Loop thread or any; never waits on the spool's writers. */
int op_encoder_resting(op_encoder *e);

/* Is this transfer syntax one that JPEG-LS copies are made from (Implicit
 * and Explicit VR Little Endian, Explicit VR Big Endian)? */
int op_encode_syntax_codable(const char *ts);

#endif
