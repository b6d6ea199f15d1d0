#!/usr/bin/python3
"""A spool of a million instances (issue 19): what the services cost on it.

The issue's goals, on a spool of 1 000 000 instances in 50 000 studies
(states mixed: sent, quarantined, queued; made by tests/tools/spool_fill
through the spool's own API):
- /api/status and /metrics at most 20 ms (counts kept incrementally);
- the uplink's claim and settle at most 5 ms each;
- the receiver's commit latency within 10% of an empty spool's;
- recovery at start at most 30 s, with progress logged;
- the console's queue page at most 50 ms;
- each service's RSS at most 32 MB.

Method:
- the spool is bench_query.py's (the same cache under
  /tmp/outpost-bench-query, filled once per build of spool_fill), or the
  one --spool names;
- outpost-receiver starts on it twice: the time until receiver.ready
  (recovery: the tmp/ sweep, every file of objects/ against the rows, every
  queued row's file, the query index) and its peak RSS (VmHWM) after it;
- outpost-uplink starts on it, paused by the operator (the setting the
  console writes), so that nothing is sent: its peak RSS after start; then
  (after the console password's first check, Argon2id's 19 MiB, which
  every login costs whatever the spool holds: tests/bench/bench_console.py)
  --reps requests each of GET /api/status, /metrics and the console's queue
  page (/api/queue?per_page=50, the first page, newest first, and the
  queued ones), on its HTTP listener with the console's password; the
  latency is the client's, request to last byte, on one connection;
- with both services stopped, tests/tools/spool_claims on the spool:
  2000 studies put in back-off a day away (the oldest in the queue: every
  claim must pass over them), then --claims timed claim/settle cycles
  (each claim a study of about 20 instances, requeued at once), next_due
  and the status counts after each; then --commits receiver commits (300
  bytes, fsyncs kept) on this spool and on an empty one, alternately; the
  back-off is undone at the end.

Every process it starts is ended by PID. Exits non-zero when a run fails.
"""
import os
import sqlite3
import statistics
import subprocess
import sys
import time

from benchkit import (background_load, idle_load, log, machine_line, parser,  # noqa: E402
                      proc_status_kb, scratch)
from console import Api, set_password  # noqa: E402
from outpost import BUILD, Receiver  # noqa: E402
import bench_query  # noqa: E402

PASSWORD = "bench-password-1"
GOALS = {"status": 20.0, "metrics": 20.0, "queue": 50.0, "claim": 5.0, "settle": 5.0,
         "start_s": 30.0, "rss_mib": 32 * 1e6 / 2**20}
PAGES = {"status": "/api/status", "metrics": "/metrics",
         "queue": "/api/queue?per_page=50",
         "queue (queued)": "/api/queue?state=queued&per_page=50"}


def set_paused(spool, paused):
    con = sqlite3.connect(os.path.join(spool, "spool.db"), timeout=30)
    with con:
        if paused:
            con.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('paused', '1')")
        else:
            con.execute("DELETE FROM settings WHERE key IN ('paused', 'paused.since')")
    con.close()


def timed_gets(api, path, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = api.get(path)
        times.append((time.perf_counter() - t) * 1000)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status} {r.body[:200]}")
    return times


def claims_run(spool, tmp, args):
    cmd = [os.path.join(BUILD, "tests", "spool_claims"), "--claims", str(args.claims),
           "--backoff", str(args.backoff), "--commits", str(args.commits), "--empty",
           os.path.join(tmp, "empty-spool"), spool]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    for line in p.stdout.splitlines():
        log(line)
    if p.returncode != 0:
        raise RuntimeError(f"spool_claims exited {p.returncode}: {p.stderr[-2000:]}")
    last = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return {k: float(v) for k, v in (f.split("=") for f in last.split()[1:])}


def verdict(value, goal):
    return "met" if value <= goal else "**NOT met**"


def main():
    ap = parser(__doc__, reps=50)
    ap.add_argument("--instances", type=int, default=1000000)
    ap.add_argument("--studies", type=int, default=50000)
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--fill-threads", type=int, default=32)
    ap.add_argument("--cache", default=bench_query.CACHE, help="where filled spools are kept")
    ap.add_argument("--refill", action="store_true", help="fill again even if cached")
    ap.add_argument("--spool", default=None, help="a filled spool to use instead of the cache")
    ap.add_argument("--claims", type=int, default=200)
    ap.add_argument("--backoff", type=int, default=2000)
    ap.add_argument("--commits", type=int, default=200)
    args = ap.parse_args()
    for prog in ("outpost-receiver", "outpost-uplink", "tests/spool_fill", "tests/spool_claims"):
        if not os.access(os.path.join(BUILD, prog), os.X_OK):
            sys.exit(f"no {BUILD}/{prog}: run make first")
    r = {"starts": []}
    with scratch(args, "outpost-bench-scale-") as tmp:
        args.tmp = tmp
        if args.spool:
            spool = args.spool
        else:
            _, spool, _, _ = bench_query.cached_spool(args)
        load_before = idle_load()
        rx = Receiver(os.path.join(tmp, "rx"), spool={"dir": spool})
        set_password(rx, PASSWORD)
        try:
            for _ in range(2):
                t0 = time.perf_counter()
                rx.start(timeout=900)
                r["starts"].append(time.perf_counter() - t0)
                r["rx_rss_kb"] = rx.rss_peak_kb()
                log(f"receiver ready in {r['starts'][-1]:.2f} s, VmHWM {r['rx_rss_kb']} kB")
                rx.stop()
        finally:
            rx.stop()
        r["recovery"] = [ln.split(" ", 1)[-1] for ln in rx.log().splitlines()
                         if "spool.recover" in ln or "spool.qr_index" in ln
                         or "spool.tallies" in ln][-4:]

        set_paused(spool, True)
        up = rx.uplink()
        try:
            up.start(timeout=300)
            r["up_start_kb"] = up.rss_peak_kb()
            api = Api(rx, password=PASSWORD)
            api.get("/api/status")  # the password's check (Argon2id), untimed
            r["pages"] = {}
            for name, path in PAGES.items():
                timed_gets(api, path, 3)  # warm-up
                r["pages"][name] = timed_gets(api, path, args.reps)
                q = sorted(r["pages"][name])
                log(f"GET {path}: median {statistics.median(q):.1f} ms, worst {q[-1]:.1f} ms")
            r["up_rss_kb"] = up.rss_peak_kb()
            r["up_now_kb"] = proc_status_kb(up.proc.pid, "VmRSS")
        finally:
            up.stop()
            set_paused(spool, False)
        r["claims"] = claims_run(spool, tmp, args)
        load_after = background_load()
        print(report(r, args, tmp, spool, (load_before, load_after)))
    return 0


def report(r, args, tmp, spool, load):
    out = []
    w = out.append
    c = r["claims"]
    w(f"Spool: {spool} ({args.instances} instances in {args.studies} studies, "
      "tests/tools/spool_fill).")
    w("")
    w("| Figure (issue 19) | Median | p95 | Worst | Goal | Verdict |")
    w("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, lat in r["pages"].items():
        q = sorted(lat)
        goal = GOALS["queue" if name.startswith("queue") else name]
        w(f"| GET {PAGES[name]} | {statistics.median(q):.1f} ms | "
          f"{q[max(0, len(q) * 95 // 100 - 1)]:.1f} ms | {q[-1]:.1f} ms | {goal:.0f} ms | "
          f"{verdict(statistics.median(q), goal)} (median) |")
    for name in ("claim", "settle", "next_due", "stats"):
        goal = GOALS.get(name)
        w(f"| spool {name} ({int(c['claims'])} cycles, {int(c['backoff'])} studies in "
          f"back-off) | {c[name + '_ms_median']:.2f} ms | {c[name + '_ms_p95']:.2f} ms | "
          f"{c[name + '_ms_worst']:.2f} ms | {f'{goal:.0f} ms' if goal else '—'} | "
          f"{verdict(c[name + '_ms_median'], goal) + ' (median)' if goal else '—'} |")
    ratio = c["commit_big_ms_median"] / c["commit_empty_ms_median"]
    w(f"| receiver commit, this spool ÷ an empty one ({args.commits} each, alternating) | "
      f"{ratio:.2f}x ({c['commit_big_ms_median']:.2f} / {c['commit_empty_ms_median']:.2f} ms) "
      f"| {c['commit_big_ms_p95']:.2f} / {c['commit_empty_ms_p95']:.2f} ms | "
      f"{c['commit_big_ms_worst']:.2f} / {c['commit_empty_ms_worst']:.2f} ms | 1.10x | "
      f"{verdict(ratio, 1.10)} |")
    for i, s in enumerate(r["starts"]):
        w(f"| receiver start to ready, {'first' if i == 0 else 'second'} start | {s:.2f} s | "
          f"| | {GOALS['start_s']:.0f} s | {verdict(s, GOALS['start_s'])} |")
    for name, kb in (("VmHWM outpost-receiver after recovery", r["rx_rss_kb"]),
                     ("VmHWM outpost-uplink after start", r["up_start_kb"]),
                     ("VmHWM outpost-uplink after the requests (the password's Argon2id "
                      "check: 19 MiB, once, whatever the spool)", r["up_rss_kb"]),
                     ("VmRSS outpost-uplink after the requests", r["up_now_kb"])):
        mib = kb / 1024
        w(f"| {name} | {mib:.1f} MiB | | | 32 MB | {verdict(mib, GOALS['rss_mib'])} |")
    w("")
    for line in r["recovery"]:
        w(f"- `{line}`")
    w("")
    w(f"Machine: {machine_line(tmp)}. Background load (CPUs busy with other work, "
      f"sampled for 1 s): {load[0]:.2f} before the runs, {load[1]:.2f} after"
      f"{' — NOT IDLE, numbers are disturbed' if max(load) > 0.15 else ''}.")
    w(f"Command: `OUTPOST_BUILD={BUILD} /usr/bin/python3 tests/bench/bench_scale.py"
      f"{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` (what `make bench` runs).")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
