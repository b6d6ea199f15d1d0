/*
 * test_config_print: services/common/config.c, the printout of
 * --check-config (op_config_print): it loads back into the same
 * configuration (the defaults, every key, extreme values), in sections.
 *
 * Each test writes its files into its own mkdtemp directory, removed after.
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

/* --- printing --------------------------------------------------------------------------- */

static void assert_config_equal(const op_config *a, const op_config *b)
{
	const op_receiver_config *ra = &a->receiver, *rb = &b->receiver;

	assert_string_equal(ra->ae_title, rb->ae_title);
	assert_string_equal(ra->bind, rb->bind);
	assert_int_equal(ra->port, rb->port);
	assert_int_equal(ra->allowed_calling_aets.n, rb->allowed_calling_aets.n);
	for (int i = 0; i < ra->allowed_calling_aets.n; i++)
		assert_string_equal(ra->allowed_calling_aets.aet[i],
				    rb->allowed_calling_aets.aet[i]);
	assert_int_equal(ra->n_allowed_hosts, rb->n_allowed_hosts);
	for (int i = 0; i < ra->n_allowed_hosts; i++) {
		assert_int_equal(ra->allowed_hosts[i].addr, rb->allowed_hosts[i].addr);
		assert_int_equal(ra->allowed_hosts[i].mask, rb->allowed_hosts[i].mask);
	}
	assert_int_equal(ra->max_associations, rb->max_associations);
	assert_int_equal(ra->max_pdu, rb->max_pdu);
	assert_int_equal(ra->acse_timeout, rb->acse_timeout);
	assert_int_equal(ra->dimse_timeout, rb->dimse_timeout);
	assert_int_equal(ra->allow_query, rb->allow_query);
	assert_int_equal(ra->commitment, rb->commitment);
	assert_int_equal(ra->commitment_timeout, rb->commitment_timeout);
	assert_string_equal(a->spool.dir, b->spool.dir);
	assert_int_equal(a->spool.max_bytes, b->spool.max_bytes);
	assert_int_equal(a->spool.min_free_bytes, b->spool.min_free_bytes);
	assert_int_equal(a->spool.keep_sent_bytes, b->spool.keep_sent_bytes);
	assert_int_equal(a->spool.keep_sent_days, b->spool.keep_sent_days);
	assert_int_equal(a->log_level, b->log_level);
}

/* Prints cfg to DIR/name; returns the path. */
static const char *print_file(struct unit_config *f, const op_config *cfg, const char *name)
{
	const char *path = unit_path(f->tmp.dir, name);
	FILE *file = fopen(path, "w");

	assert_non_null(file);
	op_config_print(cfg, file);
	assert_int_equal(fclose(file), 0);
	return path;
}

/* Prints cfg to DIR/name and loads it back into out. */
static void round_trip(struct unit_config *f, const op_config *cfg, const char *name,
		       op_config *out)
{
	const char *path = print_file(f, cfg, name);

	f->err[0] = '\0';
	if (op_config_load(out, path, f->err, sizeof(f->err)) != 0)
		fail_msg("the printout does not load: %s", f->err);
}

static void test_config_print_round_trip(void **state)
{
	struct unit_config *f = *state;
	op_config orig, back;

	/* The defaults. */
	op_config_defaults(&orig);
	round_trip(f, &orig, "defaults.ini", &back);
	assert_config_equal(&orig, &back);

	/* Every key, loaded from a file. */
	assert_int_equal(unit_config_load_text(f, unit_config_every_key), 0);
	orig = f->cfg;
	round_trip(f, &orig, "every.ini", &back);
	assert_config_equal(&orig, &back);
	unit_config_assert_every_key(&back);

	/* Extremes, set directly. */
	op_config_defaults(&orig);
	snprintf(orig.receiver.ae_title, sizeof(orig.receiver.ae_title), "SIXTEEN_CHARS_AE");
	snprintf(orig.receiver.bind, sizeof(orig.receiver.bind), "255.255.255.255");
	orig.receiver.port = 65535;
	orig.receiver.max_pdu = OP_PDU_MIN;
	for (int i = 0; i < 10; i++)
		snprintf(orig.receiver.allowed_calling_aets.aet[i], OP_AE_MAX + 1, "AE%d", i);
	orig.receiver.allowed_calling_aets.n = 10;
	assert_int_equal(op_cidr_parse("0.0.0.0/0", &orig.receiver.allowed_hosts[0]), 0);
	assert_int_equal(op_cidr_parse("10.20.30.40", &orig.receiver.allowed_hosts[1]), 0);
	assert_int_equal(op_cidr_parse("172.16.0.0/12", &orig.receiver.allowed_hosts[2]), 0);
	orig.receiver.n_allowed_hosts = 3;
	snprintf(orig.spool.dir, sizeof(orig.spool.dir), "/var/lib/outpost/spool dir");
	orig.spool.max_bytes = UINT64_MAX;
	orig.spool.min_free_bytes = 0;
	orig.spool.keep_sent_bytes = 1;
	orig.spool.keep_sent_days = 3650;
	orig.receiver.commitment_timeout = 30 * 86400 - 1; /* printed in seconds */
	orig.log_level = OP_LOG_ERROR;
	round_trip(f, &orig, "extremes.ini", &back);
	assert_config_equal(&orig, &back);
}

static void test_config_print_sections(void **state)
{
	struct unit_config *f = *state;
	op_config c;
	char *text;
	size_t n;

	op_config_defaults(&c);
	text = unit_read_file(print_file(f, &c, "print.ini"), &n);
	assert_true(n > 0);
	assert_non_null(strstr(text, "[receiver]\n"));
	assert_non_null(strstr(text, "[spool]\n"));
	assert_non_null(strstr(text, "[log]\n"));
	assert_non_null(strstr(text, "ae_title = OUTPOST\n"));
	assert_non_null(strstr(text, "level = info\n"));
	assert_true(strstr(text, "[receiver]") < strstr(text, "[spool]"));
	test_free(text);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_config_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_config_print_round_trip),
		T(test_config_print_sections),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
