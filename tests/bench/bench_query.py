#!/usr/bin/python3
"""Query/retrieve benchmark (issue 18): C-FIND latency on a spool of a
million instances, C-GET against storescu -> storescp, and the receiver's
ingest against the release before query/retrieve.

The issue's goals:
- study-level C-FIND by PatientID and by a StudyDate range on a spool
  indexing 1 000 000 instances in 50 000 studies: median and worst latency
  at most 50 ms;
- C-GET of a 500-instance CT study (getscu from outpost-receiver) at least
  0.8x the throughput of storescu -> storescp with the same files;
- ingest (storescu into outpost-receiver) at most 5% slower than the
  release before the query index (b30f200).

Method (docs/BENCHMARKS.md explains how to read the output):
- the spool is made by tests/tools/spool_fill (the spool's own API, not by
  receiving: see that file for what it holds and how), once, and kept under
  /tmp/outpost-bench-query/<hash of the tool's build without its debug
  information and build ID>-<sizes>/spool, so a rerun
  with the same build skips the fill (--refill forces one); the fill's own
  rates are printed from its log either way;
- outpost-receiver starts on that spool; the time until it logs
  receiver.ready (recovery of an indexed spool included) is printed;
- C-FIND: one association (this file's client on tests/lib/dul.py, so no
  process starts per query), Study Root, STUDY level, the keys a
  workstation's study list asks for (names, dates, accession, modalities in
  study, counts of series and instances); each query's latency runs from
  the C-FIND-RQ sent to the final response read; every query's answers are
  checked against what spool_fill says the spool holds (spool_fill
  --describe); a few findscu runs (a process per query) are timed beside;
- C-GET: the 500 CT instances (tests/lib/dicomgen.py, cached beside the
  spool) are stored into the big spool with storescu, then every
  repetition runs getscu from outpost-receiver and storescu into storescp,
  in alternating order, each into a fresh directory after a `sync`; both
  receiving ends write bit-preserving (+B); the time is the client
  process's, from its start to its exit, and a trailing `sync` is timed;
- ingest: bench_receiver.py's runs (fresh empty spool per run, 500 CT
  instances, 1 and 4 associations) with this build's outpost-receiver and
  the previous release's, alternating order between repetitions; the
  previous release is built from `git archive b30f200` when --prev-build
  does not name one.

Every process it starts is ended by PID. Exits non-zero when any run fails
or any answer is wrong.
"""
import bisect
import datetime
import hashlib
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time

from benchkit import (background_load, end_process, idle_load, log, machine_line,  # noqa: E402
                      med_range, parser, scratch)
from outpost import BUILD, DCMTK_ENV, ROOT, Receiver, free_port  # noqa: E402
import bench_receiver  # noqa: E402
import dicomgen  # noqa: E402
import dul  # noqa: E402

CACHE = "/tmp/outpost-bench-query"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PREV_COMMIT = "b30f200"
GOAL_MS = 50.0

# The study-level identifier (implicit VR little endian, ascending tags):
# what a workstation's study list shows.
STUDY_KEYS = [
    (0x00080005, "CS"),  # SpecificCharacterSet
    (0x00080020, "DA"),  # StudyDate
    (0x00080030, "TM"),  # StudyTime
    (0x00080050, "SH"),  # AccessionNumber
    (0x00080052, "CS"),  # QueryRetrieveLevel
    (0x00080061, "CS"),  # ModalitiesInStudy
    (0x00080090, "PN"),  # ReferringPhysicianName
    (0x00081030, "LO"),  # StudyDescription
    (0x00100010, "PN"),  # PatientName
    (0x00100020, "LO"),  # PatientID
    (0x00100030, "DA"),  # PatientBirthDate
    (0x00100040, "CS"),  # PatientSex
    (0x0020000D, "UI"),  # StudyInstanceUID
    (0x00200010, "SH"),  # StudyID
    (0x00201206, "IS"),  # NumberOfStudyRelatedSeries
    (0x00201208, "IS"),  # NumberOfStudyRelatedInstances
]


# --- the spool --------------------------------------------------------------------


def fill_tool():
    return os.path.join(BUILD, "tests", "spool_fill")


def fill_args(args):
    return ["--instances", str(args.instances), "--studies", str(args.studies),
            "--patients", str(args.patients), "--threads", str(args.fill_threads)]


def cached_spool(args):
    """The filled spool's folder (filling it when absent) and the fill's log."""
    # The tool's code, without its debug information and build ID (a hash
    # of the whole file, debug information included): a comment moves line
    # numbers, not what the tool stores.
    stripped = os.path.join(args.tmp, "spool_fill.stripped")
    subprocess.run(["objcopy", "--strip-debug", "--remove-section=.note.gnu.build-id",
                    fill_tool(), stripped], check=True)
    with open(stripped, "rb") as f:
        build_hash = hashlib.sha256(f.read()).hexdigest()[:16]
    key = f"{build_hash}-{args.instances}-{args.studies}-{args.patients}"
    home = os.path.join(args.cache, key)
    spool = os.path.join(home, "spool")
    fill_log = os.path.join(home, "fill.log")
    if args.refill and os.path.isdir(home):
        shutil.rmtree(home)
    if os.path.isdir(spool):
        log(f"spool: cached at {spool} (same spool_fill build, same sizes)")
        return home, spool, open(fill_log).read(), True
    # Another build's spools are of no use: they go (a million files each).
    for old in os.listdir(args.cache) if os.path.isdir(args.cache) else []:
        if old.count("-") == 3 and not old.startswith(build_hash + "-"):
            log(f"spool: removing {args.cache}/{old} (another spool_fill build)")
            shutil.rmtree(os.path.join(args.cache, old), ignore_errors=True)
    os.makedirs(home, exist_ok=True)
    partial = spool + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [fill_tool()] + fill_args(args) + [partial]
    log(f"spool: filling ({' '.join(cmd)})")
    with open(fill_log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"spool_fill exited {r.returncode}:\n{open(fill_log).read()[-3000:]}")
    os.rename(partial, spool)
    return home, spool, open(fill_log).read(), False


def describe(args):
    """What spool_fill put in: [(study_uid, patient_id, date, n, state)]."""
    out = subprocess.run([fill_tool()] + fill_args(args) + ["--describe", "/nonexistent"],
                         capture_output=True, text=True, check=True).stdout
    studies = []
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        uid, pid, _name, date, _acc, _mod, n, state = line.split()
        studies.append((uid, pid, date, int(n), state))
    return studies


# --- a C-FIND client on one association ----------------------------------------------


def _element(tag, vr, value):
    raw = value.encode("ascii")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(raw)) + raw


def identifier(values):
    """The study-level identifier with values {tag: text} (others empty)."""
    values = {**values, 0x00080052: "STUDY"}
    return b"".join(_element(t, vr, values.get(t, "")) for t, vr in STUDY_KEYS)


def parse_identifier(data):
    """Implicit VR little endian (no sequences here) -> {tag: text}."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        g, e, n = struct.unpack_from("<HHI", data, pos)
        pos += 8
        out[(g << 16) | e] = data[pos:pos + n].rstrip(b"\0 ").decode("latin-1")
        pos += n
    return out


class FindClient:
    def __init__(self, port):
        self.c = dul.Client(port, timeout=120)
        ac = self.c.associate([(STUDY_ROOT_FIND, [dul.IMPLICIT_LE])], called="OUTPOST",
                              calling="BENCHFIND", max_pdu=65536)
        self.pc = ac.context_for(STUDY_ROOT_FIND)
        if self.pc is None:
            raise RuntimeError("Study Root C-FIND was not accepted")
        self.mid = 0

    def _message(self):
        """The next command and its dataset (None when it has none)."""
        cmd = data = b""
        command = None
        while True:
            pdu_type, body = self.c.recv_pdu()
            if pdu_type == dul.A_ABORT:
                raise dul.PeerAborted(body[2], body[3])
            if pdu_type != dul.P_DATA_TF:
                raise dul.ProtocolError(f"PDU type {pdu_type:#04x} during C-FIND")
            pos = 0
            while pos < len(body):
                length, _, control = struct.unpack_from(">IBB", body, pos)
                chunk = body[pos + 6:pos + 4 + length]
                pos += 4 + length
                if control & dul.PDV_COMMAND:
                    cmd += chunk
                    if control & dul.PDV_LAST:
                        command = dul.parse_command(cmd)
                        if struct.unpack("<H", command[0x0800])[0] == dul.NO_DATASET:
                            return command, None
                else:
                    data += chunk
                    if control & dul.PDV_LAST:
                        return command, data

    def find(self, values):
        """Answers ({tag: text} each) and the seconds until the final response."""
        self.mid += 1
        us = lambda v: struct.pack("<H", v)  # noqa: E731
        rq = dul.command_set([
            (0x0002, dul._uid(STUDY_ROOT_FIND)),
            (0x0100, us(0x0020)),   # C-FIND-RQ
            (0x0110, us(self.mid)),
            (0x0700, us(0)),
            (0x0800, us(0x0000)),   # a dataset follows
        ])
        ident = identifier(values)
        answers = []
        t0 = time.perf_counter()
        self.c.send(dul.p_data_tf(dul.pdv(self.pc, rq, command=True),
                                  dul.pdv(self.pc, ident)))
        while True:
            command, data = self._message()
            status = struct.unpack("<H", command[0x0900])[0]
            if status in (0xFF00, 0xFF01):
                answers.append(parse_identifier(data or b""))
                continue
            elapsed = time.perf_counter() - t0
            if status != 0:
                raise RuntimeError(f"C-FIND status {status:#06x}: {command}")
            return answers, elapsed

    def close(self):
        try:
            self.c.release()
        finally:
            self.c.close()


# --- C-FIND latency ------------------------------------------------------------------


def day_shift(date, days):
    d = datetime.date(int(date[:4]), int(date[4:6]), int(date[6:]))
    return (d + datetime.timedelta(days=days)).strftime("%Y%m%d")


def plan_queries(studies, n, range_days, seed):
    """n PatientID queries and n StudyDate range queries, each with the
    study UIDs it must answer."""
    rng = random.Random(seed)
    by_patient, by_date = {}, sorted((s[2], s[0]) for s in studies)
    dates = [d for d, _ in by_date]
    for uid, pid, *_ in studies:
        by_patient.setdefault(pid, set()).add(uid)
    patients = sorted(by_patient)
    plans = {"PatientID": [], "StudyDate range": []}
    for _ in range(n):
        pid = rng.choice(patients)
        plans["PatientID"].append(({0x00100020: pid}, by_patient[pid]))
        lo = rng.choice(dates)
        hi = day_shift(lo, range_days - 1)
        want = {uid for _, uid in by_date[bisect.bisect_left(dates, lo):
                                          bisect.bisect_right(dates, hi)]}
        plans["StudyDate range"].append(({0x00080020: f"{lo}-{hi}"}, want))
    return plans


def run_finds(port, plans, errors):
    """{kind: [latency s]} and {kind: [answers]}, the kinds interleaved so
    that drift hits both."""
    client = FindClient(port)
    lat = {k: [] for k in plans}
    counts = {k: [] for k in plans}
    try:
        for i in range(max(len(v) for v in plans.values())):
            for kind, queries in plans.items():
                values, want = queries[i]
                answers, s = client.find(values)
                got = {a.get(0x0020000D, "") for a in answers}
                if got != want or len(answers) != len(want):
                    errors.append(f"C-FIND {kind} {values}: {len(answers)} answers, "
                                  f"{len(want)} expected")
                lat[kind].append(s)
                counts[kind].append(len(answers))
    finally:
        client.close()
    return lat, counts


def findscu_runs(port, plans, n):
    """Seconds of n findscu processes per kind (a process per query)."""
    out = {}
    for kind, queries in plans.items():
        times = []
        for values, _ in queries[:n]:
            cmd = ["findscu", "-S", "-aet", "BENCHFINDSCU", "-aec", "OUTPOST",
                   "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                   "-k", "PatientName", "-k", "NumberOfStudyRelatedInstances"]
            for tag, v in values.items():
                cmd += ["-k", f"({tag >> 16:04x},{tag & 0xFFFF:04x})={v}"]
            cmd += ["localhost", str(port)]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, env=DCMTK_ENV, timeout=120)
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"findscu exited {r.returncode}: {r.stderr[-500:]}")
        out[kind] = times
    return out


# --- C-GET against storescu -> storescp ------------------------------------------------


def timed(cmd, timeout=600):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=DCMTK_ENV, timeout=timeout)
    return time.perf_counter() - t0, r


def timed_sync():
    return bench_receiver.timed_sync()


def get_run(port, study_uid, outdir, n_files):
    os.makedirs(outdir)
    timed_sync()
    s, r = timed(["getscu", "-S", "+B", "-aet", "BENCHGET", "-aec", "OUTPOST", "-od", outdir,
                  "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                  "localhost", str(port)])
    sync_s = timed_sync()
    got = len(os.listdir(outdir))
    if r.returncode != 0 or got != n_files:
        return {"error": f"getscu exited {r.returncode}, {got} of {n_files} files: "
                         f"{r.stderr[-800:]}"}
    return {"s": s, "sync_s": sync_s}


def storescp_run(files, outdir, logdir):
    os.makedirs(outdir)
    port = free_port()
    with open(os.path.join(logdir, "storescp.log"), "a") as logf:
        proc = subprocess.Popen(["storescp", "+B", "-od", outdir, "-aet", "STORESCP", str(port)],
                                env=DCMTK_ENV, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=logf)
    try:
        deadline = time.monotonic() + 15
        while subprocess.run(["echoscu", "-aec", "STORESCP", "localhost", str(port)],
                             env=DCMTK_ENV, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"error": "storescp did not start"}
            time.sleep(0.05)
        timed_sync()
        s, r = timed(["storescu", "-aet", "BENCH", "-aec", "STORESCP", "localhost",
                      str(port)] + files)
        sync_s = timed_sync()
    finally:
        end_process(proc)
    got = len(os.listdir(outdir))
    if r.returncode != 0 or got != len(files):
        return {"error": f"storescu exited {r.returncode}, {got} of {len(files)} files: "
                         f"{r.stderr[-800:]}"}
    return {"s": s, "sync_s": sync_s}


# --- ingest against the previous release ------------------------------------------------


def prev_build(args, tmp_root):
    """The previous release's build folder (built from git archive if needed)."""
    path = args.prev_build or os.path.join(args.cache, f"prev-{PREV_COMMIT}", "build")
    if os.access(os.path.join(path, "outpost-receiver"), os.X_OK):
        return path
    if args.prev_build:
        sys.exit(f"no {path}/outpost-receiver")
    src = os.path.join(args.cache, f"prev-{PREV_COMMIT}", "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    log(f"ingest: building outpost-receiver at {PREV_COMMIT} in {src}")
    archive = subprocess.run(["git", "-C", ROOT, "archive", PREV_COMMIT], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    subprocess.run(["make", "-C", src, f"BUILD={path}", "-j2", f"{path}/outpost-receiver"],
                   check=True, stdout=subprocess.DEVNULL)
    return path


class PrevOutpostServer(bench_receiver.OutpostServer):
    name = f"outpost-receiver {PREV_COMMIT}"

    def __init__(self, workdir, build):
        super().__init__(workdir)
        self.rx.bin_dir = build


# --- report -------------------------------------------------------------------------------


def ms(v):
    return f"{v * 1000:.1f}"


def report_spool(r, args):
    """The spool, C-FIND and C-GET sections."""
    out = []
    w = out.append
    w(f"Spool: {args.instances} instances in {args.studies} studies of {args.patients} "
      f"patients (tests/tools/spool_fill, {'cached' if r['cached'] else 'filled in this run'}).")
    for line in r["fill_log"].splitlines():
        if line.startswith("fill: stored") or line.startswith("fill: ") and "settled" in line:
            w(f"- {line[6:]}")
    w(f"- outpost-receiver start on it (until receiver.ready): "
      f"{', '.join(f'{s:.2f} s' for s in r['starts'])}; its peak RSS after the start "
      f"{r['start_rss_kb'] / 1024:.0f} MiB, after the queries and retrieves "
      f"{r.get('end_rss_kb', 0) / 1024:.0f} MiB")
    for line in r.get("recovery", []):
        w(f"  - `{line}`")
    w("")
    w(f"C-FIND, Study Root, STUDY level, {len(STUDY_KEYS)} keys, one association, "
      f"{args.queries} queries of each kind (interleaved): latency in ms from C-FIND-RQ to "
      f"the final response. Goal: median and worst at most {GOAL_MS:.0f} ms.")
    w("")
    w("| Query | Answers per query: median (min–max) | Median ms | p95 ms | Worst ms | "
      "Goal met | findscu process, median ms |")
    w("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for kind, lat in r["lat"].items():
        c = r["counts"][kind]
        q = sorted(lat)
        met = statistics.median(q) * 1000 <= GOAL_MS and q[-1] * 1000 <= GOAL_MS
        fs = r["findscu"].get(kind)
        w(f"| {kind}{f' ({args.range_days} days)' if 'range' in kind else ''} | "
          f"{statistics.median(c):.0f} ({min(c)}–{max(c)}) | {ms(statistics.median(q))} | "
          f"{ms(q[int(len(q) * 0.95) - 1])} | {ms(q[-1])} | {'yes' if met else 'NO'} | "
          f"{ms(statistics.median(fs)) if fs else '—'} |")
    w("")
    g, s = r["get"], r["scp"]
    pairs = [(a, b) for a, b in zip(g, s) if "error" not in a and "error" not in b]
    if pairs:
        mb = r["ct_bytes"] / 1e6
        w(f"C-GET of the {r['ct_n']}-instance CT study ({mb:.0f} MB) from outpost-receiver "
          f"(on the spool above) against storescu -> storescp of the same files, "
          f"{len(pairs)} paired runs, alternating order: median (min–max). "
          f"Goal: at least 0.8x.")
        w("")
        w("| Transfer | Time counted until | instances/s | MB/s | Outpost ÷ this (paired) |")
        w("| --- | --- | ---: | ---: | ---: |")
        for label, t in (("client exit", lambda x: x["s"]),
                         ("+ `sync`", lambda x: x["s"] + x["sync_s"])):
            w(f"| getscu <- outpost-receiver | {label} | "
              f"{med_range([r['ct_n'] / t(a) for a, _ in pairs], lambda v: f'{v:.0f}')} | "
              f"{med_range([mb / t(a) for a, _ in pairs], lambda v: f'{v:.0f}')} | — |")
            w(f"| storescu -> storescp | {label} | "
              f"{med_range([r['ct_n'] / t(b) for _, b in pairs], lambda v: f'{v:.0f}')} | "
              f"{med_range([mb / t(b) for _, b in pairs], lambda v: f'{v:.0f}')} | "
              f"{med_range([t(b) / t(a) for a, b in pairs], lambda v: f'{v:.2f}x')} |")
        w("")
    return out


def report(r, args, tmp, load):
    out = report_spool(r, args) if "fill_log" in r else []
    w = out.append
    ing = r["ingest"]
    if ing:
        w(f"Ingest: storescu of the same {r['ct_n']} CT instances into outpost-receiver "
          f"(this build) and into outpost-receiver {PREV_COMMIT} (before the query index), "
          f"fresh spool each run, {args.ingest_reps} paired runs, alternating order. "
          f"Goal: at most 5% slower (ratio at least 0.95x).")
        w("")
        w("| Assoc. | This build, instances/s | " + PREV_COMMIT +
          ", instances/s | This ÷ previous (paired) |")
        w("| ---: | ---: | ---: | ---: |")
        for n, runs in ing.items():
            pairs = [(a, b) for a, b in runs if "error" not in a and "error" not in b]
            if not pairs:
                w(f"| {n} | no successful pair | | |")
                continue
            w(f"| {n} | {med_range([r['ct_n'] / a['s'] for a, _ in pairs], lambda v: f'{v:.0f}')} | "
              f"{med_range([r['ct_n'] / b['s'] for _, b in pairs], lambda v: f'{v:.0f}')} | "
              f"{med_range([b['s'] / a['s'] for a, b in pairs], lambda v: f'{v:.3f}x')} |")
        w("")
    w(f"Machine: {machine_line(tmp)}. Background load (CPUs busy with other work, "
      f"sampled for 1 s): {load[0]:.2f} before the runs, {load[1]:.2f} after"
      f"{' — NOT IDLE, numbers are disturbed' if max(load) > 0.15 else ''}.")
    w(f"Command: `OUTPOST_BUILD={BUILD} /usr/bin/python3 tests/bench/bench_query.py"
      f"{' ' + ' '.join(r['argv']) if r['argv'] else ''}` (what `make bench` runs).")
    return "\n".join(out)


def main():
    ap = parser(__doc__, reps=5)
    ap.add_argument("--instances", type=int, default=1000000)
    ap.add_argument("--studies", type=int, default=50000)
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--fill-threads", type=int, default=32)
    ap.add_argument("--cache", default=CACHE, help="where filled spools are kept")
    ap.add_argument("--refill", action="store_true", help="fill again even if cached")
    ap.add_argument("--queries", type=int, default=200, help="C-FIND queries of each kind")
    ap.add_argument("--range-days", type=int, default=7, help="days in a StudyDate range")
    ap.add_argument("--findscu", type=int, default=10, help="findscu processes per kind")
    ap.add_argument("--ct", type=int, default=500, help="instances in the C-GET study")
    ap.add_argument("--ingest-reps", type=int, default=5)
    ap.add_argument("--prev-build", default=None,
                    help=f"a build folder of {PREV_COMMIT} (built here when not given)")
    ap.add_argument("--skip", default="", help="comma-separated: find, get, ingest")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    for prog in ("outpost-receiver", "tests/spool_fill"):
        if not os.access(os.path.join(BUILD, prog), os.X_OK):
            sys.exit(f"no {BUILD}/{prog}: run make first")
    errors = []
    r = {"argv": sys.argv[1:], "lat": {}, "counts": {}, "findscu": {}, "get": [], "scp": [],
         "ingest": {}, "starts": []}

    with scratch(args, "outpost-bench-query-") as tmp:
        args.tmp = tmp
        ct_dir = os.path.join(args.cache, f"ct-{args.ct}")
        if not os.path.isdir(ct_dir):
            log(f"generating {args.ct} CT instances in {ct_dir}")
            dicomgen.make_ct_study(ct_dir + ".partial", args.ct)
            os.rename(ct_dir + ".partial", ct_dir)
        ct = sorted(os.path.join(ct_dir, f) for f in os.listdir(ct_dir))
        r["ct_n"], r["ct_bytes"] = len(ct), sum(os.path.getsize(f) for f in ct)
        import pydicom
        ct_study = str(pydicom.dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
        load_before = idle_load()
        if not {"find", "get"} <= skip:  # the big spool serves these two only
            home, spool, r["fill_log"], r["cached"] = cached_spool(args)
            for line in r["fill_log"].splitlines():
                if line.startswith("fill:") or line.startswith("RESULT"):
                    log(line)
            studies = describe(args)

            rx = Receiver(os.path.join(tmp, "rx"), spool={"dir": spool})
            try:
                for _ in range(2):
                    t0 = time.perf_counter()
                    rx.start(timeout=900)
                    r["starts"].append(time.perf_counter() - t0)
                    r["start_rss_kb"] = rx.rss_peak_kb()
                    log(f"receiver started on the spool in {r['starts'][-1]:.2f} s, "
                        f"peak RSS {r['start_rss_kb'] / 1024:.0f} MiB")
                    if len(r["starts"]) < 2:
                        rx.stop()
                if "find" not in skip:
                    plans = plan_queries(studies, args.queries, args.range_days, seed=18)
                    # Untimed warm-up: the first queries read the index from disk.
                    run_finds(rx.port, {k: v[:5] for k, v in plans.items()}, errors)
                    r["lat"], r["counts"] = run_finds(rx.port, plans, errors)
                    for kind, lat in r["lat"].items():
                        log(f"C-FIND {kind}: median {ms(statistics.median(lat))} ms, "
                            f"worst {ms(max(lat))} ms")
                    if args.findscu:
                        r["findscu"] = findscu_runs(rx.port, plans, args.findscu)
                if "get" not in skip:
                    # Into the big spool (again: identical instances are duplicates).
                    s, p = timed(["storescu", "-aet", "BENCH", "-aec", "OUTPOST", "localhost",
                                  str(rx.port)] + ct)
                    if p.returncode != 0:
                        raise RuntimeError(f"storescu into the spool: {p.stderr[-800:]}")
                    for rep in range(args.reps + 1):  # the first pair is a warm-up
                        pair = {}
                        order = ["get", "scp"] if rep % 2 else ["scp", "get"]
                        for kind in order:
                            d = os.path.join(tmp, f"{kind}-{rep}")
                            pair[kind] = (get_run(rx.port, ct_study, d, len(ct)) if kind == "get"
                                          else storescp_run(ct, d, tmp))
                            if "error" in pair[kind]:
                                errors.append(f"C-GET rep {rep} {kind}: {pair[kind]['error']}")
                            shutil.rmtree(d, ignore_errors=True)
                        log(f"C-GET rep {rep}: getscu {pair['get'].get('s', 0):.2f} s, "
                            f"storescu->storescp {pair['scp'].get('s', 0):.2f} s")
                        if rep:
                            r["get"].append(pair["get"])
                            r["scp"].append(pair["scp"])
                r["end_rss_kb"] = rx.rss_peak_kb()
            finally:
                rx.stop()
            # What recovery did at each start (the receiver's own log lines).
            r["recovery"] = [ln.split(" ", 1)[-1] for ln in rx.log().splitlines()
                             if "spool.recover" in ln or "spool.qr_index" in ln][:8]

        if "ingest" not in skip:
            prev = prev_build(args, tmp)
            bench_receiver.SERVERS["outpost-prev"] = lambda d: PrevOutpostServer(d, prev)
            for n in (1, 4):
                r["ingest"][n] = []
                for rep in range(args.ingest_reps + 1):  # the first pair is a warm-up
                    order = ["outpost", "outpost-prev"]
                    if rep % 2:
                        order.reverse()
                    pair = {}
                    for kind in order:
                        pair[kind] = bench_receiver.one_run(
                            kind, os.path.join(tmp, f"ingest-{n}-{rep}-{kind}"), ct, n)
                        if "error" in pair[kind]:
                            errors.append(f"ingest {n} assoc. rep {rep} {kind}: "
                                          f"{pair[kind]['error']}")
                    log(f"ingest {n} assoc. rep {rep}: this {pair['outpost'].get('s', 0):.2f} s, "
                        f"{PREV_COMMIT} {pair['outpost-prev'].get('s', 0):.2f} s")
                    if rep:
                        r["ingest"][n].append((pair["outpost"], pair["outpost-prev"]))
        load_after = background_load()
        print(report(r, args, tmp, (load_before, load_after)))
        if errors:
            print("\nFAILED:\n" + "\n".join(f"- {e}" for e in errors[:50]))
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
