"""Helpers shared by the integration tests and the benchmarks.

Everything here starts real programs on loopback: outpost-receiver, DCMTK's
storescu/echoscu/storescp. Processes are tracked by PID and ended by PID.
"""
import fcntl
import hashlib
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import threading
import time

from pydicom.filereader import read_file_meta_info

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("OUTPOST_BUILD", os.path.join(ROOT, "build"))
PYDICOM_FILES = "/usr/lib/python3/dist-packages/pydicom/data/test_files"

# DCMTK reads TCP_NODELAY from the environment: without it every storescu
# request waits ~40 ms for a delayed ACK.
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


# Ports handed out by free_port(), machine-wide: every test process on this
# machine (the pytest-xdist workers of one run, a second run, the image
# tests, a benchmark) reserves its ports in this one file, so two of them
# never pick the same port between free_port() and the bind() of the
# server it is for (bind() is the only check otherwise, and a port is free
# until then). One line per port, "PORT PID TIME"; the file is read and
# rewritten under an fcntl record lock on the whole file. An entry lapses
# when its process is gone or after PORT_HOLD seconds, by which time its
# server has long bound it (a test that stops and restarts a server on its
# port, e.g. Cloud.restart_with(), does so within the test).
PORT_REGISTRY = os.environ.get("OUTPOST_PORT_REGISTRY", "/tmp/outpost-test-ports")
PORT_HOLD = 30 * 60
# fcntl locks are per process: the threads of one process take turns here.
_port_lock = threading.Lock()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _reserved_ports(f, now):
    """The live entries of the registry (open, locked), {port: (pid, time)}."""
    held = {}
    f.seek(0)
    for line in f.read().splitlines():
        try:
            port, pid, when = (int(x) for x in line.split())
        except ValueError:
            continue  # a torn or foreign line: dropped on rewrite
        if now - when < PORT_HOLD and _pid_alive(pid):
            held[port] = (pid, when)
    return held


def free_port():
    """A port nothing listens on and no other test process on this machine
    has been given (PORT_REGISTRY), below the kernel's ephemeral range
    (32768-60999 here): a port the kernel hands out (bind to 0) can be
    taken by any outgoing connection before the server that was meant to
    listen on it starts, and a test then fails on "Address already in use"."""
    rng = random.SystemRandom()
    now = int(time.time())
    with _port_lock, open(os.open(PORT_REGISTRY, os.O_RDWR | os.O_CREAT, 0o666), "r+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)  # released when f is closed
        held = _reserved_ports(f, now)
        port = None
        for _ in range(200):
            candidate = rng.randrange(20000, 32000)
            if candidate in held:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
            port = candidate
            break
        if port is None:
            raise RuntimeError(f"no free port in 20000-32000 ({len(held)} reserved "
                               f"in {PORT_REGISTRY})")
        held[port] = (os.getpid(), now)
        f.seek(0)
        f.truncate()
        f.write("".join(f"{p} {pid} {when}\n" for p, (pid, when) in held.items()))
    return port


def short_socket_path(workdir):
    """A Unix socket path for the console in workdir, or in a short
    directory of its own when workdir is too deep for sun_path (108 bytes)."""
    path = os.path.join(workdir, "outpost.sock")
    if len(path) < 100:
        return path
    import tempfile
    return os.path.join(tempfile.mkdtemp(prefix="op-"), "outpost.sock")


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def dataset_bytes(path_or_bytes):
    """The bytes after the File Meta Information (the dataset as sent)."""
    b = path_or_bytes if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb").read()
    if b[128:132] != b"DICM":
        return b
    group_len = struct.unpack("<I", b[132 + 8:132 + 12])[0]
    return b[132 + 12 + group_len:]


def blake2b(path):
    """The spool's content hash of a file (BLAKE2b-256, hex)."""
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_ini(path, sections):
    with open(path, "w") as f:
        for section, keys in sections.items():
            f.write(f"[{section}]\n")
            for k, v in keys.items():
                f.write(f"{k} = {v}\n")
            f.write("\n")


class Service:
    """One Outpost service process (outpost-receiver, outpost-uplink) on a
    config file, logging to its own file; started and ended by PID."""

    program = None
    ready_event = None

    def __init__(self, ini, log_path):
        self.ini = ini
        self.log_path = log_path
        self.proc = None
        self.env = None  # extra environment (e.g. TZ, OUTPOST_TEST_CLOCK)
        self.run_as = {}  # Popen's user, group, extra_groups, umask
        self.bin_dir = BUILD  # (another user may need a copy it can reach)

    def start(self, timeout=15):
        # The log is appended across restarts: wait for one more ready line.
        ready = self.log().count(f"event={self.ready_event}") + 1
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin_dir, self.program), "--config", self.ini],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env=dict(os.environ, **self.env) if self.env else None, **self.run_as)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or
                 self.log().count(f"event={self.ready_event}") >= ready,
                 timeout, what=self.ready_event)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.program} exited {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def rss_peak_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None


class Receiver(Service):
    """outpost-receiver with its own config, spool and log. The same config
    file serves the uplink of this spool (Receiver.uplink())."""

    program = "outpost-receiver"
    ready_event = "receiver.ready"

    def __init__(self, workdir, **overrides):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.config = {
            "receiver": {"ae_title": "OUTPOST", "bind": "127.0.0.1", "port": free_port()},
            "spool": {"dir": os.path.join(workdir, "spool"), "min_free_bytes": "1M"},
            # Every uplink's console on its own port and socket.
            "console": {"listen": f"127.0.0.1:{free_port()}",
                        "socket": short_socket_path(workdir)},
        }
        for section, keys in overrides.items():
            self.config.setdefault(section, {}).update(keys)
        self.port = int(self.config["receiver"]["port"])
        self.spool = self.config["spool"]["dir"]
        super().__init__(os.path.join(workdir, "outpost.ini"),
                         os.path.join(workdir, "receiver.log"))
        write_ini(self.ini, self.config)

    def reconfigure(self, **overrides):
        for section, keys in overrides.items():
            self.config.setdefault(section, {}).update(keys)
        write_ini(self.ini, self.config)

    def uplink(self):
        """An outpost-uplink on this config and spool (not started)."""
        return Uplink(self)

    def db(self):
        con = sqlite3.connect(os.path.join(self.spool, "spool.db"), timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def rows(self, where="1=1", args=()):
        with self.db() as con:
            return [dict(r) for r in con.execute(f"SELECT * FROM instances WHERE {where}", args)]

    def states(self):
        """{state: count} of the spool's rows."""
        with self.db() as con:
            return dict(con.execute("SELECT state, COUNT(*) FROM instances GROUP BY state"))

    def object_path(self, content_hash):
        return os.path.join(self.spool, "objects", content_hash[:2], content_hash + ".dcm")

    def stored_files(self):
        out = []
        for root, _, files in os.walk(os.path.join(self.spool, "objects")):
            out += [os.path.join(root, f) for f in files]
        return sorted(out)

    def tmp_files(self):
        return os.listdir(os.path.join(self.spool, "tmp"))


class Uplink(Service):
    """outpost-uplink on a Receiver's config file and spool."""

    program = "outpost-uplink"
    ready_event = "uplink.ready"

    def __init__(self, receiver):
        self.receiver = receiver
        super().__init__(receiver.ini, os.path.join(receiver.workdir, "uplink.log"))


def storescu(port, files, flags=(), aet="OUTPOST", calling="STORESCU", timeout=300,
             verbose=False):
    """Runs DCMTK's storescu against localhost:port; returns CompletedProcess."""
    cmd = ["storescu", "-aet", calling, "-aec", aet]
    if verbose:
        cmd.append("-v")
    cmd += list(flags) + ["localhost", str(port)] + list(files)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


def echoscu(port, aet="OUTPOST", calling="ECHOSCU", timeout=30):
    return subprocess.run(["echoscu", "-aet", calling, "-aec", aet, "localhost", str(port)],
                          capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


class Storescp:
    """DCMTK's storescp +B +xa on a free port: the bit-preserving reference.
    accept_all=False: without +xa, it takes the uncompressed syntaxes only.
    flags: more of storescp's options (e.g. a slow peer: --sleep-after 1)."""

    def __init__(self, directory, port=None, accept_all=True, flags=()):
        self.out = os.path.join(directory, "received")
        os.makedirs(self.out, exist_ok=True)
        self.port = port or free_port()
        self.log_path = os.path.join(directory, "storescp.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["storescp", "+B"] + (["+xa"] if accept_all else []) + list(flags) +
                ["-od", self.out, str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=DCMTK_ENV)
        wait_for(lambda: self.proc.poll() is not None or echoscu(self.port).returncode == 0,
                 10, what="storescp to answer C-ECHO")
        if self.proc.poll() is not None:
            raise RuntimeError(f"storescp exited {self.proc.returncode}")

    def take(self, repeats=False):
        """Files received since the last call, {SOP Instance UID: bytes}; removes them.
        A UID received twice fails, unless repeats (at-least-once delivery
        across a crash of the sender)."""
        got = {}
        for name in sorted(os.listdir(self.out)):
            path = os.path.join(self.out, name)
            uid = str(read_file_meta_info(path).MediaStorageSOPInstanceUID)
            assert repeats or uid not in got, f"storescp received {uid} twice in one batch"
            with open(path, "rb") as f:
                got[uid] = f.read()
            os.unlink(path)
        return got

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
