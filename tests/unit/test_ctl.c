/*
 * test_ctl: services/ctl/ctl.c, what outpostctl's commands share: which
 * configuration file is in use, and the rate-or-schedule decision of the
 * shaping command with the body it sends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctl/ctl.h"

/* --- the configuration file in use ------------------------------------------------- */

static void test_ctl_config_path(void **state)
{
	char path[256];

	(void)state;
	setenv("OUTPOST_CONFIG", "/env/outpost.ini", 1);
	assert_int_equal(op_ctl_config_path("/opt/x.ini", path, sizeof(path)), 0);
	assert_string_equal(path, "/opt/x.ini");
	assert_int_equal(op_ctl_config_path(NULL, path, sizeof(path)), 0);
	assert_string_equal(path, "/env/outpost.ini");
	setenv("OUTPOST_CONFIG", "", 1);
	assert_int_equal(op_ctl_config_path(NULL, path, sizeof(path)), 0);
	assert_string_equal(path,
			    access(OP_CTL_DEFAULT_CONFIG, F_OK) == 0 ? OP_CTL_DEFAULT_CONFIG : "");
	unsetenv("OUTPOST_CONFIG");
	assert_int_equal(op_ctl_config_path("/a/very/long/path.ini", path, 8), -ENAMETOOLONG);
}

/* --- shaping ----------------------------------------------------------------------- */

static void test_ctl_rate_or_schedule(void **state)
{
	char *body = NULL;

	(void)state;
	assert_true(op_ctl_is_rate("2Mbit"));
	assert_true(op_ctl_is_rate("2.5M"));
	assert_true(op_ctl_is_rate("512k"));
	assert_true(op_ctl_is_rate("unlimited"));
	assert_true(op_ctl_is_rate("0"));
	assert_true(op_ctl_is_rate("8 Mbit/s"));
	/* One word that is no rate is a mistyped rate, not a schedule. */
	assert_true(op_ctl_is_rate("fast"));
	assert_false(op_ctl_is_rate("Mon-Fri 07:00-19:00 2Mbit"));
	assert_false(op_ctl_is_rate("Mon-Fri 07:00-19:00 2Mbit; Sat-Sun 00:00-24:00 unlimited"));
	assert_false(op_ctl_is_rate("2 parsecs"));

	assert_int_equal(op_ctl_shaping_body("2Mbit", &body), 0);
	assert_string_equal(body, "{\"rate\":\"2Mbit\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body("Mon 00:00-24:00 0", &body), 0);
	assert_string_equal(body, "{\"schedule\":\"Mon 00:00-24:00 0\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body("Mon \"x\" 1", &body), 0);
	assert_string_equal(body, "{\"schedule\":\"Mon \\\"x\\\" 1\"}");
	free(body);
	assert_int_equal(op_ctl_shaping_body(NULL, &body), 0);
	assert_string_equal(body, "{\"rate\":null,\"schedule\":null}");
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_config_path),
		cmocka_unit_test(test_ctl_rate_or_schedule),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
