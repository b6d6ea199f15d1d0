"""The test "cloud PACS": Orthanc + its DICOMweb plugin behind nginx (HTTPS).

    pki = TestPKI(dir)                      # test CA + server cert for localhost
    cloud = Cloud(workdir, pki=pki).start() # Orthanc + nginx on free loopback ports
    cloud.url        -> https://localhost:PORT/dicom-web   (STOW-RS: POST {url}/studies)
    cloud.ca_file    -> the CA that signed the server certificate
    cloud.instances()-> {SOP Instance UID: Orthanc id}, from Orthanc's REST API
    cloud.stop()

Why nginx: Debian 12's Orthanc 1.10.1 crashes on its first HTTPS
connection (its civetweb looks up SSL_get_peer_certificate, which OpenSSL 3
no longer exports), so TLS ends in nginx, as it usually does in front of a
real cloud endpoint. mbedTLS 2.28 does not match IP-address SANs, so the
server is named `localhost` in certificates and URLs.

Every process is a child of this Python process, tracked by PID and ended by
PID: Orthanc (`/usr/sbin/Orthanc CONFIG`) and nginx (`daemon off`, so its
master is our child; its workers end with it). Nothing here uses
/etc/init.d, `service`, pkill or killall. Orthanc's HTTP server binds
0.0.0.0 in 1.10.1 (no bind option) on a free port; "RemoteAccessAllowed":
false makes it answer 401 to any client not on loopback. Its DICOM port is
off unless asked for. nginx listens on 127.0.0.1 (and ::1) only.

Failure injection: stop_orthanc() (nginx answers 502), stop_nginx()
(connection refused), pause_orthanc() (504 after upstream_timeout),
restart_with(server_cert=...) (bad certificates), refuse/drop PatientIDs
(Lua filter), reconfigure_orthanc(MaximumPatientCount=1) +
protect_all_patients() (storage full).

What the cloud holds is read from Orthanc's REST API (plain HTTP on
loopback), never from what the client claims.

docs/notes-orthanc.md records how Orthanc 1.10.1 + DICOMweb 1.7 answer
STOW-RS (good, garbage, refused, duplicate, wrong type, wrong study, down).
"""
import base64
import datetime
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import namedtuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outpost import free_port, wait_for

ORTHANC = "/usr/sbin/Orthanc"
NGINX = "/usr/sbin/nginx"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

# Refusing instances (quarantine tests) uses Orthanc's documented Lua
# callback ReceivedInstanceFilter(dicom, origin, info), called for every
# instance Orthanc is about to store, whatever its origin (REST, plugins such
# as DICOMweb, DICOM). Neither way of refusing gives a FailedSOPSequence entry
# in Orthanc 1.10.1 + DICOMweb 1.7 (measured; docs/notes-orthanc.md):
#  - refuse: the filter raises a Lua error. Orthanc's POST /instances fails
#    (HTTP 500), the plugin's part handler aborts, and STOW-RS answers 200
#    with that instance, and every later part of the same request, in
#    neither ReferencedSOPSequence nor FailedSOPSequence. Not stored.
#  - drop: the filter returns false (the documented way to discard). POST
#    /instances answers 200 "Status": "FilteredOut"; DICOMweb 1.7 ignores
#    that Status, so STOW-RS answers 200 with the instance in
#    ReferencedSOPSequence. Not stored: a cloud that claims success.
REFUSE_PATIENT_ID = "REFUSE-ME"
DROP_PATIENT_ID = "DROP-ME"


def _lua_filter(refuse_ids, drop_ids):
    def table(ids):
        return "{" + ", ".join(json.dumps(i) for i in ids) + "}"
    return f"""-- Written by tests/lib/cloud.py.
local refused = {table(refuse_ids)}
local dropped = {table(drop_ids)}

function ReceivedInstanceFilter(dicom, origin, info)
  for _, id in ipairs(refused) do
    if dicom.PatientID == id then
      -- Orthanc fails to store it; STOW-RS omits it from both sequences.
      error("refused by the Outpost test cloud: PatientID " .. id)
    end
  end
  for _, id in ipairs(dropped) do
    if dicom.PatientID == id then
      return false  -- discarded silently; STOW-RS still reports success
    end
  end
  return true
end
"""

CertPair = namedtuple("CertPair", "cert key")


# --------------------------------------------------------------------------
# Test PKI
# --------------------------------------------------------------------------

def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def spki_sha256_b64(cert_path):
    """Base64 of the SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    spki = load_cert(cert_path).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def spki_pin(cert_path):
    """The public-key pin in curl's --pinnedpubkey format: sha256//BASE64."""
    return "sha256//" + spki_sha256_b64(cert_path)


class TestPKI:
    """A test CA, a server certificate for `localhost`, and bad certificates
    on demand. All PEM files in `directory`; keys unencrypted (mode 0600).

    key_type "rsa" (2048 bits, the default: what most real endpoints serve)
    or "ec" (P-256). Certificates made on demand are cached by name.

        pki.ca_file                 the trusted CA (give it to the client)
        pki.server                  CertPair for DNS:localhost, signed by the CA
        pki.server_cert_for(name)   another DNS name (e.g. "otherhost")
        pki.expired_server()        localhost, but valid only in the past
        pki.not_yet_valid_server()  localhost, valid only in the future
        pki.untrusted_server()      localhost, signed by a second CA nobody trusts
        pki.client_ca_file          the CA nginx trusts for client certificates
        pki.client()                CertPair of a client certificate (mTLS)
        pki.untrusted_client()      client certificate from the untrusted CA
        pki.pin(path) / pki.pin_b64(path)
    """
    __test__ = False  # not a pytest test class despite its name

    def __init__(self, directory, key_type="rsa", reuse=False):
        """reuse=True keeps certificates and keys already in `directory` (so a
        client configured with the CA stays valid across restarts)."""
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.key_type = key_type
        self.reuse = reuse
        self._cas = {}
        self._made = {}
        self.ca_file = self._ca("ca", "Outpost Test CA").cert
        self.server = self.server_cert_for("localhost")

    # -- building blocks --

    def _new_key(self):
        if self.key_type == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def _files(self, stem, cert, key):
        pair = CertPair(os.path.join(self.dir, stem + ".pem"),
                        os.path.join(self.dir, stem + ".key"))
        _write(pair.cert, _pem_cert(cert))
        _write(pair.key, _pem_key(key), 0o600)
        return pair

    def _existing(self, stem):
        pair = CertPair(os.path.join(self.dir, stem + ".pem"),
                        os.path.join(self.dir, stem + ".key"))
        if not (self.reuse and os.path.exists(pair.cert) and os.path.exists(pair.key)):
            return None
        with open(pair.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        return load_cert(pair.cert), key, pair

    def _ca(self, stem, common_name):
        if stem in self._cas:
            return self._cas[stem][2]
        found = self._existing(stem)
        if found:
            self._cas[stem] = found
            return found[2]
        key = self._new_key()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Outpost tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        pair = self._files(stem, cert, key)
        self._cas[stem] = (cert, key, pair)
        return pair

    def _leaf(self, stem, ca_stem, ca_name, common_name, dns_names=(), client=False,
              not_before=None, not_after=None):
        if stem in self._made:
            return self._made[stem]
        found = self._existing(stem)
        if found and found[0].not_valid_after > datetime.datetime.utcnow():
            self._made[stem] = found[2]
            return found[2]
        self._ca(ca_stem, ca_name)
        ca_cert, ca_key, _ = self._cas[ca_stem]
        key = self._new_key()
        now = _now()
        not_before = not_before or now - datetime.timedelta(days=1)
        not_after = not_after or now + datetime.timedelta(days=825)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        rsa_key = self.key_type != "ec"
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Outpost tests"),
                       x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(ca_cert.subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before)
                   .not_valid_after(not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True,
                                                key_encipherment=rsa_key,
                                                content_commitment=False,
                                                data_encipherment=False, key_agreement=False,
                                                key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if dns_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                critical=False)
        pair = self._files(stem, builder.sign(ca_key, hashes.SHA256()), key)
        self._made[stem] = pair
        return pair

    # -- what tests ask for --

    def server_cert_for(self, name):
        """A server certificate for DNS name `name` (CN and SAN), signed by the test CA."""
        return self._leaf(f"server-{name}", "ca", "Outpost Test CA", name, [name])

    def expired_server(self, name="localhost"):
        now = _now()
        return self._leaf(f"expired-{name}", "ca", "Outpost Test CA", name, [name],
                          not_before=now - datetime.timedelta(days=30),
                          not_after=now - datetime.timedelta(days=1))

    def not_yet_valid_server(self, name="localhost"):
        now = _now()
        return self._leaf(f"future-{name}", "ca", "Outpost Test CA", name, [name],
                          not_before=now + datetime.timedelta(days=1),
                          not_after=now + datetime.timedelta(days=30))

    def untrusted_server(self, name="localhost"):
        """Right name, valid dates, but signed by a CA the client does not trust."""
        return self._leaf(f"untrusted-{name}", "rogue-ca", "Rogue Test CA", name, [name])

    @property
    def untrusted_ca_file(self):
        return self._ca("rogue-ca", "Rogue Test CA").cert

    @property
    def client_ca_file(self):
        """The CA nginx trusts for client certificates (ssl_client_certificate)."""
        return self._ca("client-ca", "Outpost Test Client CA").cert

    def client(self, name="outpost-test-device"):
        """A client certificate (extendedKeyUsage clientAuth) from the client CA."""
        return self._leaf(f"client-{name}", "client-ca", "Outpost Test Client CA", name,
                          client=True)

    def untrusted_client(self, name="outpost-test-device"):
        return self._leaf(f"rogue-client-{name}", "rogue-ca", "Rogue Test CA", name,
                          client=True)

    @staticmethod
    def pin(cert_path):
        """sha256//BASE64 (curl --pinnedpubkey) of the certificate's public key."""
        return spki_pin(cert_path)

    @staticmethod
    def pin_b64(cert_path):
        """BASE64 of SHA-256(DER SubjectPublicKeyInfo), without the sha256// prefix."""
        return spki_sha256_b64(cert_path)


# --------------------------------------------------------------------------
# The cloud
# --------------------------------------------------------------------------

def _htpasswd_ssha(user, password):
    """One htpasswd line in the {SSHA} scheme nginx understands."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def _child_setup():
    """In the child before exec: no blocked signals. A parent that blocks
    SIGTERM to sigwait() for it (scripts/demo-cloud) would otherwise pass the
    mask on, and Orthanc would never see the SIGTERM that stops it."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _ipv6_loopback_free(port):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::1", port))
        return True
    except OSError:
        return False


# The access log: one JSON object per request (escape=json). $connection is
# nginx's serial number of the client connection, $connection_requests the
# number of requests made on it so far (1 for the first), so tests can count
# connections and keep-alive reuse. Serial numbers start again when nginx
# restarts: a connection is identified by (pid, connection). Handshakes that
# fail write no line here (they appear in error.log at level info).
ACCESS_LOG_FORMAT = (
    '{"time":"$time_iso8601","msec":$msec,"pid":$pid,"remote_addr":"$remote_addr",'
    '"remote_port":"$remote_port","connection":$connection,'
    '"connection_requests":$connection_requests,"method":"$request_method",'
    '"uri":"$request_uri","protocol":"$server_protocol","status":$status,'
    '"request_length":$request_length,"content_length":"$content_length",'
    '"content_type":"$content_type","body_bytes_sent":$body_bytes_sent,'
    '"request_time":$request_time,"upstream_status":"$upstream_status",'
    '"upstream_response_time":"$upstream_response_time",'
    '"ssl_protocol":"$ssl_protocol","ssl_cipher":"$ssl_cipher",'
    '"ssl_session_reused":"$ssl_session_reused","ssl_client_verify":"$ssl_client_verify",'
    '"ssl_client_s_dn":"$ssl_client_s_dn","remote_user":"$remote_user",'
    '"user_agent":"$http_user_agent","expect":"$http_expect",'
    '"transfer_encoding":"$http_transfer_encoding"}')


class Cloud:
    """Orthanc 1.10 + DICOMweb plugin, behind nginx terminating HTTPS.

    Arguments (all optional except workdir):
      pki              a TestPKI (made in workdir/pki if not given)
      server_cert      CertPair nginx serves (default pki.server, for localhost)
      client_ca        path of a CA file: turns on mutual TLS (ssl_verify_client on)
      basic_auth       (user, password): nginx auth_basic with a generated htpasswd
      bearer_token     "TOKEN": nginx answers 401 unless Authorization: Bearer TOKEN
      orthanc_users    {user: password}: Orthanc's own HTTP Basic auth (not with
                       basic_auth/bearer_token: nginx passes Authorization through)
      refuse_patient_ids  PatientIDs whose instances Orthanc refuses (Lua error):
                       STOW-RS answers 200 and lists them (and the parts after
                       them) in neither sequence (default ("REFUSE-ME",))
      drop_patient_ids PatientIDs whose instances the Lua filter discards
                       (returns false): STOW-RS says stored, Orthanc holds nothing
                       (default ("DROP-ME",)). Both () or None: no Lua filter.
      overwrite_instances Orthanc's "OverwriteInstances" (Orthanc's default: False,
                       i.e. a second copy of a SOP Instance UID is not stored)
      keepalive_timeout  nginx's idle timeout for client keep-alive connections (s)
      keepalive_requests nginx's limit of requests per client connection
      client_body_timeout nginx's timeout between two reads of a request body (s)
      upstream_timeout nginx's proxy_read_timeout/proxy_send_timeout towards
                       Orthanc (s): a paused Orthanc gives 504 after this long
      dicom_port       True: enable Orthanc's DICOM server (binds 0.0.0.0) on a free port
      orthanc_extra    dict merged into Orthanc's configuration
      nginx_extra      text added to nginx's server{} block
      ssl_protocols    nginx's ssl_protocols (default "TLSv1.2 TLSv1.3")
      https_port, orthanc_port  fixed ports instead of free ones
    """

    def __init__(self, workdir, pki=None, server_cert=None, client_ca=None,
                 basic_auth=None, bearer_token=None, orthanc_users=None,
                 refuse_patient_ids=(REFUSE_PATIENT_ID,), drop_patient_ids=(DROP_PATIENT_ID,),
                 overwrite_instances=False,
                 keepalive_timeout=5, keepalive_requests=1000, client_body_timeout=60,
                 upstream_timeout=600, https_port=None, orthanc_port=None,
                 dicom_port=False, orthanc_extra=None, nginx_extra="",
                 ssl_protocols="TLSv1.2 TLSv1.3"):
        if orthanc_users and (basic_auth or bearer_token):
            raise ValueError("orthanc_users cannot be combined with nginx basic/bearer auth")
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.pki = pki or TestPKI(os.path.join(self.workdir, "pki"))
        self.server_cert = server_cert or self.pki.server
        self.client_ca = client_ca
        self.basic_auth = basic_auth
        self.bearer_token = bearer_token
        self.orthanc_users = dict(orthanc_users or {})
        self.refuse_patient_ids = tuple(refuse_patient_ids or ())
        self.drop_patient_ids = tuple(drop_patient_ids or ())
        self.overwrite_instances = overwrite_instances
        self.keepalive_timeout = keepalive_timeout
        self.keepalive_requests = keepalive_requests
        self.client_body_timeout = client_body_timeout
        self.upstream_timeout = upstream_timeout
        self.nginx_extra = nginx_extra
        self.ssl_protocols = ssl_protocols

        self.orthanc_port = orthanc_port or free_port()
        self.https_port = https_port or free_port()
        self.dicom_port = free_port() if dicom_port else None
        # nginx's stub_status, plain HTTP on loopback (access_log()).
        self.status_port = free_port()
        self.orthanc_dir = os.path.join(self.workdir, "orthanc")
        self.nginx_dir = os.path.join(self.workdir, "nginx")
        for d in ("storage", "index"):
            os.makedirs(os.path.join(self.orthanc_dir, d), exist_ok=True)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.nginx_dir, "tmp", d), exist_ok=True)
        self.orthanc_config = os.path.join(self.orthanc_dir, "orthanc.json")
        self.orthanc_log = os.path.join(self.orthanc_dir, "orthanc.log")
        self.orthanc_stdout = os.path.join(self.orthanc_dir, "stdout.log")
        self.nginx_config = os.path.join(self.nginx_dir, "nginx.conf")
        self.nginx_pid_file = os.path.join(self.nginx_dir, "nginx.pid")
        self.error_log = os.path.join(self.nginx_dir, "error.log")
        self.access_log_path = os.path.join(self.nginx_dir, "access.log")
        self.htpasswd = os.path.join(self.nginx_dir, "htpasswd")
        self.orthanc_extra = dict(orthanc_extra or {})
        self.orthanc = None
        self.nginx = None
        self._write_orthanc_config()

    # -- addresses --

    @property
    def base_url(self):
        return f"https://localhost:{self.https_port}"

    @property
    def url(self):
        """The DICOMweb root the uplink is given (STOW-RS: POST {url}/studies)."""
        return f"{self.base_url}/dicom-web"

    @property
    def stow_url(self):
        return f"{self.url}/studies"

    @property
    def ca_file(self):
        return self.pki.ca_file

    @property
    def orthanc_url(self):
        """Orthanc's REST API, plain HTTP on loopback (for checks, not for the uplink)."""
        return f"http://127.0.0.1:{self.orthanc_port}"

    @property
    def server_pin(self):
        """sha256//BASE64 of the public key nginx serves now."""
        return spki_pin(self.server_cert.cert)

    # -- configuration files --

    def _write_orthanc_config(self):
        config = {
            "Name": "OutpostTestCloud",
            "StorageDirectory": os.path.join(self.orthanc_dir, "storage"),
            "IndexDirectory": os.path.join(self.orthanc_dir, "index"),
            "StorageCompression": False,
            "StoreMD5ForAttachments": True,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpServerEnabled": True,
            "HttpPort": self.orthanc_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.orthanc_users),
            "DicomServerEnabled": self.dicom_port is not None,
            "DicomPort": self.dicom_port or free_port(),
            "DicomAet": "OUTPOSTCLOUD",
            "OverwriteInstances": self.overwrite_instances,
            "SaveJobs": False,
            "HttpDescribeErrors": True,
            "LuaScripts": [],
        }
        if self.orthanc_users:
            config["RegisteredUsers"] = self.orthanc_users
        if self.refuse_patient_ids or self.drop_patient_ids:
            lua = os.path.join(self.orthanc_dir, "filter.lua")
            with open(lua, "w") as f:
                f.write(_lua_filter(self.refuse_patient_ids, self.drop_patient_ids))
            config["LuaScripts"].append(lua)
        config.update(self.orthanc_extra)
        with open(self.orthanc_config, "w") as f:
            json.dump(config, f, indent=2)

    def _write_nginx_config(self):
        n = self.nginx_dir
        listen = [f"listen 127.0.0.1:{self.https_port} ssl;"]
        if _ipv6_loopback_free(self.https_port):
            # Some hosts resolve localhost to ::1 first.
            listen.append(f"listen [::1]:{self.https_port} ssl;")
        auth = []
        if self.basic_auth:
            user, password = self.basic_auth
            with open(self.htpasswd, "w") as f:
                f.write(_htpasswd_ssha(user, password))
            auth += ['auth_basic "Outpost test cloud";',
                     f"auth_basic_user_file {self.htpasswd};"]
        if self.bearer_token:
            auth += [f'if ($http_authorization != "Bearer {self.bearer_token}") {{',
                     '    add_header WWW-Authenticate \'Bearer realm="outpost-test"\' always;',
                     "    return 401;",
                     "}"]
        mtls = []
        if self.client_ca:
            mtls += [f"ssl_client_certificate {self.client_ca};",
                     "ssl_verify_client on;",
                     "ssl_verify_depth 2;"]
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = f"""# Written by tests/lib/cloud.py
{user}
daemon off;
master_process on;
worker_processes 1;
pid {self.nginx_pid_file};
error_log {self.error_log} info;

events {{
    worker_connections 512;
}}

http {{
    log_format outpost escape=json '{ACCESS_LOG_FORMAT}';
    access_log {self.access_log_path} outpost;

    client_body_temp_path {n}/tmp/body;
    proxy_temp_path {n}/tmp/proxy;
    fastcgi_temp_path {n}/tmp/fastcgi;
    uwsgi_temp_path {n}/tmp/uwsgi;
    scgi_temp_path {n}/tmp/scgi;

    default_type application/octet-stream;
    server_tokens off;

    # Client connections: HTTP/1.1 keep-alive, closed after this long idle
    # or after this many requests.
    keepalive_timeout {self.keepalive_timeout}s;
    keepalive_requests {self.keepalive_requests};
    client_body_timeout {self.client_body_timeout}s;
    send_timeout 60s;

    server {{
        {chr(10).join('        ' + line for line in listen).lstrip()}
        server_name localhost;

        ssl_certificate {self.server_cert.cert};
        ssl_certificate_key {self.server_cert.key};
        ssl_protocols {self.ssl_protocols};
        ssl_session_cache shared:outpost:1m;
        ssl_session_timeout 10m;
{chr(10).join('        ' + line for line in mtls)}

        client_max_body_size 0;

        location / {{
{chr(10).join('            ' + line for line in auth)}
            proxy_pass http://127.0.0.1:{self.orthanc_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "close";
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
            proxy_read_timeout {self.upstream_timeout}s;
            proxy_send_timeout {self.upstream_timeout}s;
        }}
{self.nginx_extra}
    }}

    # The harness's own window on nginx (Cloud.wait_logged()): requests in
    # progress. Not in the access log.
    server {{
        listen 127.0.0.1:{self.status_port};
        access_log off;
        location = /status {{
            stub_status;
        }}
    }}
}}
"""
        with open(self.nginx_config, "w") as f:
            f.write(conf)

    # -- processes --

    def start(self):
        try:
            self.start_orthanc()
            self.start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        self.stop_nginx()
        self.stop_orthanc()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start_orthanc(self, timeout=30):
        if self.orthanc and self.orthanc.poll() is None:
            return
        out = open(self.orthanc_stdout, "a")
        self.orthanc = subprocess.Popen(
            [ORTHANC, f"--logfile={self.orthanc_log}", self.orthanc_config],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.orthanc_dir, preexec_fn=_child_setup)
        out.close()
        try:
            wait_for(lambda: self.orthanc.poll() is not None or self._orthanc_answers(),
                     timeout, what="Orthanc to answer /system")
        except TimeoutError:
            self.stop_orthanc()
            raise
        if self.orthanc.poll() is not None:
            raise RuntimeError(f"Orthanc exited {self.orthanc.returncode}:\n"
                               f"{self._tail(self.orthanc_stdout)}{self._tail(self.orthanc_log)}")

    def _orthanc_answers(self):
        try:
            self.rest("GET", "/system", timeout=2)
            return True
        except (OSError, urllib.error.URLError):
            return False

    def stop_orthanc(self, timeout=30):
        """SIGTERM to Orthanc's PID (graceful); nginx keeps answering (502)."""
        self._end(self.orthanc, signal.SIGTERM, timeout)

    def reconfigure_orthanc(self, **options):
        """Restarts Orthanc (same port, same storage and index) with these
        configuration options changed, e.g. MaximumPatientCount=1."""
        self.orthanc_extra.update(options)
        self.stop_orthanc()
        self._write_orthanc_config()
        self.start_orthanc()

    def pause_orthanc(self):
        """SIGSTOP to Orthanc's PID: a hung cloud. TCP connections to it still
        complete (kernel backlog), so nginx forwards the request and waits:
        the client gets nothing until upstream_timeout, then 504."""
        self.orthanc.send_signal(signal.SIGSTOP)

    def resume_orthanc(self):
        self.orthanc.send_signal(signal.SIGCONT)

    def kill_orthanc(self):
        """SIGKILL to Orthanc's PID: the cloud dies mid-request."""
        self._end(self.orthanc, signal.SIGKILL, 30)

    def start_nginx(self, timeout=30):
        if self.nginx and self.nginx.poll() is None:
            return
        self._write_nginx_config()
        if os.path.exists(self.nginx_pid_file):
            os.unlink(self.nginx_pid_file)
        err = open(os.path.join(self.nginx_dir, "stderr.log"), "a")
        # -p: prefix for relative paths; -e: the error log before the config is read.
        self.nginx = subprocess.Popen(
            [NGINX, "-p", self.nginx_dir + "/", "-e", self.error_log, "-c", self.nginx_config],
            stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup)
        err.close()
        # nginx writes its pid file after it has bound its listening sockets
        # (no probe connection: it would show in the logs and take a serial).
        try:
            wait_for(lambda: self.nginx.poll() is not None or
                     os.path.exists(self.nginx_pid_file), timeout, what="nginx to listen")
        except TimeoutError:
            self.stop_nginx()
            raise
        if self.nginx.poll() is not None:
            raise RuntimeError(f"nginx exited {self.nginx.returncode}:\n"
                               f"{self._tail(os.path.join(self.nginx_dir, 'stderr.log'))}"
                               f"{self._tail(self.error_log)}")

    def stop_nginx(self, timeout=30):
        """SIGTERM to nginx's master PID (fast shutdown: open connections are
        closed); the port then refuses connections."""
        self._end(self.nginx, signal.SIGTERM, timeout)

    def restart_nginx(self):
        self.stop_nginx()
        self.start_nginx()

    def restart_with(self, server_cert=None, client_ca=False, basic_auth=False,
                     bearer_token=False, keepalive_timeout=None):
        """Restarts nginx on the same port with a changed configuration.
        Arguments left out keep their value; pass None to turn off client_ca,
        basic_auth or bearer_token."""
        if server_cert is not None:
            self.server_cert = server_cert
        if client_ca is not False:
            self.client_ca = client_ca
        if basic_auth is not False:
            self.basic_auth = basic_auth
        if bearer_token is not False:
            self.bearer_token = bearer_token
        if keepalive_timeout is not None:
            self.keepalive_timeout = keepalive_timeout
        self.restart_nginx()

    @staticmethod
    def _end(proc, sig, timeout):
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)  # in case it was paused
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @staticmethod
    def _tail(path, n=4000):
        try:
            with open(path, errors="replace") as f:
                return f.read()[-n:]
        except FileNotFoundError:
            return ""

    def pids(self):
        """{name: pid} of the running children."""
        return {name: p.pid for name, p in (("orthanc", self.orthanc), ("nginx", self.nginx))
                if p is not None and p.poll() is None}

    # -- Orthanc's REST API (the oracle) --

    def rest(self, method, path, body=None, headers=None, timeout=30, raw=False):
        """One request to Orthanc's REST API; JSON-decoded unless raw."""
        req = urllib.request.Request(self.orthanc_url + path, data=body, method=method,
                                     headers=dict(headers or {}))
        if self.orthanc_users:
            user, password = next(iter(self.orthanc_users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
        return data if raw else json.loads(data or b"null")

    def instances(self):
        """{SOP Instance UID: Orthanc instance id} of everything Orthanc holds."""
        out = {}
        for item in self.rest("GET", "/instances?expand"):
            out[item["MainDicomTags"]["SOPInstanceUID"]] = item["ID"]
        return out

    def instance_count(self):
        return self.rest("GET", "/statistics")["CountInstances"]

    def _id(self, uid):
        ids = self.rest("POST", "/tools/lookup", uid.encode())
        ids = [i["ID"] for i in ids if i["Type"] == "Instance"]
        if not ids:
            raise KeyError(uid)
        return ids[0]

    def instance_file(self, uid):
        """The DICOM file Orthanc stored for this SOP Instance UID (bytes)."""
        return self.rest("GET", f"/instances/{self._id(uid)}/file", raw=True)

    def instance_sha256(self, uid):
        return hashlib.sha256(self.instance_file(uid)).hexdigest()

    def instance_md5(self, uid):
        """The MD5 Orthanc recorded for the stored file (StoreMD5ForAttachments)."""
        return self.rest("GET", f"/instances/{self._id(uid)}/attachments/dicom/md5",
                         raw=True).decode().strip()

    def instance_tags(self, uid):
        return self.rest("GET", f"/instances/{self._id(uid)}/simplified-tags")

    def protect_all_patients(self):
        """Marks every patient protected from recycling. With
        reconfigure_orthanc(MaximumPatientCount=N) this makes the storage
        "full": Orthanc refuses new patients (error "The file storage is full")."""
        for pid in self.rest("GET", "/patients"):
            self.rest("PUT", f"/patients/{pid}/protected", b"1", raw=True)

    def delete_all(self):
        for oid in self.instances().values():
            self.rest("DELETE", f"/instances/{oid}")

    # -- nginx's access log --

    def wait_logged(self, timeout=5):
        """Waits until nginx has no request in progress, so that every
        request a client has had its answer to is in the access log. nginx
        writes a request's line when it frees the request: after the last
        byte of the answer has gone out, so a client can read the answer
        before the line is there (and after a lingering close, when the
        client has closed). Requests still in progress after `timeout`
        seconds (an upload under way, a paused Orthanc) are not logged yet:
        the log is then read as it stands."""
        if self.nginx is None or self.nginx.poll() is not None:
            return  # stopped: nginx logged what it had before it exited
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.status_port}/status", timeout=2) as resp:
                    status = resp.read().decode()
            except OSError:
                return  # nginx is going away
            # "Reading: R Writing: W Waiting: K"; this request is one writing.
            counts = dict(re.findall(r"(Reading|Writing): (\d+)", status))
            if int(counts["Reading"]) == 0 and int(counts["Writing"]) == 1:
                return
            time.sleep(0.01)

    def access_log(self):
        """The access log, one dict per request (see ACCESS_LOG_FORMAT), once
        nginx has logged the requests it has answered (wait_logged())."""
        self.wait_logged()
        out = []
        try:
            with open(self.access_log_path) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        out.append(json.loads(line))
        except FileNotFoundError:
            pass
        return out

    def requests(self, method="POST", uri_prefix="/dicom-web/studies"):
        return [r for r in self.access_log()
                if r["method"] == method and r["uri"].startswith(uri_prefix)]

    def connections(self, entries=None):
        """The distinct client connections in the log (or in `entries`), as
        sorted (nginx worker pid, connection serial number) pairs."""
        return sorted({(r["pid"], r["connection"])
                       for r in (entries if entries is not None else self.access_log())})

    def error_log_text(self):
        return self._tail(self.error_log, 1 << 20)

    def orthanc_log_text(self):
        return self._tail(self.orthanc_log, 1 << 20)


def curl_args(cloud, *extra):
    """A curl command line that trusts the cloud's CA (for tests and demos)."""
    return ["curl", "-sS", "--cacert", cloud.ca_file, "-H", "Expect:", *extra]


def multipart_related(parts, boundary=None, content_type="application/dicom"):
    """A STOW-RS body from a list of bytes (or (bytes, content_type) pairs).
    Returns (body, Content-Type header value)."""
    boundary = boundary or "outpost-" + os.urandom(12).hex()
    out = []
    for part in parts:
        data, ctype = part if isinstance(part, tuple) else (part, content_type)
        out.append(f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.append(data)
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    header = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(out), header
