/*
 * router: what the receiver decides about each instance it stores - where
 * it goes ([route NAME] sections, [routing] default) and whether it is
 * urgent ([priority] urgent_match, a route's urgent = yes) - compiled once
 * from a configuration and applied as the instance is read back from its
 * spool file, before it is committed (so the decision is written in the
 * same transaction as the instance; spool.h).
 *
 * An op_router is immutable once made: several threads may use one at
 * once. A reload makes a new one.
 */
#ifndef OP_ROUTER_H
#define OP_ROUTER_H

#include <stddef.h>

#include "common/config.h"
#include "common/spool.h"

typedef struct op_router op_router;

/* The association an instance came on (NULL fields fail their conditions). */
typedef struct op_router_origin {
	const char *calling_aet;
	const char *called_aet;
	const char *peer_ip;
} op_router_origin;

/* Compiles cfg's routes and urgent_match against DICOM's dictionary.
 * -EINVAL with "FILE:LINE: ..." (file is cfg's path, for messages) in err
 * when a keyword is unknown. */
int op_router_open(const op_config *cfg, const char *file, op_router **out, char *err,
		   size_t errlen);

/* Accepts NULL. */
void op_router_close(op_router *r);

/*
 * Reads the instance in path (op_dicom_read_instance) into inst and routes
 * it: inst->destinations (or local_only) from every route whose conditions
 * all hold, else the default. *urgent_match: [priority] urgent_match held;
 * *route_urgent: a matching route says urgent = yes. -EINVAL with the
 * reason in err when the file is not a readable instance.
 */
int op_router_read(const op_router *r, const char *path, const op_router_origin *o,
		   op_instance *inst, int *urgent_match, int *route_urgent, char *err,
		   size_t errlen);

/* How many routes it has, for the logs. */
int op_router_routes(const op_router *r);

#endif
