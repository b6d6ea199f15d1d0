/*
 * ctl_print: the API's answers as outpostctl shows them to a person
 * (ctl_print.h).
 *
 * Every string from the server goes through sanitize() on its way to the
 * terminal: an escape sequence in a patient ID or an error message must
 * not reach it.
 */
#include "ctl/ctl_print.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Copies s into buf (size bytes) with control characters as '?': the
 * server's text is printed on the engineer's terminal. */
static void sanitize(const char *s, size_t n, char *buf, size_t size)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 1 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (size)
		buf[o] = '\0';
}

void op_ctl_error_text(const op_ctl_response *r, char *buf, size_t size)
{
	cJSON *j = r->body ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	const char *s = r->body;
	size_t n = r->body_len;

	if (cJSON_IsString(e) && e->valuestring[0]) {
		sanitize(e->valuestring, strlen(e->valuestring), buf, size);
		goto out;
	}
	while (n && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n)
		sanitize(s, n, buf, size);
	else
		snprintf(buf, size, "HTTP %d", r->status);
out:
	cJSON_Delete(j);
}

/* --- sizes, rates, durations --------------------------------------------- */

/* "%.3g" of v in the first unit that keeps it under 1000 (no "1e+03"). */
static void format_scaled(double v, double step, const char *const *units, int n_units, char *buf,
			  size_t size)
{
	int u = 0;

	while (u + 1 < n_units && fabs(v) >= step) {
		v /= step;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%.0f %s", v, units[0]);
	else if (fabs(v) >= 999.5)
		snprintf(buf, size, "%.0f %s", v, units[u]);
	else
		snprintf(buf, size, "%.3g %s", v, units[u]);
}

void op_ctl_format_bytes(double bytes, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };

	format_scaled(bytes, 1024, units, 6, buf, size);
}

void op_ctl_format_rate(double bps, char *buf, size_t size)
{
	static const char *const units[] = { "bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s" };

	format_scaled(bps, 1000, units, 5, buf, size);
}

void op_ctl_format_duration(double seconds, char *buf, size_t size)
{
	uint64_t s = seconds > 0 && isfinite(seconds) ? (uint64_t)(seconds + 0.5) : 0;

	if (s < 60)
		snprintf(buf, size, "%llu s", (unsigned long long)s);
	else if (s < 3600)
		snprintf(buf, size, "%llu min %llu s", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, size, "%llu h %llu min", (unsigned long long)(s / 3600),
			 (unsigned long long)(s % 3600 / 60));
	else
		snprintf(buf, size, "%llu d %llu h", (unsigned long long)(s / 86400),
			 (unsigned long long)(s % 86400 / 3600));
}

/* --- tables --------------------------------------------------------------- */

/* The member at a dotted path ("link.state"), or NULL. */
static const cJSON *get(const cJSON *o, const char *path)
{
	char key[64];
	const char *dot;

	while (o && *path) {
		dot = strchr(path, '.');
		snprintf(key, sizeof(key), "%.*s", (int)(dot ? (size_t)(dot - path) : strlen(path)),
			 path);
		o = cJSON_GetObjectItemCaseSensitive(o, key);
		path = dot ? dot + 1 : "";
	}
	return o;
}

/* The string at path, sanitized into buf; dflt when absent or not a string. */
static const char *str_at(const cJSON *o, const char *path, const char *dflt, char *buf,
			  size_t size)
{
	const cJSON *v = get(o, path);

	if (!cJSON_IsString(v))
		return dflt;
	sanitize(v->valuestring, strlen(v->valuestring), buf, size);
	return buf;
}

static int num_at(const cJSON *o, const char *path, double *out)
{
	const cJSON *v = get(o, path);

	if (!cJSON_IsNumber(v))
		return 0;
	*out = v->valuedouble;
	return 1;
}

static const char *bytes_at(const cJSON *o, const char *path, char *buf, size_t size)
{
	double v;

	if (!num_at(o, path, &v))
		return "-";
	op_ctl_format_bytes(v, buf, size);
	return buf;
}

/* A rate member: bits per second, null when unlimited, 0 paused. */
static const char *rate_at(const cJSON *o, const char *path, char *buf, size_t size)
{
	const cJSON *v = get(o, path);

	if (cJSON_IsNull(v))
		return "unlimited";
	if (!cJSON_IsNumber(v))
		return "-";
	if (v->valuedouble == 0)
		return "0 (paused)";
	op_ctl_format_rate(v->valuedouble, buf, size);
	return buf;
}

/* "2026-11-28T10:00:00Z" -> seconds since the epoch; -1 if it is not one. */
static int64_t parse_time(const char *s)
{
	struct tm tm = { 0 };
	const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;

	if (!end)
		return -1;
	if (*end == '.')
		for (end++; isdigit((unsigned char)*end); end++)
			;
	if (strcmp(end, "Z") != 0)
		return -1;
	return (int64_t)timegm(&tm);
}

/* An API time ("2026-11-28T10:00:00Z") in the box's local time with its
 * zone, as the console shows it: "2026-11-28 11:00:00 CET". A text that is
 * not one is copied as it is. */
static const char *local_time(const char *iso, char *out, size_t size)
{
	int64_t s = parse_time(iso);
	time_t t = (time_t)s;
	struct tm tm;

	if (s < 0 || !localtime_r(&t, &tm) || !strftime(out, size, "%Y-%m-%d %H:%M:%S %Z", &tm))
		snprintf(out, size, "%s", iso ? iso : "-");
	return out;
}

/* The member at path, a time, as local_time() writes it; dflt when absent. */
static const char *time_at(const cJSON *o, const char *path, const char *dflt, char *out,
			   size_t size)
{
	const char *iso = cJSON_GetStringValue(get(o, path));

	if (!iso) {
		snprintf(out, size, "%s", dflt);
		return out;
	}
	return local_time(iso, out, size);
}

/* A table printed with its columns aligned. */
struct table {
	int ncol;
	int nrow, cap;
	char **cells;   /* nrow * ncol, the first row the headings */
	unsigned right; /* bit i: column i right-aligned */
};

/* Display width of a UTF-8 string (code points; good enough for IDs). */
static size_t width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static int table_add(struct table *t, const char *const *row)
{
	char **bigger;

	if (t->nrow == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;

		bigger = realloc(t->cells, (size_t)cap * (size_t)t->ncol * sizeof(*bigger));
		if (!bigger)
			return -ENOMEM;
		t->cells = bigger;
		t->cap = cap;
	}
	for (int c = 0; c < t->ncol; c++)
		t->cells[t->nrow * t->ncol + c] = strdup(row[c] ? row[c] : "");
	t->nrow++;
	return 0;
}

static void table_print(struct table *t, const char *indent, FILE *out)
{
	size_t w[16] = { 0 };

	for (int r = 0; r < t->nrow; r++)
		for (int c = 0; c < t->ncol; c++) {
			const char *s = t->cells[r * t->ncol + c];
			size_t n = s ? width(s) : 0;

			if (n > w[c])
				w[c] = n;
		}
	for (int r = 0; r < t->nrow; r++) {
		fputs(indent, out);
		for (int c = 0; c < t->ncol; c++) {
			const char *s = t->cells[r * t->ncol + c];
			size_t pad;

			s = s ? s : "?";
			pad = w[c] - width(s);
			if (t->right & (1u << c))
				fprintf(out, "%*s%s", (int)pad, "", s);
			else if (c + 1 < t->ncol)
				fprintf(out, "%s%*s", s, (int)pad, "");
			else
				fputs(s, out);
			if (c + 1 < t->ncol)
				fputs("  ", out);
		}
		fputc('\n', out);
	}
}

static void table_free(struct table *t)
{
	for (int i = 0; i < t->nrow * t->ncol; i++)
		free(t->cells[i]);
	free(t->cells);
}

void op_ctl_print_rate(const cJSON *rate, FILE *out)
{
	char a[64], b[64], d[1100];
	const char *source = cJSON_GetStringValue(get(rate, "source")), *schedule;

	fprintf(out, "%-12snow %s", "Rate", rate_at(rate, "current", a, sizeof(a)));
	fprintf(out, ", configured %s", rate_at(rate, "configured", b, sizeof(b)));
	if (source)
		fprintf(out, " (set by the %s)",
			strcmp(source, "console") == 0 ? "console" : "configuration file");
	fputc('\n', out);
	schedule = str_at(rate, "schedule", "", d, sizeof(d));
	fprintf(out, "%-12s%s", "Schedule", *schedule ? schedule : "none");
	/* Not in docs/API.md, but the uplink tells it: rate and schedule are
	 * overridden separately. */
	source = cJSON_GetStringValue(get(rate, "schedule_source"));
	if (source)
		fprintf(out, " (set by the %s)",
			strcmp(source, "console") == 0 ? "console" : "configuration file");
	fputc('\n', out);
}

/*
 * A list of /api/status under its heading, an item a line: the members k1
 * and k2 (padded to w1 and w2 columns) and the message; or "none" beside
 * the heading when the list is empty or absent.
 */
static void print_list(const cJSON *list, const char *heading, const char *k1, int w1,
		       const char *k2, int w2, FILE *out)
{
	char a[256], b[256], d[1100];
	const cJSON *item;

	if (!cJSON_GetArraySize(list)) {
		fprintf(out, "%-12snone\n", heading);
		return;
	}
	fprintf(out, "%s\n", heading);
	cJSON_ArrayForEach(item, list)
	{
		fprintf(out, "  %-*s %-*s %s\n", w1, str_at(item, k1, "-", a, sizeof(a)), w2,
			str_at(item, k2, "-", b, sizeof(b)),
			str_at(item, "message", "-", d, sizeof(d)));
	}
}

/* The last errors, newest first: when (local time), what, and the study
 * and instance each is about. */
static void print_errors(const cJSON *list, FILE *out)
{
	char a[96], b[256], d[1100];
	const cJSON *item;

	if (!cJSON_GetArraySize(list)) {
		fprintf(out, "%-12snone\n", "Last errors");
		return;
	}
	fprintf(out, "Last errors\n");
	cJSON_ArrayForEach(item, list)
	{
		fprintf(out, "  %s %s %s\n", time_at(item, "time", "-", a, sizeof(a)),
			str_at(item, "event", "-", b, sizeof(b)),
			str_at(item, "message", "-", d, sizeof(d)));
		if (cJSON_IsString(get(item, "study_uid")))
			fprintf(out, "    study %s\n",
				str_at(item, "study_uid", "-", d, sizeof(d)));
		if (cJSON_IsString(get(item, "sop_uid")))
			fprintf(out, "    instance %s\n",
				str_at(item, "sop_uid", "-", d, sizeof(d)));
	}
}

/* o.queue by state (instances and bytes), as a table under title. */
static void print_states(const cJSON *o, const char *title, FILE *out)
{
	static const char *const states[] = { "queued", "sending", "sent", "quarantined" };
	const char *head[] = { "STATE", "INSTANCES", "BYTES" };
	struct table t = { .ncol = 3, .right = 6 };
	char a[64], b[64], path[64];
	double v;

	table_add(&t, head);
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		const char *row[3] = { states[i], "-", "-" };

		snprintf(path, sizeof(path), "queue.%s.instances", states[i]);
		if (num_at(o, path, &v)) {
			snprintf(a, sizeof(a), "%.0f", v);
			row[1] = a;
		}
		snprintf(path, sizeof(path), "queue.%s.bytes", states[i]);
		row[2] = bytes_at(o, path, b, sizeof(b));
		table_add(&t, row);
	}
	fprintf(out, "%s\n", title);
	table_print(&t, "            ", out);
	table_free(&t);
}

void op_ctl_print_status(const cJSON *st, FILE *out)
{
	char a[256], b[256], c[256], d[1100];
	const char *state, *enc;
	double v, w;
	int64_t now = parse_time(cJSON_GetStringValue(get(st, "time"))), since;
	int paused;

	/* The service and its clock. */
	fprintf(out, "outpost-uplink %s", str_at(st, "version", "-", a, sizeof(a)));
	if (num_at(st, "uptime", &v)) {
		op_ctl_format_duration(v, b, sizeof(b));
		fprintf(out, ", up %s", b);
	}
	fprintf(out, " (at %s)\n", time_at(st, "time", "-", c, sizeof(c)));
	/* What the browser should show of the console's certificate. */
	if (*str_at(st, "console.fingerprint_sha256", "", d, sizeof(d)))
		fprintf(out, "%-12sHTTPS, certificate SHA-256 %s\n", "Console", d);
	/* The data partition, on the appliance (outpost-grow-data's record). */
	enc = str_at(st, "firmware.encryption.encrypted", "", a, sizeof(a));
	if (strcmp(enc, "yes") == 0)
		fprintf(out, "%-12sLUKS2, key sealed to the TPM\n", "Encryption");
	else if (*enc)
		fprintf(out, "%-12sNOT encrypted: %s\n", "Encryption",
			str_at(st, "firmware.encryption.reason", "-", d, sizeof(d)));
	if (*enc && strcmp(str_at(st, "firmware.encryption.receiving", "", b, sizeof(b)), "yes"))
		fprintf(out, "%-12snot receiving until the site file allows it ([security] %s)\n",
			"", "allow_unencrypted");
	fputc('\n', out);

	/* The link: its headline first (console/headline.c), the one line the
	 * console leads with. */
	if (*str_at(st, "link.headline.text", "", d, sizeof(d)))
		fprintf(out, "%-12s%s\n", "Cloud", d);
	state = str_at(st, "link.state", "-", a, sizeof(a));
	fprintf(out, "%-12s%s", "Link", state);
	since = parse_time(cJSON_GetStringValue(get(st, "link.since")));
	if (since >= 0) {
		fprintf(out, " since %s", time_at(st, "link.since", "-", b, sizeof(b)));
		if (now >= since) {
			op_ctl_format_duration((double)(now - since), c, sizeof(c));
			fprintf(out, " (%s)", c);
		}
	}
	fputc('\n', out);
	paused = cJSON_IsTrue(get(st, "link.paused_by_operator"));
	/* The uplink may give the pause as the reason: said once is enough. */
	if (*str_at(st, "link.reason", "", b, sizeof(b)) &&
	    !(paused && strcmp(b, "paused by the operator") == 0))
		fprintf(out, "%-12sreason: %s\n", "", b);
	if (paused)
		fprintf(out, "%-12spaused by the operator (outpostctl resume)\n", "");

	op_ctl_print_rate(get(st, "rate"), out);

	/* Every destination's headline, when there are more than the cloud. */
	if (cJSON_GetArraySize(get(st, "destinations")) > 1) {
		const cJSON *dst;

		fprintf(out, "Destinations\n");
		cJSON_ArrayForEach(dst, get(st, "destinations"))
		{
			fprintf(out, "  %-10s%s (%s)\n", str_at(dst, "name", "-", a, sizeof(a)),
				str_at(dst, "link.headline.text", "-", d, sizeof(d)),
				str_at(dst, "type", "-", b, sizeof(b)));
		}
	}

	/* The queue. */
	print_states(st, "Queue", out);
	if (num_at(st, "queue.oldest_queued_age", &v)) {
		op_ctl_format_duration(v, a, sizeof(a));
		fprintf(out, "%-12soldest queued instance: %s old", "", a);
	} else {
		fprintf(out, "%-12snothing queued", "");
	}
	if (num_at(st, "queue.studies_queued", &v))
		fprintf(out, "; %.0f %s queued", v, v == 1 ? "study" : "studies");
	fputc('\n', out);

	/* The disk. */
	fprintf(out, "%-12s%s: %s free", "Disk", str_at(st, "disk.path", "-", d, sizeof(d)),
		bytes_at(st, "disk.free", a, sizeof(a)));
	fprintf(out, " of %s\n", bytes_at(st, "disk.total", a, sizeof(a)));
	fprintf(out, "%-12sspool %s", "", bytes_at(st, "disk.spool_bytes", a, sizeof(a)));
	if (num_at(st, "disk.max_bytes", &v))
		fprintf(out, " (limit %s",
			v > 0 ? bytes_at(st, "disk.max_bytes", a, sizeof(a)) : "none");
	else
		fprintf(out, " (limit -");
	fprintf(out, ", keeps %s free)\n", bytes_at(st, "disk.min_free_bytes", a, sizeof(a)));

	/* Alarms and the last errors. */
	print_list(get(st, "alarms"), "Alarms", "severity", 8, "id", 12, out);
	print_errors(get(st, "last_errors"), out);

	/* Counters: totals, kept across restarts. */
	if (get(st, "counters")) {
		fprintf(out, "%-12s", "Totals");
		fprintf(out, "received %.0f",
			num_at(st, "counters.received_instances", &v) ? v : 0);
		fprintf(out, ", uploaded %.0f (%s)",
			num_at(st, "counters.uploaded_instances", &w) ? w : 0,
			bytes_at(st, "counters.uploaded_bytes", a, sizeof(a)));
		fprintf(out, ", retries %.0f", num_at(st, "counters.retries", &v) ? v : 0);
		fprintf(out, ", quarantined %.0f\n",
			num_at(st, "counters.quarantined", &v) ? v : 0);
	}
}

void op_ctl_print_destination(const cJSON *dst, const char *now_iso, FILE *out)
{
	char a[256], b[256], d[1100];
	double v;

	(void)now_iso;
	fprintf(out, "%-12s%s (%s, %s)\n", "Destination", str_at(dst, "name", "-", a, sizeof(a)),
		str_at(dst, "type", "-", b, sizeof(b)), str_at(dst, "peer", "-", d, sizeof(d)));
	if (!cJSON_IsTrue(get(dst, "enabled")))
		fprintf(out, "%-12sdisabled in the configuration (enabled = no)\n", "");
	fprintf(out, "%-12s%s\n", "Now", str_at(dst, "link.headline.text", "-", d, sizeof(d)));
	fprintf(out, "%-12s%s since %s\n", "Link", str_at(dst, "link.state", "-", a, sizeof(a)),
		time_at(dst, "link.since", "-", b, sizeof(b)));
	if (*str_at(dst, "link.reason", "", d, sizeof(d)))
		fprintf(out, "%-12sreason: %s\n", "", d);
	fprintf(out, "%-12scap %s, share now %s\n", "Rate", rate_at(dst, "rate.cap", a, sizeof(a)),
		rate_at(dst, "rate.share", b, sizeof(b)));
	print_states(dst, "Deliveries", out);
	if (num_at(dst, "queue.oldest_queued_age", &v)) {
		op_ctl_format_duration(v, a, sizeof(a));
		fprintf(out, "%-12soldest waiting: %s old\n", "", a);
	}
	print_errors(get(dst, "last_errors"), out);
	fprintf(out, "%-12suploaded %.0f (%s), retries %.0f, quarantined %.0f\n", "Totals",
		num_at(dst, "counters.uploaded_instances", &v) ? v : 0,
		bytes_at(dst, "counters.uploaded_bytes", a, sizeof(a)),
		num_at(dst, "counters.retries", &v) ? v : 0,
		num_at(dst, "counters.quarantined", &v) ? v : 0);
}

/* str_at(), with "-" for a member that is absent or "". */
static const char *text_at(const cJSON *o, const char *path, char *buf, size_t size)
{
	const char *s = str_at(o, path, "-", buf, size);

	return *s ? s : "-";
}

void op_ctl_print_queue(const cJSON *q, FILE *out)
{
	static const char *const states[] = { "queued", "sending", "sent", "quarantined" };
	static const char *const head[] = { "STUDY UID", "PATIENT",     "PATIENT ID", "ACCESSION",
					    "DATE",      "DESCRIPTION", "MOD",        "FROM",
					    "INST",      "SIZE",        "STATES",     "TRIES",
					    "RECEIVED",  "LAST ERROR" };
	enum { NCOL = sizeof(head) / sizeof(head[0]) };
	const cJSON *item, *studies = get(q, "studies");
	struct table t = { .ncol = NCOL, .right = (1u << 8) | (1u << 9) | (1u << 11) };
	double page = 1, per_page = 0, total = 0, pages;
	int urgent = 0;

	table_add(&t, head);
	cJSON_ArrayForEach(item, studies)
	{
		char uid[160], name[1024], pid[160], acc[64], date[32], descr[256], mods[160];
		char aet[64], inst[32], size[32], st[256], tries[32], received[64], error[512];
		const char *row[NCOL];
		size_t o = 0;
		double v;

		date[0] = mods[0] = '\0'; /* text_at leaves them when it answers "-" */
		snprintf(uid, sizeof(uid), "%s", cJSON_IsTrue(get(item, "urgent")) ? "*" : "");
		urgent |= cJSON_IsTrue(get(item, "urgent"));
		str_at(item, "study_uid", "-", uid + strlen(uid), sizeof(uid) - strlen(uid));
		if (!cJSON_IsString(get(item, "study_uid")))
			snprintf(uid + strlen(uid), sizeof(uid) - strlen(uid), "-");
		row[0] = uid;
		row[1] = text_at(item, "patient_name", name, sizeof(name));
		row[2] = text_at(item, "patient_id", pid, sizeof(pid));
		row[3] = text_at(item, "accession_number", acc, sizeof(acc));
		row[4] = text_at(item, "study_date", date, sizeof(date));
		/* YYYYMMDD as YYYY-MM-DD */
		if (strlen(date) == 8 && strspn(date, "0123456789") == 8) {
			memmove(date + 8, date + 6, 3);
			memmove(date + 5, date + 4, 2);
			date[4] = date[7] = '-';
		}
		row[5] = text_at(item, "study_description", descr, sizeof(descr));
		/* Modalities: the study's distinct ones, else the one of old. */
		row[6] = text_at(item, "modalities", mods, sizeof(mods));
		if (strcmp(row[6], "-") == 0)
			row[6] = text_at(item, "modality", mods, sizeof(mods));
		for (char *c = mods; *c; c++)
			if (*c == '\\')
				*c = ',';
		row[7] = text_at(item, "calling_aet", aet, sizeof(aet));
		row[8] = "-";
		if (num_at(item, "instances", &v)) {
			snprintf(inst, sizeof(inst), "%.0f", v);
			row[8] = inst;
		}
		row[9] = bytes_at(item, "bytes", size, sizeof(size));
		st[0] = '\0';
		for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
			char p[32];

			snprintf(p, sizeof(p), "states.%s", states[i]);
			if (num_at(item, p, &v) && v > 0 && o < sizeof(st))
				o += (size_t)snprintf(st + o, sizeof(st) - o, "%s%s %.0f",
						      o ? ", " : "", states[i], v);
		}
		row[10] = o ? st : "-";
		row[11] = "-";
		if (num_at(item, "attempts", &v)) {
			snprintf(tries, sizeof(tries), "%.0f", v);
			row[11] = tries;
		}
		row[12] = time_at(item, "received_at", "-", received, sizeof(received));
		row[13] = str_at(item, "last_error", "-", error, sizeof(error));
		table_add(&t, row);
	}
	num_at(q, "page", &page);
	num_at(q, "per_page", &per_page);
	num_at(q, "total", &total);
	if (t.nrow > 1)
		table_print(&t, "", out);
	table_free(&t);
	if (urgent)
		fprintf(out, "* urgent\n");
	pages = per_page > 0 ? fmax(1, ceil(total / per_page)) : 1;
	if (total == 0 && t.nrow <= 1)
		fprintf(out, "no studies\n");
	else if (t.nrow <= 1)
		fprintf(out, "no studies on page %.0f (%.0f %s on %.0f %s)\n", page, total,
			total == 1 ? "study" : "studies", pages, pages == 1 ? "page" : "pages");
	else
		fprintf(out, "page %.0f of %.0f (%.0f %s)\n", page, pages, total,
			total == 1 ? "study" : "studies");
}

/* One link test's steps (its "steps"), as a table. */
static void print_steps(const cJSON *report, const char *indent, FILE *out)
{
	static const char *const head[] = { "STEP", "RESULT", "TIME", "DETAIL" };
	struct table t = { .ncol = 4, .right = 1u << 2 };
	const cJSON *item;

	table_add(&t, head);
	cJSON_ArrayForEach(item, get(report, "steps"))
	{
		char step[64], ms[32], detail[512];
		const char *row[4];
		double v;

		row[0] = str_at(item, "step", "-", step, sizeof(step));
		row[1] = cJSON_IsTrue(get(item, "ok")) ? "ok" : "FAILED";
		row[2] = "-";
		if (num_at(item, "ms", &v)) {
			snprintf(ms, sizeof(ms), "%.0f ms", v);
			row[2] = ms;
		}
		row[3] = str_at(item, "detail", "", detail, sizeof(detail));
		table_add(&t, row);
	}
	table_print(&t, indent, out);
	table_free(&t);
}

int op_ctl_print_test_link(const cJSON *result, FILE *out)
{
	const cJSON *item;
	int ok = cJSON_IsTrue(get(result, "ok"));

	/* Every destination tested: each one's steps (the cloud's among
	 * them), then the verdict. */
	if (!get(result, "destinations"))
		print_steps(result, "", out);
	cJSON_ArrayForEach(item, get(result, "destinations"))
	{
		char name[64];

		fprintf(out, "\n%s:\n", str_at(item, "destination", "-", name, sizeof(name)));
		print_steps(item, "  ", out);
	}
	fprintf(out, "link test: %s\n", ok ? "ok" : "FAILED");
	return ok;
}
