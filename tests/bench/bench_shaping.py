#!/usr/bin/python3
"""Shaping benchmark (make bench): the uplink's rate measured on the wire
at 1, 8 and 100 Mbit/s (mean error, worst 1-second window), the CPU cost
of the token bucket (a rate that never binds against no shaping at all),
and how long an urgent study waits behind a 1 GiB backlog.

The wire is measured by a metering TCP relay between the uplink and nginx
(tests/lib/meter.py): the TLS records as the uplink writes them.

    OUTPOST_BUILD=build /usr/bin/python3 tests/bench/bench_shaping.py [--reps N]
"""
import os
import shutil
import statistics
import sys
import time

from benchkit import (background_load, idle_load, log, machine_line, parser,  # noqa: E402
                      proc_cpu_s, scratch)

import pydicom  # noqa: E402

import dicomgen  # noqa: E402
from cloud import Cloud, TestPKI  # noqa: E402
from meter import MeteringRelay  # noqa: E402
from outpost import Receiver, storescu, wait_for  # noqa: E402

MBIT = 1e6
SECONDS = 20  # of traffic per accuracy run


def uids(files):
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


class Setup:
    """A fresh cloud, relay, receiver holding `files`, uplink not started."""

    def __init__(self, tmp, name, files, shaping, priority=None, connections=2):
        self.base = os.path.join(tmp, name)
        self.pki = TestPKI(os.path.join(self.base, "pki"))
        self.cloud = Cloud(os.path.join(self.base, "cloud"), pki=self.pki).start()
        self.relay = MeteringRelay(("127.0.0.1", self.cloud.https_port)).start()
        self.rx = Receiver(os.path.join(self.base, "rx"), cloud={
            "url": f"https://localhost:{self.relay.port}/dicom-web",
            "ca_file": self.cloud.ca_file, "connections": connections,
            "retry_max_delay": 2}, shaping=shaping, priority=priority or {}).start()
        r = storescu(self.rx.port, files)
        if r.returncode != 0:
            raise RuntimeError(f"storescu: {r.stderr[-500:]}")
        self.uplink = self.rx.uplink()

    def drained(self):
        return not self.rx.rows("state IN ('queued', 'sending')")

    def close(self):
        for service in (self.uplink, self.rx):
            service.stop()
        self.relay.stop()
        self.cloud.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def accuracy(tmp, rate_mbit):
    """Sends SECONDS of traffic at the rate; returns (mean error %, worst
    second as % of the rate, MB sent)."""
    n = max(4, int(rate_mbit * MBIT / 8 * SECONDS / 525_000))
    files = dicomgen.make_ct_study(os.path.join(tmp, f"study-{rate_mbit}"), n)
    s = Setup(tmp, f"acc-{rate_mbit}", files, {"rate": f"{rate_mbit}Mbit"})
    try:
        s.uplink.start()
        wait_for(s.drained, SECONDS * 4, interval=0.2, what="the drain")
        if not uids(files) <= set(s.cloud.instances()):
            raise RuntimeError("the cloud does not hold every instance")
        first, last = s.relay.samples[0][0], s.relay.samples[-1][0]
        total = s.relay.total()
        mean = total * 8 / (last - first)
        bins = s.relay.bins(0.1)
        worst = max(sum(bins[i:i + 10]) for i in range(max(1, len(bins) - 9))) * 8
        rate = rate_mbit * MBIT
        return (100 * (mean - rate) / rate, 100 * worst / rate, total / 1e6)
    finally:
        s.close()
        shutil.rmtree(os.path.dirname(files[0]), ignore_errors=True)


def cpu_per_gb(tmp, files, rate):
    """The uplink's CPU seconds per GB sent, unshaped or at a rate that
    never binds."""
    s = Setup(tmp, f"cpu-{rate}", files, {"rate": rate})
    try:
        s.uplink.start()
        t0 = time.monotonic()
        pid = s.uplink.proc.pid
        cpu = 0
        while not s.drained():
            cpu = proc_cpu_s(pid)
            time.sleep(0.05)
            if time.monotonic() - t0 > 300:
                raise RuntimeError("no drain in 300 s")
        cpu = proc_cpu_s(pid)
        elapsed = time.monotonic() - t0
        total = s.relay.total()
        return cpu / (total / 1e9), total / 1e6 / elapsed
    finally:
        s.close()


def urgent_latency(tmp, backlog):
    """Seconds from an urgent study's acknowledgment to its first instance
    at the cloud, behind `backlog` at 40 Mbit/s."""
    s = Setup(tmp, "urgent", backlog, {"rate": "40Mbit"},
              priority={"urgent_match": "RequestedProcedurePriority=STAT"})
    urgent_dir = os.path.join(tmp, "urgent-study")
    try:
        s.uplink.start()
        wait_for(lambda: s.relay.total() > 5e6, 60, what="the backlog to flow")
        urgent = dicomgen.make_ct_study(urgent_dir, 3, seed=int(time.time()) % 1000,
                                        priority="STAT")
        r = storescu(s.rx.port, urgent)
        acked = time.monotonic()
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-500:])
        want = uids(urgent)
        wait_for(lambda: want & set(s.cloud.instances()), 60, interval=0.02,
                 what="the first urgent instance")
        return time.monotonic() - acked
    finally:
        s.close()
        shutil.rmtree(urgent_dir, ignore_errors=True)


def main():
    ap = parser(__doc__, reps=3)
    ap.add_argument("--rates", default="1,8,100", help="Mbit/s, comma-separated")
    args = ap.parse_args()
    with scratch(args, "outpost-bench-shaping-") as tmp:
        load_before = idle_load()
        out = ["| Rate | Sent MB | Mean error | Worst 1-s window |", "| ---: | ---: | ---: | ---: |"]
        for rate in [int(r) for r in args.rates.split(",")]:
            runs = []
            for rep in range(args.reps):
                runs.append(accuracy(tmp, rate))
                log(f"{rate} Mbit/s rep {rep + 1}: mean {runs[-1][0]:+.2f}%, "
                    f"worst second {runs[-1][1]:.1f}%")
            out.append(f"| {rate} Mbit/s | {runs[0][2]:.1f} | "
                       f"{statistics.median(r[0] for r in runs):+.2f}% "
                       f"({min(r[0] for r in runs):+.2f} to {max(r[0] for r in runs):+.2f}) | "
                       f"{max(r[1] for r in runs):.1f}% (max of {len(runs)}) |")

        files = dicomgen.make_ct_study(os.path.join(tmp, "cpu-study"), 500)
        cpu = {"unlimited": [], "10Gbit": []}
        for rep in range(args.reps):
            for rate in ("unlimited", "10Gbit") if rep % 2 == 0 else ("10Gbit", "unlimited"):
                cpu[rate].append(cpu_per_gb(tmp, files, rate))
                log(f"CPU {rate} rep {rep + 1}: {cpu[rate][-1][0]:.2f} s/GB, "
                    f"{cpu[rate][-1][1]:.0f} MB/s")
        shutil.rmtree(os.path.join(tmp, "cpu-study"), ignore_errors=True)
        out += ["", "| Shaping | uplink CPU s/GB | MB/s |", "| --- | ---: | ---: |"]
        for rate, label in (("unlimited", "off (rate = unlimited: the bucket is bypassed)"),
                            ("10Gbit", "on, never binding (rate = 10Gbit)")):
            out.append(f"| {label} | {statistics.median(c[0] for c in cpu[rate]):.2f} | "
                       f"{statistics.median(c[1] for c in cpu[rate]):.0f} |")

        backlog = dicomgen.make_ct_study(os.path.join(tmp, "backlog"), 64, rows=2048, cols=4096)
        lat = []
        for rep in range(args.reps):
            lat.append(urgent_latency(tmp, backlog))
            log(f"urgent rep {rep + 1}: {lat[-1]:.2f} s")
        out += ["", "| Urgent study behind 1 GiB of backlog at 40 Mbit/s | seconds |",
                "| --- | ---: |",
                f"| acknowledged → first instance at the cloud | {statistics.median(lat):.2f} "
                f"({min(lat):.2f}–{max(lat):.2f}) |"]
        load_after = background_load()
        print("\n".join(out))
        print(f"\n{args.reps} runs per row. Machine: {machine_line(tmp)}. Background load "
              f"(CPUs busy with other work): {load_before:.2f} before, {load_after:.2f} after.")
        print(f"Command: `OUTPOST_BUILD={os.environ.get('OUTPOST_BUILD', 'build')} "
              f"/usr/bin/python3 tests/bench/bench_shaping.py {' '.join(sys.argv[1:])}`.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
