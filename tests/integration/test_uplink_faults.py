"""outpost-uplink on a hostile network: a fault-injecting HTTPS proxy
(tests/lib/faultproxy.py) sits between the uplink and Orthanc and, on a
schedule each test sets, resets a request mid-body, stalls it, cuts or
garbles the response, answers 503, closes after answering, or drips the
answer slowly.

Whatever the fault, the promise holds: the cloud ends holding every
instance the receiver acknowledged, byte for byte and once (read from
Orthanc's REST API), no row is 'sent' that the cloud does not hold (checked
at every look while the uplink works, not only at the end), and the uplink
gets there by itself: no restart, no signal, a bounded number of requests.

One Orthanc serves the module (no nginx: the proxy terminates TLS itself);
each test sends a study of its own (fresh UIDs) through a proxy of its own
and checks only its own instances. Instances are small (128x128, ~33 KB) so
that a batch of 4 is a body of ~133 KB: big enough to be cut in the middle,
small enough for many retries to take seconds. timeout=2 and
retry_max_delay=2 keep the waits short.
"""
import hashlib
import random

import pytest

import dicomgen
from cloud import Cloud
from faultproxy import (FaultProxy, close, drain, drip, drop, garbage, reset, stall_body,
                        stall_response, status, truncate)
from outpost import storescu

N = 12          # instances per test
BATCH = 4       # batch_max_instances: 3 batches of one study
TIMEOUT = 2     # [cloud] timeout: seconds without progress
STALL = 4       # longer than TIMEOUT
DROPS = 6       # kept-alive connections closed under a request


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, pki):
    c = Cloud(tmp_path_factory.mktemp("cloud"), pki=pki)
    c.start_orthanc()
    yield c
    c.stop()
    assert not c.pids()


@pytest.fixture
def proxy(orthanc, pki):
    p = FaultProxy(("127.0.0.1", orthanc.orthanc_port), pki.server).start()
    yield p
    p.stop()


class Run:
    """A receiver holding a fresh study, its uplink (not started) behind
    the proxy, and what the checks need."""

    def __init__(self, receivers, tmp_path, proxy, orthanc, pki, n=N, batch=BATCH,
                 connections=2):
        self.proxy, self.cloud = proxy, orthanc
        files = dicomgen.make_ct_study(str(tmp_path / "study"), n, rows=128, cols=128)
        self.rx = receivers(cloud={
            "url": proxy.url, "ca_file": pki.ca_file, "timeout": TIMEOUT,
            "retry_max_delay": 2, "batch_max_instances": batch,
            "connections": connections}).start()
        r = storescu(self.rx.port, files)
        assert r.returncode == 0, r.stderr
        rows = self.rx.rows()
        assert len(rows) == n and {r["state"] for r in rows} == {"queued"}
        self.uids = {r["sop_instance_uid"] for r in rows}
        # What the uplink must deliver: the spool's bytes (MD5, as Orthanc
        # records them), read before the uplink may evict anything.
        self.md5 = {}
        for row in rows:
            with open(self.rx.object_path(row["hash"]), "rb") as f:
                self.md5[row["sop_instance_uid"]] = hashlib.md5(f.read()).hexdigest()
        self.count_before = orthanc.instance_count()
        self.uplink = self.rx.uplink()

    def run(self, timeout=90):
        self.uplink.start()
        looks = drain(self.rx, self.cloud, self.uplink, timeout=timeout)
        assert looks >= 2, "the spool was settled before the uplink could have worked"
        return self.rows()

    def rows(self):
        return {r["sop_instance_uid"]: r for r in self.rx.rows()}

    def log_lines(self, event):
        return [line for line in self.uplink.log().splitlines() if f"event={event} " in line
                or line.endswith(f"event={event}")]

    def check_delivered(self):
        """Every instance sent, held once by the cloud with the spool's bytes."""
        rows = self.rows()
        assert {u: r["state"] for u, r in rows.items()} == {u: "sent" for u in self.uids}
        held = self.cloud.instances()
        assert self.uids <= set(held), f"not in the cloud: {self.uids - set(held)}"
        for uid in self.uids:
            assert self.cloud.instance_md5(uid) == self.md5[uid], uid
        assert self.cloud.instance_count() == self.count_before + len(self.uids)
        assert self.uplink.running()
        # No hot loop: a handful of requests per instance at most.
        assert len(self.proxy.requests) <= 2 * len(self.uids), self.requests_text()
        return rows

    def requests_text(self):
        return "\n".join(f"#{r.n} conn={r.conn}/{r.conn_request} fault={r.fault} "
                         f"parts={len(r.uids)} read={r.body_read}/{r.content_length} "
                         f"answered={r.answered} {r.outcome}" for r in self.proxy.requests)

    def check_retried_alone(self, faulted, rows, reason_words):
        """The instances of the faulted request: one failed attempt counted,
        then each sent again alone, and the log says why."""
        retried = {u for u, r in rows.items() if r["attempts"] > 1}
        assert retried, "no instance was retried after the fault"
        assert set(faulted.uids) <= retried
        assert len(retried) <= BATCH
        for uid in retried:
            assert rows[uid]["attempts"] == 2, rows[uid]
            assert any(r.uids == [uid] and r.answered == 200
                       for r in self.proxy.requests if r.n > faulted.n), \
                f"{uid} was not sent alone after the fault\n{self.requests_text()}"
        retries = self.log_lines("uplink.retry")
        assert len(retries) == len(retried), retries
        assert all(any(w in line for w in reason_words) for line in retries), retries
        # The link went down for that reason, then came back by itself.
        links = self.log_lines("uplink.link")
        down = [i for i, line in enumerate(links) if "state=down" in line
                and any(w in line for w in reason_words)]
        assert down and any("state=up" in line for line in links[down[0]:]), links


def the_faulted(proxy, kind):
    faulted = proxy.faulted()
    assert [str(r.fault) for r in faulted] and all(r.fault.kind == kind for r in faulted)
    return faulted


@pytest.fixture
def make_run(receivers, tmp_path, proxy, orthanc, pki):
    def make(**kw):
        return Run(receivers, tmp_path, proxy, orthanc, pki, **kw)
    return make


# --- the request never arrives whole: Orthanc stores nothing of it ------------------

def test_connection_reset_mid_body(make_run, proxy):
    run = make_run()
    proxy.schedule(reset(after=40_000))
    rows = run.run()
    [faulted] = the_faulted(proxy, "reset")
    assert faulted.outcome == "reset"
    assert faulted.body_read == 40_000 < faulted.content_length
    assert len(faulted.uids) == 2  # cut inside the second part
    run.check_delivered()
    run.check_retried_alone(faulted, rows, ["connection"])


def test_stall_mid_body_longer_than_the_timeout(make_run, proxy):
    run = make_run()
    proxy.schedule(stall_body(after=40_000, seconds=STALL))
    rows = run.run()
    [faulted] = the_faulted(proxy, "stall_body")
    assert faulted.outcome == "stalled mid-body" and not faulted.forwarded
    run.check_delivered()
    run.check_retried_alone(faulted, rows, ["timeout"])


def test_503_backs_off_with_one_probe_at_a_time(make_run, proxy):
    run = make_run()
    proxy.schedule(*[status(503)] * 5)
    rows = run.run()
    faulted = the_faulted(proxy, "status")
    assert len(faulted) == 5
    assert all(r.answered == 503 and not r.forwarded for r in faulted)
    run.check_delivered()
    # Each 503 counted an attempt against the instances it carried.
    for r in faulted:
        for uid in r.uids:
            assert rows[uid]["attempts"] >= 2
    # Once the first 503 was answered the link was down: the requests
    # after it are probes, one at a time, never overlapping.
    first_answer = min(r.ended for r in faulted)
    probes = sorted((r for r in proxy.requests if r.started > first_answer),
                    key=lambda r: r.started)
    later_503 = [r for r in probes if r.fault]
    assert later_503, run.requests_text()
    for a, b in zip(later_503, later_503[1:]):
        assert b.started >= a.ended, f"two probes at once:\n{run.requests_text()}"
    backoffs = run.log_lines("uplink.backoff")
    assert len(backoffs) >= 3 and "failures=3" in "\n".join(backoffs)
    assert 'reason="the cloud answered HTTP 503"' in run.uplink.log()


def test_503_answered_before_the_body(make_run, proxy):
    # As nginx answers 401 or 413: at once, then it reads and drops the
    # body and closes. The uplink may still be streaming a file then.
    run = make_run()
    proxy.schedule(*[status(503, early=True)] * 3)
    rows = run.run()
    faulted = the_faulted(proxy, "status")
    assert len(faulted) == 3 and all(r.answered == 503 for r in faulted)
    # The uplink stops sending once answered. A body already in the socket
    # buffers when the answer came is read whole, so one of the three
    # (not always the first: a small one may be sent whole) shows it.
    assert any(r.body_read < r.content_length for r in faulted), run.requests_text()
    run.check_delivered()
    for r in faulted:
        for uid in r.uids:
            assert rows[uid]["attempts"] >= 2
    assert 'reason="the cloud answered HTTP 503"' in run.uplink.log()


def test_413_halves_the_batches(make_run, proxy):
    # The cloud's body limit is smaller than a batch: the batch goes back
    # whole, not counted as an attempt, and the next ones are half as big.
    run = make_run()
    proxy.schedule(status(413))
    rows = run.run()
    [faulted] = the_faulted(proxy, "status")
    assert faulted.answered == 413 and len(faulted.uids) == BATCH
    run.check_delivered()
    assert all(r["attempts"] == 1 for r in rows.values()), rows
    [split] = run.log_lines("uplink.split")
    cap = int(split.split("batch_max_bytes=")[1].split()[0])
    refused = sum(rows[u]["size"] for u in faulted.uids)
    assert cap == refused // 2
    # From then on no request is larger than the cap (here: 2 of the 4).
    # A request already in flight on the other connection may be whole: the
    # proxy may see its head only after the 413 (the first there after it).
    later = [r for r in proxy.requests if r.started > faulted.ended]
    first_on = {}
    for r in later:
        first_on.setdefault(r.conn, r)
    capped = [r for r in later if not (r.conn != faulted.conn and first_on[r.conn] is r)]
    over = [r for r in later if sum(rows[u]["size"] for u in r.uids) > cap]
    assert capped and not set(map(id, over)) & set(map(id, capped)), run.requests_text()
    assert max(len(r.uids) for r in capped) == BATCH // 2


def test_413_for_one_instance_alone_quarantines_it(make_run, proxy):
    # A cloud that refuses even a single instance as too large: after the
    # batches have shrunk to one instance, that one is quarantined with
    # the reason, and the rest still arrive.
    run = make_run(n=2, batch=2, connections=1)
    proxy.schedule(status(413), status(413))
    run.uplink.start()
    drain(run.rx, run.cloud, run.uplink)
    rows = run.rows()
    quarantined = {u: r for u, r in rows.items() if r["state"] == "quarantined"}
    assert len(quarantined) == 1, rows
    [(uid, row)] = quarantined.items()
    assert "413" in row["last_error"] and "too large" in row["last_error"]
    assert uid not in run.cloud.instances()
    others = run.uids - {uid}
    assert all(rows[u]["state"] == "sent" for u in others)
    assert others <= set(run.cloud.instances())
    assert [len(r.uids) for r in proxy.faulted()] == [2, 1], run.requests_text()


# --- the request arrived whole (Orthanc stored it) but the answer did not -----------

@pytest.mark.parametrize("fault, words", [
    (stall_response(seconds=STALL), ["timeout"]),
    (truncate(), ["connection closed before the response ended"]),
    (garbage(), ["request failed (connection)"]),
], ids=["stall_response", "truncate", "garbage"])
def test_answer_lost_after_the_cloud_stored(make_run, proxy, fault, words):
    run = make_run()
    proxy.schedule(fault)
    rows = run.run()
    [faulted] = the_faulted(proxy, fault.kind)
    assert faulted.forwarded and faulted.upstream_status == 200
    assert faulted.answered is None
    assert len(faulted.uids) == BATCH
    run.check_delivered()  # the re-sent instances are still one copy each
    run.check_retried_alone(faulted, rows, words)


# --- answers that are fine, if unusual --------------------------------------------------

@pytest.mark.parametrize("length", [True, False], ids=["content-length", "until-close"])
def test_connection_close_after_the_answer(make_run, proxy, length):
    run = make_run()
    proxy.schedule(close(length=length), close(length=length))
    rows = run.run()
    faulted = the_faulted(proxy, "close")
    assert len(faulted) == 2 and all(r.answered == 200 for r in faulted)
    run.check_delivered()
    # A good answer is a good answer: nothing retried.
    assert all(r["attempts"] == 1 for r in rows.values()), run.requests_text()
    assert not run.log_lines("uplink.retry")
    # Nothing more was sent on a connection the server closed.
    for f in faulted:
        assert not [r for r in proxy.requests if r.conn == f.conn and r.n != f.n]


@pytest.mark.parametrize("after", [0, 10 ** 9], ids=["at-the-head", "after-the-body"])
def test_kept_alive_connection_closed_as_the_next_request_comes(make_run, proxy, after):
    # The server's idle close racing the uplink's next request: nothing was
    # done, so the request goes again at once on a new connection, and no
    # attempt is counted against the instances. One connection and small
    # batches, so that many requests come on a kept-alive connection: where
    # the close finds the uplink (writing, or reading a spool file) is a
    # matter of timing, and several tries cover both.
    run = make_run(n=DROPS * 2 + 4, batch=2, connections=1)
    proxy.schedule(*[drop(after=after)] * DROPS)
    rows = run.run()
    faulted = the_faulted(proxy, "drop")
    assert len(faulted) == DROPS, run.requests_text()
    assert all(f.conn_request > 1 and f.answered is None for f in faulted)
    run.check_delivered()
    counted = {u: r["attempts"] for u, r in rows.items() if r["attempts"] != 1}
    assert not counted and not run.log_lines("uplink.retry"), (
        "a request the server dropped unanswered on a kept-alive connection counted an "
        f"attempt (and took the link down) instead of going again on a new connection: "
        f"{counted}\n" + "\n".join(run.log_lines("uplink.link")) + "\n" + run.requests_text())
    for f in faulted:
        again = [r for r in proxy.requests if r.n > f.n and r.answered == 200
                 and set(f.uids) <= set(r.uids)]
        assert again and again[0].conn_request == 1, run.requests_text()


def test_slow_drip_answer_longer_than_the_timeout_in_total(make_run, proxy):
    # 4 pieces 0.9 s apart: 2.7 s in all, more than timeout=2, yet bytes
    # keep coming: "no progress", not "too slow", is what times out.
    run = make_run()
    proxy.schedule(drip(pieces=4, gap=0.9), drip(pieces=4, gap=0.9))
    rows = run.run()
    faulted = the_faulted(proxy, "drip")
    assert len(faulted) == 2
    assert all(r.answered == 200 and r.ended - r.started > TIMEOUT for r in faulted)
    run.check_delivered()
    assert all(r["attempts"] == 1 for r in rows.values()), run.requests_text()
    assert not run.log_lines("uplink.retry")


# --- all of it ----------------------------------------------------------------------

def test_a_mix_of_faults(make_run, proxy):
    rng = random.Random(20261128)
    kinds = [lambda: reset(after=rng.randrange(0, 120_000)),
             lambda: stall_body(after=rng.randrange(0, 120_000), seconds=3),
             lambda: stall_response(seconds=3), truncate, lambda: status(503),
             lambda: status(502), lambda: status(503, early=True), garbage, close,
             lambda: close(length=False), lambda: drip(pieces=3, gap=0.5), drop]
    schedule = [make() for make in kinds] + [None] * 6
    rng.shuffle(schedule)
    run = make_run(n=30, batch=5)
    proxy.schedule(*schedule)
    run.run(timeout=150)
    assert proxy.pending_faults() == 0, "the uplink finished before every fault was used"
    assert {r.fault.kind for r in proxy.faulted()} == {
        "reset", "stall_body", "stall_response", "truncate", "status", "garbage", "close",
        "drip", "drop"}
    run.check_delivered()
    assert not [r for r in run.rx.rows() if r["state"] == "quarantined"]
