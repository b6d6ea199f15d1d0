/*
 * ctl_password: the web console's password as outpostctl passwd takes it:
 * the rules a typed password must meet, and its Argon2id hash, the form in
 * which it goes into [console] password_hash (the uplink verifies it,
 * docs/API.md).
 *
 * Nothing here keeps state between calls.
 */
#ifndef OP_CTL_PASSWORD_H
#define OP_CTL_PASSWORD_H

#include <stddef.h>

#define OP_CTL_PASSWORD_MIN 8    /* characters (UTF-8 code points) */
#define OP_CTL_PASSWORD_MAX 1024 /* bytes: far above any typed password */
/* OWASP's minimum for Argon2id (docs/API.md): the uplink verifies beside
 * its 32 MB goal. */
#define OP_CTL_PWHASH_OPSLIMIT 2
#define OP_CTL_PWHASH_MEMLIMIT (19 * 1024 * 1024)

/* Is pw acceptable as the console password (OP_CTL_PASSWORD_MIN characters
 * or more, at most OP_CTL_PASSWORD_MAX bytes, no control characters)?
 * Returns 0, or -EINVAL with the reason in *why. */
int op_ctl_password_check(const char *pw, const char **why);

/* The crypto_pwhash_str (Argon2id) string of pw with outpostctl's limits,
 * into out (at least crypto_pwhash_STRBYTES = 128 bytes). Returns 0,
 * -ENOMEM (libsodium could not get the memory) or -EINVAL. */
int op_ctl_password_hash(const char *pw, char *out, size_t size);

#endif
