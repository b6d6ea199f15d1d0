/*
 * dicom: DCMTK behind a C API, the receiving side. The DCMTK shim (this
 * header and dicom.cc, send.h and send.cc for the C-STORE sender) is the
 * only C++ contact in Outpost; everything DICOM-network- or parser-specific
 * lives there, every decision (who may connect, where bytes go, which status to
 * answer) is made by the C handler passed in.
 *
 * Threads: op_dicom_serve() runs one association to its end on the calling
 * thread; several threads may serve connections on one op_dicom_net at
 * once. Handler callbacks run on the serving thread.
 */
#ifndef OP_DICOM_H
#define OP_DICOM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/spool.h"
#include "dicom/send.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DIMSE status codes Outpost answers (PS3.4 Annex B.2.3, PS3.7 Annex C). */
#define OP_STATUS_SUCCESS 0x0000
#define OP_STATUS_OUT_OF_RESOURCES 0xA700
#define OP_STATUS_CANNOT_UNDERSTAND 0xC000
#define OP_STATUS_PROCESSING_FAILURE 0x0110
#define OP_STATUS_NOT_AUTHORIZED 0x0124
/* Query/retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4). */
#define OP_STATUS_PENDING 0xFF00
#define OP_STATUS_CANCEL 0xFE00
#define OP_STATUS_IDENTIFIER_MISMATCH 0xA900
#define OP_STATUS_MOVE_DESTINATION_UNKNOWN 0xA801
#define OP_STATUS_TOO_MANY_MATCHES 0xA701        /* "unable to calculate number of matches" */
#define OP_STATUS_SUBOPS_OUT_OF_RESOURCES 0xA702 /* no sub-operation could be done */
#define OP_STATUS_SUBOPS_FAILED 0xB000           /* warning: one or more failed */
#define OP_STATUS_UNABLE_TO_PROCESS 0xC000

typedef struct op_dicom_net op_dicom_net;

/* The peer of an association. */
typedef struct op_assoc {
	unsigned long id; /* counts associations in this process, for logs */
	char calling_aet[17];
	char called_aet[17];
	char peer_ip[16];
	int may_query; /* set by admit: C-FIND, C-MOVE and C-GET are offered */
} op_assoc;

/* A C-FIND, C-MOVE or C-GET request: its identifier, as keys. */
typedef struct op_qr_req {
	unsigned message_id;
	enum op_qr_level level;
	int patient_root;      /* the Patient Root model, else Study Root */
	const op_qr_key *keys; /* the identifier's attributes, but the level */
	unsigned n;
	char move_destination[17]; /* C-MOVE */
} op_qr_req;

/* One C-STORE request, as the command set states it. */
typedef struct op_store_req {
	char sop_class_uid[OP_UID_MAX + 1];
	char sop_instance_uid[OP_UID_MAX + 1];
	char transfer_syntax[OP_UID_MAX + 1]; /* of the presentation context */
	int priority;                         /* 0 low, 1 medium, 2 high */
	unsigned message_id;
} op_store_req;

typedef struct op_dicom_handler {
	void *ctx;
	/* An association request: 0 accepts it, anything else rejects it
	 * (permanent, "calling AE title not recognised"). Sets a->may_query. */
	int (*admit)(void *ctx, op_assoc *a);
	/* A C-STORE request: the object to receive the dataset into, or NULL
	 * with *status set (the dataset is then read and dropped). */
	op_spool_object *(*store_begin)(void *ctx, const op_assoc *a, const op_store_req *r,
					uint16_t *status);
	/*
	 * The dataset has been received into obj (recv_rc 0), or receiving it
	 * failed: -ENOSPC/-EIO when writing obj failed (the rest of the
	 * dataset was read and dropped), -ECONNABORTED when the association
	 * broke (no response can be sent). Takes obj. Returns the status to
	 * answer; may write an error comment (at most 64 characters are sent).
	 */
	uint16_t (*store_end)(void *ctx, const op_assoc *a, const op_store_req *r,
			      op_spool_object *obj, int recv_rc, char *comment, size_t size);
	/* The association has ended; how is "release", "abort", "rejected",
	 * "busy" or an error text. */
	void (*assoc_end)(void *ctx, const op_assoc *a, const char *how);
	/*
	 * A C-FIND: calls answer once per match (op_spool_find's contract;
	 * its nonzero return, the C-CANCEL or a broken association, stops the
	 * query). Returns the final status (OP_STATUS_SUCCESS, or a failure
	 * with a comment); the shim answers OP_STATUS_CANCEL itself when the
	 * SCU cancelled.
	 */
	uint16_t (*find)(void *ctx, const op_assoc *a, const op_qr_req *r,
			 int (*answer)(void *actx, const op_qr_key *values, unsigned n), void *actx,
			 char *comment, size_t size);
	/*
	 * A C-MOVE (dest set: the node r->move_destination names, to fill in)
	 * or a C-GET (dest NULL): the instances to send into *items (n of
	 * them; free()). Returns OP_STATUS_SUCCESS, or the failure to answer
	 * (OP_STATUS_MOVE_DESTINATION_UNKNOWN, ...).
	 */
	uint16_t (*retrieve)(void *ctx, const op_assoc *a, const op_qr_req *r, op_dicom_peer *dest,
			     op_qr_instance **items, unsigned *n, char *comment, size_t size);
	/* The file of an instance to send (op_spool_object_file): 0 when its
	 * content still matches its hash, else <0 (it is not sent: a failed
	 * sub-operation). */
	int (*object_file)(void *ctx, const op_qr_instance *it, char *out, size_t size);
	/* A C-MOVE or C-GET has ended: what became of its sub-operations. */
	void (*retrieve_end)(void *ctx, const op_assoc *a, const op_qr_req *r, unsigned completed,
			     unsigned failed, unsigned warning, uint16_t status);
	/*
	 * Storage commitment (PS3.4 J). A request (N-ACTION): OP_STATUS_SUCCESS
	 * once it is recorded (*id set), else the failure to answer. Then, on
	 * the same association while the requester keeps it open (up to
	 * dimse_timeout), the shim asks commit_report for the report: 1 and
	 * *out filled (op_spool_commit_get's; the shim frees out->items) when
	 * every item is decided, 0 while some wait, <0 on error; and says
	 * with commit_done whether the report went on this association
	 * (delivered) or is left to another one. A malformed request comes
	 * with n = 0 and why in comment: to be logged and answered with a
	 * failure (0x0115, invalid argument value).
	 */
	uint16_t (*commit_request)(void *ctx, const op_assoc *a, const char *transaction_uid,
				   const op_commit_item *items, unsigned n, int64_t *id,
				   char *comment, size_t size);
	int (*commit_report)(void *ctx, int64_t id, op_commitment_txn *out);
	void (*commit_done)(void *ctx, const op_assoc *a, int64_t id, int delivered);
} op_dicom_handler;

/*
 * A storage commitment report (N-EVENT-REPORT, event 1 when every item
 * is committed, else 2 with the Failure Reasons) on a new association to
 * peer, proposing the SCP role. 0 once the peer answered success; else
 * -ECONNREFUSED or -EPROTO with why in err. Blocking; any thread.
 */
int op_dicom_commit_report(const op_dicom_peer *peer, const op_commitment_txn *t, char *err,
			   size_t errlen);

typedef struct op_dicom_options {
	const char *ae_title;
	uint32_t max_pdu;
	int acse_timeout;  /* seconds */
	int dimse_timeout; /* seconds */
	int verbose;       /* let DCMTK log at its INFO level */
} op_dicom_options;

/* Sets up DCMTK's network layer (no socket is opened: the caller listens). */
int op_dicom_net_open(const op_dicom_options *opt, const op_dicom_handler *h, op_dicom_net **out);

/* Accepts NULL. Every op_dicom_serve() must have returned. */
void op_dicom_net_close(op_dicom_net *net);

/*
 * Runs one association on an accepted TCP connection: reads the
 * A-ASSOCIATE-RQ, negotiates, serves C-ECHO and C-STORE until release or
 * abort. With busy set, the request is rejected (transient, local limit
 * exceeded). Takes fd in every case. The caller should have waited until
 * the A-ASSOCIATE-RQ is buffered (see op_dicom_pdu_ready()), because the
 * request is read under a lock that all connections share.
 */
void op_dicom_serve(op_dicom_net *net, int fd, int busy);

/*
 * Looks at (without consuming) the bytes buffered on fd: 1 when a whole
 * A-ASSOCIATE-RQ (or its first 64 KiB) is there, 0 when more is needed
 * (*need is the byte count to wait for), -EPROTO when the bytes are not an
 * A-ASSOCIATE-RQ.
 */
int op_dicom_pdu_ready(const unsigned char *buf, size_t len, size_t *need);

/* Attribute conditions: "Keyword=Value, ..." (values may hold the
 * wildcards * and ?; case is ignored). [priority] urgent_match holds when
 * any one condition does; a route's conditions hold when all do. */
typedef struct op_dicom_match op_dicom_match;

enum op_dicom_match_mode { OP_MATCH_ANY, OP_MATCH_ALL };

/* Compiles a match list against DICOM's dictionary. An empty text gives
 * NULL (which matches nothing). -EINVAL with the reason in err (an unknown
 * keyword). */
int op_dicom_match_compile(const char *text, enum op_dicom_match_mode mode, op_dicom_match **out,
			   char *err, size_t errlen);

/* Accepts NULL. */
void op_dicom_match_free(op_dicom_match *m);

/*
 * Reads the attributes Outpost indexes from a DICOM file (with or without
 * a meta header). With n match lists, matched[i] tells whether match[i]
 * holds: a condition holds when the attribute, anywhere in the dataset
 * (sequences included), has a value that matches (any value of a
 * multi-valued attribute); a NULL list holds for nothing. Returns 0, or
 * -EINVAL with the reason in err.
 */
int op_dicom_read_instance(const char *path, const op_dicom_match *const *match, int n,
			   int *matched, op_instance *out, char *err, size_t errlen);

/* The storage SOP classes and transfer syntaxes accepted, for the
 * conformance statement: writes Markdown tables. */
void op_dicom_print_conformance(FILE *out);

/* Is this SOP class one the receiver accepts (storage or verification)? */
int op_dicom_sop_class_accepted(const char *uid);

/* Is this transfer syntax one the receiver accepts? */
int op_dicom_transfer_syntax_accepted(const char *uid);

#ifdef __cplusplus
}
#endif

#endif
