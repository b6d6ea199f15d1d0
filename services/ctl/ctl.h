/*
 * ctl: outpostctl, the field engineer's command-line tool
 * (docs/outpostctl.md). main.c is the command line; what it builds on can
 * be tested without a terminal or a running service, one module a job:
 *
 *   ctl.h           what the commands share: the exit codes, which
 *                   configuration file is in use, the shaping command's body
 *   ctl_ini.h       the rewrite of one key of the configuration file
 *   ctl_password.h  the console password's rules and hash
 *   ctl_client.h    a minimal HTTP/1.1 client over the uplink's Unix socket
 *   ctl_print.h     the API's answers (docs/API.md) as tables for a person
 *
 * Single-threaded; nothing here keeps state between calls.
 */
#ifndef OP_CTL_H
#define OP_CTL_H

#include <stddef.h>

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

/* --- commands' building blocks ------------------------------------------- */

/* Is arg a rate rather than a schedule? It is when op_rate_parse reads
 * it, and when it is a single word (no schedule is: a mistyped rate then
 * gets the server's error about rates). */
int op_ctl_is_rate(const char *arg);

/* The body of PUT /api/shaping for arg ({"rate": arg} or {"schedule":
 * arg}), or with arg NULL the clearing body {"rate": null, "schedule":
 * null}. *out is malloc'd (caller frees). Returns 0 or -ENOMEM. */
int op_ctl_shaping_body(const char *arg, char **out);

/* --- inside ctl/ ---------------------------------------------------------- */

/* The line of text[0..len) that starts at pos: its length without (*bare)
 * and with (*full) its end of line ("\n" or "\r\n"; none at the end of the
 * text). The INI rewrite and the HTTP response parser read lines alike. */
void op_ctl__next_line(const char *text, size_t len, size_t pos, size_t *bare, size_t *full);

#endif
