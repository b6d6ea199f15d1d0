/*
 * tls: mbedTLS configurations, client and server (see tls.h).
 */
#include "uplink/tls.h"

#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SYSTEM_CA_DIR "/etc/ssl/certs"

struct op_tls {
	mbedtls_ssl_config conf;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt ca, own_cert;
	mbedtls_pk_context own_key;
	mbedtls_ssl_session session;
	int have_session;
	char pin[64];
	int holders;
};

static void mbed_error(int rc, const char *what, const char *path, char *err, size_t errlen)
{
	char why[128];

	mbedtls_strerror(rc, why, sizeof(why));
	snprintf(err, errlen, "%s %s: %s", what, path, why);
}

/* mbedTLS reads a directory as a file of LONG_MAX bytes, and then reports
 * that it could not allocate them: say what is wrong instead. */
static int not_a_file(const char *what, const char *path, char *err, size_t errlen)
{
	struct stat sb;

	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s %s: not a file", what, path);
		return 1;
	}
	return 0;
}

/* The part both ends share: TLS 1.2 at least (all mbedTLS 2.28 has),
 * mbedTLS's defaults otherwise, a seeded random generator. NULL with the
 * reason in err. */
static op_tls *tls_new(int endpoint, const char *pers, char *err, size_t errlen)
{
	op_tls *t = calloc(1, sizeof(*t));
	int rc;

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_x509_crt_init(&t->own_cert);
	mbedtls_pk_init(&t->own_key);
	mbedtls_ssl_session_init(&t->session);
	t->holders = 1;
	rc = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
				   (const unsigned char *)pers, strlen(pers));
	if (rc) {
		mbed_error(rc, "seeding the random generator", "", err, errlen);
		goto fail;
	}
	rc = mbedtls_ssl_config_defaults(&t->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
					 MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc) {
		mbed_error(rc, "TLS configuration", "", err, errlen);
		goto fail;
	}
	mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
	return t;
fail:
	op_tls_close(t);
	return NULL;
}

int op_tls_open(const op_cloud_config *cfg, op_tls **out, char *err, size_t errlen)
{
	op_tls *t = tls_new(MBEDTLS_SSL_IS_CLIENT, "outpost-uplink", err, errlen);
	int rc;

	*out = NULL;
	if (!t)
		return -EINVAL;
	snprintf(t->pin, sizeof(t->pin), "%s", cfg->pin_sha256);
	if (*cfg->ca_file) {
		if (not_a_file("ca_file", cfg->ca_file, err, errlen))
			goto fail;
		rc = mbedtls_x509_crt_parse_file(&t->ca, cfg->ca_file);
		if (rc) {
			mbed_error(rc, "ca_file", cfg->ca_file, err, errlen);
			goto fail;
		}
	} else {
		/* A store may hold a few certificates mbedTLS cannot read: a
		 * positive count of them is not an error while others loaded. */
		rc = mbedtls_x509_crt_parse_path(&t->ca, SYSTEM_CA_DIR);
		if (rc < 0 || t->ca.version == 0) {
			snprintf(err, errlen,
				 "no CA certificate could be loaded from %s; set ca_file",
				 SYSTEM_CA_DIR);
			goto fail;
		}
	}
	if (*cfg->client_cert) {
		if (not_a_file("client_cert", cfg->client_cert, err, errlen) ||
		    not_a_file("client_key", cfg->client_key, err, errlen))
			goto fail;
		rc = mbedtls_x509_crt_parse_file(&t->own_cert, cfg->client_cert);
		if (rc) {
			mbed_error(rc, "client_cert", cfg->client_cert, err, errlen);
			goto fail;
		}
		rc = mbedtls_pk_parse_keyfile(&t->own_key, cfg->client_key, NULL);
		if (rc) {
			mbed_error(rc, "client_key", cfg->client_key, err, errlen);
			goto fail;
		}
		/* Else every handshake fails, with an alert that does not say why. */
		if (mbedtls_pk_check_pair(&t->own_cert.pk, &t->own_key) != 0) {
			snprintf(err, errlen, "client_key %s is not the key of client_cert %s",
				 cfg->client_key, cfg->client_cert);
			goto fail;
		}
	}
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
	mbedtls_ssl_conf_session_tickets(&t->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
	if (*cfg->client_cert) {
		rc = mbedtls_ssl_conf_own_cert(&t->conf, &t->own_cert, &t->own_key);
		if (rc) {
			mbed_error(rc, "client certificate", cfg->client_cert, err, errlen);
			goto fail;
		}
	}
	*out = t;
	return 0;
fail:
	op_tls_close(t);
	return -EINVAL;
}

int op_tls_open_server(const char *cert_file, const char *key_file, op_tls **out, char *err,
		       size_t errlen)
{
	op_tls *t = tls_new(MBEDTLS_SSL_IS_SERVER, "outpost-console", err, errlen);
	char why[160];
	int rc;

	*out = NULL;
	if (!t)
		return -EINVAL;
	if ((rc = mbedtls_x509_crt_parse_file(&t->own_cert, cert_file)) != 0) {
		mbed_error(rc, "tls_cert", cert_file, err, errlen);
		goto fail;
	}
	if ((rc = mbedtls_pk_parse_keyfile(&t->own_key, key_file, NULL)) != 0) {
		mbed_error(rc, "tls_key", key_file, err, errlen);
		goto fail;
	}
	if ((rc = mbedtls_ssl_conf_own_cert(&t->conf, &t->own_cert, &t->own_key)) != 0) {
		mbedtls_strerror(rc, why, sizeof(why));
		snprintf(err, errlen, "tls_cert and tls_key do not match: %s", why);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	op_tls_close(t);
	return -EINVAL;
}

op_tls *op_tls_ref(op_tls *t)
{
	if (t)
		t->holders++;
	return t;
}

void op_tls_close(op_tls *t)
{
	if (!t || --t->holders > 0)
		return;
	mbedtls_ssl_session_free(&t->session);
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_x509_crt_free(&t->ca);
	mbedtls_x509_crt_free(&t->own_cert);
	mbedtls_pk_free(&t->own_key);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	free(t);
}

int op_tls_setup(op_tls *t, mbedtls_ssl_context *ssl, const char *host)
{
	int rc = mbedtls_ssl_setup(ssl, &t->conf);

	if (rc == 0 && host)
		rc = mbedtls_ssl_set_hostname(ssl, host);
	if (rc == 0 && t->have_session)
		mbedtls_ssl_set_session(ssl, &t->session); /* failure: a full handshake */
	return rc ? -EINVAL : 0;
}

/* base64(SHA-256(SubjectPublicKeyInfo DER)) of a certificate. */
static int pin_of(const mbedtls_x509_crt *crt, char *out, size_t size)
{
	unsigned char der[2048], digest[32];
	size_t olen = 0;
	int len = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)&crt->pk, der, sizeof(der));

	if (len <= 0)
		return -EINVAL;
	/* mbedTLS writes the DER at the end of the buffer. */
	if (mbedtls_sha256_ret(der + sizeof(der) - len, (size_t)len, digest, 0) != 0 ||
	    mbedtls_base64_encode((unsigned char *)out, size, &olen, digest, sizeof(digest)) != 0)
		return -EINVAL;
	return 0;
}

int op_tls_established(op_tls *t, mbedtls_ssl_context *ssl, char *err, size_t errlen)
{
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(ssl);
	char got[64];

	if (*t->pin) {
		if (!peer || pin_of(peer, got, sizeof(got)) < 0) {
			snprintf(err, errlen,
				 "cannot read the server's public key for the pin check");
			return -EPERM;
		}
		if (strcmp(got, t->pin) != 0) {
			snprintf(err, errlen,
				 "the server's public key (pin %s) does not match pin_sha256", got);
			return -EPERM;
		}
	}
	mbedtls_ssl_session_free(&t->session);
	mbedtls_ssl_session_init(&t->session);
	t->have_session = mbedtls_ssl_get_session(ssl, &t->session) == 0;
	return 0;
}

void op_tls_explain(const mbedtls_ssl_context *ssl, int mbedtls_err, char *buf, size_t size)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(ssl);
	char why[256] = "";

	if (mbedtls_err == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags && flags != (uint32_t)-1) {
		/* One line: the verify info is a list of lines. */
		mbedtls_x509_crt_verify_info(why, sizeof(why), "", flags);
		for (char *p = why; *p; p++)
			if (*p == '\n')
				*p = p[1] ? ';' : '\0';
		snprintf(buf, size, "certificate refused: %s", why);
		return;
	}
	mbedtls_strerror(mbedtls_err, why, sizeof(why));
	snprintf(buf, size, "TLS handshake failed: %s", why);
}

int op_tls_pin_of_file(const char *pem_path, char *out, size_t size)
{
	mbedtls_x509_crt crt;
	int rc;

	mbedtls_x509_crt_init(&crt);
	if (not_a_file("certificate", pem_path, NULL, 0))
		rc = -EINVAL;
	else
		rc = mbedtls_x509_crt_parse_file(&crt, pem_path) == 0 ? pin_of(&crt, out, size)
								      : -EINVAL;
	mbedtls_x509_crt_free(&crt);
	return rc;
}

int op_tls_input_take(op_tls_input *in, unsigned char *buf, size_t len)
{
	size_t n = in->len - in->off;

	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	if (n > len)
		n = len;
	memcpy(buf, in->data + in->off, n);
	in->off += n;
	if (in->off == in->len)
		in->off = in->len = 0;
	return (int)n;
}

void op_tls_input_compact(op_tls_input *in)
{
	if (in->off == 0)
		return;
	memmove(in->data, in->data + in->off, in->len - in->off);
	in->len -= in->off;
	in->off = 0;
}
