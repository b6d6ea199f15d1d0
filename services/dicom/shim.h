/*
 * shim: what the C++ files of the DCMTK shim (dicom.cc, send.cc, jpls.cc,
 * commit.cc) share. Internal to services/dicom; no C API, no C caller.
 */
#ifndef OP_DICOM_SHIM_H
#define OP_DICOM_SHIM_H

#ifndef __cplusplus
#error "dicom/shim.h is for the C++ files of the DCMTK shim"
#endif

#include <cstdarg>
#include <cstddef>
#include <cstdio>

#include "common/spool.h"
#include "dicom/send.h"

struct T_ASC_Association;
class DcmDataset;

/* Writes a message into buf (size bytes, NULL or 0: nowhere), cut to fit
 * and terminated. */
static inline void op_dicom__say(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline void op_dicom__say(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!buf || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

/*
 * Registers DCMTK's decoders (JPEG, JPEG-LS, RLE) and the JPEG-LS encoder
 * in raw mode (jpls.h says why), once per process (jpls.cc). Every part
 * of the shim that needs a codec calls this, so that the registrations,
 * which DCMTK does not guard against each other, never race.
 */
void op_jpls__register_codecs(void);

/*
 * What op_dicom_send() does, for a C-MOVE's sub-operations: done, when not
 * NULL, is called on this thread after each item with its result; a
 * nonzero return stops the batch between two items (the rest RETRY, "not
 * sent: stopped") and the association is released. No progress callback.
 */
int op_dicom__send_each(const op_dicom_peer *peer, const op_dicom_item *items, unsigned n,
			op_dicom_result *res,
			int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx,
			char *err, size_t errlen);

/*
 * A C-GET's sub-operations: a C-STORE of each item on assoc, the
 * association the request came on, over the storage contexts accepted
 * there (the requester took the SCP role). done as above. Returns 0, or
 * -ECONNABORTED when the association broke (the rest RETRY).
 */
int op_dicom__send_on(T_ASC_Association *assoc, int timeout_s, const op_dicom_item *items,
		      unsigned n, op_dicom_result *res,
		      int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx);

/* A storage commitment report's dataset (commit.cc; the caller deletes
 * it) and its Event Type ID. */
DcmDataset *op_dicom__commit_dataset(const op_commitment_txn *t, unsigned short *event_type);

#endif
