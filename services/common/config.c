/*
 * config: the INI file, key by key (see config.h and README.md).
 *
 * Keys are described by one table; the parser, the validation and
 * --check-config's printout all walk it, so a key cannot be parsed but not
 * printed, or documented in one place and spelled differently in another.
 */
#include "common/config.h"
#include "common/route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>

enum key_type {
	K_STRING,
	K_OPT_STRING, /* may be empty */
	K_AE,
	K_IPV4,
	K_INT,
	K_SIZE,
	K_AE_LIST,
	K_CIDR_LIST,
	K_LOG_LEVEL,
	K_URL,
	K_ENUM, /* one of the key's names: an int (an enum) */
	K_PIN,
	K_RATE,
	K_SCHEDULE,
	K_BOOL,
	K_MATCH_LIST,
	K_LISTEN,
	K_PWHASH,
	K_DURATION,  /* uint32_t seconds: "90s", "30m", "1h", "2d" or plain seconds */
	K_OPT_AE,    /* an AE title or empty */
	K_DEST_NAME, /* [routing] default: a destination's name, or none */
};

struct key {
	const char *section;
	const char *name;
	enum key_type type;
	size_t offset;
	size_t size;              /* K_STRING: buffer size */
	long long min, max;       /* K_INT */
	const char *const *names; /* K_ENUM: the values, NULL-terminated */
};

#define F(member) offsetof(op_config, member), sizeof(((op_config *)0)->member)

static const char *const auth_names[] = { "none", "basic", "bearer", NULL };
static const char *const tsyntax_names[] = { "original", "jpeg-ls", "auto", NULL };
static const char *const commitment_names[] = { "local", "cloud", NULL };

const char *op_config_tsyntax_name(enum op_tsyntax t)
{
	return t >= OP_TS_ORIGINAL && t <= OP_TS_AUTO ? tsyntax_names[t] : "?";
}

const char *op_config_commitment_name(enum op_commitment c)
{
	return c >= OP_COMMIT_LOCAL && c <= OP_COMMIT_CLOUD ? commitment_names[c] : "?";
}

static const struct key keys[] = {
	{ "receiver", "ae_title", K_AE, F(receiver.ae_title), 0, 0, NULL },
	{ "receiver", "bind", K_IPV4, F(receiver.bind), 0, 0, NULL },
	{ "receiver", "port", K_INT, F(receiver.port), 1, 65535, NULL },
	{ "receiver", "allowed_calling_aets", K_AE_LIST, F(receiver.allowed_calling_aets), 0, 0,
	  NULL },
	{ "receiver", "allowed_hosts", K_CIDR_LIST, F(receiver.allowed_hosts), 0, 0, NULL },
	{ "receiver", "max_associations", K_INT, F(receiver.max_associations), 1, 256, NULL },
	{ "receiver", "max_pending_per_host", K_INT, F(receiver.max_pending_per_host), 1, 256,
	  NULL },
	{ "receiver", "max_pdu", K_INT, F(receiver.max_pdu), OP_PDU_MIN, OP_PDU_MAX, NULL },
	{ "receiver", "acse_timeout", K_INT, F(receiver.acse_timeout), 1, 3600, NULL },
	{ "receiver", "dimse_timeout", K_INT, F(receiver.dimse_timeout), 1, 86400, NULL },
	{ "receiver", "allow_query", K_BOOL, F(receiver.allow_query), 0, 0, NULL },
	{ "receiver", "commitment", K_ENUM, F(receiver.commitment), 0, 0, commitment_names },
	{ "receiver", "commitment_timeout", K_DURATION, F(receiver.commitment_timeout), 60,
	  30 * 86400, NULL },
	{ "spool", "dir", K_STRING, F(spool.dir), 0, 0, NULL },
	{ "spool", "max_bytes", K_SIZE, F(spool.max_bytes), 0, 0, NULL },
	{ "spool", "min_free_bytes", K_SIZE, F(spool.min_free_bytes), 0, 0, NULL },
	{ "spool", "keep_sent_bytes", K_SIZE, F(spool.keep_sent_bytes), 0, 0, NULL },
	{ "spool", "keep_sent_days", K_INT, F(spool.keep_sent_days), 0, 3650, NULL },
	{ "cloud", "url", K_URL, F(cloud.url), 0, 0, NULL },
	{ "cloud", "ca_file", K_OPT_STRING, F(cloud.ca_file), 0, 0, NULL },
	{ "cloud", "pin_sha256", K_PIN, F(cloud.pin_sha256), 0, 0, NULL },
	{ "cloud", "client_cert", K_OPT_STRING, F(cloud.client_cert), 0, 0, NULL },
	{ "cloud", "client_key", K_OPT_STRING, F(cloud.client_key), 0, 0, NULL },
	{ "cloud", "auth", K_ENUM, F(cloud.auth), 0, 0, auth_names },
	{ "cloud", "username", K_OPT_STRING, F(cloud.username), 0, 0, NULL },
	{ "cloud", "password_file", K_OPT_STRING, F(cloud.password_file), 0, 0, NULL },
	{ "cloud", "token_file", K_OPT_STRING, F(cloud.token_file), 0, 0, NULL },
	{ "cloud", "connections", K_INT, F(cloud.connections), 1, 16, NULL },
	{ "cloud", "batch_max_instances", K_INT, F(cloud.batch_max_instances), 1, 1000, NULL },
	{ "cloud", "batch_max_bytes", K_SIZE, F(cloud.batch_max_bytes), 0, 0, NULL },
	{ "cloud", "timeout", K_INT, F(cloud.timeout), 1, 3600, NULL },
	{ "cloud", "retry_max_delay", K_INT, F(cloud.retry_max_delay), 1, 86400, NULL },
	{ "cloud", "rate", K_RATE, F(cloud.rate), 0, 0, NULL },
	{ "cloud", "enabled", K_BOOL, F(cloud.enabled), 0, 0, NULL },
	{ "cloud", "transfer_syntax", K_ENUM, F(cloud.transfer_syntax), 0, 0, tsyntax_names },
	{ "uplink", "encode_threads", K_INT, F(uplink.encode_threads), 0, 64, NULL },
	{ "shaping", "rate", K_RATE, F(shaping.rate), 0, 0, NULL },
	{ "shaping", "burst", K_SIZE, F(shaping.burst), 0, 0, NULL },
	{ "shaping", "schedule", K_SCHEDULE, F(shaping.schedule), 0, 0, NULL },
	{ "shaping", "scavenger", K_BOOL, F(shaping.scavenger), 0, 0, NULL },
	{ "priority", "urgent_calling_aets", K_AE_LIST, F(priority.urgent_calling_aets), 0, 0,
	  NULL },
	{ "priority", "trust_priority_from", K_AE_LIST, F(priority.trust_priority_from), 0, 0,
	  NULL },
	{ "priority", "urgent_match", K_MATCH_LIST, F(priority.urgent_match), 0, 0, NULL },
	{ "console", "listen", K_LISTEN, F(console.listen), 0, 0, NULL },
	{ "console", "socket", K_OPT_STRING, F(console.socket), 0, 0, NULL },
	{ "console", "tls_cert", K_OPT_STRING, F(console.tls_cert), 0, 0, NULL },
	{ "console", "tls_key", K_OPT_STRING, F(console.tls_key), 0, 0, NULL },
	{ "console", "password_hash", K_PWHASH, F(console.password_hash), 0, 0, NULL },
	{ "console", "web_root", K_STRING, F(console.web_root), 0, 0, NULL },
	{ "console", "session_ttl", K_INT, F(console.session_ttl), 60, 2592000, NULL },
	{ "console", "backlog_alarm", K_DURATION, F(console.backlog_alarm), 60, 30 * 86400, NULL },
	{ "console", "allowed_hosts", K_CIDR_LIST, F(console.allowed_hosts), 0, 0, NULL },
	{ "log", "level", K_LOG_LEVEL, F(log_level), 0, 0, NULL },
	{ "security", "allow_unencrypted", K_BOOL, F(security.allow_unencrypted), 0, 0, NULL },
	/* Last: --check-config prints the destinations and routes it names
	 * (and the peers) before it (see op_config_print). */
	{ "routing", "default", K_DEST_NAME, F(routing.default_to), 0, 0, NULL },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/*
 * A [destination NAME] of type stow-rs takes the [cloud] keys above, with
 * their offsets moved from op_config to op_cloud_config (cloud_field); one
 * of type dicom takes these, with offsets into op_dicom_dest_config, and
 * the [cloud] keys of dicom_cloud_keys.
 */
#define D(member)                                                                                  \
	offsetof(op_dicom_dest_config, member), sizeof(((op_dicom_dest_config *)0)->member)

static const struct key dicom_keys[] = {
	{ "dicom", "host", K_STRING, D(host), 0, 0, NULL },
	{ "dicom", "port", K_INT, D(port), 1, 65535, NULL },
	{ "dicom", "called_ae", K_AE, D(called_ae), 0, 0, NULL },
	{ "dicom", "calling_ae", K_OPT_AE, D(calling_ae), 0, 0, NULL },
};

#define N_DICOM_KEYS (sizeof(dicom_keys) / sizeof(dicom_keys[0]))

/* The keys of a [peer NAME], with offsets into op_peer_config; all of
 * them required (check_peers). */
#define P(member) offsetof(op_peer_config, member), sizeof(((op_peer_config *)0)->member)

static const struct key peer_keys[] = {
	{ "peer", "ae_title", K_AE, P(ae_title), 0, 0, NULL }, /* first: check_peers */
	{ "peer", "host", K_STRING, P(host), 0, 0, NULL },
	{ "peer", "port", K_INT, P(port), 1, 65535, NULL },
};

#define N_PEER_KEYS (sizeof(peer_keys) / sizeof(peer_keys[0]))

/* The [cloud] keys that mean something to a DICOM peer too. */
static const char *const dicom_cloud_keys[] = { "connections", "timeout", "retry_max_delay",
						"rate",        "enabled", "transfer_syntax" };

static int is_cloud_key(const struct key *k)
{
	return strcmp(k->section, "cloud") == 0;
}

static int dicom_takes(const struct key *k)
{
	for (size_t i = 0; i < sizeof(dicom_cloud_keys) / sizeof(dicom_cloud_keys[0]); i++)
		if (strcmp(k->name, dicom_cloud_keys[i]) == 0)
			return 1;
	return 0;
}

/* Where a [cloud] key k lives in the op_cloud_config c. */
static char *cloud_field(const struct key *k, const op_cloud_config *c)
{
	return (char *)c + (k->offset - offsetof(op_config, cloud));
}

static void cloud_defaults(op_cloud_config *c)
{
	memset(c, 0, sizeof(*c));
	c->auth = OP_AUTH_NONE;
	c->connections = 2;
	c->batch_max_instances = 50;
	c->batch_max_bytes = 64ULL << 20;
	c->timeout = 60;
	c->retry_max_delay = 300;
	c->rate = OP_RATE_UNLIMITED;
	c->enabled = 1;
}

/* Letters, digits, '-' and '_', 1 to OP_NAME_MAX of them. */
static int name_valid(const char *s, size_t n)
{
	if (n == 0 || n > OP_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return 0;
	return 1;
}

void op_config_defaults(op_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->receiver.ae_title, sizeof(cfg->receiver.ae_title), "OUTPOST");
	snprintf(cfg->receiver.bind, sizeof(cfg->receiver.bind), "0.0.0.0");
	cfg->receiver.port = 11112;
	cfg->receiver.max_associations = 16;
	cfg->receiver.max_pending_per_host = 4;
	cfg->receiver.max_pdu = OP_PDU_MAX;
	cfg->receiver.acse_timeout = 30;
	cfg->receiver.dimse_timeout = 60;
	cfg->receiver.allow_query = 1;
	cfg->receiver.commitment = OP_COMMIT_CLOUD;
	cfg->receiver.commitment_timeout = 86400;
	snprintf(cfg->spool.dir, sizeof(cfg->spool.dir), "var/spool");
	cfg->spool.max_bytes = 0;
	cfg->spool.min_free_bytes = 512ULL << 20;
	cfg->spool.keep_sent_bytes = 1ULL << 30;
	cfg->spool.keep_sent_days = 0;
	cloud_defaults(&cfg->cloud);
	cfg->shaping.rate = OP_RATE_UNLIMITED;
	snprintf(cfg->console.listen, sizeof(cfg->console.listen), "127.0.0.1:8080");
	snprintf(cfg->console.listen_addr, sizeof(cfg->console.listen_addr), "127.0.0.1");
	cfg->console.listen_port = 8080;
	snprintf(cfg->console.socket, sizeof(cfg->console.socket), "var/outpost.sock");
	snprintf(cfg->console.web_root, sizeof(cfg->console.web_root), "%s", OP_WEB_ROOT);
	cfg->console.session_ttl = 8 * 3600;
	cfg->console.backlog_alarm = 3600;
	cfg->log_level = OP_LOG_INFO;
	snprintf(cfg->routing.default_to, sizeof(cfg->routing.default_to), "cloud");
}

/* --- parsing ------------------------------------------------------------- */

/* The kind of section the keys that follow belong to. */
enum section { SEC_OTHER, SEC_DEST, SEC_ROUTE, SEC_PEER };

struct parse {
	op_config *cfg;
	const char *path;
	FILE *file;
	int line;
	int mid_line;   /* the last chunk read did not end the line */
	int read_errno; /* reading the file failed (e.g. EISDIR) */
	char *err;
	size_t errlen;
	int failed;
	int lines[64]; /* the line each key was set on (0: default) */
	/* The section of the keys that follow: on_key's section name is cut
	 * by inih at 49 characters, so the header line decides. */
	enum section sec;
	int cur; /* SEC_DEST, SEC_ROUTE, SEC_PEER: the index of the section */
	struct {
		int type_line;      /* 0: no type key */
		int lines[64];      /* as lines, by index in keys */
		int dicom_lines[8]; /* by index in dicom_keys */
	} dest[OP_DEST_MAX];
	struct {
		int header_line;
		int to_line;
	} route[OP_ROUTE_MAX];
	int peer_lines[OP_PEER_MAX][N_PEER_KEYS]; /* by index in peer_keys */
};

static int fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parse *p, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->path, p->line, msg);
	p->failed = 1;
	return 0; /* tells inih to stop */
}

/* Splits a list on any of seps, trims blanks around each item and calls fn
 * for each non-empty one. */
static int each_item(const char *value, const char *seps, int (*fn)(void *, const char *),
		     void *arg)
{
	char buf[4096];
	char *save = NULL, *item, *end;
	int rc;

	if (strlen(value) >= sizeof(buf))
		return -E2BIG;
	snprintf(buf, sizeof(buf), "%s", value);
	for (item = strtok_r(buf, seps, &save); item; item = strtok_r(NULL, seps, &save)) {
		while (isspace((unsigned char)*item))
			item++;
		end = item + strlen(item);
		while (end > item && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (!*item)
			continue;
		rc = fn(arg, item);
		if (rc)
			return rc;
	}
	return 0;
}

struct list_ctx {
	struct parse *p;
	const char *key;
	op_config *cfg;
	void *field;
};

static int add_ae(void *arg, const char *item)
{
	struct list_ctx *l = arg;
	op_ae_list *list = l->field;

	if (!op_ae_title_valid(item)) {
		fail(l->p, "%s: '%s' is not an AE title (1-16 characters, no backslash)", l->key,
		     item);
		return -EINVAL;
	}
	if (list->n == OP_LIST_MAX) {
		fail(l->p, "%s: more than %d entries", l->key, OP_LIST_MAX);
		return -E2BIG;
	}
	snprintf(list->aet[list->n++], OP_AE_MAX + 1, "%s", item);
	return 0;
}

/* A K_CIDR_LIST field is an op_cidr[OP_LIST_MAX] followed by its count
 * ([receiver] and [console] allowed_hosts). */
_Static_assert(offsetof(op_receiver_config, n_allowed_hosts) ==
		       offsetof(op_receiver_config, allowed_hosts) + sizeof(op_cidr) * OP_LIST_MAX,
	       "[receiver] allowed_hosts: the count follows the array");
_Static_assert(offsetof(op_console_config, n_allowed_hosts) ==
		       offsetof(op_console_config, allowed_hosts) + sizeof(op_cidr) * OP_LIST_MAX,
	       "[console] allowed_hosts: the count follows the array");

static int *cidr_count(const void *field)
{
	return (int *)((char *)field + sizeof(op_cidr) * OP_LIST_MAX);
}

static int add_cidr(void *arg, const char *item)
{
	struct list_ctx *l = arg;
	op_cidr *nets = l->field;
	int *n = cidr_count(l->field);

	if (*n == OP_LIST_MAX) {
		fail(l->p, "%s: more than %d entries", l->key, OP_LIST_MAX);
		return -E2BIG;
	}
	if (op_cidr_parse(item, &nets[*n]) < 0) {
		fail(l->p, "%s: '%s' is not an IPv4 address or network (e.g. 10.1.2.0/24)", l->key,
		     item);
		return -EINVAL;
	}
	(*n)++;
	return 0;
}

/* "Keyword=Value": the keyword is checked against DICOM's dictionary by the
 * receiver, which has it; here only the shape. */
static int check_match(void *arg, const char *item)
{
	struct list_ctx *l = arg;
	const char *eq = strchr(item, '=');

	if (!eq || eq == item || !eq[1]) {
		fail(l->p, "%s: '%s' is not Keyword=Value (e.g. RequestedProcedurePriority=STAT)",
		     l->key, item);
		return -EINVAL;
	}
	for (const char *c = item; c < eq; c++) {
		if (!isalnum((unsigned char)*c)) {
			fail(l->p, "%s: '%.*s' is not an attribute keyword", l->key,
			     (int)(eq - item), item);
			return -EINVAL;
		}
	}
	return 0;
}

/* "90s", "30m", "1h", "2d" or plain seconds -> seconds in [min, max]. */
static int parse_duration(const char *value, long long min, long long max, long long *out)
{
	static const struct {
		char unit;
		long long seconds;
	} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 } };
	char num[32];
	size_t n = strlen(value);
	long long v, mult = 1;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, value, n + 1);
	/* One unit at most, at the end. */
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (num[n - 1] == units[i].unit) {
			mult = units[i].seconds;
			num[--n] = '\0';
			break;
		}
	if (op_parse_int(num, 0, max, &v) < 0 || v > max / mult || v * mult < min)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

/* Sets the key k, whose field is at field, from value. Returns 1, or 0 for
 * inih after fail(). */
static int set_key(struct parse *p, const struct key *k, const char *value, char *field)
{
	struct list_ctx l = { p, k->name, p->cfg, field };
	struct in_addr a;
	uint64_t size;
	long long v;

	switch (k->type) {
	case K_STRING:
	case K_OPT_STRING:
		if (!*value && k->type == K_STRING)
			return fail(p, "%s must not be empty", k->name);
		if (strlen(value) >= k->size)
			return fail(p, "%s is too long (at most %zu characters)", k->name,
				    k->size - 1);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_OPT_AE:
	case K_AE:
		if ((*value || k->type == K_AE) && !op_ae_title_valid(value))
			return fail(p,
				    "%s: '%s' is not an AE title (1-16 characters, no backslash)",
				    k->name, value);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_IPV4:
		if (inet_pton(AF_INET, value, &a) != 1)
			return fail(p, "%s: '%s' is not an IPv4 address", k->name, value);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_INT:
		if (op_parse_int(value, k->min, k->max, &v) < 0)
			return fail(p, "%s: '%s' is not a whole number from %lld to %lld", k->name,
				    value, k->min, k->max);
		if (k->size == sizeof(uint16_t))
			*(uint16_t *)field = (uint16_t)v;
		else if (k->size == sizeof(uint32_t))
			*(uint32_t *)field = (uint32_t)v;
		else
			return fail(p, "%s: internal error: bad field size", k->name);
		return 1;
	case K_DURATION:
		if (parse_duration(value, k->min, k->max, &v) < 0)
			return fail(p,
				    "%s: '%s' is not a duration from %llds to %llds (a number "
				    "with s, m, h or d; no unit: seconds)",
				    k->name, value, k->min, k->max);
		*(uint32_t *)field = (uint32_t)v;
		return 1;
	case K_SIZE:
		if (op_parse_size(value, &size) < 0)
			return fail(p,
				    "%s: '%s' is not a size (a number with an optional k, M, G "
				    "or T suffix)",
				    k->name, value);
		*(uint64_t *)field = size;
		return 1;
	case K_AE_LIST:
		((op_ae_list *)field)->n = 0;
		/* AE titles may contain spaces: commas alone separate them. */
		return each_item(value, ",", add_ae, &l) == 0;
	case K_CIDR_LIST:
		*cidr_count(field) = 0;
		return each_item(value, ", \t", add_cidr, &l) == 0;
	case K_URL: {
		op_cloud_config *c = (op_cloud_config *)(field - offsetof(op_cloud_config, url));
		const char *why = "";

		if (*value && op_url_parse(value, c->host, sizeof(c->host), &c->port, c->path,
					   sizeof(c->path), &why) < 0)
			return fail(p, "%s: '%s' %s", k->name, value, why);
		if (strlen(value) >= k->size)
			return fail(p, "%s is too long", k->name);
		snprintf(field, k->size, "%s", value);
		return 1;
	}
	case K_ENUM: {
		char all[128] = "";

		for (int i = 0; k->names[i]; i++) {
			if (strcmp(value, k->names[i]) == 0) {
				*(int *)field = i;
				return 1;
			}
			snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s",
				 i ? ", " : "", k->names[i]);
		}
		return fail(p, "%s: '%s' is not one of %s", k->name, value, all);
	}
	case K_PIN: {
		const char *b64 = strncmp(value, "sha256//", 8) == 0 ? value + 8 : value;
		size_t n = strlen(b64);

		/* 32 bytes in base64: 43 characters and one '='. */
		if (*value && (n != 44 || b64[43] != '=' ||
			       strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "abcdefghijklmnopqrstuvwxyz"
					   "0123456789+/") != 43))
			return fail(
				p,
				"%s: '%s' is not a base64 SHA-256 (44 characters, as printed by "
				"openssl dgst -sha256 -binary | base64)",
				k->name, value);
		snprintf(field, k->size, "%s", b64);
		return 1;
	}
	case K_RATE:
		if (op_rate_parse(value, (uint64_t *)field) < 0)
			return fail(p,
				    "%s: '%s' is not a rate (bits per second with k, M or G, e.g. "
				    "8Mbit; unlimited; 0 pauses)",
				    k->name, value);
		return 1;
	case K_SCHEDULE: {
		char why[256];

		if (strlen(value) >= k->size)
			return fail(p, "%s is too long", k->name);
		if (op_schedule_parse(value, &p->cfg->shaping.parsed, why, sizeof(why)) < 0)
			return fail(p, "%s: %s", k->name, why);
		snprintf(field, k->size, "%s", value);
		return 1;
	}
	case K_BOOL:
		if (strcmp(value, "on") == 0 || strcmp(value, "yes") == 0 ||
		    strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
			*(int *)field = 1;
		else if (strcmp(value, "off") == 0 || strcmp(value, "no") == 0 ||
			 strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
			*(int *)field = 0;
		else
			return fail(p, "%s: '%s' is not on or off", k->name, value);
		return 1;
	case K_MATCH_LIST:
		if (strlen(value) >= k->size)
			return fail(p, "%s is too long", k->name);
		if (each_item(value, ",", check_match, &l) != 0)
			return 0;
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_LISTEN:
		if (!*value) {
			*field = '\0';
			return 1;
		}
		if (op_listen_parse(value, p->cfg->console.listen_addr,
				    &p->cfg->console.listen_port) < 0 ||
		    strlen(value) >= k->size)
			return fail(p, "%s: '%s' is not address:port (e.g. 0.0.0.0:8080)", k->name,
				    value);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_PWHASH:
		if (*value && strncmp(value, "$argon2", 7) != 0)
			return fail(p,
				    "%s is not a password hash: set the password with outpostctl "
				    "passwd",
				    k->name);
		if (strlen(value) >= k->size)
			return fail(p, "%s is too long", k->name);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_DEST_NAME:
		/* Whether the destination exists is known at the end of the
		 * file (check_routing). */
		if (strcmp(value, "none") == 0)
			value = "";
		else if (!name_valid(value, strlen(value)))
			return fail(p,
				    "%s: '%s' is not a destination name (cloud, a [destination "
				    "NAME] or none)",
				    k->name, value);
		snprintf(field, k->size, "%s", value);
		return 1;
	case K_LOG_LEVEL:
		if (op_log_level_parse(value, (enum op_log_level *)field) < 0)
			return fail(p, "%s: '%s' is not one of debug, info, warn, error", k->name,
				    value);
		return 1;
	}
	return fail(p, "%s: internal error: unknown key type", k->name);
}

/* A key of a [destination NAME] section. Whether it suits the type is
 * checked at the end of the file (check_destinations): type may come last. */
static int dest_key(struct parse *p, const char *name, const char *value)
{
	op_destination_config *d = &p->cfg->destinations[p->cur];

	if (strcmp(name, "type") == 0) {
		if (strcmp(value, "stow-rs") == 0)
			d->type = OP_DEST_STOW;
		else if (strcmp(value, "dicom") == 0)
			d->type = OP_DEST_DICOM;
		else
			return fail(p, "type: '%s' is not stow-rs or dicom", value);
		p->dest[p->cur].type_line = p->line;
		return 1;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		if (is_cloud_key(&keys[i]) && strcmp(keys[i].name, name) == 0) {
			p->dest[p->cur].lines[i] = p->line;
			return set_key(p, &keys[i], value, cloud_field(&keys[i], &d->cloud));
		}
	}
	for (size_t i = 0; i < N_DICOM_KEYS; i++) {
		if (strcmp(dicom_keys[i].name, name) == 0) {
			p->dest[p->cur].dicom_lines[i] = p->line;
			return set_key(p, &dicom_keys[i], value,
				       (char *)&d->dicom + dicom_keys[i].offset);
		}
	}
	return fail(p, "unknown key '%s' in [destination %s]", name, d->name);
}

struct to_ctx {
	struct parse *p;
	op_route_config *r;
};

static int add_to(void *arg, const char *item)
{
	struct to_ctx *t = arg;

	if (!name_valid(item, strlen(item))) {
		fail(t->p, "to: '%s' is not a destination name (letters, digits, - and _)", item);
		return -EINVAL;
	}
	for (int i = 0; i < t->r->n_to; i++) {
		if (strcmp(t->r->to[i], item) == 0) {
			fail(t->p, "to: '%s' twice", item);
			return -EINVAL;
		}
	}
	if (t->r->n_to == OP_DEST_MAX + 1) {
		fail(t->p, "to: more than %d destinations", OP_DEST_MAX + 1);
		return -E2BIG;
	}
	snprintf(t->r->to[t->r->n_to++], OP_NAME_MAX + 1, "%s", item);
	return 0;
}

/* A key of a [route NAME] section. */
static int route_key(struct parse *p, const char *name, const char *value)
{
	op_route_config *r = &p->cfg->routes[p->cur];

	if (strcmp(name, "when") == 0) {
		op_route_cond conds[OP_ROUTE_CONDS_MAX];
		char why[400];
		int n;

		if (strlen(value) >= sizeof(r->when))
			return fail(p, "when is too long (at most %zu characters)",
				    sizeof(r->when) - 1);
		if (op_route_parse_when(value, conds, OP_ROUTE_CONDS_MAX, &n, why, sizeof(why)) < 0)
			return fail(p, "when: %s", why);
		snprintf(r->when, sizeof(r->when), "%s", value);
		r->line = p->line;
		return 1;
	}
	if (strcmp(name, "to") == 0) {
		struct to_ctx t = { p, r };

		r->n_to = 0;
		p->route[p->cur].to_line = p->line;
		if (each_item(value, ",", add_to, &t) != 0)
			return p->failed ? 0 : fail(p, "to is too long");
		if (r->n_to == 0)
			return fail(p, "to: no destination (cloud, or a [destination NAME])");
		return 1;
	}
	if (strcmp(name, "urgent") == 0) {
		if (strcmp(value, "yes") == 0)
			r->urgent = 1;
		else if (strcmp(value, "no") == 0)
			r->urgent = 0;
		else
			return fail(p, "urgent: '%s' is not yes or no", value);
		return 1;
	}
	return fail(p, "unknown key '%s' in [route %s]", name, r->name);
}

/* A key of a [peer NAME] section. Whether all are there, and the AE title
 * unique, is checked at the end of the file (check_peers). */
static int peer_key(struct parse *p, const char *name, const char *value)
{
	op_peer_config *pe = &p->cfg->peers[p->cur];

	for (size_t i = 0; i < N_PEER_KEYS; i++) {
		if (strcmp(peer_keys[i].name, name) == 0) {
			p->peer_lines[p->cur][i] = p->line;
			return set_key(p, &peer_keys[i], value, (char *)pe + peer_keys[i].offset);
		}
	}
	return fail(p, "unknown key '%s' in [peer %s]", name, pe->name);
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	int known_section = 0;

	if (p->sec == SEC_DEST)
		return dest_key(p, name, value);
	if (p->sec == SEC_ROUTE)
		return route_key(p, name, value);
	if (p->sec == SEC_PEER)
		return peer_key(p, name, value);

	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		known_section = 1;
		if (strcmp(keys[i].name, name) == 0) {
			p->lines[i] = p->line;
			return set_key(p, &keys[i], value, (char *)p->cfg + keys[i].offset);
		}
	}
	if (!*section)
		return fail(p, "'%s' is outside any [section]", name);
	if (!known_section)
		return fail(p, "unknown section [%s]", section);
	return fail(p, "unknown key '%s' in [%s]", name, section);
}

/*
 * Section headers are checked here, not in on_key: inih reports a section
 * only through its keys, so an empty unknown section would pass and a
 * non-empty one would be reported at its first key's line.
 */
/* A [peer NAME] header whose name is valid. */
static void begin_peer(struct parse *p, const char *name, size_t n)
{
	op_config *c = p->cfg;
	op_peer_config *pe;

	for (unsigned i = 0; i < c->n_peers; i++) {
		if (strlen(c->peers[i].name) == n && memcmp(c->peers[i].name, name, n) == 0) {
			fail(p, "[peer %.*s] again (first on line %u)", (int)n, name,
			     c->peers[i].line);
			return;
		}
	}
	if (c->n_peers == OP_PEER_MAX) {
		fail(p, "more than %d [peer NAME] sections", OP_PEER_MAX);
		return;
	}
	p->cur = (int)c->n_peers++;
	pe = &c->peers[p->cur];
	memset(pe, 0, sizeof(*pe));
	snprintf(pe->name, sizeof(pe->name), "%.*s", (int)n, name);
	pe->line = (unsigned)p->line;
	p->sec = SEC_PEER;
}

/* A [destination NAME], [route NAME] or [peer NAME] header (sec says
 * which): name[0..n). */
static void begin_named(struct parse *p, enum section sec, const char *name, size_t n)
{
	const char *what = sec == SEC_DEST ? "destination" : sec == SEC_ROUTE ? "route" : "peer";
	op_config *c = p->cfg;

	if (n == 0) {
		fail(p, "[%s] needs a name: [%s NAME]", what, what);
		return;
	}
	if (!name_valid(name, n)) {
		fail(p, "[%s %.*s]: a name is 1-%d letters, digits, - and _", what, (int)n, name,
		     OP_NAME_MAX);
		return;
	}
	if (sec == SEC_PEER) {
		begin_peer(p, name, n);
	} else if (sec == SEC_DEST) {
		op_destination_config *d;

		if (n == 5 && memcmp(name, "cloud", 5) == 0) {
			fail(p, "[destination cloud]: cloud is the [cloud] section's name");
			return;
		}
		for (int i = 0; i < c->n_destinations; i++) {
			if (strlen(c->destinations[i].name) == n &&
			    memcmp(c->destinations[i].name, name, n) == 0) {
				fail(p, "[destination %.*s] again (first on line %d)", (int)n, name,
				     c->destinations[i].line);
				return;
			}
		}
		if (c->n_destinations == OP_DEST_MAX) {
			fail(p, "more than %d [destination NAME] sections", OP_DEST_MAX);
			return;
		}
		p->cur = c->n_destinations++;
		d = &c->destinations[p->cur];
		memset(d, 0, sizeof(*d));
		snprintf(d->name, sizeof(d->name), "%.*s", (int)n, name);
		cloud_defaults(&d->cloud);
		d->line = p->line;
		p->sec = SEC_DEST;
	} else {
		op_route_config *r;

		for (int i = 0; i < c->n_routes; i++) {
			if (strlen(c->routes[i].name) == n &&
			    memcmp(c->routes[i].name, name, n) == 0) {
				fail(p, "[route %.*s] again (first on line %d)", (int)n, name,
				     p->route[i].header_line);
				return;
			}
		}
		if (c->n_routes == OP_ROUTE_MAX) {
			fail(p, "more than %d [route NAME] sections", OP_ROUTE_MAX);
			return;
		}
		p->cur = c->n_routes++;
		r = &c->routes[p->cur];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%.*s", (int)n, name);
		p->route[p->cur].header_line = p->line;
		p->sec = SEC_ROUTE;
	}
}

/* Does the header text s[0..n) start with word and then blanks (or end)?
 * Sets *name to what follows the blanks. */
static int named_header(const char *s, size_t n, const char *word, const char **name)
{
	size_t w = strlen(word);

	if (n < w || memcmp(s, word, w) != 0 || (n > w && s[w] != ' ' && s[w] != '\t'))
		return 0;
	for (*name = s + w; *name < s + n && (**name == ' ' || **name == '\t'); (*name)++)
		;
	return 1;
}

static void check_section_line(struct parse *p, const char *s)
{
	const char *end, *name;
	int known = 0;

	while (isspace((unsigned char)*s))
		s++;
	if (*s != '[')
		return;
	s++;
	end = strchr(s, ']');
	if (!end) {
		fail(p, "syntax error (section header without ']')");
		return;
	}
	p->sec = SEC_OTHER;
	if (named_header(s, (size_t)(end - s), "destination", &name)) {
		begin_named(p, SEC_DEST, name, (size_t)(end - name));
		return;
	}
	if (named_header(s, (size_t)(end - s), "route", &name)) {
		begin_named(p, SEC_ROUTE, name, (size_t)(end - name));
		return;
	}
	if (named_header(s, (size_t)(end - s), "peer", &name)) {
		begin_named(p, SEC_PEER, name, (size_t)(end - name));
		return;
	}
	for (size_t i = 0; i < N_KEYS && !known; i++)
		known = strlen(keys[i].section) == (size_t)(end - s) &&
			strncmp(keys[i].section, s, (size_t)(end - s)) == 0;
	if (!known)
		fail(p, "unknown section [%.*s]", (int)(end - s), s);
}

/* Fails naming the line key was set on (0 when it kept its default). */
static int fail_at(struct parse *p, const char *key, const char *msg)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, key) == 0)
			p->line = p->lines[i];
	fail(p, "%s", msg);
	return -EINVAL;
}

/* As fail_at for a [cloud] key, with the lines of [cloud] or of a
 * destination (by index in keys); at the section's line fallback when the
 * key kept its default. */
static int fail_at_cloud(struct parse *p, const int *lines, int fallback, const char *key,
			 const char *msg)
{
	p->line = fallback;
	for (size_t i = 0; i < N_KEYS; i++)
		if (is_cloud_key(&keys[i]) && strcmp(keys[i].name, key) == 0 && lines[i])
			p->line = lines[i];
	fail(p, "%s", msg);
	return -EINVAL;
}

/* The [cloud] keys that only make sense together, in [cloud] or a stow-rs
 * destination. */
static int check_cloud(struct parse *p, const op_cloud_config *c, const int *lines, int fallback)
{
	if (c->auth == OP_AUTH_BASIC && (!*c->username || !*c->password_file))
		return fail_at_cloud(p, lines, fallback, "auth",
				     "auth = basic needs username and password_file");
	if (c->auth == OP_AUTH_BEARER && !*c->token_file)
		return fail_at_cloud(p, lines, fallback, "auth", "auth = bearer needs token_file");
	if (!*c->client_cert != !*c->client_key)
		return fail_at_cloud(p, lines, fallback,
				     *c->client_cert ? "client_cert" : "client_key",
				     "client_cert and client_key go together");
	return 0;
}

/* A [destination NAME]: its type, the keys of its type only, the keys its
 * type needs; then the defaults that depend on the type. */
static int check_destination(struct parse *p, int i)
{
	op_destination_config *d = &p->cfg->destinations[i];
	const char *type = d->type == OP_DEST_DICOM ? "dicom" : "stow-rs";
	const char *bad = NULL;
	int bad_line = 0;

	p->line = d->line;
	if (!p->dest[i].type_line) {
		fail(p, "[destination %s] needs type = stow-rs or dicom", d->name);
		return -EINVAL;
	}
	/* The first key, in file order, that the type does not take. */
	for (size_t k = 0; k < N_KEYS; k++) {
		int line = p->dest[i].lines[k];

		if (line && d->type == OP_DEST_DICOM && !dicom_takes(&keys[k]) &&
		    (!bad_line || line < bad_line)) {
			bad = keys[k].name;
			bad_line = line;
		}
	}
	for (size_t k = 0; k < N_DICOM_KEYS; k++) {
		int line = p->dest[i].dicom_lines[k];

		if (line && d->type == OP_DEST_STOW && (!bad_line || line < bad_line)) {
			bad = dicom_keys[k].name;
			bad_line = line;
		}
	}
	if (bad) {
		p->line = bad_line;
		fail(p, "%s is not a key of a destination of type %s", bad, type);
		return -EINVAL;
	}
	if (d->type == OP_DEST_STOW) {
		if (!*d->cloud.url) {
			fail(p, "[destination %s] (type = stow-rs) needs url", d->name);
			return -EINVAL;
		}
		return check_cloud(p, &d->cloud, p->dest[i].lines, d->line);
	}
	for (size_t k = 0; k < 3; k++) { /* host, port, called_ae */
		if (!p->dest[i].dicom_lines[k]) {
			fail(p, "[destination %s] (type = dicom) needs %s", d->name,
			     dicom_keys[k].name);
			return -EINVAL;
		}
	}
	/* One association at a time is what a PACS or a workstation
	 * expects unless told otherwise. */
	for (size_t k = 0; k < N_KEYS; k++)
		if (is_cloud_key(&keys[k]) && strcmp(keys[k].name, "connections") == 0 &&
		    !p->dest[i].lines[k])
			d->cloud.connections = 1;
	if (!*d->dicom.calling_ae)
		memcpy(d->dicom.calling_ae, p->cfg->receiver.ae_title,
		       sizeof(d->dicom.calling_ae)); /* same size, terminated */
	return 0;
}

static int dest_exists(const op_config *c, const char *name)
{
	if (strcmp(name, "cloud") == 0)
		return 1;
	for (int i = 0; i < c->n_destinations; i++)
		if (strcmp(c->destinations[i].name, name) == 0)
			return 1;
	return 0;
}

/* Destinations, routes and [routing], once the whole file is read: a
 * route may name a destination defined below it. */
static int check_routing(struct parse *p)
{
	op_config *c = p->cfg;
	int rc;

	for (int i = 0; i < c->n_destinations; i++) {
		rc = check_destination(p, i);
		if (rc)
			return rc;
	}
	for (int i = 0; i < c->n_routes; i++) {
		op_route_config *r = &c->routes[i];

		p->line = p->route[i].header_line;
		if (!*r->when || !r->n_to) {
			fail(p, "[route %s] needs %s", r->name, !*r->when ? "when" : "to");
			return -EINVAL;
		}
		for (int t = 0; t < r->n_to; t++) {
			if (!dest_exists(c, r->to[t])) {
				p->line = p->route[i].to_line;
				fail(p,
				     "to: no destination named '%s' (cloud, or a [destination "
				     "NAME])",
				     r->to[t]);
				return -EINVAL;
			}
		}
	}
	if (*c->routing.default_to && !dest_exists(c, c->routing.default_to)) {
		for (size_t i = 0; i < N_KEYS; i++)
			if (strcmp(keys[i].section, "routing") == 0)
				p->line = p->lines[i];
		fail(p, "default: no destination named '%s' (cloud, a [destination NAME] or none)",
		     c->routing.default_to);
		return -EINVAL;
	}
	return 0;
}

/* Every [peer NAME] has all its keys, and no two share an AE title: a
 * C-MOVE destination or a commitment report must find one node. */
static int check_peers(struct parse *p)
{
	const op_config *c = p->cfg;

	for (unsigned i = 0; i < c->n_peers; i++) {
		const op_peer_config *pe = &c->peers[i];

		for (size_t k = 0; k < N_PEER_KEYS; k++) {
			if (!p->peer_lines[i][k]) {
				p->line = (int)pe->line;
				fail(p, "[peer %s] needs %s", pe->name, peer_keys[k].name);
				return -EINVAL;
			}
		}
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(c->peers[j].ae_title, pe->ae_title) == 0) {
				p->line = p->peer_lines[i][0]; /* ae_title */
				fail(p, "ae_title: '%s' is also [peer %s]'s (line %d)",
				     pe->ae_title, c->peers[j].name, p->peer_lines[j][0]);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Keys that only make sense together. */
static int check_together(struct parse *p)
{
	int rc = check_cloud(p, &p->cfg->cloud, p->lines, 0);

	if (rc)
		return rc;
	if (!*p->cfg->console.tls_cert != !*p->cfg->console.tls_key)
		return fail_at(p, *p->cfg->console.tls_cert ? "tls_cert" : "tls_key",
			       "tls_cert and tls_key go together");
	/* A password or a session cookie must not cross the LAN in clear. */
	if (*p->cfg->console.listen && !*p->cfg->console.tls_cert &&
	    strncmp(p->cfg->console.listen_addr, "127.", 4) != 0)
		return fail_at(p, "listen",
			       "listen: plain HTTP is served on loopback only (127.0.0.0/8); "
			       "set tls_cert and tls_key, or listen on 127.0.0.1");
	rc = check_routing(p);
	return rc ? rc : check_peers(p);
}

/* An ini_reader that counts lines, so errors found by on_key name the line. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s = fgets(str, num, p->file);

	if (!s) {
		if (ferror(p->file))
			p->read_errno = errno ? errno : EIO;
		return NULL;
	}
	if (!p->mid_line) {
		p->line++;
		check_section_line(p, s);
	}
	p->mid_line = s[strlen(s) - 1] != '\n';
	return p->failed ? NULL : s;
}

int op_config_resolve_path(const char *config_path, const char *value, char *out, size_t size)
{
	const char *slash = config_path ? strrchr(config_path, '/') : NULL;
	int n;

	if (!*value || *value == '/' || !slash)
		n = snprintf(out, size, "%s", value);
	else
		n = snprintf(out, size, "%.*s/%s", (int)(slash - config_path), config_path, value);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* A relative [console] socket set in the file is the file's neighbour,
 * whatever the working directory of the program reading it (a service,
 * outpostctl): both must reach the same socket. The default stays
 * relative to the working directory (the development tree's var/). */
static int resolve_socket(struct parse *p)
{
	char *sock = p->cfg->console.socket, resolved[sizeof(p->cfg->console.socket)];

	for (size_t i = 0; i < N_KEYS; i++) {
		if (keys[i].offset != offsetof(op_config, console.socket) || !p->lines[i])
			continue;
		if (op_config_resolve_path(p->path, sock, resolved, sizeof(resolved)) < 0) {
			p->line = p->lines[i];
			fail(p, "socket: '%s' beside %s is longer than %zu bytes", sock, p->path,
			     sizeof(resolved) - 1);
			return -EINVAL;
		}
		memcpy(sock, resolved, sizeof(resolved));
	}
	return 0;
}

int op_config_load(op_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse p;
	int rc;

	_Static_assert(N_KEYS <= sizeof(p.lines) / sizeof(p.lines[0]), "struct parse: lines");
	_Static_assert(N_DICOM_KEYS <=
			       sizeof(p.dest[0].dicom_lines) / sizeof(p.dest[0].dicom_lines[0]),
		       "struct parse: dicom_lines");
	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	op_config_defaults(cfg);
	p.file = fopen(path, "re");
	if (!p.file) {
		rc = -errno;
		snprintf(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
		return rc;
	}
	/* Debian's libinih is configured at run time: lines of any length on
	 * the heap (its default is a 200-byte stack buffer that splits longer
	 * lines), no continuation lines (an indented "port = 104" must be a
	 * key, not part of the previous value), stop at the first error. The
	 * settings are process-wide; every caller wants the same. */
	ini_use_stack = false;
	ini_allow_realloc = true;
	ini_max_line = 1 << 20;
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	/* A schedule separates its windows with ';': only " #" starts an
	 * inline comment. */
	ini_inline_comment_prefixes = (char *)"#";
	rc = ini_parse_stream(read_line, &p, on_key, &p);
	fclose(p.file);
	if (p.failed)
		return -EINVAL;
	if (p.read_errno) {
		snprintf(err, errlen, "%s:0: cannot read: %s", path, strerror(p.read_errno));
		return -p.read_errno;
	}
	if (rc != 0) {
		p.line = rc > 0 ? rc : p.line;
		fail(&p, "syntax error (expected [section] or key = value)");
		return -EINVAL;
	}
	if ((rc = resolve_socket(&p)) < 0)
		return rc;
	return check_together(&p);
}

/* --- looking up ---------------------------------------------------------- */

/* Is ae_title the n characters at aet? */
static int same_aet(const char *ae_title, const char *aet, size_t n)
{
	return strlen(ae_title) == n && memcmp(ae_title, aet, n) == 0;
}

int op_config_peer_by_aet(const op_config *c, const char *aet, op_peer_config *out)
{
	size_t n = strlen(aet);

	_Static_assert(sizeof(out->name) == sizeof(c->destinations[0].name), "peer name");
	_Static_assert(sizeof(out->ae_title) == sizeof(c->destinations[0].dicom.called_ae),
		       "peer ae_title");
	_Static_assert(sizeof(out->host) == sizeof(c->destinations[0].dicom.host), "peer host");
	/* DICOM pads an AE title to even length, or to 16, with spaces. */
	while (n > 0 && aet[n - 1] == ' ')
		n--;
	for (unsigned i = 0; i < c->n_peers; i++) {
		if (same_aet(c->peers[i].ae_title, aet, n)) {
			if (out)
				*out = c->peers[i];
			return 0;
		}
	}
	for (int i = 0; i < c->n_destinations; i++) {
		const op_destination_config *d = &c->destinations[i];

		if (d->type != OP_DEST_DICOM || !same_aet(d->dicom.called_ae, aet, n))
			continue;
		if (out) {
			memset(out, 0, sizeof(*out));
			memcpy(out->name, d->name, sizeof(out->name));
			memcpy(out->ae_title, d->dicom.called_ae, sizeof(out->ae_title));
			memcpy(out->host, d->dicom.host, sizeof(out->host));
			out->port = d->dicom.port;
			out->line = (unsigned)d->line;
		}
		return 0;
	}
	return -ENOENT;
}

/* --- printing ------------------------------------------------------------ */

static void print_key(const struct key *k, const char *field, FILE *out)
{
	static const char *const levels[] = { "debug", "info", "warn", "error" };
	struct in_addr a;
	char ip[INET_ADDRSTRLEN];

	fprintf(out, "%s = ", k->name);
	switch (k->type) {
	case K_STRING:
	case K_OPT_STRING:
		/* The socket as the services use it: a relative default is the
		 * working directory's (a relative path set in a file was made
		 * the file's neighbour when loaded), so the printout read again
		 * means the same. */
		if (k->offset == offsetof(op_config, console.socket) && *field && *field != '/') {
			char cwd[PATH_MAX];

			if (getcwd(cwd, sizeof(cwd))) {
				fprintf(out, "%s/%s", cwd, field);
				break;
			}
		}
		fputs(field, out);
		break;
	case K_AE:
	case K_OPT_AE:
	case K_IPV4:
	case K_URL:
	case K_LISTEN:
	case K_PWHASH:
	case K_PIN: fputs(field, out); break;
	case K_ENUM: fputs(k->names[*(const int *)field], out); break;
	case K_SCHEDULE:
	case K_MATCH_LIST: fputs(field, out); break;
	case K_BOOL: fputs(*(const int *)field ? "on" : "off", out); break;
	case K_RATE: {
		char rate[32];

		op_rate_format(*(const uint64_t *)field, rate, sizeof(rate));
		fputs(rate, out);
		break;
	}
	case K_INT:
		if (k->size == sizeof(uint16_t))
			fprintf(out, "%u", *(const uint16_t *)field);
		else
			fprintf(out, "%" PRIu32, *(const uint32_t *)field);
		break;
	case K_SIZE: fprintf(out, "%" PRIu64, *(const uint64_t *)field); break;
	case K_DURATION: {
		uint32_t v = *(const uint32_t *)field;

		if (v % 86400 == 0)
			fprintf(out, "%" PRIu32 "d", v / 86400);
		else if (v % 3600 == 0)
			fprintf(out, "%" PRIu32 "h", v / 3600);
		else if (v % 60 == 0)
			fprintf(out, "%" PRIu32 "m", v / 60);
		else
			fprintf(out, "%" PRIu32 "s", v);
		break;
	}
	case K_AE_LIST: {
		const op_ae_list *list = (const op_ae_list *)field;

		for (int i = 0; i < list->n; i++)
			fprintf(out, "%s%s", i ? ", " : "", list->aet[i]);
		break;
	}
	case K_CIDR_LIST:
		for (int i = 0; i < *cidr_count(field); i++) {
			const op_cidr *nets = (const op_cidr *)field;
			int bits = __builtin_popcount(nets[i].mask);
			a.s_addr = htonl(nets[i].addr);
			inet_ntop(AF_INET, &a, ip, sizeof(ip));
			fprintf(out, "%s%s/%d", i ? ", " : "", ip, bits);
		}
		break;
	case K_LOG_LEVEL: fputs(levels[*(const enum op_log_level *)field], out); break;
	case K_DEST_NAME: fputs(*field ? field : "none", out); break;
	}
	fputc('\n', out);
}

static void print_destination(const op_destination_config *d, FILE *out)
{
	int dicom = d->type == OP_DEST_DICOM;

	fprintf(out, "\n[destination %s]\ntype = %s\n", d->name, dicom ? "dicom" : "stow-rs");
	if (dicom)
		for (size_t i = 0; i < N_DICOM_KEYS; i++)
			print_key(&dicom_keys[i], (const char *)&d->dicom + dicom_keys[i].offset,
				  out);
	for (size_t i = 0; i < N_KEYS; i++)
		if (is_cloud_key(&keys[i]) && (!dicom || dicom_takes(&keys[i])))
			print_key(&keys[i], cloud_field(&keys[i], &d->cloud), out);
}

static void print_peer(const op_peer_config *pe, FILE *out)
{
	fprintf(out, "\n[peer %s]\n", pe->name);
	for (size_t i = 0; i < N_PEER_KEYS; i++)
		print_key(&peer_keys[i], (const char *)pe + peer_keys[i].offset, out);
}

static void print_route(const op_route_config *r, FILE *out)
{
	fprintf(out, "\n[route %s]\nwhen = %s\nto = ", r->name, r->when);
	for (int i = 0; i < r->n_to; i++)
		fprintf(out, "%s%s", i ? ", " : "", r->to[i]);
	fprintf(out, "\nurgent = %s\n", r->urgent ? "yes" : "no");
}

void op_config_print(const op_config *cfg, FILE *out)
{
	const char *section = "";

	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(section, keys[i].section) != 0) {
			section = keys[i].section;
			/* The destinations and routes before [routing], which
			 * names one of them; the peers, other DICOM nodes,
			 * beside the destinations. */
			if (strcmp(section, "routing") == 0) {
				for (int d = 0; d < cfg->n_destinations; d++)
					print_destination(&cfg->destinations[d], out);
				for (unsigned e = 0; e < cfg->n_peers; e++)
					print_peer(&cfg->peers[e], out);
				for (int r = 0; r < cfg->n_routes; r++)
					print_route(&cfg->routes[r], out);
			}
			fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
		}
		print_key(&keys[i], (const char *)cfg + keys[i].offset, out);
	}
}

int op_config_from_command_line(op_config *cfg, const char *path, int check)
{
	char err[640];

	op_config_defaults(cfg);
	if (path && op_config_load(cfg, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (check) {
		op_config_print(cfg, stdout);
		return 0;
	}
	op_log_set_level(cfg->log_level);
	return -1;
}
