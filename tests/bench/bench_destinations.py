#!/usr/bin/python3
"""Destinations benchmark (make bench): two STOW-RS destinations (two
Orthancs, each behind its own nginx, over TLS) and one DICOM destination
(DCMTK's storescp +B) draining a 500-instance CT study at once, each one's
throughput against the same destination alone; the share each gets of a
40 Mbit/s [shaping] bucket (goal: within 10% of fair); and the uplink's
peak RSS (goal: at most 32 MB).

Unbounded, the three together need more CPU than this 2-core machine has
(two Orthancs, two nginx, storescp, the uplink): the machine's busy share
is measured while all of a drain's destinations are busy (until the
first is done) and printed beside it. So the same drain is
run a second time with each destination capped by its own `rate` at
CAPPED_MBIT, a rate this machine sustains for all three at once: there,
alone against together measures only the engines' independence.

Each destination is reached through a metering TCP relay
(tests/lib/meter.py), which counts the bytes each one is sent (TLS records
for STOW-RS, PDUs for DICOM); throughput is each destination's bytes over
the time from the uplink's start to its last byte.

    OUTPOST_BUILD=build /usr/bin/python3 tests/bench/bench_destinations.py [--reps N]
"""
import os
import statistics
import sys
import time

from benchkit import (background_load, idle_load, log, machine_busy_s, machine_line,  # noqa: E402
                      machine_iowait_s, parser, proc_cpu_s, proc_status_kb, scratch)

import dicomgen  # noqa: E402
from cloud import Cloud, TestPKI  # noqa: E402
from meter import MeteringRelay  # noqa: E402
from outpost import Receiver, Storescp, storescu, wait_for  # noqa: E402

DESTS = ("cloud", "region2", "pacs")
CAPPED_MBIT = 40  # each destination's own `rate` in the capped pass
FAIR_SECONDS = 20  # measured, after 5 s of warm-up


class Site:
    """Two clouds and a storescp, each behind a relay; a receiver holding
    `files` routed to `dests`; its uplink not started."""

    def __init__(self, tmp, name, files, dests, shaping=None, rate=None):
        self.base = os.path.join(tmp, name)
        self.pki = TestPKI(os.path.join(self.base, "pki"))
        self.clouds = {d: Cloud(os.path.join(self.base, d), pki=self.pki).start()
                       for d in ("cloud", "region2")}
        self.scp = Storescp(os.path.join(self.base, "pacs"))
        self.relays = {d: MeteringRelay(("127.0.0.1", c.https_port)).start()
                       for d, c in self.clouds.items()}
        self.relays["pacs"] = MeteringRelay(("127.0.0.1", self.scp.port)).start()
        ca = self.clouds["cloud"].ca_file
        sections = {
            "cloud": {"url": f"https://localhost:{self.relays['cloud'].port}/dicom-web",
                      "ca_file": ca, "connections": 2, "retry_max_delay": 2},
            "destination region2": {
                "type": "stow-rs", "ca_file": ca, "connections": 2, "retry_max_delay": 2,
                "url": f"https://localhost:{self.relays['region2'].port}/dicom-web"},
            "destination pacs": {"type": "dicom", "host": "127.0.0.1",
                                 "port": self.relays["pacs"].port, "called_ae": "STORESCP",
                                 "connections": 1, "retry_max_delay": 2},
            "route all": {"when": "Modality=*", "to": ", ".join(dests)},
            "spool": {"keep_sent_bytes": "0"},
        }
        if shaping:
            sections["shaping"] = shaping
        if rate:
            for key in ("cloud", "destination region2", "destination pacs"):
                sections[key]["rate"] = rate
        self.rx = Receiver(os.path.join(self.base, "rx"), **sections).start()
        for i in range(0, len(files), 100):
            r = storescu(self.rx.port, files[i:i + 100])
            if r.returncode != 0:
                raise RuntimeError(f"storescu: {r.stderr[-500:]}")
        self.uplink = self.rx.uplink()
        self.dests = dests

    def sent(self, dest):
        with self.rx.db() as con:
            row = con.execute("SELECT value FROM counters WHERE name = ?",
                              (f"{dest}:uploaded_instances",)).fetchone()
        return row[0] if row else 0

    def close(self):
        self.uplink.stop()
        self.rx.stop()
        for r in self.relays.values():
            r.stop()
        for c in self.clouds.values():
            c.stop()
        self.scp.stop()


def drain(tmp, name, files, dests, rate=None):
    """{dest: MB/s} draining files to dests at once, the uplink's peak RSS
    (kB) and the machine's busy share (0..1) while all of them drained
    (until the first was done); logs the uplink's own CPU share and the
    machine's iowait over the same time."""
    s = Site(tmp, name, files, dests, rate=rate)
    try:
        t0 = time.monotonic()
        busy0, wait0 = machine_busy_s(), machine_iowait_s()
        s.uplink.start()
        done = {}
        while len(done) < len(dests):
            for d in dests:
                if d not in done and s.sent(d) == len(files):
                    done[d] = s.relays[d].samples[-1][0]
                    if len(done) == 1:  # the machine while all of them drained
                        first = time.monotonic() - t0
                        busy = (machine_busy_s() - busy0) / first / os.cpu_count()
                        wait = (machine_iowait_s() - wait0) / first / os.cpu_count()
                        up_cpu = proc_cpu_s(s.uplink.proc.pid) / first
            if time.monotonic() - t0 > 600:
                raise RuntimeError(f"no drain in 600 s: {done}")
            time.sleep(0.05)
        log(f"  {name}: {time.monotonic() - t0:.1f} s; until the first was done "
            f"({first:.1f} s): machine busy {busy:.0%}, iowait {wait:.0%}, uplink "
            f"{up_cpu:.0%} of a CPU")
        rss = proc_status_kb(s.uplink.proc.pid, "VmHWM")
        return {d: s.relays[d].total() / 1e6 / (done[d] - t0) for d in dests}, rss, busy
    finally:
        s.close()


def fair(tmp, files):
    """Each destination's Mbit/s out of a 40 Mbit/s bucket, all busy."""
    s = Site(tmp, "fair", files, DESTS, shaping={"rate": "40Mbit"})
    try:
        s.uplink.start()
        time.sleep(5)
        t1 = time.monotonic()
        time.sleep(FAIR_SECONDS)
        t2 = time.monotonic()
        return {d: s.relays[d].total(since=t1, until=t2) * 8 / (t2 - t1) / 1e6 for d in DESTS}
    finally:
        s.close()


def main():
    ap = parser(__doc__, reps=3)
    ap.add_argument("--instances", type=int, default=500)
    args = ap.parse_args()
    with scratch(args, "outpost-bench-destinations-") as tmp:
        load_before = idle_load()
        files = dicomgen.make_ct_study(os.path.join(tmp, "study"), args.instances)
        passes = (("unbounded", None), (f"each capped at {CAPPED_MBIT} Mbit/s",
                                         f"{CAPPED_MBIT}Mbit"))
        alone = {p: {d: [] for d in DESTS} for p, _ in passes}
        together = {p: {d: [] for d in DESTS} for p, _ in passes}
        busy = {p: {"alone": [], "together": []} for p, _ in passes}
        rss = []
        shares = {d: [] for d in DESTS}
        for rep in range(args.reps):
            for p, rate in passes:
                for d in DESTS:
                    mbs, _, b = drain(tmp, f"alone-{d}-{rep}-{rate}", files, (d,), rate)
                    alone[p][d].append(mbs[d])
                    busy[p]["alone"].append(b)
                mbs, kb, b = drain(tmp, f"together-{rep}-{rate}", files, DESTS, rate)
                for d in DESTS:
                    together[p][d].append(mbs[d])
                busy[p]["together"].append(b)
                rss.append(kb)
                log(f"rep {rep + 1}, {p}: alone {[round(alone[p][d][-1], 1) for d in DESTS]} "
                    f"MB/s, together {[round(together[p][d][-1], 1) for d in DESTS]} MB/s, "
                    f"machine busy {b:.0%}, RSS {kb} kB")
            got = fair(tmp, files)
            for d in DESTS:
                shares[d].append(got[d])
            log(f"rep {rep + 1}: shares {[round(got[d], 1) for d in DESTS]} Mbit/s")
        med = statistics.median
        out = []
        for p, _ in passes:
            out += [f"| Destination, {p} | alone MB/s | with the other two MB/s | ratio |",
                    "| --- | ---: | ---: | ---: |"]
            for d, label in zip(DESTS, ("cloud (STOW-RS, Orthanc)",
                                        "region2 (STOW-RS, Orthanc)",
                                        "pacs (C-STORE, storescp)")):
                a, t = med(alone[p][d]), med(together[p][d])
                out.append(f"| {label} | {a:.1f} | {t:.1f} | {t / a:.2f} |")
            out += [f"| machine busy (both CPUs) | {med(busy[p]['alone']):.0%} | "
                    f"{med(busy[p]['together']):.0%} | |", ""]
        fair_share = 40 / len(DESTS)
        out += [f"| 40 Mbit/s bucket, all three busy | Mbit/s | vs fair ({fair_share:.1f}) |",
                "| --- | ---: | ---: |"]
        for d in DESTS:
            out.append(f"| {d} | {med(shares[d]):.1f} | "
                       f"{100 * (med(shares[d]) - fair_share) / fair_share:+.0f}% |")
        out += ["", f"Uplink peak RSS, three destinations draining: {max(rss) / 1024:.1f} MB "
                f"(max of {len(rss)})."]
        load_after = background_load()
        print("\n".join(out))
        print(f"\n{args.reps} runs per row, medians; {args.instances} instances of 512x512x16 "
              f"bit CT. Machine: {machine_line(tmp)}. Background load: {load_before:.2f} "
              f"before, {load_after:.2f} after.")
        print(f"Command: `OUTPOST_BUILD={os.environ.get('OUTPOST_BUILD', 'build')} "
              f"/usr/bin/python3 tests/bench/bench_destinations.py {' '.join(sys.argv[1:])}`.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
