#!/usr/bin/python3
"""Console under attack benchmark (make bench): the uplink's upload
throughput while its console is hammered, against a quiet console, in the
same run. Goal (issue 15): at least 0.9x.

The load, from this process, on the console's TCP listener: 8 connections
that pipeline GET /healthz as fast as the uplink takes them and never read
an answer (the per-address cap), and 2 threads that flood GET /healthz on
fresh connections, each reset (SO_LINGER 0) as soon as its request is
sent (from 127.0.0.2, the other connections' address having its 8).
The load runs in a child process at nice 19: it shares the machine's
cores, but takes only what the upload leaves, as an attacker on another
host would take nothing of them. The upload: the same spool (a CT study received once by
outpost-receiver, then copied for every run) to a fresh endpoint for every
run (the read-only TLS sink of bench_uplink.py by default, or the test
cloud), timed from the uplink's start until no row is unsent. Quiet and
loaded runs alternate; the ratio is of the medians.

    OUTPOST_BUILD=build /usr/bin/python3 tests/bench/bench_console_load.py \
        [--instances N] [--reps N] [--target sink|orthanc]
"""
import os
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import threading
import time

from benchkit import (end_process, log, machine_line, parser, proc_cpu_s,  # noqa: E402
                      proc_status_kb, scratch)
from bench_uplink import (OrthancTarget, SinkTarget, clone_spool,  # noqa: E402
                          receive_into_spool, spool_rows)
from cloud import TestPKI  # noqa: E402
import dicomgen  # noqa: E402
from outpost import BUILD, free_port, write_ini  # noqa: E402

RUN_TIMEOUT = 300
MB = 1e6


def attack(port):
    """Starts the load in a child process at nice 19; returns a function
    that stops it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(w)
            os.nice(19)
            load = Load(port).start()
            os.read(r, 1)  # until the parent closes its end
            load.stop()
            code = 0
        finally:
            os._exit(code)
    os.close(r)

    def stop():
        os.close(w)
        os.waitpid(pid, 0)
    return stop


class Load:
    """The attack on the console at port, in threads, until stop()."""

    def __init__(self, port):
        self.port, self.done = port, threading.Event()
        self.threads = [threading.Thread(target=self.pipeline) for _ in range(8)] + \
            [threading.Thread(target=self.flood) for _ in range(2)]
        self.sent = 0

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join()

    def pipeline(self):
        burst = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 200
        while not self.done.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            except OSError:
                time.sleep(0.05)
                continue
            with s:
                while not self.done.is_set():
                    try:
                        s.sendall(burst)
                        self.sent += 200
                    except socket.timeout:
                        continue  # the uplink stopped reading: keep the pressure
                    except OSError:
                        break  # closed (an idle client): connect again

    def flood(self):
        linger = struct.pack("ii", 1, 0)
        while not self.done.is_set():
            try:
                # Another address: the pipelining one holds its 8 connections.
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5,
                                             source_address=("127.0.0.2", 0))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.close()
                self.sent += 1
            except OSError:
                time.sleep(0.01)


def run(workdir, template, target, n_rows, loaded):
    """Seconds for the uplink to send every row, its console attacked or not."""
    os.makedirs(workdir)
    spool_dir = os.path.join(workdir, "spool")
    clone_spool(template, spool_dir)
    port = free_port()
    ini = os.path.join(workdir, "uplink.ini")
    write_ini(ini, {"spool": {"dir": spool_dir, "min_free_bytes": "1M"},
                    "cloud": {"url": target.url, "ca_file": target.ca_file},
                    "console": {"listen": f"127.0.0.1:{port}",
                                "socket": os.path.join(workdir, "c.sock")}})
    logf = open(os.path.join(workdir, "uplink.log"), "w")
    con = sqlite3.connect(os.path.join(spool_dir, "spool.db"), timeout=30)
    stop = None
    proc = subprocess.Popen([os.path.join(BUILD, "outpost-uplink"), "--config", ini],
                            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
    logf.close()
    t0 = time.perf_counter()
    try:
        if loaded:
            # The console listens a moment after the start; the attack
            # retries its connections until it does.
            stop = attack(port)
        deadline = time.monotonic() + RUN_TIMEOUT
        while con.execute("SELECT COUNT(*) FROM instances WHERE state != 'sent'"
                          ).fetchone()[0]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uplink exited or timed out ({proc.poll()})")
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
        rss = proc_status_kb(proc.pid, "VmHWM")
        cpu = proc_cpu_s(proc.pid)
    finally:
        if stop:
            stop()
        con.close()
        end_process(proc)
    return elapsed, rss, cpu


def main():
    ap = parser(__doc__, reps=3)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--target", default="sink", choices=("sink", "orthanc"))
    args = ap.parse_args()
    with scratch(args, "outpost-bench-console-load-") as tmp:
        pki = TestPKI(os.path.join(tmp, "pki"))
        log(f"generating {args.instances} CT instances")
        files = dicomgen.make_ct_study(os.path.join(tmp, "study"), args.instances)
        rx, _, _ = receive_into_spool(os.path.join(tmp, "template"), files)
        rows = spool_rows(rx.spool)
        total = sum(size for _, _, size in rows)
        times = {False: [], True: []}
        cpus = {False: [], True: []}
        for rep in range(args.reps):
            for loaded in ((False, True) if rep % 2 == 0 else (True, False)):
                name = f"r{rep}-{'loaded' if loaded else 'quiet'}"
                target = (OrthancTarget if args.target == "orthanc" else SinkTarget)(
                    os.path.join(tmp, name, "target"), pki).start()
                try:
                    s, rss, cpu = run(os.path.join(tmp, name, "uplink"), rx.spool, target,
                                       len(rows), loaded)
                finally:
                    target.stop()
                times[loaded].append(s)
                cpus[loaded].append(cpu)
                log(f"{name}: {s:.2f} s, {total / MB / s:.0f} MB/s, uplink CPU {cpu:.2f} s, "
                    f"VmHWM {rss} kB")
        quiet, loaded = statistics.median(times[False]), statistics.median(times[True])
        print(f"machine: {machine_line(tmp)}")
        print(f"{len(rows)} instances, {total / MB:.0f} MB to the {args.target}, "
              f"{args.reps} runs each, median")
        cq, cl = statistics.median(cpus[False]), statistics.median(cpus[True])
        print(f"quiet console:    {quiet:.2f} s, {total / MB / quiet:.0f} MB/s, "
              f"uplink CPU {cq:.2f} s")
        print(f"console attacked: {loaded:.2f} s, {total / MB / loaded:.0f} MB/s, "
              f"uplink CPU {cl:.2f} s (8 pipelining connections that never read, 2 threads of /healthz + reset)")
        print(f"ratio: {quiet / loaded:.2f}x (goal: at least 0.9x)")
        return 0 if quiet / loaded >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
