"""The cloud down while a study arrives: the receiver keeps acknowledging,
the uplink backs off instead of hammering, and once the cloud is back
everything drains with nothing missing.

Two flavours of "down" (docs/notes-orthanc.md item 8):
  - Orthanc stopped behind a running nginx: every request is answered
    502 Bad Gateway. nginx's access log counts the uplink's attempts.
  - nginx stopped: connections are refused. Refused connections leave no
    trace anywhere on the cloud side, so after the study has arrived (the
    uplink meanwhile meeting real ECONNREFUSED) a tiny TCP listener takes
    the cloud's port for a measured window: it accepts each connection,
    counts it and resets it at once (RST), which the uplink meets as a
    failed TLS handshake, the same class of failure (requeued without an
    attempt, link down, back-off). Then it closes and nginx comes back.

The bound on attempts, from the back-off rule (services/uplink/link.c,
op__uplink_backoff_ms): after the link's n-th consecutive failure the
next probe waits min(retry_max_delay, 1 s * 2^(n-1)) scaled by a random
factor in [0.5, 1], and while the link is down only one connection
probes. With
retry_max_delay = 2 s that wait is at least 0.5 s after the first failure
and at least 1 s after every later one, so a window of T seconds holds at
most T/1 + 1 probes, plus one per connection for the requests already on
their way when the outage began (each fails once, concurrently), plus one
for rounding at the window's edges: T + connections + 2. A hot loop, or
even one probe per 500 ms tick of the uplink, goes well above that over a
window of several seconds. The check is a count of attempts, not a
timing: the window's length is only what it is compared with.
"""
import random
import socket
import struct
import threading
import time

import dicomgen
from outpost import wait_for
from integration_fixtures import assert_all_sent, log_lines, uid_of

CONNECTIONS = 2
RETRY_MAX_DELAY = 2  # s
OUTAGE = 8.0         # s, the 502 outage, from Orthanc's stop to its start
WINDOW = 6.0         # s, the counted part of the refused outage


def max_attempts(seconds):
    """At most one probe per second while down, plus the requests in flight
    at the outage's onset, plus rounding at the edges (module docstring)."""
    return int(seconds / 1.0) + CONNECTIONS + 2


class CountingListener:
    """Listens on 127.0.0.1:port in place of the cloud; accepts each TCP
    connection, notes it and resets it (SO_LINGER 0 -> RST): at once, or
    with read_first after the client's first bytes (its TLS ClientHello)
    have arrived, i.e. certainly during the handshake."""

    def __init__(self, port, read_first=False):
        self.read_first = read_first
        self.hellos = 0  # connections that sent bytes before the reset
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.accepted = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted.append(time.monotonic())
            if self.read_first:
                conn.settimeout(5)
                try:
                    self.hellos += bool(conn.recv(4096))
                except OSError:
                    pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


def warm_up(p, tmp_path):
    """A few instances first, so the outage finds the link up, with
    kept-alive connections, as it would in real life."""
    files = dicomgen.make_ct_study(str(tmp_path / "warm"), 4, seed=7, rows=64, cols=64)
    p.send(files)
    p.wait_drained()
    assert len(p.cloud.instances()) == len(files)
    return files


def check_everything_arrived(p, files, rng):
    """Every row sent; the cloud holds exactly these instances (UIDs of all,
    dataset bytes against the spool for a sample)."""
    p.wait_drained()
    uids = {uid_of(f) for f in files}
    assert {r["sop_instance_uid"] for r in p.receiver.rows()} == uids
    assert_all_sent(p.receiver, len(uids))
    p.assert_cloud_holds(uids, compare=rng.sample(sorted(uids), 50))


def test_orthanc_down_behind_nginx_502(pipelines, ct_study, tmp_path):
    rng = random.Random(502)
    p = pipelines(cloud={"connections": CONNECTIONS, "retry_max_delay": RETRY_MAX_DELAY})
    warm = warm_up(p, tmp_path)
    before = len(p.cloud.requests("POST"))

    start = time.monotonic()
    p.cloud.stop_orthanc()
    p.send(ct_study)  # every C-STORE acknowledged while the cloud is down
    assert len(p.receiver.rows()) == len(warm) + len(ct_study)
    time.sleep(max(0.0, start + OUTAGE - time.monotonic()))
    p.cloud.start_orthanc()
    outage = time.monotonic() - start

    during = p.cloud.requests("POST")[before:]
    failed = [r for r in during if r["status"] == 502]
    assert failed, "the uplink never tried while Orthanc was down"
    # Every request of the outage got 502; the first 200 is after it.
    first_ok = next((i for i, r in enumerate(during) if r["status"] == 200), len(during))
    assert all(r["status"] == 502 for r in during[:first_ok])
    assert len(failed) == first_ok
    assert 2 <= len(failed) <= max_attempts(outage), \
        f"{len(failed)} requests in an outage of {outage:.1f} s " \
        f"(at most {max_attempts(outage)} with back-off)"
    assert log_lines(p.uplink, "uplink.backoff")

    check_everything_arrived(p, warm + ct_study, rng)


def test_nginx_down_connection_refused(pipelines, ct_study, tmp_path):
    rng = random.Random(111)
    p = pipelines(cloud={"connections": CONNECTIONS, "retry_max_delay": RETRY_MAX_DELAY})
    warm = warm_up(p, tmp_path)
    held = set(p.cloud.instances())
    downs = len(log_lines(p.uplink, "uplink.link"))

    p.cloud.stop_nginx()
    p.send(ct_study)  # every C-STORE acknowledged while the cloud is down
    assert len(p.receiver.rows()) == len(warm) + len(ct_study)
    # The uplink met the refusals (its own words; the cloud saw nothing).
    wait_for(lambda: any("refused" in line for line in log_lines(p.uplink, "uplink.link")[downs:]),
             10, what="the uplink to report the refused connections")

    listener = CountingListener(p.cloud.https_port)
    began = time.monotonic()
    try:
        time.sleep(WINDOW)
    finally:
        listener.close()
    window = time.monotonic() - began
    p.cloud.start_nginx()

    attempts = len(listener.accepted)
    assert 2 <= attempts <= max_attempts(window), \
        f"{attempts} connection attempts in {window:.1f} s " \
        f"(at most {max_attempts(window)} with back-off)"
    # Nothing reached the cloud in the meantime.
    assert set(p.cloud.instances()) == held

    check_everything_arrived(p, warm + ct_study, rng)


def test_connections_reset_during_the_handshake_count_no_attempt(pipelines, tmp_path):
    """A third way for the cloud to be down: something takes the connection
    and resets it during the TLS handshake (a load balancer without a
    healthy backend, a firewall). As with a refused connection, no byte of
    any request left the appliance, so by the uplink's contract (uplink.c:
    "the connection or TLS failed before sending -> back to the queue, no
    attempt") the batch is requeued without an attempt counted: when the
    cloud is back each instance is sent once and succeeds, attempts = 1,
    and no "uplink.retry" names an instance that was never sent."""
    p = pipelines(cloud={"connections": CONNECTIONS, "retry_max_delay": RETRY_MAX_DELAY},
                  start_uplink=False)
    p.cloud.stop_nginx()
    listener = CountingListener(p.cloud.https_port, read_first=True)
    try:
        files = dicomgen.make_ct_study(str(tmp_path / "study"), 20, seed=9, rows=64, cols=64)
        p.send(files)
        p.uplink.start()
        wait_for(lambda: listener.hellos >= 3, 30, what="three handshakes reset")
    finally:
        listener.close()
    p.cloud.start_nginx()
    p.wait_drained()
    p.assert_cloud_holds({uid_of(f) for f in files})
    counted = [(r["sop_instance_uid"], r["attempts"], r["last_error"])
               for r in p.receiver.rows() if r["attempts"] != 1]
    assert not counted, f"attempts counted for requests never sent: {counted[:3]}"
    assert not log_lines(p.uplink, "uplink.retry"), log_lines(p.uplink, "uplink.retry")[:3]
