/*
 * api: the status API, /metrics and the web console's files (docs/API.md)
 * on the console's HTTP server: authentication (password, sessions, the
 * rate limit on failed logins), the endpoints, and the audit log of every
 * operator action.
 *
 * Anything that reads or writes the spool, verifies a password, reads a
 * file or talks DICOM runs on libuv's thread pool; the loop only routes
 * and copies the uplink's state.
 *
 * Loop thread only.
 */
#ifndef OP_API_H
#define OP_API_H

#include <uv.h>

#include "common/config.h"

typedef struct op_api op_api;
struct op_uplink;

/* Serves the console of up (its [console] configuration). */
int op_api_open(uv_loop_t *loop, struct op_uplink *up, op_api **out);

/* Takes a reloaded [console] password, web root and session lifetime: a
 * changed password ends every session. */
void op_api_configure(op_api *api, const op_console_config *cfg);

/* Stops listening. Work in flight finishes and answers nobody. Accepts
 * NULL. */
void op_api_close(op_api *api);

#endif
