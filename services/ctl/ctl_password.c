/*
 * ctl_password: the console password's rules and its hash (ctl_password.h).
 */
#include "ctl/ctl_password.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

int op_ctl_password_check(const char *pw, const char **why)
{
	size_t chars = 0, len = strlen(pw);

	if (len > OP_CTL_PASSWORD_MAX) {
		*why = "the password is too long (at most 1024 bytes)";
		return -EINVAL;
	}
	for (const unsigned char *p = (const unsigned char *)pw; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			*why = "the password contains a control character";
			return -EINVAL;
		}
		/* Counts UTF-8 code points: continuation bytes are 10xxxxxx. */
		if ((*p & 0xC0) != 0x80)
			chars++;
	}
	if (chars < OP_CTL_PASSWORD_MIN) {
		*why = "the password is too short (at least 8 characters)";
		return -EINVAL;
	}
	return 0;
}

int op_ctl_password_hash(const char *pw, char *out, size_t size)
{
	if (size < crypto_pwhash_STRBYTES)
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOMEM;
	/* crypto_pwhash_str fails only when it cannot get its memory. */
	if (crypto_pwhash_str(out, pw, strlen(pw), OP_CTL_PWHASH_OPSLIMIT,
			      OP_CTL_PWHASH_MEMLIMIT) != 0)
		return -ENOMEM;
	return 0;
}
