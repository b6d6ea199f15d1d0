/*
 * spool: the durable queue between the receiver and the uplink.
 *
 * Objects are files, indexed by one sqlite3 database in WAL mode:
 *
 *   DIR/tmp/                 files being received (removed at recovery)
 *   DIR/objects/ab/<hash>.dcm
 *                            one file per stored version, named by content
 *   DIR/damaged/             files recovery could not index (kept, reported)
 *   DIR/spool.db             one row per SOP instance
 *
 * Writing an object: op_spool_object_begin() opens a file in tmp/,
 * op_spool_object_write() appends to it (hashing as it goes and holding the
 * bytes against the size limits), op_spool_object_commit() fsyncs it,
 * renames it to its content-addressed name, fsyncs the directory and
 * commits the row. When commit returns 0 the instance is on stable storage
 * and may be acknowledged. Rows from concurrent commits share one sqlite
 * transaction (group commit).
 *
 * Same SOP Instance UID again: identical bytes keep the one row
 * (OP_SPOOL_DUPLICATE); other bytes replace the row's file and queue the
 * new version for sending (OP_SPOOL_REPLACED), unless another calling AE
 * stored the unsent row (-EPERM, see op_spool_object_commit()).
 *
 * All functions are thread-safe on one op_spool. Errors are negative errno
 * codes; the spool logs what failed (path, sqlite message) itself.
 */
#ifndef OP_SPOOL_H
#define OP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define OP_UID_MAX 64
#define OP_DIR_MAX 3072 /* spool directory path, leaving room for names below it */
/*
 * Objects are named by their BLAKE2b-256 hash (libsodium). DESIGN.md names
 * SHA-256; measured here, mbedTLS's SHA-256 hashes 122 MB/s (4.3 ms per
 * 530 KB CT image, on the path to every acknowledgment) and BLAKE2b 970
 * MB/s, with the same 256-bit collision resistance.
 */
#define OP_HASH_BYTES 32
#define OP_HASH_HEX 64

#ifdef __cplusplus
extern "C" {
#endif

/* Schema version written to PRAGMA user_version. */
#define OP_SPOOL_SCHEMA_VERSION 2

/* Destinations: [cloud] is "cloud"; names are at most 32 characters. */
#define OP_DEST_NAME_MAX 32
#define OP_SPOOL_DEFAULT_DESTINATION "cloud"

/* An instance's priority: its C-STORE's, raised to HIGH (urgent) by the
 * receiver's [priority] rules. */
#define OP_PRIORITY_LOW 0
#define OP_PRIORITY_MEDIUM 1
#define OP_PRIORITY_HIGH 2

typedef struct op_spool op_spool;
typedef struct op_spool_object op_spool_object;

/*
 * What query/retrieve finds an instance by (spool_query.c), read from the
 * dataset at receive and indexed in the transaction that commits it.
 * Values as the dataset holds them, padding trimmed, cut to the field;
 * "" when absent.
 */
typedef struct op_qr_attrs {
	char charset[65];           /* SpecificCharacterSet (0008,0005) */
	char patient_name[325];     /* PHI: stored, never logged */
	char patient_birth_date[9]; /* PHI */
	char patient_sex[17];
	char study_date[9];
	char study_time[17];
	char accession_number[17];
	char study_id[17];
	char study_description[65];
	char referring_physician[325];
	char series_number[13];
	char series_description[65];
	char body_part[17];
	char instance_number[13];
} op_qr_attrs;

/* Instance attributes indexed with each object. */
typedef struct op_instance {
	char sop_instance_uid[OP_UID_MAX + 1];
	char sop_class_uid[OP_UID_MAX + 1];
	char study_uid[OP_UID_MAX + 1];
	char series_uid[OP_UID_MAX + 1];
	char transfer_syntax[OP_UID_MAX + 1];
	char patient_id[OP_UID_MAX + 1]; /* PHI: stored, never logged */
	char modality[17];
	char calling_aet[17];
	int priority; /* OP_PRIORITY_*: the uplink sends the highest first */
	/* Where it goes (the routes that matched at receive): destination
	 * names, comma-separated; "" is OP_SPOOL_DEFAULT_DESTINATION. With
	 * local_only set it goes nowhere and is kept as the sent cache is. */
	char destinations[9 * (OP_DEST_NAME_MAX + 1)];
	int local_only;
	op_qr_attrs qr;
} op_instance;

typedef struct op_spool_limits {
	uint64_t max_bytes;      /* objects in the spool; 0 = no limit */
	uint64_t min_free_bytes; /* free space the disk must keep */
	uint64_t keep_sent_bytes;
	/* Sent objects younger than this are kept by the cache's trim
	 * (op_spool_evict_sent), beyond keep_sent_bytes; making room for new
	 * objects within the disk limits still takes them. */
	uint32_t keep_sent_days;
} op_spool_limits;

enum op_spool_outcome {
	OP_SPOOL_STORED,    /* a new instance */
	OP_SPOOL_DUPLICATE, /* same instance, same bytes: nothing changed */
	OP_SPOOL_REPLACED,  /* same instance, other bytes: the new version is queued */
};

typedef struct op_spool_usage {
	uint64_t objects;  /* rows */
	uint64_t bytes;    /* sum of object sizes */
	uint64_t reserved; /* bytes of objects being received */
} op_spool_usage;

typedef struct op_spool_recovery {
	unsigned tmp_removed;     /* partial files from tmp/ */
	unsigned orphans_indexed; /* complete files without a row, now queued */
	unsigned orphans_removed; /* superseded versions of indexed instances */
	unsigned damaged;         /* unreadable files moved to damaged/ */
	unsigned missing;         /* rows whose file is gone, now quarantined */
	unsigned qr_indexed;      /* rows of an older release, now in the query index */
} op_spool_recovery;

/*
 * Reads the attributes of a stored DICOM file (recovery re-indexes orphans
 * with it). Returns 0, or a negative code with a reason in err.
 */
typedef int (*op_spool_reader)(void *ctx, const char *path, op_instance *inst, char *err,
			       size_t errlen);

/* Opens (creating when absent) the spool in dir. -EPROTO when the database
 * was written by a newer release (its schema version is higher). */
int op_spool_open(const char *dir, const op_spool_limits *limits, op_spool **out);

/* Closes; accepts NULL. No object may be open. */
void op_spool_close(op_spool *sp);

/* Reconciles files and rows (see op_spool_recovery). Run by the receiver at
 * start-up, before it accepts anything. */
int op_spool_recover(op_spool *sp, op_spool_reader read, void *ctx, op_spool_recovery *rep);

/* Starts an object. -EDQUOT when the spool is at max_bytes or the disk
 * below min_free_bytes already (the spool's own limits); -ENOSPC when the
 * filesystem is full. */
int op_spool_object_begin(op_spool *sp, op_spool_object **out);

/* The object's temporary file, for readers (e.g. the DICOM parser): its
 * content is complete once op_spool_object_finish() returned 0. */
const char *op_spool_object_path(const op_spool_object *obj);

/* Appends. -EDQUOT when the object would take the spool over max_bytes or
 * the disk below min_free_bytes; -ENOSPC when the filesystem is full (no
 * space or no inodes); -EIO on I/O errors.
 * After an error the object can only be aborted. */
int op_spool_object_write(op_spool_object *obj, const void *buf, uint64_t len);

/* Bytes written so far. */
uint64_t op_spool_object_size(const op_spool_object *obj);

/* Ends writing: flushes and fdatasyncs the file. -ENOSPC or -EIO on
 * failure (the object can then only be aborted). Commit calls it too. */
int op_spool_object_finish(op_spool_object *obj);

/*
 * Makes the object durable and indexes it (see above). Frees obj whatever
 * the result. On 0 the instance is on stable storage; hash_out (optional,
 * OP_HASH_HEX + 1 bytes) receives the content hash in hex.
 * -EPERM (nothing changed, the new file dropped) when other bytes arrive
 * for an instance not yet sent that another calling AE title stored: one
 * modality may not replace another's queued instance by re-using its SOP
 * Instance UID. The same calling AE still replaces its own.
 */
int op_spool_object_commit(op_spool_object *obj, const op_instance *inst,
			   enum op_spool_outcome *outcome, char *hash_out);

/* Drops the object and its temporary file. Accepts NULL. */
void op_spool_object_abort(op_spool_object *obj);

/* Current use, against the limits. */
void op_spool_get_usage(op_spool *sp, op_spool_usage *out);

/* Replaces the limits (on a configuration reload). */
void op_spool_set_limits(op_spool *sp, const op_spool_limits *limits);

/* The file of the stored object whose content hash is hash (hex), into
 * out (OP_DIR_MAX + 128 bytes are enough): DIR/objects/ab/<hash>.dcm. */
void op_spool_object_file(const op_spool *sp, const char *hash, char *out, size_t size);

/* Path of the sqlite database, for readers in other processes. */
const char *op_spool_db_path(const op_spool *sp);

/* --- The uplink's side ---------------------------------------------------
 *
 * Each destination has its own queue: one delivery per (instance,
 * destination), written with the instance in the transaction that commits
 * it. Deliveries move queued -> sending -> sent | quarantined (or back to
 * queued for a retry). Every change names the instance's hash: when a
 * newer version replaced the instance while the old one was being sent
 * (the delivery stays 'sending', so two versions are never in flight to
 * one destination at once), settling the old one queues the new one
 * instead. The instance is evictable once every delivery is sent.
 */

typedef struct op_spool_item {
	int64_t id;
	char sop_instance_uid[OP_UID_MAX + 1];
	char sop_class_uid[OP_UID_MAX + 1];
	char transfer_syntax[OP_UID_MAX + 1];
	char study_uid[OP_UID_MAX + 1];
	char hash[OP_HASH_HEX + 1];
	uint64_t size;
	int attempts; /* before this one */
	int priority;
	/* What goes on the wire: the object as claimed, or its encoded copy
	 * (the uplink sets these after the claim; see "Encoded copies"). */
	int encoded; /* 1: the copy (op_spool_encoding_file), 0: the object */
	char file_hash[OP_HASH_HEX + 1];
	uint64_t file_size;
	char file_syntax[OP_UID_MAX + 1];
} op_spool_item;

/* Sets it's file_* to the object itself (encoded 0), as claimed. */
void op_spool_item_send_object(op_spool_item *it);

enum op_spool_verdict {
	OP_VERDICT_SENT,       /* the cloud holds it */
	OP_VERDICT_RETRY,      /* counts an attempt; due again at next_attempt_at */
	OP_VERDICT_QUARANTINE, /* refused for good; error says why */
	OP_VERDICT_REQUEUE,    /* not tried (e.g. paused): no attempt counted */
};

typedef struct op_spool_settlement {
	int64_t id;
	const char *hash;
	enum op_spool_verdict verdict;
	int64_t next_attempt_at; /* RETRY, REQUEUE: ms since the epoch */
	const char *error;       /* RETRY, QUARANTINE, REQUEUE; may be NULL */
} op_spool_settlement;

/* At the uplink's start: deliveries a crash left 'sending' go back to
 * 'queued'. */
int op_spool_requeue_sending(op_spool *sp, unsigned *count);

/*
 * Claims the next batch and marks it 'sending': queued rows due at now
 * (ms since the epoch), all of one study - the study of the most urgent,
 * then oldest, due row - oldest first, at most max_items and max_bytes (a
 * first row larger than max_bytes goes alone, and so does a row that was
 * attempted before, so that a bad instance does not hold others back).
 * Only studies with a due row of at least min_priority are chosen (2:
 * urgent ones, for the connection kept for them). *n = 0 when nothing is
 * due.
 */
int op_spool_claim(op_spool *sp, const char *dest, int64_t now, unsigned max_items,
		   uint64_t max_bytes, int min_priority, op_spool_item *items, unsigned *n);

/* Records a batch's outcome at dest in one transaction. */
int op_spool_settle(op_spool *sp, const char *dest, const op_spool_settlement *s, unsigned n,
		    int64_t now);

/* When dest's next queued delivery is due (ms since the epoch); INT64_MAX
 * if none. */
int op_spool_next_due(op_spool *sp, const char *dest, int64_t *when);

/* Evicts sent objects, oldest sent first, until they take at most
 * keep_sent_bytes. The receiver also evicts them when it needs room. */
int op_spool_evict_sent(op_spool *sp, uint64_t keep_sent_bytes, unsigned *evicted, uint64_t *freed);

/* --- Encoded copies (uplink/encode.h) ------------------------------------
 *
 * A destination may be sent an object re-encoded (JPEG-LS Lossless, proven
 * lossless). The copy is made once per object and syntax and kept beside
 * the object, as DIR/objects/ab/<hash>.jls, until no delivery needs it: it
 * goes when every delivery of the instance is sent, or with the object. It
 * counts in the spool's usage and limits. What was found is kept too: an
 * object that cannot be coded, or whose copy failed its proof, is sent as
 * it is and never encoded again.
 */

#define OP_SYNTAX_JPEG_LS "1.2.840.10008.1.2.4.80" /* JPEG-LS Lossless */

enum op_encoding_state { OP_ENCODING_NONE, OP_ENCODING_COPY, OP_ENCODING_ORIGINAL };

typedef struct op_spool_encoding {
	enum op_encoding_state state; /* NONE: not tried yet */
	char reason[256];             /* ORIGINAL: why the object goes as it is */
	char hash[OP_HASH_HEX + 1];   /* COPY: the copy's BLAKE2b-256 */
	uint64_t size;                /* COPY: its bytes */
	uint64_t encode_ms;           /* what encoding and its proof took */
} op_spool_encoding;

/* The BLAKE2b-256 of the file at path, as OP_HASH_HEX hex digits into hash
 * (OP_HASH_HEX + 1 bytes), and its size: how objects are named. */
int op_spool_hash_file(const char *path, char *hash, uint64_t *size);

/* Where the copy of the object hash is: DIR/objects/ab/<hash>.jls. */
void op_spool_encoding_file(const op_spool *sp, const char *hash, char *out, size_t size);

/* Creates an empty file in DIR/tmp/ for an encoder to write a copy into
 * (removed at recovery if left there); its path in out. */
int op_spool_encoding_tmp(const op_spool *sp, char *out, size_t size);

/* What was found for (hash, syntax): out->state NONE when nothing yet. */
int op_spool_encoding_get(op_spool *sp, const char *hash, const char *syntax,
			  op_spool_encoding *out);

/*
 * Records e for (hash, syntax). For a COPY, tmp (written) is moved into
 * place once the row is committed; it is removed in every other case.
 * Neither the copy, the rename nor the row is synced to disk: a copy can
 * be made again, and it is checked against the row's hash before use; a
 * row lost with a power cut leaves a copy without a row, which recovery
 * removes. (What the receiver has acknowledged is never written here.)
 * -EDQUOT when the spool has no room for the copy; -ENOENT when the object
 * has left the spool meanwhile (nothing is recorded).
 */
int op_spool_encoding_put(op_spool *sp, const char *hash, const char *syntax,
			  const op_spool_encoding *e, const char *tmp);

/* Forgets what was found for hash and removes its copy: the copy was found
 * missing or damaged (it is made again when needed). */
int op_spool_encoding_drop(op_spool *sp, const char *hash);

/* Forgets what was found for objects no longer in the spool (a newer
 * version replaced it, the operator discarded it), removes their copies
 * and the copies left half-written in tmp/; the uplink runs it at start.
 * *removed counts the files and rows removed. */
int op_spool_encoding_sweep(op_spool *sp, unsigned *removed);

/* A number that changes when the receiver stores an instance (the index's
 * newest row); -1 on an error. Read on the read-only connection: it never
 * waits for a writer, and may be called from the uplink's loop. */
int64_t op_spool_stored_mark(op_spool *sp);

/* --- Query and retrieve (spool_query.c) ----------------------------------
 *
 * C-FIND, C-MOVE and C-GET over every instance the spool holds (any
 * state). The index lives in tables of its own: qr_index, a row per
 * instance written with its instances row, and qr_series and qr_studies,
 * a row per series and study kept by qr_index's triggers (a study-level
 * C-FIND reads a row a study); triggers drop what an evicted or
 * discarded instance leaves unreferenced. Queries run on the read-only
 * connection: they never wait for a writer.
 */

enum op_qr_level { OP_QR_PATIENT, OP_QR_STUDY, OP_QR_SERIES, OP_QR_IMAGE };

/* "PATIENT", "STUDY", "SERIES", "IMAGE"; NULL when out of range. */
const char *op_qr_level_name(enum op_qr_level level);
/* The level of a QueryRetrieveLevel value, or -EINVAL. */
int op_qr_level_parse(const char *name);

/* One attribute of an identifier: its tag (group << 16 | element) and
 * value as DICOM text (values separated by '\\'; "" for universal
 * matching). */
typedef struct op_qr_key {
	uint32_t tag;
	const char *value;
} op_qr_key;

/* The tags the index can answer and match (spool_query.c's table). */
int op_qr_tag_known(uint32_t tag);

/*
 * C-FIND: calls answer once per entity at level that matches every key
 * (PS3.4 C.2.2.2: single value, wildcards * and ?, ranges of dates and
 * times, lists of UIDs, universal matching; person names ignore case).
 * Each answer carries the same tags as keys, in order, with the entity's
 * values (valid during the call; "" when unknown). Keys of a level below
 * level do not match (they are answered empty). patient_root: the Patient
 * Root model (at PATIENT level the entity is the patient, by PatientID);
 * the Study Root model has no PATIENT level (-EINVAL). A nonzero return
 * from answer stops the query and is returned. -EINVAL when a key's value
 * cannot be matched (e.g. a malformed range), with the reason in err.
 */
int op_spool_find(op_spool *sp, enum op_qr_level level, int patient_root, const op_qr_key *keys,
		  unsigned n, int (*answer)(void *ctx, const op_qr_key *values, unsigned n),
		  void *ctx, char *err, size_t errlen);

/* One instance to retrieve: what C-MOVE and C-GET send, byte for byte. */
typedef struct op_qr_instance {
	char sop_instance_uid[OP_UID_MAX + 1];
	char sop_class_uid[OP_UID_MAX + 1];
	char transfer_syntax[OP_UID_MAX + 1];
	char hash[OP_HASH_HEX + 1]; /* its file: op_spool_object_file() */
	uint64_t size;
} op_qr_instance;

/* The most instances one retrieve sends: DIMSE counts sub-operations in
 * 16 bits (PS3.7 C.4.2.1.5). */
#define OP_QR_RETRIEVE_MAX 65535

/*
 * C-MOVE, C-GET: the instances under the entities at level that match
 * keys (the unique keys of the level and above, as PS3.4 C.4.2.1.4 says;
 * other keys are matched as op_spool_find does). *out (free() it) holds
 * *count of them, by study, series and instance number. -EINVAL as
 * op_spool_find, or when the unique key of the level is missing; -E2BIG
 * beyond OP_QR_RETRIEVE_MAX instances.
 */
int op_spool_retrieve(op_spool *sp, enum op_qr_level level, int patient_root, const op_qr_key *keys,
		      unsigned n, op_qr_instance **out, unsigned *count, char *err, size_t errlen);

/* --- Storage commitment (spool_commit.c) ---------------------------------
 *
 * A request (N-ACTION, PS3.4 J.3.2) is recorded before it is answered and
 * kept until its report (N-EVENT-REPORT) was delivered: a restart of
 * either service between the two loses nothing. Each instance's result is
 * decided once and kept (an instance evicted after the cloud confirmed it
 * stays committed).
 */

/* Failure Reasons (PS3.4 J.3.3.1.2), and "not decided yet". */
#define OP_COMMIT_OK 0x0000
#define OP_COMMIT_PROCESSING_FAILURE 0x0110 /* quarantined, or unconfirmed at the deadline */
#define OP_COMMIT_NO_SUCH_INSTANCE 0x0112
#define OP_COMMIT_CLASS_CONFLICT 0x0119 /* held, with another SOP Class UID */
#define OP_COMMIT_WAITING 0xFFFF

typedef struct op_commit_item {
	char sop_class_uid[OP_UID_MAX + 1];
	char sop_instance_uid[OP_UID_MAX + 1];
	uint16_t result; /* OP_COMMIT_* */
} op_commit_item;

/* The most instances one request names. */
#define OP_COMMIT_MAX_ITEMS 65535

/* A request, and what is known of it (op_spool_commit_get). */
typedef struct op_commitment_txn {
	int64_t id;
	char transaction_uid[OP_UID_MAX + 1];
	char calling_aet[17];  /* where the report goes */
	int cloud;             /* [receiver] commitment = cloud when it came */
	int64_t received_at;   /* ms since the epoch */
	int64_t deadline;      /* when waiting items become failures */
	unsigned attempts;     /* reports tried on a new association */
	op_commit_item *items; /* free() */
	unsigned n;
	int final; /* every item decided: the report can go */
} op_commitment_txn;

/* Records a request: 0 (*id set) once it is on stable storage; due at
 * due (op_spool_commit_due). cloud: an item is committed only when the
 * cloud holds it (deliveries to OP_SPOOL_DEFAULT_DESTINATION), else when
 * the spool does. -EINVAL for no items or more than OP_COMMIT_MAX_ITEMS. */
int op_spool_commit_request(op_spool *sp, const char *transaction_uid, const char *calling_aet,
			    int cloud, int64_t now, int64_t deadline, int64_t due,
			    const op_commit_item *items, unsigned n, int64_t *id);

/* Decides what can be decided of request id at now (the items waiting at
 * the deadline fail with OP_COMMIT_PROCESSING_FAILURE), keeps it, and
 * fills *out. -ENOENT when there is no such request pending. */
int op_spool_commit_get(op_spool *sp, int64_t id, int64_t now, op_commitment_txn *out);

/* Up to max ids of pending requests due at now (oldest first). */
int op_spool_commit_due(op_spool *sp, int64_t now, int64_t *ids, unsigned max, unsigned *n);

/* Request id's report was delivered: it is done (kept for the record). */
int op_spool_commit_reported(op_spool *sp, int64_t id, int64_t now);

/* Request id is due again at next (waiting, or its report failed: error,
 * counted as an attempt, when not NULL). */
int op_spool_commit_later(op_spool *sp, int64_t id, int64_t next, const char *error);

/* Pending requests: how many, the oldest one's received_at (0: none). */
int op_spool_commit_pending(op_spool *sp, uint64_t *pending, int64_t *oldest);

/* --- The operator's side (status API, metrics) ---------------------------
 *
 * Counters, settings and the audit log live in tables of their own, which
 * an older release ignores. All of these may block on the uplink's
 * transactions: call them off the libuv loop.
 */

enum { OP_STATE_QUEUED, OP_STATE_SENDING, OP_STATE_SENT, OP_STATE_QUARANTINED, OP_SPOOL_STATES };

/* "queued", ... for OP_STATE_*; NULL when out of range. */
const char *op_spool_state_name(int state);
/* The OP_STATE_* of a name, or -EINVAL. */
int op_spool_state_parse(const char *name);

/* Monotonic, kept across restarts. The receiver counts every acknowledged
 * C-STORE (duplicates too) in the transaction that indexes it; the uplink
 * counts outcomes in the transaction that settles them. */
typedef struct op_spool_counters {
	uint64_t received_instances, received_bytes;
	uint64_t uploaded_instances, uploaded_bytes;
	uint64_t retries;     /* attempts that failed and will be retried */
	uint64_t quarantined; /* instances refused for good, each counted once */
	uint64_t associations_rejected;
} op_spool_counters;

typedef struct op_spool_stats {
	struct {
		uint64_t instances, bytes;
	} state[OP_SPOOL_STATES];
	int64_t oldest_queued_at; /* ms since the epoch, of queued or sending; 0: none */
	uint64_t studies_queued;  /* studies with queued or sending rows */
	op_spool_counters counters;
} op_spool_stats;

/* Of every instance (dest NULL: states are the instances' summaries,
 * counters the totals), or of one destination's deliveries and counters. */
int op_spool_get_stats(op_spool *sp, const char *dest, op_spool_stats *out);

/* The destinations that have deliveries (a destination removed from the
 * configuration may still have some), sorted, at most max names of
 * OP_DEST_NAME_MAX + 1 bytes each into names. */
int op_spool_destinations(op_spool *sp, char (*names)[OP_DEST_NAME_MAX + 1], unsigned max,
			  unsigned *n);

/* Adds delta to a counter (named as the op_spool_counters member). */
int op_spool_count(op_spool *sp, const char *name, uint64_t delta);

/* The longest search text op_spool_studies takes, in bytes. */
#define OP_SPOOL_SEARCH_MAX 64

/*
 * A study as the operator sees it. The study-level attributes are the
 * greatest of its instances' (qr_index): a modality sends the same with
 * each instance. Text from the datasets is as they hold it, in their
 * character set (charset); "" when absent or never indexed.
 */
typedef struct op_spool_study {
	char study_uid[OP_UID_MAX + 1];
	char patient_id[OP_UID_MAX + 1]; /* PHI */
	char modality[17];               /* the greatest of its instances' */
	uint64_t instances, bytes;
	uint64_t by_state[OP_SPOOL_STATES];
	int attempts; /* the most of any of its instances */
	int urgent;
	int64_t received_at, changed_at; /* ms since the epoch */
	char last_error[512];
	char patient_name[325]; /* PHI: never logged */
	char accession_number[17];
	char study_date[9]; /* YYYYMMDD */
	char study_description[65];
	char modalities[128]; /* distinct, '\'-separated (ModalitiesInStudy) */
	char calling_aet[17]; /* the greatest of its instances' */
	char charset[65];     /* SpecificCharacterSet of the text above */
} op_spool_study;

/*
 * Studies, most recently changed first: those with an instance in state
 * (OP_STATE_*), or all when state is -1; with search (NULL or "": no
 * search), only those whose patient ID or accession number starts with it
 * (case-sensitive) or whose patient name contains it ignoring ASCII case
 * ('*' and '?' are wildcards; a space, ',' or '^' matches any run of
 * characters, so "doe john" finds "DOE^JOHN"). The search is bound as SQL
 * parameters, never spliced. At most limit (out has room for limit) from
 * offset; *total counts all that match. -EINVAL when search is longer than
 * OP_SPOOL_SEARCH_MAX bytes. A name search reads every instance's index
 * row; the attributes are read for the page's studies only.
 */
int op_spool_studies(op_spool *sp, const char *dest, int state, const char *search, unsigned offset,
		     unsigned limit, op_spool_study *out, unsigned *n, uint64_t *total);

/* At the uplink's start: the deliveries still to send to a destination
 * not among known (removed from the configuration) are quarantined with a
 * reason that says so, so that they keep no object forever unseen: the
 * operator retries them when it is back, or discards them. *n counts
 * them; each destination is logged (spool.orphans). */
int op_spool_orphan_deliveries(op_spool *sp, const char *const *known, unsigned n_known,
			       int64_t now, unsigned *n);

/* Quarantined deliveries to dest (NULL: every destination) of study_uid
 * (NULL: all) back to the queue, attempts reset; *n counts them. Those
 * whose file is missing stay. -ENOENT when the spool has no instance of
 * study_uid at all. */
int op_spool_retry_quarantined(op_spool *sp, const char *dest, const char *study_uid, int64_t now,
			       unsigned *n);

/*
 * Discards the quarantined instances of study_uid for good: their rows,
 * and their files once no row names them. Rows in any other state are not
 * touched (a queued or sending instance is never dropped). *n and *bytes
 * say what went. -ENOENT when the study has no quarantined instance.
 * Logs spool.discard; the caller audits who asked.
 */
int op_spool_discard_quarantined(op_spool *sp, const char *study_uid, unsigned *n, uint64_t *bytes);

/* The operator's settings. get: -ENOENT when unset; set: NULL deletes. */
int op_spool_setting_get(op_spool *sp, const char *key, char *value, size_t size);
int op_spool_setting_set(op_spool *sp, const char *key, const char *value);

typedef struct op_spool_audit_entry {
	int64_t time; /* ms since the epoch */
	char who[64];
	char origin[64];
	char action[32];
	char detail[512];
} op_spool_audit_entry;

/* Records an operator action (the newest 10000 are kept). */
int op_spool_audit(op_spool *sp, int64_t now, const char *who, const char *origin,
		   const char *action, const char *detail);

/* The newest first, at most limit. */
int op_spool_audit_list(op_spool *sp, unsigned limit, op_spool_audit_entry *out, unsigned *n);

/* PRAGMA quick_check: 0 when the database is sound; detail says what
 * sqlite answered. */
int op_spool_quick_check(op_spool *sp, char *detail, size_t size);

#ifdef __cplusplus
}
#endif

#endif
