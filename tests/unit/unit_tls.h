/*
 * unit_tls: the fixture of the tests of services/uplink/tls.c
 * (test_tls_*.c), and a TLS server for any test of a TLS client.
 *
 * The fixture: the cloud's settings at their defaults, a directory for
 * files made on the spot, the keys and certificates of tests/unit/data/tls
 * and their pins. The server: mbedTLS in the same process, over in-memory
 * pipes, with a certificate of its own, optionally requiring a client's,
 * and a session cache that counts the sessions it resumed.
 *
 * Header-only: it needs mbedTLS and tls.c, which the common layer's tests
 * cannot link (unit.h). Handles and servers are held (unit_hold) until
 * the teardown (unit_tmp_teardown).
 */
#ifndef OP_UNIT_TLS_H
#define OP_UNIT_TLS_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/x509_crt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/config.h"
#include "uplink/tls.h"
#include "unit.h"

/*
 * The pins of the fixtures, computed once by make_tls_fixtures.sh with
 *   openssl x509 -pubkey -noout -in C | openssl pkey -pubin -outform der |
 *           openssl dgst -sha256 -binary | base64
 */
#define PIN_SERVER "2r8K2ewJrnxTijSeXfbeMaoC2Z0DjU/5wWsnUBoWAdc="
#define PIN_OTHER "mXKeQ7JS7lWGGfZs8m8yPIfth9CUQ9/VqTLofWkphjs="
#define PIN_EC "jJpsQ/2xQI3X4BVxYIUBP4EzCG54a6jqpmTe5JiAioY="
#define PIN_CA "/Pm/6LMRjfmMo9gaE1zlILvnzeJTERTRiW4rCLtJ0Mc="

/* --- the fixture ---------------------------------------------------------------- */

struct tls_fx {
	struct unit_tmp tmp; /* first (unit_tmp_new): for files made on the spot */
	op_cloud_config cloud;
	char err[512];
};

static inline int tls_setup(void **state)
{
	struct tls_fx *f = unit_tmp_new(sizeof(*f));
	op_config cfg;

	if (!f)
		return -1;
	op_config_defaults(&cfg);
	f->cloud = cfg.cloud;
	*state = f;
	return 0;
}

/* The path of a fixture in tests/unit/data/tls. */
static inline const char *tls_file(const char *name)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "tls/%s", name);
	return unit_data(rel);
}

/* A file made in the test's directory from text (NULL: a directory). */
static inline const char *make_file(struct tls_fx *f, const char *name, const char *text)
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
static inline const char *concat(struct tls_fx *f, const char *name, const char *a, const char *b)
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

static inline void set(char *field, size_t size, const char *value)
{
	size_t len = strlen(value);

	assert_true(len < size);
	memcpy(field, value, len + 1);
}

#define SET(field, value) set(field, sizeof(field), value)

static inline void tls_close(void *t)
{
	op_tls_close(t);
}

/* op_tls_open of f's settings, which must succeed; held until close_tls()
 * or the teardown. */
static inline op_tls *open_tls(struct tls_fx *f)
{
	op_tls *t = NULL;

	if (op_tls_open(&f->cloud, &t, f->err, sizeof(f->err)) != 0) {
		print_error("op_tls_open: %s\n", f->err);
		fail();
	}
	return unit_hold(t, tls_close);
}

static inline void close_tls(op_tls *t)
{
	unit_release(t);
}

/* --- an in-process server ----------------------------------------------------------- */

/* One direction of a connection. */
struct pipe {
	unsigned char buf[1 << 16];
	size_t len;
};

struct end {
	struct pipe *in, *out;
};

static inline int pipe_send(void *ctx, const unsigned char *data, size_t len)
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

static inline int pipe_recv(void *ctx, unsigned char *data, size_t len)
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

static inline int cache_get(void *ctx, mbedtls_ssl_session *session)
{
	struct server *s = (struct server *)((char *)ctx - offsetof(struct server, cache));
	int rc = mbedtls_ssl_cache_get(ctx, session);

	if (rc == 0)
		s->resumed++;
	return rc;
}

static inline void server_destroy(void *p)
{
	struct server *s = p;

	mbedtls_ssl_cache_free(&s->cache);
	mbedtls_ssl_config_free(&s->conf);
	mbedtls_x509_crt_free(&s->cert);
	mbedtls_x509_crt_free(&s->ca);
	mbedtls_pk_free(&s->key);
	mbedtls_ctr_drbg_free(&s->drbg);
	mbedtls_entropy_free(&s->entropy);
	free(s);
}

/* A server with the fixtures cert and key, asking for a client's
 * certificate that client_ca signed (NULL: none); held until server_free()
 * or the teardown. */
static inline struct server *server_new(const char *cert, const char *key, const char *client_ca)
{
	struct server *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	mbedtls_ssl_config_init(&s->conf);
	mbedtls_x509_crt_init(&s->cert);
	mbedtls_x509_crt_init(&s->ca);
	mbedtls_pk_init(&s->key);
	mbedtls_entropy_init(&s->entropy);
	mbedtls_ctr_drbg_init(&s->drbg);
	mbedtls_ssl_cache_init(&s->cache);
	unit_hold(s, server_destroy);
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
	return s;
}

static inline void server_free(struct server *s)
{
	unit_release(s);
}

/* A connection of a client to a server, over two pipes. */
struct conn {
	struct pipe up, down;
	struct end client_end, server_end;
	mbedtls_ssl_context client, server;
	int client_rc, server_rc;
};

static inline void conn_destroy(void *p)
{
	struct conn *c = p;

	mbedtls_ssl_free(&c->client);
	mbedtls_ssl_free(&c->server);
	free(c);
}

static inline int pending(int rc)
{
	return rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE;
}

/* Connects t's client to s as host, into *out; returns the client's
 * handshake result, still pending if the server gave up without telling
 * it (the connection stays set up, held until conn_free() or the
 * teardown). */
static inline int connect_to(op_tls *t, struct server *s, const char *host, struct conn **out)
{
	struct conn *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	mbedtls_ssl_init(&c->client);
	mbedtls_ssl_init(&c->server);
	*out = unit_hold(c, conn_destroy);
	c->client_end = (struct end){ &c->down, &c->up };
	c->server_end = (struct end){ &c->up, &c->down };
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

static inline void conn_free(struct conn *c)
{
	unit_release(c);
}

#endif
