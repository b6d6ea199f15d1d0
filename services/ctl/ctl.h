/*
 * ctl: the parts of outpostctl (the field engineer's command-line tool,
 * docs/outpostctl.md) that can be tested without a terminal or a running
 * service: which configuration file is in use, and the printing of the
 * API's answers (docs/API.md) as tables. The rewrite of one key of that
 * file is ctl_ini.h, the console password ctl_password.h, the HTTP client
 * over the uplink's Unix socket ctl_client.h.
 *
 * Single-threaded; nothing here keeps state between calls.
 */
#ifndef OP_CTL_H
#define OP_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "ctl/ctl_client.h"

/* The exit codes of outpostctl (documented in --help and docs/outpostctl.md). */
enum {
	OP_CTL_EXIT_OK = 0,
	OP_CTL_EXIT_FAILED = 1,      /* the service answered 4xx/5xx, or the operation failed */
	OP_CTL_EXIT_USAGE = 2,       /* bad arguments, bad configuration, refused input */
	OP_CTL_EXIT_NOT_RUNNING = 3, /* nothing answers on the socket */
};

#define OP_CTL_DEFAULT_CONFIG "/etc/outpost/outpost.ini"
/* The appliance's firmware updater (outpostctl update). */
#define OP_CTL_UPDATER "/usr/lib/outpost/update"

/* --- configuration ------------------------------------------------------ */

/*
 * The configuration file in use: option (--config) when not NULL, else
 * $OUTPOST_CONFIG when set and not empty, else OP_CTL_DEFAULT_CONFIG when it
 * exists. Writes "" into path when none is (the embedded defaults apply).
 * Returns 0, or -ENAMETOOLONG.
 */
int op_ctl_config_path(const char *option, char *path, size_t size);

/* --- the text of an API error -------------------------------------------- */

/* The text of an API error: the "error" member of a JSON body, else the
 * body itself (trimmed, at most size - 1 bytes), else "HTTP NNN". */
void op_ctl_error_text(const op_ctl_response *r, char *buf, size_t size);

/* --- commands' building blocks ------------------------------------------- */

/* Is arg a rate rather than a schedule? It is when op_rate_parse reads
 * it, and when it is a single word (no schedule is: a mistyped rate then
 * gets the server's error about rates). */
int op_ctl_is_rate(const char *arg);

/* The body of PUT /api/shaping for arg ({"rate": arg} or {"schedule":
 * arg}), or with arg NULL the clearing body {"rate": null, "schedule":
 * null}. *out is malloc'd (caller frees). Returns 0 or -ENOMEM. */
int op_ctl_shaping_body(const char *arg, char **out);

/* Human-readable sizes ("0 B", "512 B", "5.1 MiB", powers of 1024),
 * rates in bits per second ("2 Mbit/s", powers of 1000) and durations
 * ("12 s", "3 min 4 s", "2 h 5 min", "3 d 4 h"). */
void op_ctl_format_bytes(double bytes, char *buf, size_t size);
void op_ctl_format_rate(double bps, char *buf, size_t size);
void op_ctl_format_duration(double seconds, char *buf, size_t size);

/* Print the answers of GET /api/status, GET /api/queue and POST
 * /api/test-link as tables for a person. Members missing from the JSON are
 * shown as "-". op_ctl_print_test_link returns whether the link test
 * passed (1) or not (0). */
void op_ctl_print_status(const cJSON *status, FILE *out);
/* The rate object of /api/status (also PUT /api/shaping's answer), on
 * two lines: "Rate ..." and "Schedule ...". */
void op_ctl_print_rate(const cJSON *rate, FILE *out);
void op_ctl_print_queue(const cJSON *queue, FILE *out);
int op_ctl_print_test_link(const cJSON *result, FILE *out);

/* --- inside ctl/ ---------------------------------------------------------- */

/* The line of text[0..len) that starts at pos: its length without (*bare)
 * and with (*full) its end of line ("\n" or "\r\n"; none at the end of the
 * text). The INI rewrite and the HTTP response parser read lines alike. */
void op_ctl__next_line(const char *text, size_t len, size_t pos, size_t *bare, size_t *full);

#endif
