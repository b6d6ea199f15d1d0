/*
 * unit_config: the fixture of the tests of config.c (see unit_config.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int unit_config_setup(void **state)
{
	*state = unit_tmp_new(sizeof(struct unit_config));
	return *state ? 0 : -1;
}

int unit_config_load_text(struct unit_config *f, const char *text)
{
	f->err[0] = '\0';
	return op_config_load(&f->cfg, unit_tmp_write(&f->tmp, "outpost.ini", text), f->err,
			      sizeof(f->err));
}

void unit_config_assert_error_at(struct unit_config *f, int line, const char *what)
{
	char prefix[256];

	snprintf(prefix, sizeof(prefix), "%s:%d: ", f->tmp.path, line);
	if (strncmp(f->err, prefix, strlen(prefix)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", f->err, prefix);
	if (what && !strstr(f->err, what))
		fail_msg("error \"%s\" does not say \"%s\"", f->err, what);
}

void unit_config_assert_refused(struct unit_config *f, const char *section, const char *key,
				const char *value)
{
	char text[512];

	snprintf(text, sizeof(text), "[%s]\n%s = %s\n", section, key, value);
	if (unit_config_load_text(f, text) != -EINVAL)
		fail_msg("[%s] %s = '%s' was accepted", section, key, value);
	unit_config_assert_error_at(f, 2, key);
}

const char unit_config_every_key[] = "; every key, none at its default\n"
				     "[receiver]\n"
				     "ae_title = EDGE_01\n"
				     "bind = 10.1.2.3\n"
				     "port = 104\n"
				     "allowed_calling_aets = CT1, MR_2\n"
				     "allowed_hosts = 10.0.0.0/8, 192.168.1.7\n"
				     "max_associations = 4\n"
				     "max_pdu = 16384\n"
				     "acse_timeout = 5\n"
				     "dimse_timeout = 600\n"
				     "allow_query = no\n"
				     "commitment = local\n"
				     "commitment_timeout = 2h\n"
				     "\n"
				     "[spool]\n"
				     "dir = /data/spool\n"
				     "max_bytes = 10G\n"
				     "min_free_bytes = 64M\n"
				     "keep_sent_bytes = 2G\n"
				     "keep_sent_days = 30\n"
				     "\n"
				     "[log]\n"
				     "level = debug\n";

void unit_config_assert_every_key(const op_config *c)
{
	const op_receiver_config *r = &c->receiver;

	assert_string_equal(r->ae_title, "EDGE_01");
	assert_string_equal(r->bind, "10.1.2.3");
	assert_int_equal(r->port, 104);
	assert_int_equal(r->allowed_calling_aets.n, 2);
	assert_string_equal(r->allowed_calling_aets.aet[0], "CT1");
	assert_string_equal(r->allowed_calling_aets.aet[1], "MR_2");
	assert_int_equal(r->n_allowed_hosts, 2);
	assert_int_equal(r->allowed_hosts[0].addr, 0x0a000000);
	assert_int_equal(r->allowed_hosts[0].mask, 0xff000000);
	assert_int_equal(r->allowed_hosts[1].addr, 0xc0a80107);
	assert_int_equal(r->allowed_hosts[1].mask, 0xffffffff);
	assert_int_equal(r->max_associations, 4);
	assert_int_equal(r->max_pdu, 16384);
	assert_int_equal(r->acse_timeout, 5);
	assert_int_equal(r->dimse_timeout, 600);
	assert_int_equal(r->allow_query, 0);
	assert_int_equal(r->commitment, OP_COMMIT_LOCAL);
	assert_int_equal(r->commitment_timeout, 2 * 3600);
	assert_string_equal(c->spool.dir, "/data/spool");
	assert_int_equal(c->spool.max_bytes, 10ULL << 30);
	assert_int_equal(c->spool.min_free_bytes, 64ULL << 20);
	assert_int_equal(c->spool.keep_sent_bytes, 2ULL << 30);
	assert_int_equal(c->spool.keep_sent_days, 30);
	assert_int_equal(c->log_level, OP_LOG_DEBUG);
}
