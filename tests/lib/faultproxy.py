"""A fault-injecting HTTPS proxy between outpost-uplink and the test cloud.

    proxy = FaultProxy(("127.0.0.1", cloud.orthanc_port), pki.server).start()
    uplink [cloud] url = proxy.url, ca_file = pki.ca_file
    proxy.schedule(reset(after=40000), None, status(503))  # requests 1, 2, 3, ...
    proxy.requests      one Request record per request, in arrival order
    proxy.stop()

It must see HTTP to cut a request after N body bytes or to answer half a
response, so it terminates TLS itself (Python's ssl module, serving the
test PKI's certificate for `localhost`, which the uplink verifies against
the test CA like any server).

It forwards to Orthanc's plain HTTP port on loopback, not to nginx:

 - the faults are then exactly the ones the test schedules. nginx in the
   middle adds behaviour of its own (it buffers responses, answers 408 to
   a body that stalls past client_body_timeout, closes idle keep-alive
   connections), which would mix two sources of faults in one test;
 - the bytes are encrypted once, not twice, on a 2-core machine;
 - Orthanc's REST API, the oracle of every test, is plain loopback HTTP
   anyway (Cloud.instances()). Orthanc's own quirks do not leak through:
   each request goes upstream on a new connection with `Connection:
   close`, as nginx does it (Orthanc's 1 s keep-alive never matters), and
   the uplink sends no `Expect: 100-continue` (which Orthanc alone would
   never answer; a client that sent it would stall here, visibly).

The request body is streamed to Orthanc as it arrives, so a request cut
mid-body reaches Orthanc cut too (Orthanc then stores nothing of it), and
a response is only held back or mangled after Orthanc has answered (the
instances are stored: the uplink must not conclude the opposite, nor
mark them sent without an answer).

Faults, per request, in the order requests arrive (a schedule the test
sets; after it, requests pass through untouched):

    reset(after=N)              RST once N body bytes have been read
    stall_body(after=N, seconds=S)  stop reading after N body bytes for S s, then close
    stall_response(seconds=S)   the whole request forwarded (stored), no answer for S s, close
    truncate()                  half of Orthanc's response, then close
    status(503)                 an error answer without forwarding (keep-alive)
    status(503, early=True)     the answer right after the head, the body then
                                read and discarded, the connection closed
    drop(after=N)               on a kept-alive connection: the head and N body
                                bytes read, nothing forwarded or answered, the
                                connection closed (a server's idle close racing
                                the next request)
    garbage()                   random bytes instead of an HTTP response, then close
    close()                     Orthanc's answer with `Connection: close`, then close
    close(length=False)         the same, its body delimited by the close only
    drip(pieces=P, gap=G)       Orthanc's answer in P pieces, G s apart (keep-alive)

Threads: one accepts, one per client connection (blocking sockets; the
uplink opens `connections` at most). stop() closes the listening socket,
shuts every client and upstream socket down, joins every thread and
raises if one is left.

The helpers at the end (`sent_not_held`, `drain`) check the one promise
against Orthanc's REST API while an uplink works; the uplink tests that do
not use the proxy use them too.
"""
import os
import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

from outpost import free_port

__all__ = ["FaultProxy", "Fault", "reset", "stall_body", "stall_response", "truncate",
           "status", "garbage", "close", "drip", "drop", "sent_not_held", "drain"]


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    kind: str
    after: int = 0          # reset, stall_body: body bytes read first
    seconds: float = 0.0    # stall_body, stall_response
    code: int = 503         # status
    pieces: int = 1         # drip
    gap: float = 0.0        # drip
    length: bool = True     # close: with Content-Length
    early: bool = False     # status: answered before the body was read
    reused_only: bool = False  # waits for a request on a kept-alive connection

    def __str__(self):
        args = {"reset": f"after={self.after}",
                "stall_body": f"after={self.after}, seconds={self.seconds}",
                "drop": f"after={self.after}",
                "stall_response": f"seconds={self.seconds}",
                "status": f"{self.code}, early=True" if self.early else str(self.code),
                "drip": f"pieces={self.pieces}, gap={self.gap}",
                "close": "" if self.length else "length=False"}.get(self.kind, "")
        return f"{self.kind}({args})"


def reset(after=0):
    return Fault("reset", after=after)


def stall_body(after=0, seconds=4.0):
    return Fault("stall_body", after=after, seconds=seconds)


def stall_response(seconds=4.0):
    return Fault("stall_response", seconds=seconds)


def truncate():
    return Fault("truncate")


def status(code=503, early=False):
    return Fault("status", code=code, early=early)


def garbage():
    return Fault("garbage")


def close(length=True):
    return Fault("close", length=length)


def drip(pieces=5, gap=0.8):
    return Fault("drip", pieces=pieces, gap=gap)


def drop(after=0):
    """The server closed a kept-alive connection just as the next request
    came: the head and `after` body bytes are read, nothing forwarded,
    nothing answered, the connection closed. Only applied to a request on a
    reused connection (it waits in the schedule until one comes)."""
    return Fault("drop", after=after, reused_only=True)


REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 413: "Payload Too Large",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Time-out"}


# --------------------------------------------------------------------------
# What the proxy saw
# --------------------------------------------------------------------------

@dataclass
class Request:
    """One request as the proxy saw it."""
    n: int                     # 0-based, in arrival order
    conn: int                  # 0-based serial of the client connection
    conn_request: int          # 1 for the first request on that connection
    fault: Fault = None
    method: str = ""
    path: str = ""
    headers: dict = field(default_factory=dict)  # lower-case names
    content_length: int = 0
    body_read: int = 0         # body bytes read from the uplink
    uids: list = field(default_factory=list)  # SOP Instance UIDs of the parts seen
    forwarded: bool = False    # Orthanc received the whole body
    upstream_status: int = None
    answered: int = None       # status line sent back whole (None: no full answer)
    outcome: str = ""          # what the proxy did, e.g. "passed", "reset", "stalled"
    started: float = 0.0       # time.monotonic()
    ended: float = 0.0


def _meta_sop_uid(part):
    """MediaStorageSOPInstanceUID (0002,0003) from the start of a Part-10
    file (the meta group is explicit VR little endian); None if not there."""
    if part[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(part):
        group, elem = struct.unpack_from("<HH", part, pos)
        if group != 2:
            return None
        vr = part[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            if pos + 12 > len(part):
                return None
            length, head = struct.unpack_from("<I", part, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", part, pos + 6)[0], 8
        if elem == 3:
            value = part[pos + head:pos + head + length]
            return value.rstrip(b"\0 ").decode("ascii") if len(value) == length else None
        pos += head + length
    return None


def _part_uids(content_type, body):
    """The SOP Instance UIDs of the parts of a (possibly partial) body."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not m:
        return []
    out = []
    for chunk in bytes(body).split(b"--" + m.group(1).encode())[1:]:
        _, sep, data = chunk.partition(b"\r\n\r\n")
        uid = _meta_sop_uid(data) if sep else None
        if uid:
            out.append(uid)
    return out


# --------------------------------------------------------------------------
# The proxy
# --------------------------------------------------------------------------

KEEP, CLOSE, RST = "keep", "close", "rst"  # what becomes of a client connection


class _Closed(Exception):
    """The client or the proxy ended the connection."""


class FaultProxy:
    """HTTPS on 127.0.0.1:port (certificate `cert`, a TestPKI CertPair) to
    plain HTTP at upstream (host, port)."""

    POLL = 0.2  # socket timeout: how often blocked threads look at stop()

    def __init__(self, upstream, cert, port=None, path="/dicom-web"):
        self.upstream = upstream
        self.port = port or free_port()
        self.path = path
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.cert, cert.key)
        self.requests = []          # Request records
        self.handshake_failures = []
        self.connections = 0
        self._lock = threading.Lock()
        self._faults = []
        self._default = None
        self._stopping = threading.Event()
        self._threads = []
        self._sockets = set()
        self._listener = None

    @property
    def url(self):
        return f"https://localhost:{self.port}{self.path}"

    # -- the schedule --

    def schedule(self, *faults, then=None):
        """The faults of the next requests, in arrival order (None: pass);
        `then` for every request after them (default: pass)."""
        with self._lock:
            self._faults = list(faults)
            self._default = then

    def pending_faults(self):
        with self._lock:
            return len(self._faults)

    def faulted(self):
        """The requests a fault was applied to."""
        return [r for r in list(self.requests) if r.fault is not None]

    # -- life cycle --

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(self.POLL)
        self._listener = s
        self._spawn(self._accept_loop)
        return self

    def stop(self, timeout=15):
        self._stopping.set()
        if self._listener:
            self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        if alive:
            raise RuntimeError(f"fault proxy threads still running: {alive}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True,
                             name=f"faultproxy-{self.port}-{len(self._threads)}")
        self._threads.append(t)
        t.start()

    def _track(self, s):
        with self._lock:
            self._sockets.add(s)
        if self._stopping.is_set():  # stop() may have missed it
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return s

    def _untrack(self, s, rst=False):
        if s is None:
            return
        with self._lock:
            self._sockets.discard(s)
        try:
            if rst:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        except OSError:
            pass

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                serial = self.connections
                self.connections += 1
            self._spawn(self._serve, raw, serial)

    # -- socket helpers that give way to stop() --

    def _sleep(self, seconds):
        self._stopping.wait(seconds)

    def _recv(self, s, n=65536):
        while True:
            if self._stopping.is_set():
                raise _Closed("stopping")
            try:
                data = s.recv(n)
            except (socket.timeout, TimeoutError):
                continue
            except (ssl.SSLError, OSError) as e:
                raise _Closed(str(e))
            if not data:
                raise _Closed("eof")
            return data

    def _send(self, s, data):
        try:
            s.sendall(data)
        except (ssl.SSLError, OSError) as e:
            raise _Closed(str(e))

    # -- one client connection --

    def _serve(self, raw, serial):
        raw.settimeout(5)
        self._track(raw)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_failures.append(str(e))
            self._untrack(raw)
            return
        self._untrack(raw)  # tls owns the descriptor now
        self._track(tls)
        tls.settimeout(self.POLL)
        buf = b""
        count = 0
        rst = False
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        buf += self._recv(tls)
                    except _Closed:
                        return
                head, _, buf = buf.partition(b"\r\n\r\n")
                count += 1
                action, buf = self._one_request(tls, serial, count, head, buf)
                if action != KEEP:
                    rst = action == RST
                    return
        finally:
            self._untrack(tls, rst=rst)

    def _one_request(self, tls, serial, count, head, buf):
        """Serves one request whose head was read; returns (KEEP, CLOSE or
        RST: what becomes of the connection, the bytes read past this
        request)."""
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        with self._lock:
            if self._faults and not (self._faults[0] and self._faults[0].reused_only
                                     and count == 1):
                fault = self._faults.pop(0)
            else:
                fault = None if self._faults else self._default
            req = Request(n=len(self.requests), conn=serial, conn_request=count, fault=fault,
                          method=method, path=path, headers=headers,
                          content_length=int(headers.get("content-length") or 0),
                          started=time.monotonic())
            self.requests.append(req)
        kind = fault.kind if fault else None
        upstream = None
        try:
            if kind == "status" and fault.early:
                self._answer(tls, req, self._error(fault.code, keep=False))
                req.outcome = f"answered {fault.code} early"
                # Lingering close: what arrives of the body is read and dropped.
                got = req.body_read = len(buf)
                try:
                    while got < req.content_length:
                        got += len(self._recv(tls))
                        req.body_read = got
                except _Closed:
                    pass
                return CLOSE, b""
            if kind not in ("status", "drop"):
                try:
                    upstream = self._track(socket.create_connection(self.upstream, timeout=10))
                    upstream.settimeout(self.POLL)
                except OSError:
                    upstream = None  # Orthanc down: answered 502 below
            if upstream:
                out = [lines[0]] + [line for line in lines[1:]
                                    if line.split(":", 1)[0].strip().lower()
                                    not in ("connection", "keep-alive")]
                out.append("Connection: close")
                self._send(upstream, ("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

            # The body, streamed upstream as it arrives.
            body = bytearray()
            stop_at = fault.after if kind in ("reset", "stall_body", "drop") else None
            while len(body) < req.content_length:
                if stop_at is not None and len(body) >= stop_at:
                    break
                if not buf:
                    try:
                        buf = self._recv(tls)
                    except _Closed:
                        req.outcome = "client closed mid-body"
                        return CLOSE, b""
                want = req.content_length - len(body)
                if stop_at is not None:
                    want = min(want, stop_at - len(body))
                piece, buf = buf[:want], buf[want:]
                body += piece
                req.body_read = len(body)
                if upstream:
                    self._send(upstream, piece)
            req.uids = _part_uids(headers.get("content-type"), body)

            if kind == "reset":
                req.outcome = "reset"
                return RST, b""
            if kind == "drop":
                req.outcome = "dropped"
                return CLOSE, b""
            if kind == "stall_body":
                req.outcome = "stalled mid-body"
                self._sleep(fault.seconds)
                return CLOSE, b""
            req.forwarded = upstream is not None

            if kind == "status":
                self._answer(tls, req, self._error(fault.code))
                return KEEP, buf
            if upstream is None:
                req.outcome = "upstream down"
                self._answer(tls, req, self._error(502))
                return KEEP, buf

            status_code, resp_headers, resp_body = self._read_response(upstream)
            req.upstream_status = status_code
            self._untrack(upstream)
            upstream = None

            if kind == "stall_response":
                req.outcome = "stalled the response"
                self._sleep(fault.seconds)
                return CLOSE, b""
            if kind == "garbage":
                noise = os.urandom(600)
                noise = b"\x00" + noise[1:]  # never "HTTP/..."
                req.outcome = "garbage"
                try:
                    self._send(tls, noise)
                except _Closed:
                    pass
                return CLOSE, b""
            keep = kind not in ("close", "truncate")
            whole = self._build(status_code, resp_headers, resp_body, keep,
                                length=not (kind == "close" and not fault.length))
            if kind == "truncate":
                req.outcome = "truncated"
                try:
                    self._send(tls, whole[:len(whole) // 2])
                except _Closed:
                    pass
                return CLOSE, b""
            if kind == "drip":
                step = -(-len(whole) // fault.pieces)
                for i in range(0, len(whole), step):
                    if i:
                        self._sleep(fault.gap)
                    self._send(tls, whole[i:i + step])
                req.answered = status_code
                req.outcome = "dripped"
                req.ended = time.monotonic()
                return KEEP, buf
            self._send(tls, whole)
            req.answered = status_code
            req.ended = time.monotonic()
            if kind == "close":
                req.outcome = "answered, then closed"
                try:
                    tls.unwrap()  # close_notify, as nginx sends it
                except (ssl.SSLError, OSError, ValueError):
                    pass
                return CLOSE, b""
            req.outcome = "passed"
            return KEEP, buf
        except _Closed as e:
            req.outcome = req.outcome or f"connection lost: {e}"
            return CLOSE, b""
        finally:
            if not req.ended:
                req.ended = time.monotonic()
            self._untrack(upstream)

    def _answer(self, tls, req, data):
        req.outcome = req.outcome or f"answered {data[9:12].decode()}"
        self._send(tls, data)
        req.answered = int(data[9:12])
        req.ended = time.monotonic()

    @staticmethod
    def _error(code, keep=True):
        body = (f"<html><head><title>{code} {REASONS.get(code, 'Error')}</title></head>"
                f"<body><h1>{code}</h1>fault proxy</body></html>\r\n").encode()
        return (f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\n"
                f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n").encode() + body

    @staticmethod
    def _build(code, headers, body, keep, length=True):
        reason = REASONS.get(code, "OK" if code == 200 else "Status")
        out = [f"HTTP/1.1 {code} {reason}"]
        for k, v in headers:
            if k.lower() not in ("connection", "keep-alive", "content-length",
                                 "transfer-encoding"):
                out.append(f"{k}: {v}")
        if length:
            out.append(f"Content-Length: {len(body)}")
        out.append("Connection: " + ("keep-alive" if keep else "close"))
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + bytes(body)

    def _read_response(self, up):
        """Orthanc's whole response: (status, [(name, value)], body)."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv(up)
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        names = {k.lower(): v for k, v in headers}
        body = bytearray(rest)
        if "content-length" in names:
            n = int(names["content-length"])
            while len(body) < n:
                body += self._recv(up)
            return code, headers, bytes(body[:n])
        if "chunked" in names.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                while b"\r\n" not in body:
                    body += self._recv(up)
                size_line, _, body = bytes(body).partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body = bytearray(body)
                while len(body) < size + 2:
                    body += self._recv(up)
                out += body[:size]
                body = body[size + 2:]
                if size == 0:
                    return code, headers, bytes(out)
        while True:  # delimited by the close
            try:
                body += self._recv(up)
            except _Closed:
                return code, headers, bytes(body)


# --------------------------------------------------------------------------
# Checking the promise while an uplink works
# --------------------------------------------------------------------------

def sent_not_held(rx, cloud):
    """SOP Instance UIDs the spool says are 'sent' but the cloud does not
    hold. The rows are read first: a row turns 'sent' only after the cloud
    has stored the instance, and the cloud only gains instances here."""
    sent = {r["sop_instance_uid"] for r in rx.rows("state = 'sent'")}
    if not sent:
        return set()
    return sent - set(cloud.instances())


def drain(rx, cloud, uplink, until=None, timeout=90, every=0.25):
    """Waits until `until(rows)` holds (default: no row queued or sending),
    checking at every look that each 'sent' row is held by the cloud and
    that the uplink still runs. Returns the number of looks taken."""
    until = until or (lambda rows: rows and all(r["state"] in ("sent", "quarantined")
                                                for r in rows))
    looks = 0
    deadline = time.monotonic() + timeout
    while True:
        rows = rx.rows()
        looks += 1
        missing = sent_not_held(rx, cloud)
        assert not missing, f"'sent' in the spool but not held by the cloud: {missing}"
        assert uplink.running(), f"the uplink exited:\n{uplink.log()[-3000:]}"
        if until(rows):
            return looks
        if time.monotonic() > deadline:
            states = {}
            for r in rows:
                states[r["state"]] = states.get(r["state"], 0) + 1
            raise TimeoutError(f"the spool did not settle in {timeout}s: {states}\n"
                               f"{uplink.log()[-3000:]}")
        time.sleep(every)

