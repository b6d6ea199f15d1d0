#!/usr/bin/python3
"""Uplink benchmark: outpost-uplink against curl, STOW-RS over HTTPS.

The issue's benchmark: the 500 x 530 KB CT study uploaded by outpost-uplink
and by curl (STOW-RS, the same batches, the same endpoint, `-H 'Expect:'`)
in the same run: instances/s, MB/s, CPU seconds per GB, the ratio. Goal: at
least curl's throughput. Memory: peak RSS of the uplink at most 32 MB while
it uploads a 1 GB instance.

Method (docs/BENCHMARKS.md, section "Uplink", explains how to read it):
- the study is generated once and received once by outpost-receiver
  (storescu; not timed) into a template spool; the receiver is stopped;
- every uplink run gets its own copy of that spool (spool.db copied, the
  object files hard-linked: the uplink only reads them), so every run starts
  from 500 'queued' rows;
- curl gets the same bodies: the spool's object files in the uplink's claim
  order (received_at, id), 50 per request (batch_max_instances), framed as
  the uplink frames them (each part `Content-Type: application/dicom` and
  `Content-Length`), written to files before the timed window. One curl
  process sends all its requests (`--next`), so its connection is reused
  like the uplink's; `-H 'Expect:'`, `--cacert`, `-T FILE -X POST` (the
  body streamed from the file, as the uplink streams from the spool);
- like with like: uplink `connections=1` against one curl process, uplink
  `connections=2` against two curl processes in parallel, each with half
  of the batches (even and odd);
- two endpoints: the test cloud (nginx terminating TLS + Orthanc with its
  DICOMweb plugin; a fresh, empty one for every run, so no run is flattered
  by deduplication), and a sink (a small TLS server in Python, started by
  this script, which reads every body to its end and answers a STOW-RS
  JSON listing the SOP Instance UID (0008,0018) it read from each part).
  Orthanc parses and stores every instance; the sink shows the limit on the
  client's side. The sink's TLS settings are nginx's defaults (ciphers
  HIGH:!aNULL:!MD5, client's preference, TLS 1.2 and 1.3), so each client
  negotiates the same suite with both;
- the uplink's time runs from its start to the moment the spool shows no
  row left unsent (polled every 5 ms; a sent row may be evicted at once
  when it exceeds keep_sent_bytes); curl's from its start to its exit
  (the last of two). A run counts only if the endpoint holds all 500
  instances at the end (Orthanc's REST API; the sink's record of complete
  parts with the right sizes) and every curl request answered 200;
- CPU: utime+stime of the uplink (all threads, /proc/PID/stat, read when
  the last row is sent) and of curl (wait4); of the server side (nginx's
  worker + Orthanc, or the sink); and of the whole machine (/proc/stat),
  of which what neither client, server nor this bench used is shown as
  "other load"; the server's request times and the gaps between requests
  come from nginx's access log or the sink's record;
- peak RSS: the uplink's VmHWM read before it is stopped; curl's VmHWM
  sampled every 2 ms (wait4's ru_maxrss would count this bench's pages,
  which the child holds until it execs);
- runs are interleaved: in every repetition each (endpoint, connections)
  pair runs the uplink and curl back to back, the order alternating; the
  ratio is computed per pair, then the median is taken;
- the 1 GB part: one ~1 GiB DICOM instance (multi-frame secondary capture,
  512x512x16 bit x 2048 frames) is written by streaming (pydicom writes the
  header, the pixel data element is appended by this script), checked with
  dcmdump and pydicom, pushed through storescu into outpost-receiver (peak
  RSS of the receiver), then uploaded by outpost-uplink to the sink (Orthanc
  would hold it in memory several times over): its peak RSS (VmHWM), time
  and CPU. curl -T uploads the same body to the sink for reference.

Every process it starts is ended by PID; temporary files (the study, the
spools, the 1 GiB instance) are removed at the end. Exits non-zero when any
run fails.

Internal: `bench_uplink.py --serve-sink CERT KEY RECORD` runs the sink.
"""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import struct
import subprocess
import sys
import threading
import time

from benchkit import (idle_load, background_load, end_process, log,  # noqa: E402
                      machine_busy_s, machine_line, med_range, need_space, parser,
                      proc_children, proc_cpu_s, proc_status_kb, scratch)

RUN_TIMEOUT = 180
POLL_S = 0.005
SINK_CHUNK = 256 * 1024
SINK_PREFIX = 64 * 1024  # bytes kept of each part: headers + the start of the dataset
BATCH = 50               # the uplink's default batch_max_instances

# ---------------------------------------------------------------------------
# DICOM: the SOP Class and SOP Instance UID from the first bytes of a part
# ---------------------------------------------------------------------------

LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"


def _uid(value):
    return value.rstrip(b"\0 ").decode("ascii", "replace")


def part10_uids(data):
    """(SOP Class UID, SOP Instance UID) of a DICOM Part 10 file from its
    first bytes: (0008,0016) and (0008,0018) of the dataset, read by walking
    its elements (explicit or implicit VR); the File Meta Information's
    (0002,0002)/(0002,0003) only if the dataset cannot be walked (deflated,
    or an undefined length before (0008,0018))."""
    pos, ts, meta_cls, meta_uid = 0, "1.2.840.10008.1.2.1", None, None
    if data[128:132] == b"DICM":
        pos = 132
        while pos + 8 <= len(data):
            group, elem = struct.unpack_from("<HH", data, pos)
            if group != 2:
                break
            vr = bytes(data[pos + 4:pos + 6])
            if vr in LONG_VRS:
                length, hdr = struct.unpack_from("<I", data, pos + 8)[0], 12
            else:
                length, hdr = struct.unpack_from("<H", data, pos + 6)[0], 8
            value = bytes(data[pos + hdr:pos + hdr + length])
            if elem == 0x0002:
                meta_cls = _uid(value)
            elif elem == 0x0003:
                meta_uid = _uid(value)
            elif elem == 0x0010:
                ts = _uid(value)
            pos += hdr + length
    if ts == DEFLATED:
        return meta_cls, meta_uid
    implicit, end = ts == IMPLICIT_LE, ">" if ts == EXPLICIT_BE else "<"
    cls = uid = None
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from(end + "HH", data, pos)
        if implicit:
            length, hdr = struct.unpack_from("<I", data, pos + 4)[0], 8
        else:
            vr = bytes(data[pos + 4:pos + 6])
            if vr in LONG_VRS:
                length, hdr = struct.unpack_from(end + "I", data, pos + 8)[0], 12
            else:
                length, hdr = struct.unpack_from(end + "H", data, pos + 6)[0], 8
        if (group, elem) > (0x0008, 0x0018) or length == 0xFFFFFFFF:
            break
        value = bytes(data[pos + hdr:pos + hdr + length])
        if (group, elem) == (0x0008, 0x0016):
            cls = _uid(value)
        elif (group, elem) == (0x0008, 0x0018):
            uid = _uid(value)
            break
        pos += hdr + length
    return cls or meta_cls, uid or meta_uid


# ---------------------------------------------------------------------------
# The sink: a TLS server that reads STOW-RS bodies and confirms every part
# ---------------------------------------------------------------------------


class MultipartScanner:
    """Splits a multipart body read into one buffer piece by piece (no
    copies of the body); keeps the first SINK_PREFIX bytes of each part and
    counts its length, holds nothing else."""

    def __init__(self, boundary):
        self.delim = b"\r\n--" + boundary
        self.keep = len(self.delim) - 1  # a delimiter may start this close to the end
        self.parts = []                  # [prefix, raw length]
        self.cur = None

    def _content(self, buf, start, end):
        if self.cur is None or end <= start:
            return
        self.cur[1] += end - start
        room = SINK_PREFIX - len(self.cur[0])
        if room > 0:
            self.cur[0] += buf[start:min(end, start + room)]

    def scan(self, buf, end, final):
        """Consumes buf[0:end]; returns where the bytes it could not yet
        attribute start (the caller moves them to the front and appends)."""
        d, pos = self.delim, 0
        while True:
            i = buf.find(d, pos, end)
            if i < 0:
                break
            self._content(buf, pos, i)
            self.cur = [bytearray(), 0]
            self.parts.append(self.cur)
            pos = i + len(d)
        safe = end if final else max(pos, end - self.keep)
        self._content(buf, pos, safe)
        return safe

    def finish(self):
        """[(SOP Class UID, SOP Instance UID, content length)], closed."""
        out, closed = [], False
        for prefix, raw in self.parts:
            if prefix.startswith(b"--"):
                closed = True
                break
            head_end = prefix.find(b"\r\n\r\n")
            if head_end < 0:
                out.append((None, None, -1))
                continue
            headers = bytes(prefix[:head_end]).lower()
            content = prefix[head_end + 4:]
            size = raw - head_end - 4
            if b"content-type: application/dicom" not in headers:
                out.append((None, None, size))
                continue
            try:
                cls, uid = part10_uids(content)
            except (struct.error, UnicodeDecodeError):
                cls, uid = None, None
            out.append((cls, uid, size))
        return out, closed


def read_body(sock, scanner, first, length, buf, mv):
    """Reads the rest of a body of `length` bytes (`first` already read)
    into buf, scanning as it goes; False if the client closed early."""
    buf[0:2] = b"\r\n"  # the first delimiter has no CRLF before it
    buf[2:2 + len(first)] = first
    fill, remaining = 2 + len(first), length - len(first)
    while True:
        while remaining > 0 and fill < SINK_CHUNK:
            n = sock.recv_into(mv[fill:fill + min(remaining, len(buf) - fill)])
            if n == 0:
                return False
            fill += n
            remaining -= n
        safe = scanner.scan(buf, fill, remaining == 0)
        if remaining == 0:
            return True
        buf[0:fill - safe] = buf[safe:fill]
        fill -= safe


def stow_response(parts):
    refs = [{"00081150": {"vr": "UI", "Value": [cls]}, "00081155": {"vr": "UI", "Value": [uid]}}
            for cls, uid, _ in parts if uid]
    body = {"00081198": {"vr": "SQ"}, "00081199": {"vr": "SQ"}}
    if refs:
        body["00081199"]["Value"] = refs
    return json.dumps(body).encode()


def serve_sink(cert, key, record_path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("HIGH:!aNULL:!MD5")             # nginx's default ssl_ciphers
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # nginx: ssl_prefer_server_ciphers off
    record = open(record_path, "a", buffering=1)
    lock = threading.Lock()
    serial = [0]

    def note(entry):
        with lock:
            record.write(json.dumps(entry) + "\n")

    def handle(raw, peer):
        with lock:
            serial[0] += 1
            conn_id = serial[0]
        try:
            sock = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as e:
            note({"conn": conn_id, "error": f"handshake: {e}"})
            raw.close()
            return
        cipher, version = sock.cipher()[0], sock.version()
        chunk = bytearray(SINK_CHUNK + 4096)
        mv = memoryview(chunk)
        pending = bytearray()
        try:
            while True:
                t_first = time.time() if pending else None
                while b"\r\n\r\n" not in pending:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if t_first is None:
                        t_first = time.time()
                    pending += data
                head, _, rest = bytes(pending).partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ")[0]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "content-length" not in headers:
                    sock.sendall(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    note({"conn": conn_id, "error": "no Content-Length"})
                    return
                length = int(headers["content-length"])
                m = re.search(r'boundary="?([^";]+)"?', headers.get("content-type", ""))
                scanner = MultipartScanner(m.group(1).encode() if m else b"\0none")
                first, pending = rest[:length], bytearray(rest[length:])
                if len(first) > SINK_CHUNK // 2:  # a client that pipelines: not ours
                    note({"conn": conn_id, "error": "head and body in one read"})
                    return
                if not read_body(sock, scanner, first, length, chunk, mv):
                    note({"conn": conn_id, "error": "closed inside a body"})
                    return
                parts, closed = scanner.finish()
                status = 200 if method == "POST" and closed and parts else 400
                body = stow_response(parts) if status == 200 else b""
                # Recorded before the answer: a client that has its answer
                # finds the request in the record.
                note({"conn": conn_id, "peer": peer, "cipher": cipher, "version": version,
                      "status": status, "length": length, "closed": closed,
                      "agent": headers.get("user-agent", ""), "t0": t_first,
                      "t1": time.time(), "parts": [[u, s] for _, u, s in parts]})
                sock.sendall(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Bad Request'}\r\n"
                    "Content-Type: application/dicom+json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n".encode()
                    + body)
        except (OSError, ssl.SSLError, ValueError) as e:
            note({"conn": conn_id, "error": f"{type(e).__name__}: {e}"})
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def accept_loop(listener):
        while True:
            raw, addr = listener.accept()
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handle, args=(raw, addr[1]), daemon=True).start()

    listeners = []
    v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    v4.bind(("127.0.0.1", 0))
    v4.listen(64)
    listeners.append(v4)
    port = v4.getsockname()[1]
    try:  # "localhost" may resolve to ::1 first (curl tries both)
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::1", port))
        v6.listen(64)
        listeners.append(v6)
    except OSError:
        pass
    for listener in listeners:
        threading.Thread(target=accept_loop, args=(listener,), daemon=True).start()
    print(port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    record.close()
    return 0


# Everything below runs in the bench process (the sink needs none of it).
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--serve-sink":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(serve_sink(*sys.argv[2:5]))

import pydicom  # noqa: E402
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from outpost import BUILD, DCMTK_ENV, Receiver, write_ini  # noqa: E402
from cloud import Cloud, TestPKI  # noqa: E402
import dicomgen  # noqa: E402

MB = 1e6
GB = 1e9


def self_cpu_s():
    """This bench process's own CPU (polling the spool, sampling curl)."""
    t = os.times()
    return t.user + t.system


def cpu_of(pids):
    total = 0.0
    for pid in pids:
        try:
            total += proc_cpu_s(pid)
        except OSError:
            pass
    return total


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------


def request_timing(spans):
    """From (connection, start, end) of every request as the server saw it:
    the median request time (first byte of the request to its answer) and
    the median gap between an answer and the next request on the same
    connection (the client's turnaround), in ms."""
    by_conn, durations, gaps = {}, [], []
    for conn, start, end in spans:
        by_conn.setdefault(conn, []).append((start, end))
        durations.append(end - start)
    for reqs in by_conn.values():
        reqs.sort()
        gaps += [b[0] - a[1] for a, b in zip(reqs, reqs[1:])]
    med = lambda v: statistics.median(v) * 1000 if v else None  # noqa: E731
    return {"req_ms": med(durations), "gap_ms": med(gaps)}


class OrthancTarget:
    """A fresh, empty test cloud (nginx + Orthanc) for one run."""
    name = "Orthanc"

    def __init__(self, workdir, pki):
        self.cloud = Cloud(workdir, pki=pki, refuse_patient_ids=(), drop_patient_ids=())
        self.url, self.ca_file = self.cloud.url, self.cloud.ca_file

    def start(self):
        self.cloud.start()
        return self

    def server_pids(self):
        pids = self.cloud.pids()
        return [pids["orthanc"]] + proc_children(pids["nginx"])  # Orthanc, nginx's worker

    def check(self, expected):
        """(problems, details) of what the cloud holds against {uid: size}."""
        held = self.cloud.instances()
        missing = [u for u in expected if u not in held]
        problems = [f"Orthanc holds {len(held)} instances, {len(missing)} of the "
                    f"{len(expected)} missing"] if missing else []
        reqs = self.cloud.requests()
        bad = [r["status"] for r in reqs if r["status"] != 200]
        if bad:
            problems.append(f"nginx logged non-200 answers: {bad[:10]}")
        conns = self.cloud.connections(reqs)
        ciphers = sorted({r["ssl_cipher"] for r in reqs})
        # nginx logs when the answer has gone; request_time runs from the
        # request's first byte.
        timing = request_timing([((r["pid"], r["connection"]), r["msec"] - r["request_time"],
                                  r["msec"]) for r in reqs])
        return problems, dict(timing, requests=len(reqs), connections=len(conns),
                              cipher=",".join(ciphers))

    def stop(self):
        self.cloud.stop()


class SinkTarget:
    """The read-only TLS sink (this script with --serve-sink) for one run."""
    name = "sink"

    def __init__(self, workdir, pki):
        os.makedirs(workdir, exist_ok=True)
        self.record = os.path.join(workdir, "sink.jsonl")
        self.pki, self.proc = pki, None
        self.ca_file = pki.ca_file

    def start(self):
        self.stderr = open(self.record + ".stderr", "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve-sink", self.pki.server.cert,
             self.pki.server.key, self.record],
            stdout=subprocess.PIPE, stderr=self.stderr, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            end_process(self.proc)
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line)
        self.url = f"https://localhost:{self.port}/dicom-web"
        return self

    def server_pids(self):
        return [self.proc.pid]

    def entries(self):
        with open(self.record) as f:
            return [json.loads(line) for line in f if line.strip()]

    def check(self, expected):
        entries = self.entries()
        problems = [f"sink: {e['error']}" for e in entries if "error" in e]
        got = {}
        for e in entries:
            for uid, size in e.get("parts", []):
                got.setdefault(uid, []).append(size)
        missing = [u for u in expected if u not in got]
        wrong = [u for u, s in expected.items() if u in got and s not in got[u]]
        if missing or wrong:
            problems.append(f"sink received {len(got)} instances: {len(missing)} of the "
                            f"{len(expected)} missing, {len(wrong)} with a wrong size")
        reqs = [e for e in entries if "parts" in e]
        if any(e["status"] != 200 for e in reqs):
            problems.append("sink answered non-200")
        timing = request_timing([(e["conn"], e["t0"], e["t1"]) for e in reqs])
        return problems, dict(timing, requests=len(reqs),
                              connections=len({e["conn"] for e in reqs}),
                              cipher=",".join(sorted({e["cipher"] for e in reqs})),
                              resent=sum(len(v) - 1 for v in got.values()))

    def stop(self):
        end_process(self.proc)
        self.stderr.close()


# ---------------------------------------------------------------------------
# The study, the template spool, the curl bodies
# ---------------------------------------------------------------------------


def receive_into_spool(workdir, files):
    """outpost-receiver + one storescu (-R: only the needed contexts);
    returns (Receiver, seconds, receiver peak RSS kB). The receiver is stopped."""
    rx = Receiver(workdir)
    rx.start()
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["storescu", "-R", "-aet", "BENCH", "-aec", "OUTPOST", "localhost",
                            str(rx.port)] + list(files), capture_output=True, text=True,
                           timeout=600, env=DCMTK_ENV)
        elapsed = time.perf_counter() - t0
        rss = rx.rss_peak_kb()
        if r.returncode != 0:
            raise RuntimeError(f"storescu exited {r.returncode}: {r.stderr[-1500:]}")
    finally:
        rc = rx.stop()
    if rc != 0:
        raise RuntimeError(f"outpost-receiver exited {rc}: {rx.log()[-1500:]}")
    states = rx.states()
    if states != {"queued": len(files)}:
        raise RuntimeError(f"the spool holds {states}, expected {len(files)} queued rows")
    return rx, elapsed, rss


def spool_rows(spool_dir):
    """The rows in the uplink's claim order (received_at, id)."""
    con = sqlite3.connect(os.path.join(spool_dir, "spool.db"))
    try:
        return con.execute("SELECT sop_instance_uid, hash, size FROM instances"
                           " ORDER BY priority DESC, received_at, id").fetchall()
    finally:
        con.close()


def clone_spool(template, dest):
    """A copy of a stopped spool: the database copied, the objects hard-linked."""
    os.makedirs(dest)
    for name in os.listdir(template):
        src = os.path.join(template, name)
        if name == "objects":
            for root, dirs, files in os.walk(src):
                out = os.path.join(dest, os.path.relpath(root, template))
                os.makedirs(out, exist_ok=True)
                for f in files:
                    os.link(os.path.join(root, f), os.path.join(out, f))
        elif os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name))
        else:
            shutil.copy2(src, os.path.join(dest, name))


def object_path(spool_dir, content_hash):
    return os.path.join(spool_dir, "objects", content_hash[:2], content_hash + ".dcm")


def part_head(boundary, size):
    """The uplink's part head (services/uplink/stow.c, op_stow_part_head)."""
    return (f"--{boundary}\r\nContent-Type: application/dicom\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


def write_body(path, boundary, files_and_sizes):
    with open(path, "wb") as out:
        for src, size in files_and_sizes:
            out.write(part_head(boundary, size))
            with open(src, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            out.write(b"\r\n")
        out.write(f"--{boundary}--\r\n".encode())


def build_bodies(spool_dir, rows, outdir):
    """One body file per batch of BATCH rows; [(path, boundary)]."""
    os.makedirs(outdir)
    bodies = []
    for b in range(0, len(rows), BATCH):
        boundary = os.urandom(16).hex()
        path = os.path.join(outdir, f"batch{b // BATCH:03d}.body")
        write_body(path, boundary, [(object_path(spool_dir, h), size)
                                    for _, h, size in rows[b:b + BATCH]])
        bodies.append((path, boundary))
    return bodies


def curl_cmd(url, ca_file, bodies):
    """One curl process, one request per body, one connection (--next)."""
    cmd = ["curl"]
    for i, (path, boundary) in enumerate(bodies):
        if i:
            cmd.append("--next")
        cmd += ["-sS", "--cacert", ca_file, "-H", "Expect:",
                "-H", "Accept: application/dicom+json",
                "-H", f'Content-Type: multipart/related; type="application/dicom"; '
                      f'boundary={boundary}',
                "-X", "POST", "-T", path, "-o", "/dev/null",
                "-w", "%{http_code} %{num_connects} %{size_upload}\\n", url + "/studies"]
    return cmd


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


def uplink_ini(workdir, spool_dir, url, ca_file, connections):
    ini = os.path.join(workdir, "uplink.ini")
    write_ini(ini, {"spool": {"dir": spool_dir, "min_free_bytes": "1M"},
                    "cloud": {"url": url, "ca_file": ca_file, "connections": connections}})
    return ini


def run_uplink(workdir, template, target, connections, n_rows):
    """Times the uplink from its start until every row is 'sent'."""
    spool_dir = os.path.join(workdir, "spool")
    clone_spool(template, spool_dir)
    ini = uplink_ini(workdir, spool_dir, target.url, target.ca_file, connections)
    log_path = os.path.join(workdir, "uplink.log")
    con = sqlite3.connect(os.path.join(spool_dir, "spool.db"), timeout=30)
    srv0, busy0, self0 = cpu_of(target.server_pids()), machine_busy_s(), self_cpu_s()
    logf = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([os.path.join(BUILD, "outpost-uplink"), "--config", ini],
                            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
    logf.close()
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            # Sent rows may be evicted at once (keep_sent_bytes, 1 GiB by
            # default, is less than the 1 GiB instance): done when no row is
            # left unsent. What the endpoint holds is checked afterwards.
            unsent = con.execute("SELECT COUNT(*) FROM instances"
                                 " WHERE state != 'sent'").fetchone()[0]
            sent = n_rows - unsent
            if unsent == 0:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"outpost-uplink exited {proc.returncode} with {sent} sent")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out with {sent} of {n_rows} sent")
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
        cpu = proc_cpu_s(proc.pid)
        rss = proc_status_kb(proc.pid, "VmHWM")
        srv, busy = cpu_of(target.server_pids()) - srv0, machine_busy_s() - busy0
        busy -= self_cpu_s() - self0
    finally:
        con.close()
        end_process(proc)
    text = open(log_path).read()
    if proc.returncode != 0:
        raise RuntimeError(f"outpost-uplink exited {proc.returncode}: {text[-1500:]}")
    batches = re.findall(r"event=uplink\.batch .*?http=(\d+) sent=(\d+)", text)
    # Anything but "every batch answered 200, all sent" is worth a note.
    retries = sum(1 for status, _ in batches if status != "200") + \
        len(re.findall(r"event=uplink\.(?:retry|quarantine|split)", text))
    return {"s": elapsed, "cpu_s": cpu, "rss_kb": rss, "srv_cpu_s": srv, "busy_s": busy,
            "client_requests": len(batches), "retries": retries}


def run_curl(workdir, bodies, target, n_procs):
    """n_procs curl processes, each with every n_procs-th body."""
    os.makedirs(workdir)
    groups = [bodies[k::n_procs] for k in range(n_procs)]
    srv0, busy0, self0 = cpu_of(target.server_pids()), machine_busy_s(), self_cpu_s()
    procs, outs, usage, peak = [], [], {}, 0
    t0 = time.perf_counter()
    try:
        for k, group in enumerate(groups):
            out = open(os.path.join(workdir, f"curl{k}.out"), "w+")
            outs.append(out)
            procs.append(subprocess.Popen(curl_cmd(target.url, target.ca_file, group),
                                          stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
        pending = {p.pid: p for p in procs}
        deadline = time.monotonic() + RUN_TIMEOUT
        while pending:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("curl timed out")
                # ru_maxrss would count the bench's own pages (they are the
                # child's until it execs): sample curl's VmHWM instead.
                for p in pending:
                    try:
                        peak = max(peak, proc_status_kb(p, "VmHWM") or 0)
                    except OSError:
                        pass
                time.sleep(0.002)
                continue
            if pid in pending:
                pending.pop(pid).returncode = os.waitstatus_to_exitcode(status)
                usage[pid] = ru
        elapsed = time.perf_counter() - t0
        srv, busy = cpu_of(target.server_pids()) - srv0, machine_busy_s() - busy0
        busy -= self_cpu_s() - self0
    finally:
        for p in procs:
            if p.returncode is None and p.poll() is None:
                p.kill()
                p.wait()
    problems, codes, connects = [], [], 0
    for k, (p, out) in enumerate(zip(procs, outs)):
        out.seek(0)
        text = out.read()
        out.close()
        lines = [ln.split() for ln in text.splitlines() if re.match(r"^\d{3} \d+ \d+$", ln)]
        codes += [ln[0] for ln in lines]
        connects += sum(int(ln[1]) for ln in lines)
        if p.returncode != 0 or len(lines) != len(groups[k]):
            problems.append(f"curl #{k} exited {p.returncode}: {text[-800:]}")
    if any(c != "200" for c in codes):
        problems.append(f"curl got HTTP {sorted(set(codes))}")
    if problems:
        raise RuntimeError("; ".join(problems))
    cpu = sum(ru.ru_utime + ru.ru_stime for ru in usage.values())
    return {"s": elapsed, "cpu_s": cpu, "rss_kb": peak, "srv_cpu_s": srv, "busy_s": busy,
            "client_requests": len(codes), "client_connects": connects}


def one_run(client, target_kind, conc, workdir, ctx):
    os.makedirs(workdir)
    target = (OrthancTarget if target_kind == "orthanc" else SinkTarget)(
        os.path.join(workdir, "target"), ctx["pki"])
    try:
        target.start()
        if client == "uplink":
            r = run_uplink(os.path.join(workdir, "uplink"), ctx["template"], target, conc,
                           len(ctx["expected"]))
        else:
            r = run_curl(os.path.join(workdir, "curl"), ctx["bodies"], target, conc)
        problems, details = target.check(ctx["expected"])
        if problems:
            raise RuntimeError("; ".join(problems))
        r.update(details)
        return r
    except Exception as e:  # noqa: BLE001 - any failure makes the run an error
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        target.stop()


# ---------------------------------------------------------------------------
# The 1 GiB instance
# ---------------------------------------------------------------------------


def make_big_instance(path, frames, rows=512, cols=512):
    """A multi-frame secondary capture of frames x rows x cols x 16 bit,
    written by streaming: pydicom writes everything but the pixel data, the
    Pixel Data element (OW, defined length) is appended in 16 MiB pieces."""
    import numpy as np
    sc = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC Image Storage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sc
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sc
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BENCH-BIG"
    ds.PatientName = "Test^Large"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.StudyDate = "20261128"
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(path, write_like_original=False)
    length = frames * rows * cols * 2
    piece = np.random.default_rng(7).integers(0, 4096, size=8 << 20, dtype=np.uint16).tobytes()
    with open(path, "ab") as f:
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        left, k = length, 0
        while left:
            n = min(left, len(piece))
            # the piece number at its start: no two 16 MiB pieces are equal
            f.write(struct.pack("<Q", k) + piece[8:n])
            left -= n
            k += 1
    # The file must read back as what it claims to be.
    # pydicom walks the whole file (skipping the deferred pixel data by its
    # length): Pixel Data must be the last element, its value the last bytes.
    ds2 = pydicom.dcmread(path, defer_size="1 KB")
    elem = ds2.get_item("PixelData")
    size = os.path.getsize(path)
    if int(ds2.NumberOfFrames) != frames or elem.file_tell != size - length:
        raise RuntimeError(f"{path}: pydicom reads {ds2.NumberOfFrames} frames, pixel data "
                           f"at {elem.file_tell} of {size} bytes")
    r = subprocess.run(["dcmdump", "-q", "+P", "0028,0008", "+P", "7fe0,0010", path],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or f"# {length}," not in r.stdout.replace("\n", ","):
        raise RuntimeError(f"dcmdump: rc {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}")
    return os.path.getsize(path)


def big_instance_part(tmp, pki, size_mib):
    out = {}
    frames = size_mib * (1 << 20) // (512 * 512 * 2)
    path = os.path.join(tmp, "big", "big.dcm")
    os.makedirs(os.path.dirname(path))
    t0 = time.perf_counter()
    size = make_big_instance(path, frames)
    log(f"big instance: {size} bytes written and checked in {time.perf_counter() - t0:.1f} s")
    rx, rx_s, rx_rss = receive_into_spool(os.path.join(tmp, "big", "rx"), [path])
    out.update(size=size, frames=frames, rx_s=rx_s, rx_rss_kb=rx_rss)
    log(f"big instance: storescu -> outpost-receiver {rx_s:.1f} s, receiver VmHWM {rx_rss} kB")
    os.unlink(path)  # the spool has it now; halves the disk space needed
    rows = spool_rows(rx.spool)
    expected = {uid: s for uid, _, s in rows}

    sink = SinkTarget(os.path.join(tmp, "big", "sink-uplink"), pki).start()
    try:
        r = run_uplink(os.path.join(tmp, "big", "uplink"), rx.spool, sink, 1, 1)
        problems, details = sink.check(expected)
    finally:
        sink.stop()
    if problems:
        raise RuntimeError("; ".join(problems))
    r.update(details)
    out["uplink"] = r
    log(f"big instance: uplink {r['s']:.1f} s, VmHWM {r['rss_kb']} kB, CPU {r['cpu_s']:.2f} s, "
        f"sink CPU {r['srv_cpu_s']:.2f} s")

    # curl -T streams the same body (built from the spool's file) to a new sink.
    boundary = os.urandom(16).hex()
    body = os.path.join(tmp, "big", "big.body")
    write_body(body, boundary, [(object_path(rx.spool, rows[0][1]), rows[0][2])])
    sink = SinkTarget(os.path.join(tmp, "big", "sink-curl"), pki).start()
    try:
        r = run_curl(os.path.join(tmp, "big", "curl"), [(body, boundary)], sink, 1)
        problems, details = sink.check(expected)
    finally:
        sink.stop()
        os.unlink(body)
    if problems:
        raise RuntimeError("; ".join(problems))
    r.update(details)
    out["curl"] = r
    log(f"big instance: curl {r['s']:.1f} s, maxrss {r['rss_kb']} kB, CPU {r['cpu_s']:.2f} s")
    shutil.rmtree(os.path.join(tmp, "big"), ignore_errors=True)
    return out


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def report(results, plan, n, total_bytes, reps, big, tmp, load, rx_info):
    out = []
    w = out.append
    ok = lambda r: "error" not in r  # noqa: E731
    w(f"Study: {n} CT instances, {total_bytes / n / 1000:.0f} kB each, "
      f"{total_bytes / MB:.0f} MB in {-(-n // BATCH)} requests of up to {BATCH} "
      f"(MB = 10^6 bytes of instance data, framing not counted; RSS in MiB). "
      f"{reps} runs per row: median (min–max).")
    w("")
    w("| Endpoint | Conn. | Client | instances/s | MB/s | uplink ÷ curl (paired) "
      "| client CPU s/GB | server CPU s/GB (% of a CPU) | other load, CPUs "
      "| per request / gap, ms "
      "| client peak RSS MiB | requests / connections |")
    w("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ciphers = {}
    for target, conc in plan:
        up, cu = results[(target, conc, "uplink")], results[(target, conc, "curl")]
        for client, runs in (("outpost-uplink", up), ("curl", cu)):
            rs = [r for r in runs if ok(r)]
            label = "Orthanc (nginx)" if target == "orthanc" else "sink"
            if not rs:
                w(f"| {label} | {conc} | {client} | no successful run | | | | | | | | |")
                continue
            for r in rs:
                ciphers.setdefault(client, set()).update(r["cipher"].split(","))
            ips = med_range([n / r["s"] for r in rs], lambda v: f"{v:.0f}")
            mbs = med_range([total_bytes / MB / r["s"] for r in rs], lambda v: f"{v:.0f}")
            if client == "outpost-uplink":
                pairs = [c["s"] / u["s"] for u, c in zip(up, cu) if ok(u) and ok(c)]
                ratio = med_range(pairs, lambda v: f"{v:.2f}x") if pairs else "—"
            else:
                ratio = ""
            per_gb = lambda key: med_range(  # noqa: E731
                [r[key] / (total_bytes / GB) for r in rs], lambda v: f"{v:.2f}")
            others = statistics.median(
                [max(0.0, r["busy_s"] - r["cpu_s"] - r["srv_cpu_s"]) / r["s"] for r in rs])
            req = statistics.median([r["req_ms"] for r in rs])
            gaps = [r["gap_ms"] for r in rs if r["gap_ms"] is not None]
            timing = f"{req:.0f} / {statistics.median(gaps):.1f}" if gaps else f"{req:.0f} / —"
            rss = statistics.median([r["rss_kb"] / 1024 for r in rs])
            rss_s = f"{rss:.1f} (max {max(r['rss_kb'] for r in rs) / 1024:.1f})"
            conns = f"{rs[0]['requests']} / {rs[0]['connections']}"
            srv_busy = statistics.median([r["srv_cpu_s"] / r["s"] * 100 for r in rs])
            srv_gb = statistics.median([r["srv_cpu_s"] / (total_bytes / GB) for r in rs])
            w(f"| {label} | {conc} | {client} | {ips} | {mbs} | {ratio} | {per_gb('cpu_s')} | "
              f"{srv_gb:.2f} ({srv_busy:.0f}%) | {others:.2f} | {timing} | {rss_s} | {conns} |")
    w("")
    odd = [f"{t} conn={c} {k} rep {i + 1}: uplink retries/odd answers {r.get('retries', 0)}, "
           f"resent {r.get('resent', 0)}"
           for (t, c, k), runs in results.items() for i, r in enumerate(runs)
           if ok(r) and (r.get("retries") or r.get("resent"))]
    w("Retries or re-sent instances in the counted runs: " +
      ("; ".join(odd) if odd else "none") + ".")
    w("")
    w("TLS suites negotiated: " + "; ".join(f"{k} {', '.join(sorted(v))}"
                                           for k, v in ciphers.items()) + ".")
    w("")
    w(f"Spool filled by storescu → outpost-receiver in {rx_info[0]:.1f} s (not timed above); "
      f"receiver peak RSS {rx_info[1] / 1024:.1f} MiB.")
    if big:
        w("")
        size = big["size"]
        w(f"One instance of {size / 2**30:.2f} GiB ({size} bytes; multi-frame secondary "
          f"capture, {big['frames']} frames of 512x512x16 bit), alone in its request, "
          f"to the sink:")
        w("")
        w("| Process | Time s | MB/s | peak RSS MiB | CPU s/GB | sink busy, % of a CPU |")
        w("| --- | ---: | ---: | ---: | ---: | ---: |")
        w(f"| storescu → outpost-receiver (receiving, each instance fsync'd) | "
          f"{big['rx_s']:.1f} | {size / MB / big['rx_s']:.0f} | "
          f"{big['rx_rss_kb'] / 1024:.1f} | — | — |")
        for name, r in (("outpost-uplink, connections=1", big["uplink"]),
                        ("curl -T (reference)", big["curl"])):
            w(f"| {name} | {r['s']:.1f} | {size / MB / r['s']:.0f} | {r['rss_kb'] / 1024:.1f} | "
              f"{r['cpu_s'] / (size / GB):.2f} | {r['srv_cpu_s'] / r['s'] * 100:.0f}% |")
    w("")
    w(f"Machine: {machine_line(tmp)}. Background load (CPUs busy with other work, "
      f"sampled for 1 s): {load[0]:.2f} before the runs, {load[1]:.2f} after"
      f"{' — NOT IDLE, numbers are disturbed' if max(load) > 0.15 else ''}.")
    w(f"Command: `OUTPOST_BUILD={BUILD} /usr/bin/python3 tests/bench/bench_uplink.py"
      f"{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`.")
    return "\n".join(out)


def main():
    ap = parser(__doc__, reps=3)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--connections", default="1,2", help="comma-separated")
    ap.add_argument("--targets", default="orthanc,sink", help="comma-separated: orthanc, sink")
    ap.add_argument("--big-mib", type=int, default=1024,
                    help="size of the large instance in MiB (0: skip that part)")
    args = ap.parse_args()
    conns = [int(x) for x in args.connections.split(",")]
    targets = [t.strip() for t in args.targets.split(",")]
    if any(t not in ("orthanc", "sink") for t in targets):
        ap.error("targets: orthanc, sink")
    for prog in ("outpost-receiver", "outpost-uplink"):
        if not os.access(os.path.join(BUILD, prog), os.X_OK):
            sys.exit(f"no {BUILD}/{prog}: run make first")

    errors = []
    with scratch(args, "outpost-bench-uplink-") as tmp:
        # The study, the template spool, the curl bodies; every Orthanc run's
        # storage (deleted only at the end); the large instance twice (spool, body).
        study = args.instances * 530_000
        need = (study * (3 + 2 * args.reps * len(conns) * ("orthanc" in targets))
                + 2.2 * args.big_mib * (1 << 20))
        need_space(tmp, need)
        pki = TestPKI(os.path.join(tmp, "pki"))

        log(f"generating {args.instances} CT instances in {tmp}/study")
        files = dicomgen.make_ct_study(os.path.join(tmp, "study"), args.instances)
        rx, rx_s, rx_rss = receive_into_spool(os.path.join(tmp, "template"), files)
        log(f"storescu -> outpost-receiver: {rx_s:.1f} s")
        rows = spool_rows(rx.spool)
        expected = {uid: size for uid, _, size in rows}
        total_bytes = sum(expected.values())
        # Check the sink's parser against pydicom on the study itself.
        for path in files[:3]:
            with open(path, "rb") as f:
                cls, uid = part10_uids(f.read(SINK_PREFIX))
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if (cls, uid) != (ds.SOPClassUID, ds.SOPInstanceUID):
                sys.exit(f"part10_uids disagrees with pydicom on {path}")
        bodies = build_bodies(rx.spool, rows, os.path.join(tmp, "bodies"))
        shutil.rmtree(os.path.join(tmp, "study"))  # the spool holds the study now
        ctx = {"pki": pki, "template": rx.spool, "bodies": bodies, "expected": expected}

        subprocess.run(["sync"], check=True)
        load_before = idle_load()

        plan = [(t, c) for t in targets for c in conns]
        results = {(t, c, k): [] for t, c in plan for k in ("uplink", "curl")}
        # Untimed warm-up: both clients once against the sink.
        for k in ("uplink", "curl"):
            r = one_run(k, "sink", 1, os.path.join(tmp, f"warmup-{k}"), ctx)
            if "error" in r:
                errors.append(f"warm-up {k}: {r['error']}")
        for rep in range(args.reps):
            for i, (t, c) in enumerate(plan):
                order = ["uplink", "curl"] if (rep + i) % 2 == 0 else ["curl", "uplink"]
                for k in order:
                    r = one_run(k, t, c, os.path.join(tmp, f"r{rep}-{t}-c{c}-{k}"), ctx)
                    results[(t, c, k)].append(r)
                    tag = f"rep {rep + 1} {t} conn={c} {k}"
                    if "error" in r:
                        errors.append(f"{tag}: {r['error']}")
                        log(f"{tag}: ERROR {r['error']}")
                    else:
                        log(f"{tag}: {r['s']:.2f} s, {len(expected) / r['s']:.0f} inst/s, "
                            f"{total_bytes / MB / r['s']:.0f} MB/s, CPU {r['cpu_s']:.2f} s, "
                            f"server {r['srv_cpu_s']:.2f} s, machine {r['busy_s']:.2f} s, "
                            f"RSS {r['rss_kb']} kB, {r['requests']} req / "
                            f"{r['connections']} conn, request {r['req_ms']:.0f} ms, "
                            f"gap {r['gap_ms'] or 0:.1f} ms, {r['cipher']}")
        load_after = background_load()

        big = None
        if args.big_mib:
            try:
                big = big_instance_part(tmp, pki, args.big_mib)
            except Exception as e:  # noqa: BLE001
                errors.append(f"large instance: {type(e).__name__}: {e}")
                log(f"large instance: ERROR {e}")

        print(report(results, plan, len(expected), total_bytes, args.reps, big, tmp,
                     (load_before, load_after), (rx_s, rx_rss)))
        if errors:
            print("\nFAILED runs:\n" + "\n".join(f"- {e}" for e in errors))
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
