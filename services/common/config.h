/*
 * config: Outpost's one INI file (parsed with libinih), shared by every
 * service. Each service reads the whole file, so a key in the wrong section
 * or a typo is an error everywhere, not silently ignored by one program.
 *
 * Values are read by parse.h. The reference of every key is in README.md; op_config_defaults() is the embedded default
 * configuration that `make run` uses.
 */
#ifndef OP_CONFIG_H
#define OP_CONFIG_H

#include <limits.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/parse.h"
#include "common/schedule.h"

#define OP_LIST_MAX 64    /* entries in allowed_calling_aets, allowed_hosts */
#define OP_PDU_MIN 4096   /* DCMTK's ASC_MINIMUMPDUSIZE */
#define OP_PDU_MAX 131072 /* DCMTK's ASC_MAXIMUMPDUSIZE */
#define OP_DEST_MAX 8     /* [destination NAME] sections, besides [cloud] */
#define OP_ROUTE_MAX 32   /* [route NAME] sections */
#define OP_NAME_MAX 32    /* destination, route and peer names: letters, digits, '-', '_' */
#define OP_PEER_MAX 32    /* [peer NAME] sections */

/* AE titles (allowed_calling_aets, urgent_calling_aets). */
typedef struct op_ae_list {
	char aet[OP_LIST_MAX][OP_AE_MAX + 1];
	int n;
} op_ae_list;

/*
 * [receiver] commitment: when a Storage Commitment request is answered
 * with success. local: once the instance is durably in the spool; cloud:
 * once the cloud destination confirmed it (STOW-RS), failure once it is
 * quarantined, waiting up to commitment_timeout for the rest.
 */
enum op_commitment { OP_COMMIT_LOCAL, OP_COMMIT_CLOUD };

/* "local" or "cloud", as the file writes it ("?" for another value). */
const char *op_config_commitment_name(enum op_commitment c);

typedef struct op_receiver_config {
	char ae_title[OP_AE_MAX + 1];
	char bind[16]; /* dotted IPv4 address */
	uint16_t port;
	op_ae_list allowed_calling_aets; /* none: any calling AE title */
	op_cidr allowed_hosts[OP_LIST_MAX];
	int n_allowed_hosts; /* 0 = any host */
	int max_associations;
	int max_pending_per_host; /* connections not yet associated, per address */
	uint32_t max_pdu;
	int acse_timeout;  /* seconds */
	int dimse_timeout; /* seconds */
	/* Default 1; 0: C-FIND, C-MOVE and C-GET are not accepted at
	 * association, from any host. */
	int allow_query;
	enum op_commitment commitment; /* default OP_COMMIT_CLOUD */
	/* Seconds a cloud commitment waits for the instances neither
	 * confirmed nor quarantined (60 to 30 days; default 86400). */
	uint32_t commitment_timeout;
} op_receiver_config;

typedef struct op_spool_config {
	char dir[3072];           /* OP_DIR_MAX */
	uint64_t max_bytes;       /* 0 = no limit but the disk */
	uint64_t min_free_bytes;  /* refuse when the disk would have less */
	uint64_t keep_sent_bytes; /* sent objects kept as a local cache */
	/* Sent objects kept at least this many days (0-3650; default 0),
	 * besides keep_sent_bytes; max_bytes and min_free_bytes still win. */
	uint32_t keep_sent_days;
} op_spool_config;

enum op_auth { OP_AUTH_NONE, OP_AUTH_BASIC, OP_AUTH_BEARER };

/* transfer_syntax: what a destination is sent (uplink/encode.h). */
enum op_tsyntax { OP_TS_ORIGINAL, OP_TS_JPEGLS, OP_TS_AUTO };

/* "original", "jpeg-ls" or "auto", as the file writes it. */
const char *op_config_tsyntax_name(enum op_tsyntax t);

typedef struct op_cloud_config {
	char url[1024];         /* https://host[:port]/path; empty: unprovisioned */
	char host[256];         /* parsed from url */
	uint16_t port;          /* parsed from url (443 when absent) */
	char path[768];         /* parsed from url, without a trailing slash */
	char ca_file[1024];     /* empty: the system store /etc/ssl/certs */
	char pin_sha256[64];    /* base64 SHA-256 of the server's public key */
	char client_cert[1024]; /* mutual TLS, with client_key */
	char client_key[1024];
	enum op_auth auth;
	char username[256];
	char password_file[1024];
	char token_file[1024];
	int connections;
	int batch_max_instances;
	uint64_t batch_max_bytes;
	int timeout;         /* seconds without progress before a request fails */
	int retry_max_delay; /* seconds, the cap of the exponential back-off */
	uint64_t rate;       /* bits/s: this destination's cap inside [shaping]'s bucket;
				OP_RATE_UNLIMITED (default) */
	int enabled;         /* default 1; 0: receives deliveries (routes still add them)
				but sends nothing */
	/* original (default): as received; jpeg-ls: JPEG-LS Lossless what it
	 * can code; auto: jpeg-ls while it makes the delivery faster. */
	enum op_tsyntax transfer_syntax;
} op_cloud_config;

enum op_dest_type { OP_DEST_STOW, OP_DEST_DICOM };

typedef struct op_dicom_dest_config {
	char host[256];
	uint16_t port;
	char called_ae[OP_AE_MAX + 1];
	/* "" in the file: the receiver's ae_title (filled in by op_config_load
	 * once the whole file is read). */
	char calling_ae[OP_AE_MAX + 1];
} op_dicom_dest_config;

/* A [destination NAME] section. */
typedef struct op_destination_config {
	char name[OP_NAME_MAX + 1];
	enum op_dest_type type;
	/* type stow-rs: every [cloud] key; type dicom: connections (default
	 * 1), timeout, retry_max_delay, rate, enabled only. */
	op_cloud_config cloud;
	op_dicom_dest_config dicom; /* type dicom */
	int line;                   /* of the section header, for messages */
} op_destination_config;

/* A [route NAME] section. */
typedef struct op_route_config {
	char name[OP_NAME_MAX + 1];
	char when[1024]; /* as written (route.h parses it); "" never valid */
	/* Destination names: "cloud" or a [destination NAME]. */
	char to[OP_DEST_MAX + 1][OP_NAME_MAX + 1];
	int n_to;
	int urgent; /* urgent = yes */
	int line;   /* of the when key */
} op_route_config;

/*
 * A [peer NAME] section: a DICOM node the box may send C-MOVE results or
 * Storage Commitment reports to (a move destination, a commitment SCU
 * listening for N-EVENT-REPORT), named by its AE title.
 */
typedef struct op_peer_config {
	char name[OP_NAME_MAX + 1];
	char ae_title[OP_AE_MAX + 1]; /* unique among the peers */
	char host[256];
	uint16_t port;
	unsigned line; /* of the section header, for messages; 0: not from a [peer] */
} op_peer_config;

typedef struct op_shaping_config {
	uint64_t rate;       /* bits per second; OP_RATE_UNLIMITED; 0 pauses */
	uint64_t burst;      /* bytes; 0: a tenth of a second at the rate */
	char schedule[1024]; /* weekly windows (schedule.h); empty: none */
	op_schedule parsed;  /* the schedule, parsed */
	int scavenger;       /* TCP-LP congestion control on upload sockets */
} op_shaping_config;

typedef struct op_priority_config {
	op_ae_list urgent_calling_aets;
	/* Whose C-STORE priority HIGH is believed, beside urgent_calling_aets
	 * (whose instances are urgent anyway); other AEs' HIGH is MEDIUM. */
	op_ae_list trust_priority_from;
	char urgent_match[1024]; /* "Keyword=Value, ..." */
} op_priority_config;

typedef struct op_console_config {
	char listen[64];      /* "address:port" of the HTTP(S) console; empty: none */
	char listen_addr[16]; /* parsed from listen (dotted IPv4) */
	uint16_t listen_port; /* parsed from listen */
	char socket[108];     /* Unix socket for outpostctl; empty: none */
	char tls_cert[1024];  /* PEM; with tls_key, the console speaks HTTPS */
	char tls_key[1024];
	char password_hash[256]; /* crypto_pwhash_str (Argon2id); empty: no login */
	char web_root[1024];     /* the console's static files */
	uint32_t session_ttl;    /* seconds of inactivity before a session ends */
	/* The oldest queued instance older than this (seconds) while the link
	 * is up or paused: an alarm (the backlog does not drain). */
	uint32_t backlog_alarm;
	/* Who may connect to listen, checked at accept (as [receiver]
	 * allowed_hosts: the count follows the array). */
	op_cidr allowed_hosts[OP_LIST_MAX];
	int n_allowed_hosts; /* 0 = any host */
} op_console_config;

typedef struct op_config {
	op_receiver_config receiver;
	op_spool_config spool;
	op_cloud_config cloud;
	op_shaping_config shaping;
	op_priority_config priority;
	op_console_config console;
	struct {
		/* Threads that compress for upload at once; 0 (the default):
		 * the cores less one, at least 1. */
		int encode_threads;
	} uplink;
	enum op_log_level log_level;
	op_destination_config destinations[OP_DEST_MAX]; /* [destination NAME], in file order */
	int n_destinations;
	op_route_config routes[OP_ROUTE_MAX]; /* [route NAME], in file order */
	int n_routes;
	op_peer_config peers[OP_PEER_MAX]; /* [peer NAME], in file order */
	unsigned n_peers;
	/* [routing] default: where an instance no route matches goes: "cloud"
	 * (the default), a destination's name, or "" for nowhere (written
	 * `none`). */
	struct {
		char default_to[OP_NAME_MAX + 1];
	} routing;
	/* Read by the appliance's boot (outpost-grow-data), not the services:
	 * a box without a TPM receives onto an unencrypted data partition only
	 * when the site file says so. */
	struct {
		int allow_unencrypted;
	} security;
} op_config;

/* Fills cfg with the embedded defaults. */
void op_config_defaults(op_config *cfg);

/*
 * Loads path over the defaults. On error returns -EINVAL (or -errno when the
 * file cannot be read) and writes "FILE:LINE: what is wrong" into err.
 */
int op_config_load(op_config *cfg, const char *path, char *err, size_t errlen);

/*
 * A path named in the file at config_path, as the services and outpostctl
 * use it: an absolute or empty value as it is, a relative one against the
 * directory of config_path (as it is when config_path has no directory).
 * -ENAMETOOLONG when it does not fit size.
 */
int op_config_resolve_path(const char *config_path, const char *value, char *out, size_t size);

/*
 * The DICOM node whose AE title is aet (trailing spaces ignored, as DICOM
 * pads AE titles; otherwise exact and case-sensitive): a [peer NAME]
 * first, then a [destination NAME] of type dicom by its called_ae (out's
 * name, ae_title, host and port from it, line its header's). Copies it
 * into out (which may be NULL to only ask). Returns 0, or -ENOENT when
 * nothing matches. Pure: any thread, given c does not change meanwhile.
 */
int op_config_peer_by_aet(const op_config *c, const char *aet, op_peer_config *out);

/* Writes the effective configuration as INI (for --check-config). */
void op_config_print(const op_config *cfg, FILE *out);

/*
 * What every service's main does with --config FILE and --check-config:
 * loads path over the defaults (NULL: the defaults alone) and sets the log
 * level; on an error prints "FILE:LINE: ..." to stderr and returns 2; with
 * check set prints the configuration and returns 0. Returns -1 when the
 * service should go on and run.
 */
int op_config_from_command_line(op_config *cfg, const char *path, int check);

#endif
