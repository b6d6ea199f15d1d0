/*
 * router: routes and urgency, compiled once per configuration (router.h).
 */
#include "receiver/router.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/route.h"
#include "dicom/dicom.h"

struct route {
	op_route_cond conds[OP_ROUTE_CONDS_MAX];
	int n_conds;
	int has_attributes;
	char to[9 * (OP_DEST_NAME_MAX + 1)]; /* "a,b" */
	int urgent;
};

struct op_router {
	struct route routes[OP_ROUTE_MAX];
	int n_routes;
	char default_to[OP_NAME_MAX + 1]; /* "": nowhere */
	/* [0] urgent_match, then one per route (NULL: no attribute
	 * condition), for one read of each instance. */
	op_dicom_match *match[OP_ROUTE_MAX + 1];
};

int op_router_open(const op_config *cfg, const char *file, op_router **out, char *err,
		   size_t errlen)
{
	op_router *r = calloc(1, sizeof(*r));
	char text[1024], why[512];
	int rc = 0;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	snprintf(r->default_to, sizeof(r->default_to), "%s", cfg->routing.default_to);
	if (op_dicom_match_compile(cfg->priority.urgent_match, OP_MATCH_ANY, &r->match[0], why,
				   sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: urgent_match: %s", file ? file : "(defaults)", why);
		rc = -EINVAL;
		goto out;
	}
	for (int i = 0; i < cfg->n_routes; i++) {
		const op_route_config *rc_ = &cfg->routes[i];
		struct route *t = &r->routes[i];
		size_t len = 0;

		/* The configuration was validated as it loaded. */
		if (op_route_parse_when(rc_->when, t->conds, OP_ROUTE_CONDS_MAX, &t->n_conds, why,
					sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%d: [route %s] when: %s",
				 file ? file : "(defaults)", rc_->line, rc_->name, why);
			rc = -EINVAL;
			goto out;
		}
		op_route_attribute_text(t->conds, t->n_conds, text, sizeof(text));
		t->has_attributes = *text != '\0';
		if (t->has_attributes &&
		    op_dicom_match_compile(text, OP_MATCH_ALL, &r->match[i + 1], why, sizeof(why)) <
			    0) {
			snprintf(err, errlen, "%s:%d: [route %s] when: %s",
				 file ? file : "(defaults)", rc_->line, rc_->name, why);
			rc = -EINVAL;
			goto out;
		}
		for (int k = 0; k < rc_->n_to; k++)
			len += (size_t)snprintf(t->to + len, sizeof(t->to) - len, "%s%s",
						k ? "," : "", rc_->to[k]);
		t->urgent = rc_->urgent;
		r->n_routes++;
	}
out:
	if (rc < 0)
		op_router_close(r);
	else
		*out = r;
	return rc;
}

void op_router_close(op_router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < sizeof(r->match) / sizeof(r->match[0]); i++)
		op_dicom_match_free(r->match[i]);
	free(r);
}

int op_router_routes(const op_router *r)
{
	return r->n_routes;
}

/* Appends the names of list (comma-separated) not yet in out. */
static void add_names(char *out, size_t size, const char *list)
{
	while (*list) {
		size_t len = strcspn(list, ","), have = strlen(out);
		int known = 0;

		for (const char *p = out; *p;) {
			size_t l = strcspn(p, ",");

			if (l == len && strncmp(p, list, len) == 0)
				known = 1;
			p += l;
			p += *p == ',';
		}
		if (!known && len > 0 && have + len + 2 <= size)
			snprintf(out + have, size - have, "%s%.*s", have ? "," : "", (int)len,
				 list);
		list += len;
		list += *list == ',';
	}
}

int op_router_read(const op_router *r, const char *path, const op_router_origin *o,
		   op_instance *inst, int *urgent_match, int *route_urgent, char *err,
		   size_t errlen)
{
	int matched[OP_ROUTE_MAX + 1] = { 0 }, any = 0, rc;

	rc = op_dicom_read_instance(path, (const op_dicom_match *const *)r->match, r->n_routes + 1,
				    matched, inst, err, errlen);
	if (rc < 0)
		return rc;
	*urgent_match = matched[0];
	*route_urgent = 0;
	inst->destinations[0] = '\0';
	inst->local_only = 0;
	for (int i = 0; i < r->n_routes; i++) {
		const struct route *t = &r->routes[i];

		if (t->has_attributes && !matched[i + 1])
			continue;
		if (!op_route_assoc_match(t->conds, t->n_conds, o->calling_aet, o->called_aet,
					  o->peer_ip))
			continue;
		any = 1;
		*route_urgent |= t->urgent;
		add_names(inst->destinations, sizeof(inst->destinations), t->to);
	}
	if (!any) {
		snprintf(inst->destinations, sizeof(inst->destinations), "%s", r->default_to);
		inst->local_only = r->default_to[0] == '\0';
	}
	return 0;
}
