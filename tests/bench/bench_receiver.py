#!/usr/bin/python3
"""Receiver benchmark: outpost-receiver against DCMTK's storescp.

The issue's benchmark: a 500-instance CT study (512x512x16 bit, ~525 KB per
file) sent by DCMTK's storescu over 1 association and over 4 concurrent
associations (files split round-robin), into outpost-receiver (every
acknowledged instance fdatasync'd, renamed, directory fsync'd and committed
to sqlite before the C-STORE response) and into storescp writing to a
directory (which acknowledges as soon as the file is in the page cache).
Goal: at least 0.8x storescp's throughput, peak RSS at most 32 MB.

Method (docs/BENCHMARKS.md explains how to read the output):
- the study is generated once into a temporary directory;
- for every repetition, for each concurrency, every server gets one run;
  the order of the servers alternates between repetitions so drift (page
  cache, disk, host noise) hits all of them;
- before each timed run: a fresh, empty target directory, the server
  started and ready, then `sync` so that dirty pages of earlier runs do not
  stall this one;
- the time runs from the start of the first storescu to the exit of the
  last one (for storescp that is when the data is acknowledged but maybe
  not yet on disk); then a `sync` is timed too: "+ sync" rows count it, i.e.
  until the data of that run is on disk;
- every run must have stored every instance (Outpost: rows in the index and
  files in the spool; storescp: files in its directory) and every storescu
  must exit 0: a run that stored fewer is an error, not a number;
- storescp serves one association at a time; with 4 associations the
  bench also runs `storescp --fork` (one process per association), the
  baseline that, like Outpost, receives concurrently;
- peak RSS is VmHWM of the server process, read before it is stopped (for
  storescp --fork: the largest of the parent and its sampled children);
- CPU per instance: the server process (utime+stime of all its threads),
  the storescu processes, and the whole machine (/proc/stat, all CPUs,
  which includes kernel writeback threads and anything else running);
- nothing is deleted until the end: on ext4 without a journal (as on the
  development VM) the kernel will not reuse an inode freed less than 60 s
  ago (300 s while its inode table block is dirty) and scans past every
  such inode at each file creation, so deleting 500 files between runs
  would slow down whichever server runs next.

Every process it starts is ended by PID. Exits non-zero when any run fails.
"""
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

from benchkit import (idle_load, background_load, end_process, log, machine_busy_s,  # noqa: E402
                      machine_line, med_range, need_space, parser, proc_children, proc_cpu_s,
                      proc_status_kb, scratch)
from outpost import BUILD, DCMTK_ENV, Receiver, free_port  # noqa: E402
import dicomgen  # noqa: E402

STORESCU_TIMEOUT = 180


def timed_sync():
    t0 = time.perf_counter()
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - t0


class ChildPeakSampler(threading.Thread):
    """Samples VmHWM of the children of pid (storescp --fork serves each
    association in a child that exits before it could be read at the end).
    VmHWM only grows, so the last sample of a child is close to its peak."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            for child in proc_children(self.pid):
                try:
                    self.peak_kb = max(self.peak_kb, proc_status_kb(child, "VmHWM") or 0)
                except OSError:
                    pass
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join()


# --- servers ------------------------------------------------------------------


class OutpostServer:
    name = "outpost-receiver"
    aet = "OUTPOST"

    def __init__(self, workdir):
        self.rx = Receiver(workdir)
        self.port = self.rx.port

    @property
    def pid(self):
        return self.rx.proc.pid

    def start(self):
        self.rx.start()

    def alive(self):
        return self.rx.proc.poll() is None

    def peak_rss_kb(self):
        return self.rx.rss_peak_kb()

    def stored(self):
        rows = len(self.rx.rows())
        files = len(self.rx.stored_files())
        tmp = len(self.rx.tmp_files())
        return rows, f"{rows} rows, {files} files in objects/, {tmp} in tmp/", rows == files

    def stop(self):
        rc = self.rx.stop()
        if rc not in (0, None):
            raise RuntimeError(f"outpost-receiver exited {rc}:\n{self.rx.log()[-2000:]}")

    def kill(self):
        self.rx.kill9()


class StorescpServer:
    aet = "STORESCP"

    def __init__(self, workdir, fork=False):
        self.fork = fork
        self.name = "storescp --fork" if fork else "storescp"
        self.workdir = workdir
        self.outdir = os.path.join(workdir, "out")
        os.makedirs(self.outdir)
        self.port = free_port()
        self.proc = None
        self.sampler = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=15):
        cmd = ["storescp"] + (["--fork"] if self.fork else [])
        cmd += ["-od", self.outdir, "-aet", self.aet, str(self.port)]
        with open(os.path.join(self.workdir, "storescp.log"), "w") as logf:
            self.proc = subprocess.Popen(cmd, env=DCMTK_ENV, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)
        # Ready when it answers a C-ECHO (storescp prints nothing when listening).
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"storescp exited {self.proc.returncode}")
            r = subprocess.run(["echoscu", "-aec", self.aet, "localhost", str(self.port)],
                               env=DCMTK_ENV, capture_output=True, timeout=30)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("storescp did not answer C-ECHO")
            time.sleep(0.05)
        if self.fork:
            self.sampler = ChildPeakSampler(self.proc.pid)
            self.sampler.start()

    def alive(self):
        return self.proc.poll() is None

    def peak_rss_kb(self):
        own = proc_status_kb(self.proc.pid, "VmHWM")
        if self.sampler:
            self.sampler.stop()
            return max(own, self.sampler.peak_kb)
        return own

    def stored(self):
        names = os.listdir(self.outdir)
        empty = sum(1 for n in names if os.path.getsize(os.path.join(self.outdir, n)) == 0)
        return len(names) - empty, f"{len(names)} files ({empty} empty)", True

    def stop(self):
        if self.sampler and self.sampler.is_alive():
            self.sampler.stop()
        end_process(self.proc)

    def kill(self):
        if self.sampler and self.sampler.is_alive():
            self.sampler.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


SERVERS = {
    "outpost": lambda d: OutpostServer(d),
    "storescp": lambda d: StorescpServer(d),
    "storescp-fork": lambda d: StorescpServer(d, fork=True),
}


# --- one run ------------------------------------------------------------------


def send(port, aet, files, n_assoc, logdir):
    """n_assoc concurrent storescu processes (files split round-robin).
    Returns (seconds from the first start to the last exit, failures)."""
    parts = [files[k::n_assoc] for k in range(n_assoc)]
    procs, logs = [], []
    t0 = time.perf_counter()
    try:
        for k, part in enumerate(parts):
            logf = open(os.path.join(logdir, f"storescu{k}.log"), "w")
            logs.append(logf)
            procs.append(subprocess.Popen(
                ["storescu", "-aet", "BENCH", "-aec", aet, "localhost", str(port)] + part,
                env=DCMTK_ENV, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf))
        deadline = time.monotonic() + STORESCU_TIMEOUT
        for p in procs:
            p.wait(max(1.0, deadline - time.monotonic()))
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    failures = []
    for k, p in enumerate(procs):
        if p.returncode != 0:
            with open(os.path.join(logdir, f"storescu{k}.log")) as f:
                failures.append(f"storescu #{k} exited {p.returncode}: {f.read()[-800:]}")
    return elapsed, failures


def one_run(kind, workdir, files, n_assoc):
    os.makedirs(workdir)
    server = SERVERS[kind](workdir)
    try:
        server.start()
        timed_sync()
        cpu0, busy0 = proc_cpu_s(server.pid), machine_busy_s()
        scu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        elapsed, failures = send(server.port, server.aet, files, n_assoc, workdir)
        cpu = proc_cpu_s(server.pid) - cpu0
        busy = machine_busy_s() - busy0
        scu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        scu = (scu1.ru_utime + scu1.ru_stime) - (scu0.ru_utime + scu0.ru_stime)
        sync_s = timed_sync()
        if not server.alive():
            failures.append(f"{server.name} died during the run")
            rss = None
        else:
            rss = server.peak_rss_kb()
        server.stop()
        stored, detail, consistent = server.stored()
        if stored != len(files) or not consistent:
            failures.append(f"{server.name} stored {stored} of {len(files)} ({detail})")
    except Exception as e:  # noqa: BLE001 - any failure makes the run an error
        server.kill()
        return {"error": f"{server.name}: {type(e).__name__}: {e}"}
    if failures:
        return {"error": "; ".join(failures)}
    return {"name": server.name, "s": elapsed, "sync_s": sync_s, "rss_kb": rss, "cpu_s": cpu,
            "scu_cpu_s": scu, "busy_s": busy}


# --- report -------------------------------------------------------------------


def report(results, n_files, total_bytes, concurrencies, kinds, reps, args, tmpdir, load):
    out = []
    w = out.append
    ok = lambda r: "error" not in r  # noqa: E731
    w(f"Study: {n_files} CT instances, {total_bytes / n_files / 1000:.0f} kB each, "
      f"{total_bytes / 1e6:.0f} MB in all (MB = 10^6 bytes; RSS in MiB = 2^20 bytes). "
      f"{reps} runs per row: median (min–max).")
    w("")
    w("| Assoc. | Server | Time counted until | instances/s | MB/s | Outpost ÷ this "
      "(paired runs) | Peak RSS MiB | CPU ms/instance: server / storescu / machine |")
    w("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    syncs = []
    for n in concurrencies:
        outpost = results.get((n, "outpost"), [])
        for k in kinds:
            if (n, k) not in results:
                continue
            runs = results[(n, k)]
            rs = [r for r in runs if ok(r)]
            if not rs:
                w(f"| {n} | {k} | no successful run | | | | | |")
                continue
            syncs.append(f"{n} assoc. {rs[0]['name']} "
                         f"{statistics.median([r['sync_s'] for r in rs]) * 1000:.0f}")
            variants = [("ack", lambda r: r["s"])]
            if k != "outpost":
                variants.append(("sync", lambda r: r["s"] + r["sync_s"]))
            for variant, t in variants:
                ips = [n_files / t(r) for r in rs]
                mbs = [total_bytes / 1e6 / t(r) for r in rs]
                if k == "outpost":
                    label, ratio = "acknowledged (each instance fsync'd)", "—"
                else:
                    label = ("acknowledged (in page cache)" if variant == "ack"
                             else "+ `sync` (on disk)")
                    paired = [r["s"] / o["s"] if variant == "ack"
                              else (r["s"] + r["sync_s"]) / o["s"]
                              for o, r in zip(outpost, runs) if ok(o) and ok(r)]
                    ratio = med_range(paired, lambda v: f"{v:.2f}x") if paired else "—"
                rss = [r["rss_kb"] / 1024 for r in rs if r["rss_kb"]]
                rss_s = (f"{statistics.median(rss):.1f} (max {max(rss):.1f})"
                         if variant == "ack" and rss else "")
                def per_inst(key):
                    return f"{statistics.median([r[key] for r in rs]) * 1000 / n_files:.2f}"
                cpu_s = ""
                if variant == "ack":  # a forking storescp's children are not counted
                    cpu_s = (f"{per_inst('cpu_s') if k != 'storescp-fork' else '—'} / "
                             f"{per_inst('scu_cpu_s')} / {per_inst('busy_s')}")
                sname = rs[0]["name"] if variant == "ack" else ""
                w(f"| {n} | {sname} | {label} | {med_range(ips, lambda v: f'{v:.0f}')} | "
                  f"{med_range(mbs, lambda v: f'{v:.0f}')} | {ratio} | {rss_s} | {cpu_s} |")
    w("")
    w("Trailing `sync` after the last storescu exited, median ms: " + "; ".join(syncs) + ".")
    w("")
    w(f"Machine: {machine_line(tmpdir)}. Background load (CPUs busy with other work, "
      f"sampled for 1 s): {load[0]:.2f} before the runs, {load[1]:.2f} after"
      f"{' — NOT IDLE, numbers are disturbed' if max(load) > 0.15 else ''}.")
    w(f"Command: `OUTPOST_BUILD={BUILD} /usr/bin/python3 tests/bench/bench_receiver.py"
      f"{' ' + ' '.join(args) if args else ''}` (what `make bench` runs).")
    return "\n".join(out)


def main():
    ap = parser(__doc__, reps=5)
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--associations", default="1,4", help="comma-separated concurrencies")
    ap.add_argument("--servers", default="outpost,storescp,storescp-fork",
                    help="comma-separated: outpost, storescp, storescp-fork "
                         "(storescp-fork runs only with more than one association)")
    args = ap.parse_args()
    concurrencies = [int(x) for x in args.associations.split(",")]
    kinds = [k.strip() for k in args.servers.split(",")]
    for k in kinds:
        if k not in SERVERS:
            ap.error(f"unknown server {k}")
    if not os.access(os.path.join(BUILD, "outpost-receiver"), os.X_OK) and "outpost" in kinds:
        sys.exit(f"no {BUILD}/outpost-receiver: run make first")

    with scratch(args, "outpost-bench-") as tmp:
        log(f"generating {args.instances} CT instances in {tmp}/study")
        files = dicomgen.make_ct_study(os.path.join(tmp, "study"), args.instances)
        total_bytes = sum(os.path.getsize(f) for f in files)
        plan = [(n, k) for n in concurrencies for k in kinds
                if not (k == "storescp-fork" and n == 1)]
        # Targets are only deleted at the end: make sure they fit.
        need_space(tmp, total_bytes * (args.reps + 1) * len(plan) * 1.1,
                   "use --tmpdir or fewer --reps")
        timed_sync()
        load_before = idle_load()
        results = {key: [] for key in plan}
        errors = []
        # One untimed warm-up run per server (caches, first-run effects).
        for k in dict.fromkeys(k for _, k in plan):
            n = max(concurrencies) if k == "storescp-fork" else concurrencies[0]
            r = one_run(k, os.path.join(tmp, f"warmup-{k}"), files, n)
            if "error" in r:
                errors.append(f"warm-up {k}: {r['error']}")
        for rep in range(args.reps):
            for n in concurrencies:
                order = [k for (m, k) in plan if m == n]
                if rep % 2:
                    order.reverse()
                for k in order:
                    r = one_run(k, os.path.join(tmp, f"r{rep}-a{n}-{k}"), files, n)
                    results[(n, k)].append(r)
                    if "error" in r:
                        errors.append(f"rep {rep + 1}, {n} assoc., {k}: {r['error']}")
                        log(f"rep {rep + 1} {n} assoc. {k}: ERROR {r['error']}")
                    else:
                        log(f"rep {rep + 1} {n} assoc. {k}: {r['s']:.3f} s "
                            f"(+sync {r['sync_s']:.3f} s), {args.instances / r['s']:.0f} inst/s, "
                            f"RSS {r['rss_kb']} kB, CPU server {r['cpu_s']:.2f} s, "
                            f"storescu {r['scu_cpu_s']:.2f} s, machine {r['busy_s']:.2f} s")
        load_after = background_load()
        print(report(results, len(files), total_bytes, concurrencies, kinds, args.reps,
                     sys.argv[1:], tmp, (load_before, load_after)))
        if errors:
            print("\nFAILED runs:\n" + "\n".join(f"- {e}" for e in errors))
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
