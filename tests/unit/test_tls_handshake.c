/*
 * test_tls_handshake: services/uplink/tls.c, whole handshakes against an
 * mbedTLS server in the same process over in-memory pipes (unit_tls.h):
 * the hostname check, an untrusted server, the pin (match, mismatch),
 * mutual TLS and session resumption.
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

static void test_tls_handshake(void **state)
{
	struct tls_fx *f = *state;
	struct server *s;
	struct conn *c;
	op_tls *t;

	s = server_new("server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(c->server_rc, 0);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), 0);
	/* TLS 1.2 at least. */
	assert_string_equal(mbedtls_ssl_get_version(&c->client), "TLSv1.2");
	conn_free(c);
	close_tls(t);
	server_free(s);
}

static void test_tls_pin(void **state)
{
	struct tls_fx *f = *state;
	struct server *s;
	struct conn *c;
	op_tls *t;

	s = server_new("server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));

	SET(f->cloud.pin_sha256, PIN_SERVER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), 0);
	conn_free(c);
	close_tls(t);

	/* Another key: refused, and the message gives the server's pin. */
	SET(f->cloud.pin_sha256, PIN_OTHER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), -EPERM);
	assert_non_null(strstr(f->err, "pin_sha256"));
	assert_non_null(strstr(f->err, PIN_SERVER));
	conn_free(c);
	close_tls(t);

	/* The pin is the server's own key, not its CA's. */
	SET(f->cloud.pin_sha256, PIN_CA);
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), -EPERM);
	conn_free(c);
	close_tls(t);
	server_free(s);
}

/*
 * A handshake with a server of cert and key as host, trusting the test CA,
 * that the client refuses for the server's certificate; the reason, in a
 * field engineer's words, into why.
 */
static void certificate_refused(struct tls_fx *f, const char *cert, const char *key,
				const char *host, char *why, size_t size)
{
	struct server *s;
	struct conn *c;
	op_tls *t;
	int rc;

	s = server_new(cert, key, NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	t = open_tls(f);
	rc = connect_to(t, s, host, &c);
	assert_int_equal(rc, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	op_tls_explain(&c->client, rc, why, size);
	assert_non_null(strstr(why, "certificate refused"));
	conn_free(c);
	close_tls(t);
	server_free(s);
}

/* A certificate for another name: refused, in words that say so. */
static void test_tls_wrong_host(void **state)
{
	char why[256];

	certificate_refused(*state, "server.pem", "server.key", "otherhost", why, sizeof(why));
	assert_non_null(strstr(why, "Common Name"));
	assert_null(strchr(why, '\n'));
}

/* A server whose certificate the CA did not sign; and the system store,
 * which does not hold the test CA. */
static void test_tls_untrusted_server(void **state)
{
	struct tls_fx *f = *state;
	struct server *s;
	struct conn *c;
	op_tls *t;
	char why[256];

	certificate_refused(f, "other.pem", "other.key", "localhost", why, sizeof(why));
	assert_non_null(strstr(why, "trusted CA"));

	s = server_new("server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, "");
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	conn_free(c);
	close_tls(t);
	server_free(s);
}

/* Mutual TLS: the server asks for and verifies the client's certificate. */
static void test_tls_client_cert(void **state)
{
	struct tls_fx *f = *state;
	struct server *s;
	struct conn *c;
	op_tls *t;
	const mbedtls_x509_crt *seen;
	char name[128];

	s = server_new("server.pem", "server.key", "ca.pem");
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));
	SET(f->cloud.client_key, tls_file("client.key"));
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(c->server_rc, 0);
	seen = mbedtls_ssl_get_peer_cert(&c->server);
	assert_non_null(seen);
	assert_true(mbedtls_x509_dn_gets(name, sizeof(name), &seen->subject) > 0);
	assert_string_equal(name, "CN=outpost-client");
	conn_free(c);
	close_tls(t);

	/* Without one, the same server refuses the handshake. */
	SET(f->cloud.client_cert, "");
	SET(f->cloud.client_key, "");
	t = open_tls(f);
	assert_int_not_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(c->server_rc, MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE);
	conn_free(c);
	close_tls(t);
	server_free(s);
}

/* The session of the last connection is resumed by the next, and the pin
 * is still checked (against the certificate kept with the session). */
static void test_tls_session_resumed(void **state)
{
	struct tls_fx *f = *state;
	struct server *s;
	struct conn *c;
	op_tls *t;

	s = server_new("server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.pin_sha256, PIN_SERVER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), 0);
	conn_free(c);
	assert_int_equal(s->resumed, 0);

	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	assert_int_equal(c->server_rc, 0);
	assert_int_equal(s->resumed, 1);
	assert_int_equal(op_tls_established(t, &c->client, f->err, sizeof(f->err)), 0);
	conn_free(c);

	/* And again: a session serves more than one connection. */
	assert_int_equal(connect_to(t, s, "localhost", &c), 0);
	conn_free(c);
	assert_int_equal(s->resumed, 2);
	close_tls(t);
	server_free(s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, tls_setup, unit_tmp_teardown)
	const struct CMUnitTest tests[] = {
		T(test_tls_handshake),        T(test_tls_pin),         T(test_tls_wrong_host),
		T(test_tls_untrusted_server), T(test_tls_client_cert), T(test_tls_session_resumed),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
