/*
 * spool_fill: a spool of many instances made through the spool's own API,
 * for the query benchmark (tests/bench/bench_query.py, issue 18) and for
 * anything else that needs a large spool with instances in every state
 * (issue 19). Test-only: built into build/tests/, never installed.
 *
 *   spool_fill [options] DIR
 *     --instances N    instances (1000000)
 *     --studies S      studies (50000); each has about N / S instances
 *     --patients P     patients (20000); studies are spread over them
 *     --series K       series per study (4; the last one SR when K > 2)
 *     --payload B      bytes per object (300)
 *     --threads T      committing threads (32)
 *     --sent PCT, --quarantined PCT, --sending PCT
 *                      of the studies (90, 2, 0); the rest stay queued
 *     --seed X         (1)
 *     --cache-mb M     sqlite's page cache per connection (256; 0: sqlite's
 *                      default, 2 MB)
 *     --durable        keep every fsync (see below)
 *     --states-only    store nothing: give DIR's studies their states (a
 *                      fill stopped while settling, or another mix)
 *
 * Instances: study s (0 <= s < S) has instances [s * N / S, (s+1) * N / S),
 * in K series; its patient, date (2010-01-01 to 2026-12-31), time,
 * accession number, modality and description follow from s and the seed,
 * so that two fills with the same options hold the same index. Names of
 * patients and UIDs are printed by --describe (one line per study), so
 * that a bench can pick query keys without reading the database.
 *
 * How: T threads take studies in turn and store each instance with
 * op_spool_object_begin/write/commit (with op_instance and its qr
 * attributes, as the receiver does), so concurrent commits share
 * transactions (the spool's group commit). Then the states: one thread
 * claims the destination's queue one study at a time (op_spool_claim)
 * and settles it (op_spool_settle) as sent or quarantined, leaves it
 * 'sending', or holds it to requeue it, due at once, when every study has
 * been claimed (queued).
 *
 * Durability: by default this program's fsync() and fdatasync() return at
 * once (they are defined below and take the place of libc's for the
 * spool's code and for sqlite, which the executable links dynamically),
 * and one syncfs() at the end puts everything on disk. A fixture need
 * not survive a power cut mid-fill, and with the receiver's fsyncs (per
 * instance) and the uplink's (per settled study) a million instances
 * would take over an hour on the development VM (--durable, 3000
 * instances: 935 stored/s, 15 studies settled/s).
 *
 * Prints what it did and its rates on stdout ("fill: ..." lines, and a
 * last line "RESULT instances=N ... fill_per_s=R settle_studies_per_s=R";
 * instances=0 with --states-only).
 * Exits 0 on success, 1 on a failure, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/spool.h"

/* --- fsync, unless --durable ---------------------------------------------- */

static int durable;

int fsync(int fd)
{
	return durable ? (int)syscall(SYS_fsync, fd) : 0;
}

int fdatasync(int fd)
{
	return durable ? (int)syscall(SYS_fdatasync, fd) : 0;
}

/*
 * sqlite's page cache, on every connection this process opens (an
 * auto-extension runs at each open, before the spool's own pragmas, none
 * of which is cache_size). sqlite's default of 2 MB holds a small part of
 * the indexes of a million rows: each insert then reads its leaf pages
 * back from the kernel, and the fill slows as the spool grows.
 */
static int cache_kib = 262144;

static int big_cache(sqlite3 *db, char **err, const void *api)
{
	char sql[64];

	(void)err;
	(void)api;
	snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d", cache_kib);
	sqlite3_exec(db, sql, NULL, NULL, NULL);
	return SQLITE_OK;
}

/* --- what a study holds -------------------------------------------------- */

struct opts {
	uint64_t instances, studies, patients;
	unsigned series, payload, threads;
	unsigned sent, quarantined, sending; /* percent of studies */
	unsigned cache_mb;
	uint64_t seed;
	int describe;
	int states_only; /* no fill: the states of what DIR holds */
	const char *dir;
};

#define UID_ROOT "1.2.826.0.1.3680043.10.1047"
#define FIRST_DAY 14610 /* 2010-01-01, days since 1970-01-01 */
#define N_DAYS 6209     /* to 2026-12-31 */

enum fate { F_SENT, F_QUARANTINED, F_SENDING, F_QUEUED };

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser: every option's value spread evenly. */
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t draw(const struct opts *o, uint64_t study, uint64_t what)
{
	return mix(mix(o->seed * 1000003u + what) ^ study);
}

/* Days since 1970-01-01 to YYYYMMDD (Howard Hinnant's civil_from_days). */
static void civil(int64_t z, char out[9])
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	snprintf(out, 9, "%04u%02u%02u", (unsigned)(y + (m <= 2)) % 10000u, m % 100u, d % 100u);
}

static const char *const surnames[] = { "SMITH",  "MUELLER", "GARCIA", "ROSSI",
					"NOVAK",  "DUBOIS",  "TANAKA", "KOWALSKI",
					"JANSEN", "NIELSEN", "SILVA",  "OKAFOR",
					"NGUYEN", "COHEN",   "BERG",   "FISCHER" };
static const char *const given[] = { "ANNA",  "BEN",  "CLARA", "DAVID", "EVA",  "FELIX",
				     "GRETA", "HUGO", "IDA",   "JONAS", "KARL", "LENA" };
static const char *const modalities[] = {
	"CT", "CT", "CT", "MR", "MR", "CR", "DX", "US", "MG", "PT"
};
static const char *const classes[] = {
	"1.2.840.10008.5.1.4.1.1.2",   "1.2.840.10008.5.1.4.1.1.2",   "1.2.840.10008.5.1.4.1.1.2",
	"1.2.840.10008.5.1.4.1.1.4",   "1.2.840.10008.5.1.4.1.1.4",   "1.2.840.10008.5.1.4.1.1.1",
	"1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.1.2",
	"1.2.840.10008.5.1.4.1.1.128"
};
#define SR_CLASS "1.2.840.10008.5.1.4.1.1.88.22"
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The study's patient: a number, and the name, birth date and sex it has. */
static uint64_t patient_of(const struct opts *o, uint64_t s)
{
	/* The first P studies give every patient one; the rest fall at
	 * random, so a patient has about S / P studies. */
	return s < o->patients ? s : draw(o, s, 1) % o->patients;
}

static enum fate fate_of(const struct opts *o, uint64_t s)
{
	unsigned pct = (unsigned)(draw(o, s, 9) % 100);

	if (pct < o->sent)
		return F_SENT;
	if (pct < o->sent + o->quarantined)
		return F_QUARANTINED;
	if (pct < o->sent + o->quarantined + o->sending)
		return F_SENDING;
	return F_QUEUED;
}

static const char *const fate_names[] = { "sent", "quarantined", "sending", "queued" };

/* Everything about instance i (0-based within the study) of study s. */
static void instance_of(const struct opts *o, uint64_t s, uint64_t i, uint64_t n_in_study,
			op_instance *in)
{
	uint64_t p = patient_of(o, s);
	unsigned mod = (unsigned)(draw(o, s, 2) % N_OF(modalities));
	unsigned series = (unsigned)(i * o->series / (n_in_study ? n_in_study : 1));
	int sr = o->series > 2 && series == o->series - 1;
	uint64_t t = draw(o, s, 4);
	char birth[9];

	memset(in, 0, sizeof(*in));
	snprintf(in->study_uid, sizeof(in->study_uid), UID_ROOT ".1.%" PRIu64, s);
	snprintf(in->series_uid, sizeof(in->series_uid), UID_ROOT ".2.%" PRIu64 ".%u", s, series);
	snprintf(in->sop_instance_uid, sizeof(in->sop_instance_uid),
		 UID_ROOT ".3.%" PRIu64 ".%" PRIu64, s, i);
	snprintf(in->sop_class_uid, sizeof(in->sop_class_uid), "%s", sr ? SR_CLASS : classes[mod]);
	snprintf(in->transfer_syntax, sizeof(in->transfer_syntax), "1.2.840.10008.1.2.1");
	snprintf(in->patient_id, sizeof(in->patient_id), "PID%07" PRIu64, p);
	snprintf(in->modality, sizeof(in->modality), "%s", sr ? "SR" : modalities[mod]);
	snprintf(in->calling_aet, sizeof(in->calling_aet), "FILL");
	in->priority = OP_PRIORITY_MEDIUM;

	op_qr_attrs *q = &in->qr;
	snprintf(q->charset, sizeof(q->charset), "ISO_IR 100");
	snprintf(q->patient_name, sizeof(q->patient_name), "%s%" PRIu64 "^%s",
		 surnames[mix(p) % N_OF(surnames)], p, given[mix(p + 7) % N_OF(given)]);
	civil(-7300 + (int64_t)(mix(p + 3) % 25000), birth); /* 1950 to 2018 */
	snprintf(q->patient_birth_date, sizeof(q->patient_birth_date), "%s", birth);
	snprintf(q->patient_sex, sizeof(q->patient_sex), "%s", mix(p + 5) % 2 ? "F" : "M");
	civil(FIRST_DAY + (int64_t)(draw(o, s, 3) % N_DAYS), q->study_date);
	snprintf(q->study_time, sizeof(q->study_time), "%02u%02u%02u", (unsigned)(t % 24),
		 (unsigned)(t / 24 % 60), (unsigned)(t / 1440 % 60));
	snprintf(q->accession_number, sizeof(q->accession_number), "A%09" PRIu64, s);
	snprintf(q->study_id, sizeof(q->study_id), "%" PRIu64, s % 100000);
	snprintf(q->study_description, sizeof(q->study_description), "%s BENCH STUDY %u",
		 modalities[mod], (unsigned)(draw(o, s, 5) % 40));
	snprintf(q->referring_physician, sizeof(q->referring_physician), "REF^%s",
		 given[draw(o, s, 6) % N_OF(given)]);
	snprintf(q->series_number, sizeof(q->series_number), "%u", series + 1);
	snprintf(q->series_description, sizeof(q->series_description), "%s",
		 sr ? "REPORT" : "AXIAL");
	snprintf(q->body_part, sizeof(q->body_part), "%s", sr ? "" : "CHEST");
	snprintf(q->instance_number, sizeof(q->instance_number), "%" PRIu64, i + 1);
}

static uint64_t study_first(const struct opts *o, uint64_t s)
{
	return s * o->instances / o->studies;
}

/* --- filling --------------------------------------------------------------- */

struct filler {
	const struct opts *o;
	op_spool *sp;
	_Atomic uint64_t next_study;
	_Atomic uint64_t stored;
	_Atomic int failed;
};

static int store_one(struct filler *f, const op_instance *in, unsigned char *buf)
{
	op_spool_object *obj = NULL;
	enum op_spool_outcome outcome;
	int n, rc;

	/* Unique bytes: the SOP Instance UID, then filler. */
	n = snprintf((char *)buf, f->o->payload, "BENCH %s\n", in->sop_instance_uid);
	if (n > 0 && (unsigned)n < f->o->payload)
		memset(buf + n, 'x', f->o->payload - (unsigned)n);
	if ((rc = op_spool_object_begin(f->sp, &obj)) < 0)
		return rc;
	if ((rc = op_spool_object_write(obj, buf, f->o->payload)) < 0) {
		op_spool_object_abort(obj);
		return rc;
	}
	return op_spool_object_commit(obj, in, &outcome, NULL);
}

static void *fill_thread(void *arg)
{
	struct filler *f = arg;
	const struct opts *o = f->o;
	unsigned char *buf = malloc(o->payload);
	op_instance *in = malloc(sizeof(*in));
	uint64_t s;

	if (!buf || !in) {
		f->failed = -ENOMEM;
		goto out;
	}
	while (!f->failed && (s = atomic_fetch_add(&f->next_study, 1)) < o->studies) {
		uint64_t first = study_first(o, s), n = study_first(o, s + 1) - first;

		for (uint64_t i = 0; i < n && !f->failed; i++) {
			int rc;

			instance_of(o, s, i, n, in);
			if ((rc = store_one(f, in, buf)) < 0) {
				fprintf(stderr,
					"spool_fill: study %" PRIu64 " instance %" PRIu64 ": %s\n",
					s, i, strerror(-rc));
				f->failed = rc;
			}
			atomic_fetch_add(&f->stored, 1);
		}
	}
out:
	free(buf);
	free(in);
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The study number of one of ours: the last component of its UID. */
static uint64_t study_number(const char *uid)
{
	const char *dot = strrchr(uid, '.');

	return dot ? strtoull(dot + 1, NULL, 10) : 0;
}

/* What a queued study's instances go back with, at the end. */
struct held {
	int64_t id;
	char hash[OP_HASH_HEX + 1];
};

/* Requeues what was held, due at now: queued as received, one attempt
 * made (the uplink's REQUEUE counts none). */
static int requeue_held(op_spool *sp, const struct held *h, size_t n, int64_t now)
{
	op_spool_settlement st[500];
	int rc = 0;

	for (size_t done = 0; rc == 0 && done < n;) {
		unsigned k = 0;

		for (; k < 500 && done + k < n; k++)
			st[k] = (op_spool_settlement){ .id = h[done + k].id,
						       .hash = h[done + k].hash,
						       .verdict = OP_VERDICT_REQUEUE,
						       .next_attempt_at = now };
		rc = op_spool_settle(sp, OP_SPOOL_DEFAULT_DESTINATION, st, k, now);
		done += k;
	}
	return rc;
}

/*
 * Claims every study once and gives it its fate: sent or quarantined
 * (settled at once), sending (left claimed), or queued. The queued ones
 * are held (claimed) until every other study is done, then requeued due
 * at once: requeued on the way, the loop would claim them again.
 */
static int settle_all(const struct opts *o, op_spool *sp, uint64_t counts[4], uint64_t *studies)
{
	/* A study's instances come in one claim (claim keeps to one study). */
	unsigned max = (unsigned)(o->instances / o->studies + 2) * 2;
	op_spool_item *items = calloc(max, sizeof(*items));
	op_spool_settlement *st = calloc(max, sizeof(*st));
	struct held *held = NULL;
	size_t n_held = 0, cap = 0;
	int64_t now = wall_ms();
	unsigned n;
	int rc;

	if (!items || !st) {
		rc = -ENOMEM;
		goto out;
	}
	while ((rc = op_spool_claim(sp, OP_SPOOL_DEFAULT_DESTINATION, now, max, UINT64_MAX, 0,
				    items, &n)) == 0 &&
	       n > 0) {
		enum fate fate = fate_of(o, study_number(items[0].study_uid));

		(*studies)++;
		counts[fate] += n;
		if (fate == F_SENDING)
			continue;
		if (fate == F_QUEUED) {
			if (n_held + n > cap) {
				size_t grow = (n_held + n) * 2;
				struct held *more = realloc(held, grow * sizeof(*held));
				if (!more) {
					rc = -ENOMEM;
					goto out;
				}
				held = more;
				cap = grow;
			}
			for (unsigned k = 0; k < n; k++) {
				held[n_held].id = items[k].id;
				memcpy(held[n_held].hash, items[k].hash, sizeof(held[0].hash));
				n_held++;
			}
			continue;
		}
		for (unsigned k = 0; k < n; k++) {
			st[k] = (op_spool_settlement){ .id = items[k].id, .hash = items[k].hash };
			if (fate == F_SENT) {
				st[k].verdict = OP_VERDICT_SENT;
			} else {
				st[k].verdict = OP_VERDICT_QUARANTINE;
				st[k].error = "spool_fill: refused (a benchmark's fixture)";
			}
		}
		if ((rc = op_spool_settle(sp, OP_SPOOL_DEFAULT_DESTINATION, st, n, now)) < 0)
			break;
	}
	if (rc == 0)
		rc = requeue_held(sp, held, n_held, wall_ms());
out:
	free(items);
	free(st);
	free(held);
	return rc;
}

/* --- the command line ------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr, "usage: spool_fill [--instances N] [--studies S] [--patients P]"
			" [--series K] [--payload B] [--threads T] [--sent PCT]"
			" [--quarantined PCT] [--sending PCT] [--seed X] [--cache-mb M] [--durable]"
			" [--states-only] [--describe] DIR\n");
	return 2;
}

static int number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .instances = 1000000,
			    .studies = 50000,
			    .patients = 20000,
			    .series = 4,
			    .payload = 300,
			    .threads = 32,
			    .sent = 90,
			    .quarantined = 2,
			    .cache_mb = 256,
			    .seed = 1 };
	for (int a = 1; a < argc; a++) {
		static const struct {
			const char *name;
			uint64_t min, max;
			size_t off, size;
		} flags[] = {
#define FLAG(n, f, lo, hi) { n, lo, hi, offsetof(struct opts, f), sizeof(((struct opts *)0)->f) }
			FLAG("--instances", instances, 1, 100000000),
			FLAG("--studies", studies, 1, 10000000),
			FLAG("--patients", patients, 1, 10000000),
			FLAG("--series", series, 1, 1000),
			FLAG("--payload", payload, 64, 1 << 24),
			FLAG("--threads", threads, 1, 512),
			FLAG("--sent", sent, 0, 100),
			FLAG("--quarantined", quarantined, 0, 100),
			FLAG("--sending", sending, 0, 100),
			FLAG("--seed", seed, 0, UINT32_MAX),
			FLAG("--cache-mb", cache_mb, 0, 65536),
#undef FLAG
		};
		size_t f;
		uint64_t v;

		if (strcmp(argv[a], "--durable") == 0) {
			durable = 1;
			continue;
		}
		if (strcmp(argv[a], "--states-only") == 0) {
			o->states_only = 1;
			continue;
		}
		if (strcmp(argv[a], "--describe") == 0) {
			o->describe = 1;
			continue;
		}
		for (f = 0; f < N_OF(flags); f++)
			if (strcmp(argv[a], flags[f].name) == 0)
				break;
		if (f == N_OF(flags)) {
			if (argv[a][0] == '-' || o->dir || a != argc - 1)
				return -1;
			o->dir = argv[a];
			continue;
		}
		if (a + 1 >= argc || number(argv[++a], flags[f].min, flags[f].max, &v) < 0)
			return -1;
		if (flags[f].size == sizeof(uint64_t))
			*(uint64_t *)((char *)o + flags[f].off) = v;
		else
			*(unsigned *)((char *)o + flags[f].off) = (unsigned)v;
	}
	if (!o->dir || o->studies > o->instances || o->sent + o->quarantined + o->sending > 100)
		return -1;
	return 0;
}

/* One line per study: what a bench picks its query keys from. */
static void describe(const struct opts *o)
{
	op_instance *in = malloc(sizeof(*in));

	if (!in)
		return;
	printf("# study patient_id patient_name study_date accession modality instances state\n");
	for (uint64_t s = 0; s < o->studies; s++) {
		uint64_t n = study_first(o, s + 1) - study_first(o, s);

		instance_of(o, s, 0, n, in);
		printf("%s %s %s %s %s %s %" PRIu64 " %s\n", in->study_uid, in->patient_id,
		       in->qr.patient_name, in->qr.study_date, in->qr.accession_number,
		       in->modality, n, fate_names[fate_of(o, s)]);
	}
	free(in);
}

int main(int argc, char **argv)
{
	struct opts o;
	op_spool_limits limits = { 0 };
	op_spool *sp = NULL;
	struct filler f = { 0 };
	pthread_t *tids = NULL;
	uint64_t counts[4] = { 0 }, settled = 0;
	double t0, t1, t2, t3;
	int rc;

	if (parse(argc, argv, &o) < 0)
		return usage();
	if (o.describe) {
		describe(&o);
		return 0;
	}
	op_log_set_level(OP_LOG_WARN);
	cache_kib = (int)o.cache_mb * 1024;
	if (cache_kib)
		sqlite3_auto_extension((void (*)(void))big_cache);
	if (sodium_init() < 0)
		return 1;
	if ((rc = op_spool_open(o.dir, &limits, &sp)) < 0) {
		fprintf(stderr, "spool_fill: %s: %s\n", o.dir, strerror(-rc));
		return 1;
	}
	printf("fill: %" PRIu64 " instances, %" PRIu64 " studies, %" PRIu64
	       " patients, %u series per study, %u bytes each, %u threads, sqlite cache %u MB,"
	       " fsync %s\n",
	       o.instances, o.studies, o.patients, o.series, o.payload, o.threads, o.cache_mb,
	       durable ? "kept" : "skipped (one syncfs at the end)");
	fflush(stdout);
	f.o = &o;
	f.sp = sp;
	if (!(tids = calloc(o.threads, sizeof(*tids)))) {
		rc = -ENOMEM;
		goto out;
	}
	if (o.states_only) {
		/* Nothing to store: the loop below ends at once. */
		o.threads = 0;
		f.stored = o.instances;
	}
	t0 = now_s();
	for (unsigned k = 0; k < o.threads; k++)
		if (pthread_create(&tids[k], NULL, fill_thread, &f) != 0) {
			f.failed = -EAGAIN;
			o.threads = k;
			break;
		}
	for (double last = t0;;) {
		struct timespec pause = { 0, 200000000 };
		uint64_t done = f.stored;

		if (done >= o.instances || f.failed)
			break;
		nanosleep(&pause, NULL);
		if (now_s() - last >= 10) {
			last = now_s();
			printf("fill: %" PRIu64 " stored, %.0f/s\n", (uint64_t)f.stored,
			       (double)f.stored / (last - t0));
			fflush(stdout);
		}
	}
	for (unsigned k = 0; k < o.threads; k++)
		pthread_join(tids[k], NULL);
	t1 = now_s();
	if ((rc = f.failed) < 0)
		goto out;
	if (!o.states_only)
		printf("fill: stored %" PRIu64 " in %.1f s: %.0f instances/s\n", (uint64_t)f.stored,
		       t1 - t0, (double)f.stored / (t1 - t0));
	fflush(stdout);
	if ((rc = settle_all(&o, sp, counts, &settled)) < 0) {
		fprintf(stderr, "spool_fill: claiming and settling: %s\n", strerror(-rc));
		goto out;
	}
	t2 = now_s();
	printf("fill: %" PRIu64 " studies claimed and settled in %.1f s (%.0f studies/s):"
	       " %" PRIu64 " sent, %" PRIu64 " quarantined, %" PRIu64 " sending, %" PRIu64
	       " queued\n",
	       settled, t2 - t1, (double)settled / (t2 - t1), counts[F_SENT], counts[F_QUARANTINED],
	       counts[F_SENDING], counts[F_QUEUED]);
	op_spool_close(sp);
	sp = NULL;
	{
		/* What the skipped fsyncs left in the page cache, on disk. */
		char db[OP_DIR_MAX + 16];
		int fd;

		snprintf(db, sizeof(db), "%s/spool.db", o.dir);
		if ((fd = open(db, O_RDONLY)) >= 0) {
			syncfs(fd);
			close(fd);
		}
	}
	t3 = now_s();
	printf("fill: syncfs %.1f s\n", t3 - t2);
	printf("RESULT instances=%" PRIu64 " studies=%" PRIu64 " fill_s=%.1f fill_per_s=%.0f"
	       " settle_s=%.1f settle_studies_per_s=%.0f sync_s=%.1f durable=%d\n",
	       o.states_only ? 0 : (uint64_t)f.stored, settled, t1 - t0,
	       o.states_only ? 0 : (double)f.stored / (t1 - t0), t2 - t1,
	       (double)settled / (t2 - t1), t3 - t2, durable);
out:
	free(tids);
	op_spool_close(sp);
	return rc < 0 ? 1 : 0;
}
