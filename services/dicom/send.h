/*
 * send: the C-STORE sender (SCU) of the DCMTK shim, for the uplink's
 * "dicom" destinations. One blocking call sends a batch of instances to a
 * DICOM node over one association and says, per instance, whether it was
 * stored, should be tried again later, or will never be taken.
 *
 * Bytes: an instance whose own transfer syntax the peer accepts is sent as
 * stored: the dataset bytes after the file's meta header, unparsed, in
 * PDVs (not DCMTK's DIMSE_storeUser, which loads and re-encodes the file);
 * an odd-length dataset (a deflated stream) gets the one NUL pad byte PDVs
 * need (PS3.5 A.5).
 * Only when the peer accepted a fallback (Explicit or Implicit VR Little
 * Endian) is the dataset decoded and re-encoded, with DCMTK's registered
 * decoders (JPEG, JPEG-LS, RLE; no JPEG 2000).
 *
 * Threads: several threads may call op_dicom_send() at once (one
 * association each). Two DCMTK settings are process-wide globals with no
 * per-association form in DCMTK 3.6.7: the TCP connect timeout
 * (dcmConnectionTimeout) and the socket send timeout
 * (dcmSocketSendTimeout). Each call sets both from its peer's timeout_ms
 * before connecting, so concurrent calls with different timeouts may
 * connect or write with each other's value. The caller must ignore SIGPIPE
 * (a peer closing mid-write is then an error, not a death).
 */
#ifndef OP_DICOM_SEND_H
#define OP_DICOM_SEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most instances one call takes (presentation contexts are at most 128
 * per association; a batch rarely needs more than a few). */
#define OP_DICOM_SEND_MAX 4096

typedef struct op_dicom_peer {
	char host[256];
	int port;
	char called_ae[17];
	char calling_ae[17];
	/* Bounds each wait: connecting, the association's answer, each C-STORE
	 * response, each write; rounded up to whole seconds (DCMTK's unit);
	 * 0 or less: 30 s. */
	int timeout_ms;
} op_dicom_peer;

typedef struct op_dicom_item {
	const char *path; /* a DICOM file with a File Meta Information header */
	const char *sop_class_uid;
	const char *sop_instance_uid;
	const char *transfer_syntax; /* the file's (as its meta header says) */
	/* The file is a copy re-encoded for this peer: sent only in its own
	 * syntax (a peer that refuses it gets RETRY and syntax_refused, and
	 * the caller sends the original), never converted for a fallback. */
	int own_syntax_only;
} op_dicom_item;

typedef enum op_dicom_outcome {
	/* Stored: status 0x0000, or a warning (0x0001, 0xBxxx: reason says so). */
	OP_DICOM_SENT = 0,
	/* Not stored, may be later: 0xA7xx (out of resources), 0xA9xx, the
	 * association failed, broke, timed out or was stopped by the caller. */
	OP_DICOM_RETRY = 1,
	/* Never to be stored by this peer: 0xCxxx and every other failure
	 * status, no acceptable presentation context, an unreadable file, a
	 * compressed file that cannot be decoded for the fallback syntax. */
	OP_DICOM_QUARANTINE = 2,
} op_dicom_outcome;

typedef struct op_dicom_result {
	op_dicom_outcome outcome;
	/* The C-STORE-RSP status, or -1 when no response was received. */
	int status;
	/* own_syntax_only: the peer refused the item's own syntax. */
	int syntax_refused;
	/* The transfer syntax the dataset was sent in ("" if not sent). */
	char transfer_syntax[65];
	/* For a warning, RETRY or QUARANTINE: what happened, e.g.
	 * "C-STORE failed: status 0xC000 (comment: ...)"; "" for a plain
	 * success. */
	char reason[256];
} op_dicom_result;

/*
 * Sends items[0..n) to peer over one association and releases it.
 *
 * Proposes, for each distinct (SOP class, transfer syntax) of the batch,
 * one presentation context with the instance's own syntax and, per SOP
 * class, one with Explicit VR Little Endian and one with Implicit VR
 * Little Endian (separate contexts, as storescu does, so that the peer
 * picks per context and the own syntax is preferred when accepted).
 *
 * progress, if not NULL, is called on this thread before each P-DATA-TF
 * PDU of an instance goes out (its C-STORE-RQ command first, then its
 * dataset), with the bytes of command or dataset it carries. It may block
 * (the uplink shapes bandwidth there; a pause before the command holds the
 * next instance back whole). A nonzero return aborts the association
 * (A-ABORT) before those bytes are written.
 *
 * res[0..n) is filled in every case. Returns 0 when the association was
 * established (res says what became of each item; some may be RETRY if it
 * broke), -ECANCELED when progress stopped it, or when it could not be
 * established (every item RETRY, err says why): -ECONNREFUSED (connection
 * refused), -ETIMEDOUT (no connection or no answer in time), -EACCES (the
 * peer rejected the association), -EHOSTUNREACH (name not resolved, no
 * route), -EPROTO (any other DICOM failure), -EINVAL (bad arguments; n
 * above OP_DICOM_SEND_MAX), -ENOMEM.
 */
int op_dicom_send(const op_dicom_peer *peer, const op_dicom_item *items, unsigned n,
		  op_dicom_result *res, int (*progress)(void *ctx, uint64_t bytes), void *ctx,
		  char *err, size_t errlen);

/* "SENT", "RETRY" or "QUARANTINE". */
const char *op_dicom_outcome_name(op_dicom_outcome o);

#ifdef __cplusplus
}
#endif

#endif
