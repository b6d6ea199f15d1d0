#!/usr/bin/python3
"""Console benchmark (make bench): what the operator surface costs the
uplink. Peak memory (VmHWM) of outpost-uplink before any login and after
a burst of concurrent logins (Argon2id, 19 MiB a check, one at a time);
how long /api/status, /api/queue and /metrics take on a spool of
100 000 instances in 2 000 studies (rows written straight into the spool
database: the files are never read by these endpoints); and a firmware
bundle's upload (PUT /api/firmware, streamed to disk) over HTTP and
HTTPS on loopback: its rate, and the uplink's peak memory after it.

    OUTPOST_BUILD=build /usr/bin/python3 tests/bench/bench_console.py [--rows N]
"""
import os
import sqlite3
import statistics
import threading
import time

from benchkit import machine_line, parser, scratch  # noqa: E402
from cloud import TestPKI  # noqa: E402
from console import Api, set_password  # noqa: E402
from outpost import Receiver, write_ini  # noqa: E402

PASSWORD = "bench-password-1"


def fill(rx, rows, studies):
    """rows instances spread over studies, a quarter sent, the rest queued."""
    now = int(time.time() * 1000)
    con = sqlite3.connect(os.path.join(rx.spool, "spool.db"))
    with con:
        con.executemany(
            "INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid,"
            " transfer_syntax, patient_id, modality, calling_aet, size, hash, received_at,"
            " priority, state, state_changed_at) VALUES (?, '1.2.840.10008.5.1.4.1.1.2', ?,"
            " ?, '1.2.840.10008.1.2.1', ?, 'CT', 'BENCH', 530000, ?, ?, 1, ?, ?)",
            ((f"2.25.{i}", f"2.25.9{i % studies}", f"2.25.8{i % studies}",
              f"P{i % studies}", f"{i:064x}", now - rows + i,
              "sent" if i % 4 == 0 else "queued", now - rows + i) for i in range(rows)))
    con.close()


def timed(api, path, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = api.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, (path, r.status, r.body[:200])
    return statistics.median(times), max(times)


def upload(rx, up, api, bundle, how):
    api.timeout = 300
    before = up.rss_peak_kb()
    t = time.perf_counter()
    r = api.put("/api/firmware", bundle)
    took = time.perf_counter() - t
    assert r.status == 202, (r.status, r.body[:300])
    os.unlink(os.path.join(os.path.dirname(rx.ini), "upload", "update.raucb"))
    print(f"PUT /api/firmware {len(bundle) >> 20} MiB over {how}: {took:.2f} s, "
          f"{len(bundle) / took / 1e6:.0f} MB/s (synced to disk); uplink VmHWM "
          f"{before} kB before, {up.rss_peak_kb()} kB after")


def main():
    ap = parser(__doc__, reps=20)
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--studies", type=int, default=2000)
    ap.add_argument("--bundle-mib", type=int, default=256)
    args = ap.parse_args()
    with scratch(args, "outpost-bench-console-") as work:
        rx = Receiver(os.path.join(work, "rx"))
        set_password(rx, PASSWORD)
        rx.start()
        rx.stop()  # the spool exists; the uplink alone answers the API
        fill(rx, args.rows, args.studies)
        up = rx.uplink().start()
        try:
            print(f"machine: {machine_line(work)}")
            start_kb = up.rss_peak_kb()
            api = Api(rx)
            threads = [threading.Thread(target=lambda: api.post(
                "/api/login", {"password": PASSWORD}, auth=False)) for _ in range(8)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            print(f"uplink VmHWM: {start_kb} kB at start, {up.rss_peak_kb()} kB after 8 "
                  f"concurrent logins (goal: 32 MB)")
            basic = Api(rx, password=PASSWORD)
            for path in ("/api/status", "/api/queue?per_page=50", "/api/queue?state=sent&page=5",
                         "/metrics"):
                med, worst = timed(basic, path, args.reps)
                print(f"{path:32s} median {med:7.1f} ms, worst {worst:7.1f} ms "
                      f"({args.rows} instances, {args.studies} studies, {args.reps} requests)")
            print(f"uplink VmHWM: {up.rss_peak_kb()} kB")
            bundle = os.urandom(args.bundle_mib << 20)
            upload(rx, up, basic, bundle, "HTTP")
            up.stop()
            pki = TestPKI(os.path.join(work, "pki"))
            rx.config["console"].update(tls_cert=pki.server.cert, tls_key=pki.server.key)
            write_ini(rx.ini, rx.config)
            up = rx.uplink().start()
            https = Api(rx, password=PASSWORD, ca_file=pki.ca_file, timeout=300)
            assert https.get("/api/status").status == 200  # the password's check, first
            upload(rx, up, https, bundle, "HTTPS")
        finally:
            up.stop()


if __name__ == "__main__":
    main()
