/*
 * test_tls: services/uplink/tls.c, the uplink's TLS client configuration.
 *
 * op_tls_open with the system store, a ca_file, a client certificate, and
 * every way those files can be wrong (the error must name the file, for a
 * field engineer to fix); op_tls_pin_of_file against the pins openssl
 * computes; and whole handshakes against an mbedTLS server in the same
 * process over in-memory pipes: the hostname check, an untrusted server,
 * the pin (match, mismatch), mutual TLS and session resumption.
 *
 * The keys and certificates are test-only fixtures in tests/unit/data/tls/
 * (made once by make_tls_fixtures.sh there; see tests/unit/data/README).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "unit.h"

#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config.h"
#include "uplink/tls.h"

/*
 * The pins of the fixtures, computed once by make_tls_fixtures.sh with
 *   openssl x509 -pubkey -noout -in C | openssl pkey -pubin -outform der |
 *           openssl dgst -sha256 -binary | base64
 */
#define PIN_SERVER "2r8K2ewJrnxTijSeXfbeMaoC2Z0DjU/5wWsnUBoWAdc="
#define PIN_OTHER "mXKeQ7JS7lWGGfZs8m8yPIfth9CUQ9/VqTLofWkphjs="
#define PIN_EC "jJpsQ/2xQI3X4BVxYIUBP4EzCG54a6jqpmTe5JiAioY="
#define PIN_CA "/Pm/6LMRjfmMo9gaE1zlILvnzeJTERTRiW4rCLtJ0Mc="

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

/* --- fixtures ------------------------------------------------------------------ */

struct fx {
	struct unit_tmp tmp; /* first (unit_tmp_new): for files made on the spot */
	op_cloud_config cloud;
	char err[512];
};

/* The path of a fixture in tests/unit/data/tls. */
static const char *tls_file(const char *name)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "tls/%s", name);
	return unit_data(rel);
}

/* A file made in the test's directory from text (NULL: a directory). */
static const char *make_file(struct fx *f, const char *name, const char *text)
{
	const char *path = unit_path(f->tmp.dir, name);

	if (!text) {
		assert_int_equal(mkdir(path, 0755), 0);
		return path;
	}
	unit_write_bytes(path, text, strlen(text));
	return path;
}

/* Concatenates two fixtures into the test's directory. */
static const char *concat(struct fx *f, const char *name, const char *a, const char *b)
{
	const char *path = unit_path(f->tmp.dir, name), *parts[2] = { a, b };
	char buf[4096];
	FILE *out;

	out = fopen(path, "w");
	assert_non_null(out);
	for (int i = 0; i < 2; i++) {
		FILE *in = fopen(tls_file(parts[i]), "r");
		size_t n;

		assert_non_null(in);
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			assert_int_equal(fwrite(buf, 1, n, out), n);
		fclose(in);
	}
	assert_int_equal(fclose(out), 0);
	return path;
}

static int setup(void **state)
{
	struct fx *f = unit_tmp_new(sizeof(*f));
	op_config cfg;

	if (!f)
		return -1;
	op_config_defaults(&cfg);
	f->cloud = cfg.cloud;
	*state = f;
	return 0;
}

static void set(char *field, size_t size, const char *value)
{
	size_t len = strlen(value);

	assert_true(len < size);
	memcpy(field, value, len + 1);
}

#define SET(field, value) set(field, sizeof(field), value)

/* op_tls_open must fail with -EINVAL, no handle, and a message holding
 * every one of the words given (NULL-terminated). */
static void expect_open_fails(struct fx *f, ...)
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
static void not_said(const struct fx *f, const char *word)
{
	if (strstr(f->err, word)) {
		print_error("error \"%s\" says \"%s\"\n", f->err, word);
		fail();
	}
}

/* --- what a test holds ------------------------------------------------------------ */

/*
 * Handles a test holds, released by teardown() even when an assertion
 * fails half-way (else the ASan run adds leaks to the failure).
 */
struct server;
struct conn;
static struct {
	op_tls *tls[4];
	struct server *server;
	struct conn *conn;
} held;

static op_tls *open_tls(struct fx *f)
{
	op_tls *t = NULL;

	if (op_tls_open(&f->cloud, &t, f->err, sizeof(f->err)) != 0) {
		print_error("op_tls_open: %s\n", f->err);
		fail();
	}
	assert_non_null(t);
	for (size_t i = 0; i < sizeof(held.tls) / sizeof(held.tls[0]); i++)
		if (!held.tls[i]) {
			held.tls[i] = t;
			return t;
		}
	op_tls_close(t);
	fail();
	return NULL;
}

static void close_tls(op_tls *t)
{
	for (size_t i = 0; i < sizeof(held.tls) / sizeof(held.tls[0]); i++)
		if (held.tls[i] == t)
			held.tls[i] = NULL;
	op_tls_close(t);
}

/* --- op_tls_open ---------------------------------------------------------------- */

static void test_tls_open_system_store(void **state)
{
	struct fx *f = *state;

	assert_string_equal(f->cloud.ca_file, "");
	close_tls(open_tls(f));
	op_tls_close(NULL);
}

static void test_tls_open_ca_file(void **state)
{
	struct fx *f = *state;
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	close_tls(open_tls(f));
	/* A bundle of several CAs. */
	SET(f->cloud.ca_file, concat(f, "bundle.pem", "ca.pem", "other.pem"));
	close_tls(open_tls(f));
}

static void test_tls_open_bad_ca_file(void **state)
{
	struct fx *f = *state;
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
	struct fx *f = *state;
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
	struct fx *f = *state;
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
	struct fx *f = *state;
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));
	SET(f->cloud.client_key, tls_file("client.key"));
	close_tls(open_tls(f));
}

static void test_tls_open_bad_client_cert(void **state)
{
	struct fx *f = *state;
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
	struct fx *f = *state;
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
	struct fx *f = *state;
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
	struct fx *f = *state;
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
	struct fx *f = *state;
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

/* --- handshakes against an in-process server ---------------------------------------- */

/* One direction of a connection. */
struct pipe {
	unsigned char buf[1 << 16];
	size_t len;
};

struct end {
	struct pipe *in, *out;
};

static int pipe_send(void *ctx, const unsigned char *data, size_t len)
{
	struct end *e = ctx;
	size_t room = sizeof(e->out->buf) - e->out->len;

	if (room == 0)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	if (len > room)
		len = room;
	memcpy(e->out->buf + e->out->len, data, len);
	e->out->len += len;
	return (int)len;
}

static int pipe_recv(void *ctx, unsigned char *data, size_t len)
{
	struct end *e = ctx;

	if (e->in->len == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (len > e->in->len)
		len = e->in->len;
	memcpy(data, e->in->buf, len);
	memmove(e->in->buf, e->in->buf + len, e->in->len - len);
	e->in->len -= len;
	return (int)len;
}

/* A TLS server with a certificate, optionally requiring a client's, with a
 * session cache that counts the sessions it resumed. */
struct server {
	mbedtls_ssl_config conf;
	mbedtls_x509_crt cert, ca;
	mbedtls_pk_context key;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_cache_context cache;
	int resumed;
};

static int cache_get(void *ctx, mbedtls_ssl_session *session)
{
	struct server *s = (struct server *)((char *)ctx - offsetof(struct server, cache));
	int rc = mbedtls_ssl_cache_get(ctx, session);

	if (rc == 0)
		s->resumed++;
	return rc;
}

static void server_init(struct server *s, const char *cert, const char *key, const char *client_ca)
{
	memset(s, 0, sizeof(*s));
	mbedtls_ssl_config_init(&s->conf);
	mbedtls_x509_crt_init(&s->cert);
	mbedtls_x509_crt_init(&s->ca);
	mbedtls_pk_init(&s->key);
	mbedtls_entropy_init(&s->entropy);
	mbedtls_ctr_drbg_init(&s->drbg);
	mbedtls_ssl_cache_init(&s->cache);
	assert_int_equal(mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy,
					       (const unsigned char *)"server", 6),
			 0);
	assert_int_equal(mbedtls_x509_crt_parse_file(&s->cert, tls_file(cert)), 0);
	assert_int_equal(mbedtls_pk_parse_keyfile(&s->key, tls_file(key), NULL), 0);
	assert_int_equal(mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
						     MBEDTLS_SSL_TRANSPORT_STREAM,
						     MBEDTLS_SSL_PRESET_DEFAULT),
			 0);
	mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &s->drbg);
	assert_int_equal(mbedtls_ssl_conf_own_cert(&s->conf, &s->cert, &s->key), 0);
	mbedtls_ssl_conf_session_cache(&s->conf, &s->cache, cache_get, mbedtls_ssl_cache_set);
	if (client_ca) {
		assert_int_equal(mbedtls_x509_crt_parse_file(&s->ca, tls_file(client_ca)), 0);
		mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, NULL);
		mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	} else
		mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_NONE);
}

static void server_free(struct server *s)
{
	held.server = NULL;
	mbedtls_ssl_cache_free(&s->cache);
	mbedtls_ssl_config_free(&s->conf);
	mbedtls_x509_crt_free(&s->cert);
	mbedtls_x509_crt_free(&s->ca);
	mbedtls_pk_free(&s->key);
	mbedtls_ctr_drbg_free(&s->drbg);
	mbedtls_entropy_free(&s->entropy);
}

struct conn {
	struct pipe up, down;
	struct end client_end, server_end;
	mbedtls_ssl_context client, server;
	int client_rc, server_rc;
};

static int pending(int rc)
{
	return rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Connects t's client to s as host; returns the client's handshake
 * result, still pending if the server gave up without telling it (the
 * connection stays set up: conn_free). */
static int connect_to(op_tls *t, struct server *s, const char *host, struct conn *c)
{
	assert_null(held.conn);
	memset(c, 0, sizeof(*c));
	held.conn = c;
	c->client_end = (struct end){ &c->down, &c->up };
	c->server_end = (struct end){ &c->up, &c->down };
	mbedtls_ssl_init(&c->client);
	mbedtls_ssl_init(&c->server);
	assert_int_equal(op_tls_setup(t, &c->client, host), 0);
	assert_int_equal(mbedtls_ssl_setup(&c->server, &s->conf), 0);
	mbedtls_ssl_set_bio(&c->client, &c->client_end, pipe_send, pipe_recv, NULL);
	mbedtls_ssl_set_bio(&c->server, &c->server_end, pipe_send, pipe_recv, NULL);
	c->client_rc = c->server_rc = MBEDTLS_ERR_SSL_WANT_READ;
	for (int i = 0; i < 100 && (pending(c->client_rc) || pending(c->server_rc)); i++) {
		if (pending(c->client_rc))
			c->client_rc = mbedtls_ssl_handshake(&c->client);
		if (pending(c->server_rc))
			c->server_rc = mbedtls_ssl_handshake(&c->server);
		if (!pending(c->client_rc) && c->client_rc != 0)
			break; /* the client gave up: the server would wait forever */
	}
	/* Only a server that gave up leaves the client waiting. */
	assert_true(!pending(c->client_rc) || (!pending(c->server_rc) && c->server_rc != 0));
	return c->client_rc;
}

static void conn_free(struct conn *c)
{
	held.conn = NULL;
	mbedtls_ssl_free(&c->client);
	mbedtls_ssl_free(&c->server);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (held.conn)
		conn_free(held.conn);
	if (held.server)
		server_free(held.server);
	for (size_t i = 0; i < sizeof(held.tls) / sizeof(held.tls[0]); i++)
		close_tls(held.tls[i]);
	unit_tmp_free(f);
	return 0;
}

static void test_tls_handshake(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;

	server_init(&s, "server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(c.server_rc, 0);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), 0);
	/* TLS 1.2 at least. */
	assert_string_equal(mbedtls_ssl_get_version(&c.client), "TLSv1.2");
	conn_free(&c);
	close_tls(t);
	server_free(&s);
}

static void test_tls_pin(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;

	server_init(&s, "server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));

	SET(f->cloud.pin_sha256, PIN_SERVER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), 0);
	conn_free(&c);
	close_tls(t);

	/* Another key: refused, and the message gives the server's pin. */
	SET(f->cloud.pin_sha256, PIN_OTHER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), -EPERM);
	assert_non_null(strstr(f->err, "pin_sha256"));
	assert_non_null(strstr(f->err, PIN_SERVER));
	conn_free(&c);
	close_tls(t);

	/* The pin is the server's own key, not its CA's. */
	SET(f->cloud.pin_sha256, PIN_CA);
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), -EPERM);
	conn_free(&c);
	close_tls(t);
	server_free(&s);
}

/* A certificate for another name: refused, in words that say so. */
static void test_tls_wrong_host(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;
	char why[256];
	int rc;

	server_init(&s, "server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	t = open_tls(f);
	rc = connect_to(t, &s, "otherhost", &c);
	assert_int_equal(rc, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	op_tls_explain(&c.client, rc, why, sizeof(why));
	assert_non_null(strstr(why, "certificate refused"));
	assert_non_null(strstr(why, "Common Name"));
	assert_null(strchr(why, '\n'));
	conn_free(&c);
	close_tls(t);
	server_free(&s);
}

/* A server whose certificate the CA did not sign; and the system store,
 * which does not hold the test CA. */
static void test_tls_untrusted_server(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;
	char why[256];
	int rc;

	server_init(&s, "other.pem", "other.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	t = open_tls(f);
	rc = connect_to(t, &s, "localhost", &c);
	assert_int_equal(rc, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	op_tls_explain(&c.client, rc, why, sizeof(why));
	assert_non_null(strstr(why, "certificate refused"));
	assert_non_null(strstr(why, "trusted CA"));
	conn_free(&c);
	close_tls(t);
	server_free(&s);

	server_init(&s, "server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, "");
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
	conn_free(&c);
	close_tls(t);
	server_free(&s);
}

/* Mutual TLS: the server asks for and verifies the client's certificate. */
static void test_tls_client_cert(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;
	const mbedtls_x509_crt *seen;
	char name[128];

	server_init(&s, "server.pem", "server.key", "ca.pem");
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.client_cert, tls_file("client.pem"));
	SET(f->cloud.client_key, tls_file("client.key"));
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(c.server_rc, 0);
	seen = mbedtls_ssl_get_peer_cert(&c.server);
	assert_non_null(seen);
	assert_true(mbedtls_x509_dn_gets(name, sizeof(name), &seen->subject) > 0);
	assert_string_equal(name, "CN=outpost-client");
	conn_free(&c);
	close_tls(t);

	/* Without one, the same server refuses the handshake. */
	SET(f->cloud.client_cert, "");
	SET(f->cloud.client_key, "");
	t = open_tls(f);
	assert_int_not_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(c.server_rc, MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE);
	conn_free(&c);
	close_tls(t);
	server_free(&s);
}

/* The session of the last connection is resumed by the next, and the pin
 * is still checked (against the certificate kept with the session). */
static void test_tls_session_resumed(void **state)
{
	struct fx *f = *state;
	struct server s;
	struct conn c;
	op_tls *t;

	server_init(&s, "server.pem", "server.key", NULL);
	SET(f->cloud.ca_file, tls_file("ca.pem"));
	SET(f->cloud.pin_sha256, PIN_SERVER);
	t = open_tls(f);
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), 0);
	conn_free(&c);
	assert_int_equal(s.resumed, 0);

	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	assert_int_equal(c.server_rc, 0);
	assert_int_equal(s.resumed, 1);
	assert_int_equal(op_tls_established(t, &c.client, f->err, sizeof(f->err)), 0);
	conn_free(&c);

	/* And again: a session serves more than one connection. */
	assert_int_equal(connect_to(t, &s, "localhost", &c), 0);
	conn_free(&c);
	assert_int_equal(s.resumed, 2);
	close_tls(t);
	server_free(&s);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_tls_open_system_store),
		T(test_tls_open_ca_file),
		T(test_tls_open_bad_ca_file),
		T(test_tls_open_directory),
		T(test_tls_open_short_err),
		T(test_tls_open_client_cert),
		T(test_tls_open_bad_client_cert),
		T(test_tls_open_bad_client_key),
		T(test_tls_open_client_key_mismatch),
		T(test_tls_pin_of_file),
		T(test_tls_pin_of_file_fails),
		T(test_tls_handshake),
		T(test_tls_pin),
		T(test_tls_wrong_host),
		T(test_tls_untrusted_server),
		T(test_tls_client_cert),
		T(test_tls_session_resumed),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
