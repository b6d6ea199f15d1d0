/*
 * api: the status API, /metrics, /healthz and the web console's files
 * (docs/API.md) on the console's HTTP server (httpd.h): authentication
 * (password, sessions, the rate limit on failed logins), the endpoints,
 * and the audit log of every operator action.
 *
 * The console steers an upload engine through its control interface
 * (uplink/control.h) and reads and writes the spool they share; the
 * process that hosts both gives it them (op_api_host).
 *
 * Anything that reads or writes the spool, verifies a password, reads a
 * file or talks DICOM runs on libuv's thread pool; the loop only routes
 * and copies the engine's state.
 *
 * Loop thread only.
 */
#ifndef OP_API_H
#define OP_API_H

#include <stddef.h>
#include <uv.h>

#include "common/config.h"

typedef struct op_api op_api;
struct op_uplink;
struct op_spool;

/* What the host gives the console: all of it outlives the console. */
typedef struct op_api_host {
	struct op_uplink *uplink; /* the cloud's engine (uplink/control.h) */
	/* Every destination's engine, the cloud's first. */
	struct op_uplink *const *uplinks;
	int n_uplinks;
	struct op_spool *spool;  /* the spool the engine sends from */
	const char *config_path; /* the --config file, or NULL: the defaults */
	/* Reloads the configuration file everywhere (as SIGHUP does), then
	 * calls op_api_configure(). -EINVAL with the reason in err when the
	 * file is refused. */
	int (*reload)(void *ctx, char *err, size_t errlen);
	void *ctx;
} op_api_host;

/* Serves the console configured by cfg ([console], and what the status
 * shows of the rest). host is copied. */
int op_api_open(uv_loop_t *loop, const op_config *cfg, const op_api_host *host, op_api **out);

/* Takes a reloaded configuration: the [console] password, web root and
 * session lifetime at once (a changed password ends every session); its
 * listeners and TLS files at the next start (a warning says so). */
void op_api_configure(op_api *api, const op_config *cfg);

/* Stops listening. Work in flight finishes and answers nobody. Accepts
 * NULL. */
void op_api_close(op_api *api);

#endif
