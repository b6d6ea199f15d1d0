/*
 * test_tls: services/uplink/tls.c, the uplink's TLS client configuration:
 * op_tls_open with the system store, a ca_file, a client certificate, and
 * every way those files can be wrong (the error must name the file, for a
 * field engineer to fix); op_tls_pin_of_file against the pins openssl
 * computes. Handshakes: test_tls_handshake.
 *
 * The keys and certificates are test-only fixtures in tests/unit/data/tls/
 * (made once by make_tls_fixtures.sh there; see tests/unit/data/README).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit_tls.h"

#include <errno.h>
#include <string.h>

/*
 * mbedTLS sizes a file it reads with ftell(): LONG_MAX for a directory,
 * which it then asks calloc() for. A release build gets NULL (and an
 * error); ASan by default aborts the whole binary instead. Let it return
 * NULL as in release, so that the ASan run reports the failing test.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}

/* op_tls_open must fail with -EINVAL, no handle, and a message holding
 * every one of the words given (NULL-terminated). */
static void expect_open_fails(struct tls_fx *f, ...)
{
	static char junk;
	op_tls *t = (op_tls *)&junk; /* op_tls_open must clear it */
	va_list ap;
	const char *word;
	int rc;

	memset(f->err, 0, sizeof(f->err));
	rc = op_tls_open(&f->cloud, &t, f->err, sizeof(f->err));
	if (rc == 0) {
		op_tls_close(t);
		print_error("op_tls_open accepted it\n");
		fail();
	}
	assert_int_equal(rc, -EINVAL);
	assert_null(t);
	va_start(ap, f);
	while ((word = va_arg(ap, const char *)) != NULL)
		if (!strstr(f->err, word)) {
			print_error("error \"%s\" does not say \"%s\"\n", f->err, word);
			va_end(ap);
			fail();
		}
	va_end(ap);
}

/* The last error does not say word. */
static void not_said(const struct tls_fx *f, const char *word)
{
	if (strstr(f->err, word)) {
		print_error("error \"%s\" says \"%s\"\n", f->err, word);
		fail();
	}
}

/* --- op_tls_open ---------------------------------------------------------------- */

static void test_tls_open_system_store(void **state)
{
	struct tls_fx *f = *state;

	assert_string_equal(f->cloud.ca_file, "");
	close_tls(open_tls(f));
	op_tls_close(NULL);
}

static void test_tls_open_ca_file(void **state)
{
	struct tls_fx *f = *state;
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	close_tls(open_tls(f));
	/* A bundle of several CAs. */
	SET(f->cloud.ca_file, concat(f, "bundle.pem", "ca.pem", "other.pem"));
	close_tls(open_tls(f));
}

static void test_tls_open_bad_ca_file(void **state)
{
	struct tls_fx *f = *state;
	const char *path;

	path = tls_file("missing.pem");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);

	path = tls_file("not_pem.txt");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);

	/* A key is not a certificate. */
	path = tls_file("ca.key");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);

	/* One good certificate and one corrupt: the file is wrong. */
	path = tls_file("corrupt_bundle.pem");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);

	path = make_file(f, "empty.pem", "");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);

	path = make_file(f, "truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIC\n");
	SET(f->cloud.ca_file, path);
	expect_open_fails(f, "ca_file", path, NULL);
}

/*
 * A directory where a file belongs (ca_file = /etc/ssl/certs is an easy
 * mistake): refused, naming it, for what it is. mbedTLS sizes the file it
 * reads with ftell(), LONG_MAX for a directory on Linux, and then fails to
 * allocate that: the reason must not be "memory allocation failed".
 */
static void test_tls_open_directory(void **state)
{
	struct tls_fx *f = *state;
	const char *dir = make_file(f, "a-directory", NULL);

	SET(f->cloud.ca_file, dir);
	expect_open_fails(f, "ca_file", dir, NULL);
	not_said(f, "llocation");

	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, dir);
	SET(f->cloud.client_key, tls_file("client.key"));
	expect_open_fails(f, "client_cert", dir, NULL);
	not_said(f, "llocation");

	SET(f->cloud.client_cert, tls_file("client.pem"));
	SET(f->cloud.client_key, dir);
	expect_open_fails(f, "client_key", dir, NULL);
	not_said(f, "llocation");
}

/* The message is cut to errlen, NUL-terminated. */
static void test_tls_open_short_err(void **state)
{
	struct tls_fx *f = *state;
	op_tls *t;
	char err[16];

	memset(err, 'Z', sizeof(err));
	SET(f->cloud.ca_file, tls_file("missing.pem"));
	assert_int_equal(op_tls_open(&f->cloud, &t, err, sizeof(err)), -EINVAL);
	assert_null(t);
	assert_non_null(memchr(err, '\0', sizeof(err)));
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

static void test_tls_open_client_cert(void **state)
{
	struct tls_fx *f = *state;
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));
	SET(f->cloud.client_key, tls_file("client.key"));
	close_tls(open_tls(f));
}

static void test_tls_open_bad_client_cert(void **state)
{
	struct tls_fx *f = *state;
	const char *path;

	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_key, tls_file("client.key"));

	path = tls_file("missing.pem");
	SET(f->cloud.client_cert, path);
	expect_open_fails(f, "client_cert", path, NULL);

	path = tls_file("not_pem.txt");
	SET(f->cloud.client_cert, path);
	expect_open_fails(f, "client_cert", path, NULL);

	path = tls_file("client.key");
	SET(f->cloud.client_cert, path);
	expect_open_fails(f, "client_cert", path, NULL);
}

static void test_tls_open_bad_client_key(void **state)
{
	struct tls_fx *f = *state;
	const char *path;

	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));

	path = tls_file("missing.key");
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);

	path = tls_file("not_pem.txt");
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);

	/* The certificate given as its key. */
	path = tls_file("client.pem");
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);

	/* Under a passphrase: the uplink has none to give. */
	path = tls_file("client_encrypted.key");
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);
}

/*
 * A readable key that is not the certificate's (a certificate renewed, its
 * key file not): every handshake would fail with an alert from the server
 * that says nothing of the cause. Refused at start, naming the key.
 */
static void test_tls_open_client_key_mismatch(void **state)
{
	struct tls_fx *f = *state;
	const char *path;

	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));

	path = tls_file("server.key"); /* RSA too, another key */
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);

	path = tls_file("ec.key"); /* another type of key */
	SET(f->cloud.client_key, path);
	expect_open_fails(f, "client_key", path, NULL);
}

/* --- op_tls_pin_of_file ------------------------------------------------------------ */

static void test_tls_pin_of_file(void **state)
{
	static const struct {
		const char *file, *pin;
	} cases[] = {
		{ "server.pem", PIN_SERVER },
		{ "other.pem", PIN_OTHER },
		{ "ec.pem", PIN_EC },
		{ "ca.pem", PIN_CA },
	};
	struct tls_fx *f = *state;
	char pin[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(pin, 'Z', sizeof(pin));
		assert_int_equal(op_tls_pin_of_file(tls_file(cases[i].file), pin, sizeof(pin)), 0);
		assert_string_equal(pin, cases[i].pin);
	}
	/* Exactly room for 44 characters and the NUL. */
	assert_int_equal(op_tls_pin_of_file(tls_file("server.pem"), pin, 45), 0);
	assert_string_equal(pin, PIN_SERVER);
	/* A chain (leaf first, as in nginx's fullchain.pem): the leaf's pin. */
	assert_int_equal(op_tls_pin_of_file(concat(f, "chain.pem", "server.pem", "ca.pem"), pin,
					    sizeof(pin)),
			 0);
	assert_string_equal(pin, PIN_SERVER);
}

static void test_tls_pin_of_file_fails(void **state)
{
	struct tls_fx *f = *state;
	const char *not_certs[] = {
		tls_file("missing.pem"),
		tls_file("not_pem.txt"),
		tls_file("server.key"),
		tls_file("ec.key"),
		tls_file("corrupt_bundle.pem"),
		make_file(f, "empty.pem", ""),
		make_file(f, "a-directory", NULL),
	};
	char pin[64];

	for (size_t i = 0; i < sizeof(not_certs) / sizeof(not_certs[0]); i++)
		assert_int_equal(op_tls_pin_of_file(not_certs[i], pin, sizeof(pin)), -EINVAL);
	/* No room for the pin: an error, not a pin cut short. */
	assert_int_equal(op_tls_pin_of_file(tls_file("server.pem"), pin, 44), -EINVAL);
	assert_int_equal(op_tls_pin_of_file(tls_file("server.pem"), pin, 0), -EINVAL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, tls_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_tls_open_system_store),        T(test_tls_open_ca_file),
		T(test_tls_open_bad_ca_file),         T(test_tls_open_directory),
		T(test_tls_open_short_err),           T(test_tls_open_client_cert),
		T(test_tls_open_bad_client_cert),     T(test_tls_open_bad_client_key),
		T(test_tls_open_client_key_mismatch), T(test_tls_pin_of_file),
		T(test_tls_pin_of_file_fails),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
