/*
 * fuzz_query: libFuzzer harness for what a C-FIND, C-MOVE or C-GET
 * identifier from the LAN becomes in the spool (common/spool_query.c):
 * keys of any tag and value turned into SQL matching (wildcards, ranges,
 * UID lists), run against a small spool.
 *
 * Input: a byte for the level and the model, then keys, each a byte
 * choosing the tag (one of the index's, or an arbitrary one) followed by
 * the value up to a NUL. Whatever the keys, the query must end with 0, a
 * cleanly reported -EINVAL (with a reason) or -E2BIG, answer with as many
 * values as keys, and never name an instance the spool does not hold.
 */
#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/spool.h"

static const uint32_t tags[] = {
	0x00080005, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00201200, 0x00201202,
	0x00201204, 0x00080020, 0x00080030, 0x00080050, 0x00200010, 0x0020000D, 0x00081030,
	0x00080090, 0x00080061, 0x00201206, 0x00201208, 0x0020000E, 0x00080060, 0x00200011,
	0x0008103E, 0x00180015, 0x00201209, 0x00080018, 0x00080016, 0x00200013, 0x00080052,
};

#define N_TAGS (sizeof(tags) / sizeof(tags[0]))
#define MAX_KEYS 64

static op_spool *spool;
static char dir[] = "/tmp/outpost-fuzz-query.XXXXXX";

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* The spool goes with the process. */
static void cleanup(void)
{
	op_spool_close(spool);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Three instances in two studies, with every indexed attribute set. */
static void fill(void)
{
	static const char *const sops[] = { "1.2.3.1", "1.2.3.2", "1.2.3.3" };
	op_spool_limits limits = { 0, 0, 0, 0 };

	op_log_set_level(OP_LOG_ERROR);
	if (!mkdtemp(dir) || op_spool_open(dir, &limits, &spool) < 0)
		abort();
	atexit(cleanup);
	for (int i = 0; i < 3; i++) {
		op_spool_object *obj = NULL;
		enum op_spool_outcome outcome;
		op_instance in;

		memset(&in, 0, sizeof(in));
		snprintf(in.sop_instance_uid, sizeof(in.sop_instance_uid), "%s", sops[i]);
		snprintf(in.sop_class_uid, sizeof(in.sop_class_uid), "1.2.840.10008.5.1.4.1.1.2");
		snprintf(in.study_uid, sizeof(in.study_uid), "2.%d", i / 2);
		snprintf(in.series_uid, sizeof(in.series_uid), "3.%d", i);
		snprintf(in.transfer_syntax, sizeof(in.transfer_syntax), "1.2.840.10008.1.2.1");
		snprintf(in.patient_id, sizeof(in.patient_id), "PID-%d", i / 2);
		snprintf(in.modality, sizeof(in.modality), i ? "CT" : "MR");
		snprintf(in.qr.patient_name, sizeof(in.qr.patient_name), "Doe^J%c", 'a' + i);
		snprintf(in.qr.study_date, sizeof(in.qr.study_date), "2020010%d", i + 1);
		snprintf(in.qr.study_time, sizeof(in.qr.study_time), "1%d0000.5", i);
		snprintf(in.qr.accession_number, sizeof(in.qr.accession_number), "A[%d]%%_", i);
		snprintf(in.qr.instance_number, sizeof(in.qr.instance_number), "%d", i);
		if (op_spool_object_begin(spool, &obj) < 0 ||
		    op_spool_object_write(obj, sops[i], strlen(sops[i])) < 0 ||
		    op_spool_object_finish(obj) < 0 ||
		    op_spool_object_commit(obj, &in, &outcome, NULL) < 0)
			abort();
	}
}

struct seen {
	unsigned n_keys;
	unsigned answers;
};

static int answer(void *ctx, const op_qr_key *values, unsigned n)
{
	struct seen *s = ctx;

	if (n != s->n_keys)
		__builtin_trap();
	for (unsigned k = 0; k < n; k++)
		if (!values[k].value)
			__builtin_trap();
	return ++s->answers > 16; /* a cancel, now and then */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[65536];
	op_qr_key keys[MAX_KEYS];
	op_qr_instance *items = NULL;
	unsigned n = 0, count = 0;
	char err[256];
	size_t at = 1;
	int rc;

	if (!spool)
		fill();
	if (size < 1 || size >= sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	while (at < size && n < MAX_KEYS) {
		uint8_t t = (uint8_t)buf[at++];
		keys[n].tag = t < N_TAGS * 8 ? tags[t % N_TAGS] : 0x00090000u | t;
		keys[n].value = buf + at;
		at += strlen(buf + at) + 1;
		n++;
	}
	struct seen s = { n, 0 };
	enum op_qr_level level = (enum op_qr_level)(data[0] & 3);
	int patient_root = (data[0] >> 2) & 1;

	err[0] = '\0';
	rc = op_spool_find(spool, level, patient_root, keys, n, answer, &s, err, sizeof(err));
	if (rc < 0 && (rc != -EINVAL || !err[0]))
		__builtin_trap();
	err[0] = '\0';
	rc = op_spool_retrieve(spool, level, patient_root, keys, n, &items, &count, err,
			       sizeof(err));
	if (rc < 0 && ((rc != -EINVAL && rc != -E2BIG) || !err[0] || items))
		__builtin_trap();
	for (unsigned i = 0; i < count; i++)
		if (strncmp(items[i].sop_instance_uid, "1.2.3.", 6) != 0)
			__builtin_trap();
	if (count > 3)
		__builtin_trap();
	free(items);
	return 0;
}
