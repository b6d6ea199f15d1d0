"""[shaping] and [priority], end to end: what crosses the wire is measured
by a metering TCP relay between the uplink and nginx (tests/lib/meter.py:
the TLS records as the uplink writes them, timed as they arrive), what
the cloud holds by Orthanc's REST API.

- the rate holds: 8 Mbit/s over 30 MB, mean within 5%, no second over 125%;
- a schedule window of 0 sends nothing, and the next window's rate
  applies at its boundary (the schedule's clock is started just before
  the boundary with OUTPOST_TEST_CLOCK, TZ=UTC);
- SIGHUP changes the rate within a second, on the same connection; a bad
  file on SIGHUP keeps the old rate;
- urgent studies (C-STORE priority HIGH, an urgent calling AE, an
  attribute of urgent_match) are marked so, and one arriving behind a
  1 GiB backlog reaches the cloud while the backlog has barely started.
"""
import signal
import time

import pydicom
import pytest

import dicomgen
from dul import Client
from meter import MeteringRelay
from outpost import dataset_bytes, wait_for
from integration_fixtures import log_lines

MBIT = 1e6


@pytest.fixture
def metered(pipelines):  # noqa: F811
    """metered(shaping={...}, cloud={...}, env={...}, **receiver_sections):
    a pipeline (uplink not started) whose uplink goes through a relay."""
    relays = []

    def make(shaping=None, cloud=None, env=None, **sections):
        p = pipelines(start_uplink=False, **sections)
        relay = MeteringRelay(("127.0.0.1", p.cloud.https_port)).start()
        relays.append(relay)
        p.receiver.reconfigure(
            cloud={"url": f"https://localhost:{relay.port}/dicom-web", **(cloud or {})},
            shaping=shaping or {})
        p.uplink.env = env
        return p, relay

    yield make
    for relay in relays:
        relay.stop()


def rate_bps(relay, since, until):
    return relay.total(since, until) * 8 / (until - since)


def uids_of(files):
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def test_rate_holds_on_the_wire(metered, tmp_path, record_property):
    p, relay = metered(shaping={"rate": "8Mbit"})
    files = dicomgen.make_ct_study(str(tmp_path / "study"), 58)  # 30.5 MB
    p.send(files)
    p.uplink.start()
    p.wait_drained(timeout=120)
    p.assert_cloud_holds(uids_of(files), compare=[])
    first, last = relay.samples[0][0], relay.samples[-1][0]
    total = relay.total()
    assert total >= 30e6
    mean = total * 8 / (last - first)
    bins = relay.bins(0.1)
    worst = max(sum(bins[i:i + 10]) for i in range(len(bins) - 9)) * 8
    record_property("mean_bps", round(mean))
    record_property("worst_second_bps", worst)
    print(f"\n  8 Mbit/s over {total / 1e6:.1f} MB: mean {mean / MBIT:.3f} Mbit/s, "
          f"worst second {worst / MBIT:.3f} Mbit/s")
    assert abs(mean - 8 * MBIT) <= 0.05 * 8 * MBIT, mean
    assert worst <= 1.25 * 8 * MBIT, worst


def test_schedule_window_of_zero_then_the_next_rate(metered, tmp_path):
    # 2026-11-30 is a Monday: 4 s of a paused window, then 4 Mbit/s.
    p, relay = metered(
        shaping={"rate": "unlimited",
                 "schedule": "Mon 08:00-09:00 0; Mon 09:00-10:00 4Mbit"},
        env={"TZ": "UTC", "OUTPOST_TEST_CLOCK": "2026-11-30T08:59:56"})
    files = dicomgen.make_ct_study(str(tmp_path / "study"), 12)  # 6.3 MB
    p.send(files)
    p.uplink.start()
    rate_lines = lambda: log_lines(p.uplink, "uplink.rate")  # noqa: E731
    wait_for(lambda: any("rate=4Mbit" in line for line in rate_lines()), 15,
             what="the 09:00 window")
    assert "rate=0 " in rate_lines()[0] and "reason=start" in rate_lines()[0]
    assert "reason=schedule" in rate_lines()[-1]
    boundary = time.monotonic()
    # Nothing left while the rate was 0: not a byte.
    assert relay.total(until=boundary - 0.5) == 0
    p.wait_drained(timeout=120)
    p.assert_cloud_holds(uids_of(files), compare=[])
    # Every request came after the window changed, and at its rate.
    log = p.uplink.log()
    assert log.index("event=uplink.batch") > log.index("rate=4Mbit")
    mean = rate_bps(relay, boundary, relay.samples[-1][0])
    assert 0.75 * 4 * MBIT <= mean <= 1.25 * 4 * MBIT, mean


def test_sighup_changes_the_rate_without_reconnecting(metered, tmp_path):
    p, relay = metered(shaping={"rate": "2Mbit"}, cloud={"connections": 1})
    files = dicomgen.make_ct_study(str(tmp_path / "study"), 40)  # 21 MB
    p.send(files)
    p.uplink.start()
    wait_for(lambda: relay.total() > 500_000, 30, what="the upload to flow")
    t = time.monotonic()
    time.sleep(3)
    before = rate_bps(relay, t, t + 3)
    connections = relay.connections

    p.receiver.reconfigure(shaping={"rate": "16Mbit"})
    p.uplink.signal(signal.SIGHUP)
    hup = time.monotonic()
    time.sleep(3.5)
    after = rate_bps(relay, hup + 1, hup + 3.5)
    assert 0.75 * 2 * MBIT <= before <= 1.25 * 2 * MBIT, before
    assert 0.75 * 16 * MBIT <= after <= 1.25 * 16 * MBIT, after
    assert relay.connections == connections, "the rate change reconnected"

    # A bad file on SIGHUP is refused and the rate stays.
    with open(p.receiver.ini, "a") as f:
        f.write("[shaping]\nrate = 2 Megabits\n")
    p.uplink.signal(signal.SIGHUP)
    hup = time.monotonic()
    wait_for(lambda: "result=refused" in p.uplink.log(), 5, what="the refusal")
    time.sleep(2.5)
    kept = rate_bps(relay, hup + 0.5, hup + 2.5)
    assert 0.75 * 16 * MBIT <= kept <= 1.25 * 16 * MBIT, kept
    assert relay.connections == connections


def test_urgent_rules_mark_instances(pipelines, tmp_path):  # noqa: F811
    p = pipelines(start_uplink=False,
                  priority={"urgent_calling_aets": "ER CT",
                            # dul.py's calling AE: its priority HIGH is believed.
                            "trust_priority_from": "DULTEST",
                            "urgent_match": "RequestedProcedurePriority=STAT"})
    rx = p.receiver
    routine = dicomgen.make_ct_study(str(tmp_path / "routine"), 1)
    by_attribute = dicomgen.make_ct_study(str(tmp_path / "stat"), 1, priority="STAT", seed=2)
    by_aet = dicomgen.make_ct_study(str(tmp_path / "er"), 1, seed=3)
    by_dimse = dicomgen.make_ct_study(str(tmp_path / "high"), 1, seed=4)
    p.send(routine)
    p.send(by_attribute)
    p.send(by_aet, calling="ER CT")
    ds = pydicom.dcmread(by_dimse[0])
    with open(by_dimse[0], "rb") as f:
        dataset = dataset_bytes(f.read())
    with Client(rx.port) as c:
        c.associate([(ds.SOPClassUID, ["1.2.840.10008.1.2.1"])])
        status, _ = c.c_store(ds.SOPClassUID, ds.SOPInstanceUID, dataset, priority=1)
        c.release()
    assert status == 0
    prio = {r["sop_instance_uid"]: r["priority"] for r in rx.rows()}
    assert prio[next(iter(uids_of(routine)))] == 1
    for files in (by_attribute, by_aet, by_dimse):
        assert prio[next(iter(uids_of(files)))] == 2
    assert rx.log().count("urgent=yes") == 3


def test_urgent_study_jumps_a_long_backlog(metered, tmp_path, record_property):
    p, relay = metered(shaping={"rate": "40Mbit"}, cloud={"connections": 2},
                       priority={"urgent_match": "RequestedProcedurePriority=STAT"})
    # 1 GiB of routine backlog: 64 instances of 16 MiB, about 200 s at 40 Mbit/s.
    backlog = dicomgen.make_ct_study(str(tmp_path / "backlog"), 64, rows=2048, cols=4096)
    p.send(backlog)
    p.uplink.start()
    wait_for(lambda: relay.total() > 5e6, 60, what="the backlog to flow")
    urgent = dicomgen.make_ct_study(str(tmp_path / "urgent"), 3, seed=9, priority="STAT")
    p.send(urgent)
    acked = time.monotonic()
    uids = uids_of(urgent)
    wait_for(lambda: uids & set(p.cloud.instances()), 60, interval=0.05,
             what="the first urgent instance at the cloud")
    latency = time.monotonic() - acked
    record_property("urgent_first_instance_s", round(latency, 3))
    print(f"\n  first urgent instance at the cloud {latency:.2f} s after it was acknowledged")
    wait_for(lambda: uids <= set(p.cloud.instances()), 60, what="the whole urgent study")
    # It jumped the queue: the backlog is far from done.
    sent = [r for r in p.receiver.rows("state = 'sent'") if r["sop_instance_uid"] not in uids]
    assert len(sent) < len(backlog) // 4, f"{len(sent)} of the backlog already sent"
    # The cloud may hold the last one a moment before the uplink has
    # settled its answer.
    wait_for(lambda: {r["state"] for r in p.receiver.rows()
                      if r["sop_instance_uid"] in uids} == {"sent"}, 10, interval=0.2, what="urgent settled")
    rows = {r["sop_instance_uid"]: r for r in p.receiver.rows()}
    assert all(rows[u]["priority"] == 2 and rows[u]["state"] == "sent" for u in uids)


def _kernel_has_tcp_lp():
    import socket
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"lp")
            return True
        except OSError:
            return False


def test_scavenger_reports_what_the_kernel_offers(metered, tmp_path):
    # scavenger = on asks for TCP-LP on upload sockets. This kernel may not
    # have it (tcp_lp is a module): the uplink must say which, once, and
    # upload either way.
    p, relay = metered(shaping={"scavenger": "on"})
    files = dicomgen.make_ct_study(str(tmp_path / "study"), 3)
    p.send(files)
    p.uplink.start()
    p.wait_drained(timeout=60)
    p.assert_cloud_holds(uids_of(files), compare=[])
    [line] = log_lines(p.uplink, "uplink.scavenger")
    if _kernel_has_tcp_lp():
        assert "result=on" in line
    else:
        assert "result=unavailable" in line and "TCP-LP" in line and "level=error" in line
