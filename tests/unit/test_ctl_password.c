/*
 * test_ctl_password: services/ctl/ctl_password.c, the console password's
 * rules (length in characters and bytes, no control characters) and its
 * Argon2id hash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "ctl/ctl_password.h"

/* --- passwords ------------------------------------------------------------------- */

static void test_ctl_password_check(void **state)
{
	const char *why = NULL;
	char big[OP_CTL_PASSWORD_MAX + 2];

	(void)state;
	assert_int_equal(op_ctl_password_check("12345678", &why), 0);
	assert_int_equal(op_ctl_password_check("1234567", &why), -EINVAL);
	assert_non_null(strstr(why, "short"));
	assert_int_equal(op_ctl_password_check("", &why), -EINVAL);
	/* Characters, not bytes: 7 characters in 14 bytes is short. */
	assert_int_equal(op_ctl_password_check("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
					       "\xc3\xa9",
					       &why),
			 -EINVAL);
	assert_int_equal(op_ctl_password_check("pass\tword", &why), -EINVAL);
	assert_non_null(strstr(why, "control"));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(op_ctl_password_check(big, &why), -EINVAL);
	big[OP_CTL_PASSWORD_MAX] = '\0';
	assert_int_equal(op_ctl_password_check(big, &why), 0);
}

static void test_ctl_password_hash(void **state)
{
	char hash[crypto_pwhash_STRBYTES];

	(void)state;
	assert_int_equal(op_ctl_password_hash("correct horse", hash, sizeof(hash)), 0);
	/* OWASP's minimum: 19 MiB (19456 KiB), 2 passes, Argon2id. */
	assert_non_null(strstr(hash, "$argon2id$v=19$m=19456,t=2,p=1$"));
	assert_int_equal(crypto_pwhash_str_verify(hash, "correct horse", 13), 0);
	assert_int_not_equal(crypto_pwhash_str_verify(hash, "correct horsE", 13), 0);
	assert_int_equal(op_ctl_password_hash("correct horse", hash, 64), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctl_password_check),
		cmocka_unit_test(test_ctl_password_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
