"""A client of the uplink's status API (docs/API.md), over its TCP
listener or its Unix socket, for the tests."""
import base64
import http.client
import json
import socket

import nacl.pwhash

from outpost import write_ini


def password_hash(password):
    """The [console] password_hash of password, as outpostctl passwd writes
    it (libsodium crypto_pwhash_str, Argon2id)."""
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=2,
                                    memlimit=19 * 1024 * 1024).decode()


def set_password(rx, password):
    """Writes a console password into the receiver's (and so its uplink's)
    config file; the uplink reads it at start or on SIGHUP."""
    rx.config.setdefault("console", {})["password_hash"] = password_hash(password)
    write_ini(rx.ini, rx.config)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Response:
    def __init__(self, r):
        self.status = r.status
        self.headers = r.headers
        self.body = r.read()

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode()


class Api:
    """API calls on one listener. With password set, HTTP Basic is sent;
    login() switches to a session cookie instead."""

    def __init__(self, rx, password=None, unix=False, timeout=30, ca_file=None):
        host, port = rx.config["console"]["listen"].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.socket_path = rx.config["console"]["socket"]
        self.unix = unix
        self.password = password
        self.cookie = None
        self.timeout = timeout
        self.ca_file = ca_file  # HTTPS, verifying the console against this CA

    def _conn(self):
        if self.unix:
            return _UnixConnection(self.socket_path, self.timeout)
        if self.ca_file:
            import ssl
            ctx = ssl.create_default_context(cafile=self.ca_file)
            return http.client.HTTPSConnection("localhost", self.port, timeout=self.timeout,
                                               context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None, auth=True, csrf=True):
        """With csrf, a request that is not GET or HEAD carries the
        console's custom header (X-Outpost-Request), as its page does."""
        h = dict(headers or {})
        if csrf and method not in ("GET", "HEAD"):
            h.setdefault("X-Outpost-Request", "1")
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if auth and self.cookie:
            h["Cookie"] = self.cookie
        elif auth and self.password is not None:
            token = base64.b64encode(f"admin:{self.password}".encode()).decode()
            h["Authorization"] = f"Basic {token}"
        c = self._conn()
        try:
            c.request(method, path, body=body, headers=h)
            return Response(c.getresponse())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def login(self, password=None):
        r = self.post("/api/login", {"password": password or self.password}, auth=False)
        if r.status == 200:
            self.cookie = r.headers["Set-Cookie"].split(";", 1)[0]
        return r

    def ok(self, method, path, body=None):
        """The JSON of a call that must succeed."""
        r = self.request(method, path, body)
        assert r.status == 200, f"{method} {path}: {r.status} {r.body[:500]!r}"
        return r.json()
