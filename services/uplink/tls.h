/*
 * tls: TLS configurations (mbedTLS 2.28: TLS 1.2), and the glue between
 * mbedTLS and bytes that libuv reads.
 *
 * The uplink's client configuration: certificate verification and the
 * hostname check are always on; the CA is [cloud] ca_file or the system
 * store /etc/ssl/certs; an optional pin of the server's public key; an
 * optional client certificate (mutual TLS); the last session is kept for
 * resumption. The console's server configuration: its certificate and
 * key ([console] tls_cert, tls_key).
 *
 * Loop thread only.
 */
#ifndef OP_TLS_H
#define OP_TLS_H

#include <mbedtls/ssl.h>
#include <stddef.h>

#include "common/config.h"

typedef struct op_tls op_tls;

/* Loads CA, client certificate and key. -EINVAL with the reason in err. */
int op_tls_open(const op_cloud_config *cfg, op_tls **out, char *err, size_t errlen);

/* A server's configuration from a PEM certificate (chain) and its key.
 * -EINVAL with the reason in err, naming tls_cert or tls_key. */
int op_tls_open_server(const char *cert_file, const char *key_file, op_tls **out, char *err,
		       size_t errlen);

/* Releases t: it is freed with its last holder. Accepts NULL. */
void op_tls_close(op_tls *t);

/* One more holder of t (a connection, a link test: a reload replaces the
 * uplink's configuration while they still use it). Returns t. */
op_tls *op_tls_ref(op_tls *t);

/* Sets up a connection's context: a client's for host (with the saved
 * session), a server's with host NULL. */
int op_tls_setup(op_tls *t, mbedtls_ssl_context *ssl, const char *host);

/*
 * After a successful handshake: checks the pin (if configured) and saves
 * the session for the next connection. -EPERM with the reason in err when
 * the pin does not match.
 */
int op_tls_established(op_tls *t, mbedtls_ssl_context *ssl, char *err, size_t errlen);

/* Why a handshake failed, in words a field engineer can act on. */
void op_tls_explain(const mbedtls_ssl_context *ssl, int mbedtls_err, char *buf, size_t size);

/* The SHA-256 pin (base64) of a PEM certificate file's public key, as
 * [cloud] pin_sha256 wants it. */
int op_tls_pin_of_file(const char *pem_path, char *out, size_t size);

/*
 * Ciphertext read from a socket that mbedTLS has not taken yet: the
 * connection appends what libuv read at data + len; its mbedTLS receive
 * callback gives op_tls_input_take()'s answer.
 */
typedef struct op_tls_input {
	unsigned char *data;
	size_t len, off; /* held, and taken of it */
} op_tls_input;

/* Up to len bytes into buf: the count, or MBEDTLS_ERR_SSL_WANT_READ when
 * none are held. */
int op_tls_input_take(op_tls_input *in, unsigned char *buf, size_t len);

/* Moves the bytes not yet taken to the front of data. */
void op_tls_input_compact(op_tls_input *in);

#endif
