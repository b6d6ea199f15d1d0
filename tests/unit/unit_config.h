/*
 * unit_config: the fixture of the tests of services/common/config.c
 * (test_config_*.c): a configuration loaded from text written to a file
 * of the test's own directory, and the checks of what load says about it.
 */
#ifndef OP_UNIT_CONFIG_H
#define OP_UNIT_CONFIG_H

#include "common/config.h"
#include "unit.h"

struct unit_config {
	struct unit_tmp tmp; /* first (unit_tmp_new); tmp.path: the last file written */
	char err[512];
	op_config cfg;
};

/* cmocka setup for a test whose state is a struct unit_config (its
 * teardown: unit_tmp_teardown). */
int unit_config_setup(void **state);

/* Loads text as a config file (DIR/outpost.ini) into f->cfg; returns
 * op_config_load's result, its error in f->err. */
int unit_config_load_text(struct unit_config *f, const char *text);

/* The error must start with "PATH:LINE: " and contain what (NULL: any). */
void unit_config_assert_error_at(struct unit_config *f, int line, const char *what);

/* Loads one key in its section; expects it to be refused on line 2. */
void unit_config_assert_refused(struct unit_config *f, const char *section, const char *key,
				const char *value);

/* A file that sets every key of [receiver], [spool] and [log], none to its
 * default; and the configuration it loads into. */
extern const char unit_config_every_key[];
void unit_config_assert_every_key(const op_config *c);

#endif
