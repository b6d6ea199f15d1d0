/*
 * test_config_errors: services/common/config.c, what it says of a file it
 * refuses: the first error, naming FILE:LINE (a bad value, an unknown key
 * or section, a key outside any section, a syntax error), a file that is
 * missing or a directory, and a message cut to a short buffer.
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

/* --- errors name FILE:LINE -------------------------------------------------------------- */

static void test_config_error_names_line(void **state)
{
	struct unit_config *f = *state;

	/* A bad value on line 7. */
	assert_int_equal(unit_config_load_text(f, "; Outpost\n"
						  "[receiver]\n"
						  "ae_title = EDGE\n"
						  "port = 104\n"
						  "\n"
						  "; the next line is wrong\n"
						  "max_associations = many\n"
						  "acse_timeout = 5\n"),
			 -EINVAL);
	unit_config_assert_error_at(f, 7, "max_associations");
	assert_non_null(strstr(f->err, "'many'"));

	/* Only the first error is reported, with its line. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\n"
						  "port = 0\n"
						  "bogus = 1\n"
						  "[nowhere]\n"
						  "x = 1\n"),
			 -EINVAL);
	unit_config_assert_error_at(f, 2, "port");
}

static void test_config_unknown_key(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 104\naetitle = X\n"),
			 -EINVAL);
	unit_config_assert_error_at(f, 3, "unknown key 'aetitle' in [receiver]");

	/* A key of another section is unknown here. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\ndir = /data\n"), -EINVAL);
	unit_config_assert_error_at(f, 2, "unknown key 'dir' in [receiver]");

	/* Names are case-sensitive. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\nPort = 104\n"), -EINVAL);
	unit_config_assert_error_at(f, 2, "Port");
}

static void test_config_unknown_section(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(
		unit_config_load_text(f, "[receiver]\nport = 104\n[recevier]\nae_title = X\n"),
		-EINVAL);
	/* Either the section's line or its first key's line is right. */
	if (strncmp(f->err + strlen(f->tmp.path), ":3: ", 4) != 0)
		unit_config_assert_error_at(f, 4, NULL);
	assert_non_null(strstr(f->err, "unknown section [recevier]"));

	assert_int_equal(unit_config_load_text(f, "[Receiver]\nport = 104\n"), -EINVAL);
	assert_non_null(strstr(f->err, "[Receiver]"));

	/* A misspelt section with no keys under it is as wrong as one with keys. */
	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 104\n[spoool]\n"), -EINVAL);
	unit_config_assert_error_at(f, 3, "spoool");
}

static void test_config_key_outside_section(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, "port = 104\n[receiver]\n"), -EINVAL);
	unit_config_assert_error_at(f, 1, "'port' is outside any [section]");

	assert_int_equal(unit_config_load_text(f, "; comment\n\nae_title = X\n"), -EINVAL);
	unit_config_assert_error_at(f, 3, "outside");
}

static void test_config_syntax_error(void **state)
{
	struct unit_config *f = *state;

	assert_int_equal(unit_config_load_text(f, "[receiver]\nport = 104\nae_title EDGE\n"),
			 -EINVAL);
	unit_config_assert_error_at(f, 3, "syntax error");

	assert_int_equal(unit_config_load_text(f, "[receiver\nport = 104\n"), -EINVAL);
	unit_config_assert_error_at(f, 1, "syntax error");

	/* The line count survives blank and comment lines before the error. */
	assert_int_equal(unit_config_load_text(f, "\n\n; c\n# c\n[spool]\n\njunk\n"), -EINVAL);
	unit_config_assert_error_at(f, 7, "syntax error");

	/* A bad line at the very end, without a newline. */
	assert_int_equal(unit_config_load_text(f, "[spool]\ndir = x\nbroken"), -EINVAL);
	unit_config_assert_error_at(f, 3, "syntax error");
}

static void test_config_missing_file(void **state)
{
	struct unit_config *f = *state;
	char path[128];

	snprintf(path, sizeof(path), "%s/absent.ini", f->tmp.dir);
	assert_int_equal(op_config_load(&f->cfg, path, f->err, sizeof(f->err)), -ENOENT);
	assert_non_null(strstr(f->err, path));
	assert_non_null(strstr(f->err, strerror(ENOENT)));
	/* cfg holds the defaults, not garbage. */
	assert_string_equal(f->cfg.receiver.ae_title, "OUTPOST");
}

/* A directory given as the file is an error, not an empty configuration. */
static void test_config_directory_is_not_a_file(void **state)
{
	struct unit_config *f = *state;
	int rc;

	f->err[0] = '\0';
	rc = op_config_load(&f->cfg, f->tmp.dir, f->err, sizeof(f->err));
	assert_true(rc < 0);
	assert_non_null(strstr(f->err, f->tmp.dir));
}

/* A short error buffer gets a truncated, terminated message. */
static void test_config_error_buffer_small(void **state)
{
	struct unit_config *f = *state;
	char err[12];

	memset(err, 'Z', sizeof(err));
	assert_int_equal(
		op_config_load(&f->cfg, unit_tmp_write(&f->tmp, "a.ini", "[x]\ny = 1\n"), err, 8),
		-EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_int_equal(err[8], 'Z');
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, unit_config_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_config_error_names_line),
		T(test_config_unknown_key),
		T(test_config_unknown_section),
		T(test_config_key_outside_section),
		T(test_config_syntax_error),
		T(test_config_missing_file),
		T(test_config_directory_is_not_a_file),
		T(test_config_error_buffer_small),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
