#!/bin/sh
# Test-only keys and certificates for tests/unit/test_tls*.c, made once with
# the openssl CLI (OpenSSL 3.0, Debian 12) and committed; nothing here
# protects anything. Run from this directory: sh make_tls_fixtures.sh
# It prints the pins that unit_tls.h hardcodes (PIN_*): re-run, copy them.
set -eu
days=36500 # 100 years: the tests must not expire

# A CA, and a server certificate for localhost and a client one it signs.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days \
	-subj "/CN=Outpost test CA" -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
	-days $days -extfile /dev/stdin <<EXT
subjectAltName=DNS:localhost
extendedKeyUsage=serverAuth
EXT
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=outpost-client"
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem \
	-days $days -extfile /dev/stdin <<EXT
extendedKeyUsage=clientAuth
EXT
rm -f server.csr client.csr ca.srl

# The client key under a passphrase (mbedTLS is given none).
openssl pkey -in client.key -aes256 -passout pass:outpost-test -out client_encrypted.key

# A self-signed certificate for localhost that the CA did not sign.
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days $days \
	-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost"

# An EC (P-256) self-signed certificate: a pin of another key type.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key \
	-out ec.pem -days $days -subj "/CN=Outpost test EC"

# Not certificates: text, and a CA file whose second certificate is corrupt.
printf 'This is not a certificate.\n' >not_pem.txt
{ cat ca.pem; sed -e '5s/[A-Za-z]/#/g' other.pem; } >corrupt_bundle.pem
chmod 644 ./*.key # what git keeps anyway

for c in server.pem other.pem ec.pem ca.pem; do
	printf '%s ' "$c"
	openssl x509 -pubkey -noout -in "$c" | openssl pkey -pubin -outform der |
		openssl dgst -sha256 -binary | base64
done
