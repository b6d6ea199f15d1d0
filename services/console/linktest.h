/*
 * linktest: "is the cloud reachable with these settings?", step by step,
 * for the console's Test link button and outpostctl test-link:
 *
 *   resolve  the [cloud] url's host name
 *   tls      connect and the TLS handshake (certificate, name, pin)
 *   auth     the credentials: anything but 401/403 passes
 *   qido     QIDO-RS GET {url}/studies?limit=1 answers 2xx (or 204)
 *
 * A step that fails ends the test; the steps after it are "skipped". The
 * report is JSON (docs/API.md, POST /api/test-link).
 *
 * Loop thread only.
 */
#ifndef OP_LINKTEST_H
#define OP_LINKTEST_H

#include <cjson/cJSON.h>
#include <uv.h>

#include "common/config.h"
#include "uplink/tls.h"

typedef struct op_linktest op_linktest;

/* Called once with the report, which the callee owns. */
typedef void (*op_linktest_cb)(void *ctx, cJSON *report);

/*
 * Starts a test of cloud with tls (NULL: unprovisioned, reported at once)
 * and auth_header ("Authorization: ...\r\n" or ""). The test ends within
 * about 2 x timeout_s. -ENOMEM if it cannot start (no callback then).
 */
int op_linktest_start(uv_loop_t *loop, op_tls *tls, const op_cloud_config *cloud,
		      const char *auth_header, int timeout_s, op_linktest_cb cb, void *ctx,
		      op_linktest **out);

/* Abandons a test (no callback follows). Accepts NULL. */
void op_linktest_cancel(op_linktest *t);

#endif
