"""Several destinations at once, each with its own queue: the cloud PACS
by STOW-RS over TLS (Orthanc behind nginx), a second Orthanc (its own
database) by C-STORE on its DICOM port, and DCMTK's storescp by C-STORE.
Each ends up holding exactly what its routes say, byte for byte; a
destination that is down for the whole drain holds nobody back, and no
instance leaves the spool before every destination it was routed to has
confirmed it - through ten kill -9 of the uplink too.
"""
import os
import signal
import time

import pydicom
import pytest

import dicomgen
from cloud import Cloud
from integration_fixtures import DRAIN_TIMEOUT, cloud_section
from outpost import Storescp, dataset_bytes, free_port, storescu, wait_for

ROUTES = {
    "route all": {"when": "Modality=*", "to": "cloud"},
    "route mammo": {"when": "Modality=MG", "to": "pacs"},
    "route stroke": {"when": "Modality=CT, BodyPartExamined=HEAD", "to": "ai", "urgent": "yes"},
}


def uid(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


class Site:
    """The three destinations, a receiver routing to them and its uplink."""

    def __init__(self, tmp_path, pipelines, keep_sent="1G", ai_port=None, n=4):
        self.pacs = Cloud(str(tmp_path / "pacs"), dicom_port=True, refuse_patient_ids=(),
                          drop_patient_ids=(), orthanc_extra={
                              "DicomModalities": {"outpost": ["OUTPOST", "127.0.0.1",
                                                              free_port()]},
                              "DicomAlwaysAllowStore": False})
        self.pacs.start_orthanc()
        self.ai_dir = tmp_path / "ai"
        self.ai = None
        self.ai_port = ai_port
        if ai_port is None:
            self.ai = Storescp(str(self.ai_dir))
            self.ai_port = self.ai.port
        dest = {
            "destination pacs": {"type": "dicom", "host": "127.0.0.1",
                                 "port": self.pacs.dicom_port, "called_ae": "OUTPOSTCLOUD",
                                 "timeout": 10, "retry_max_delay": 2},
            "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": self.ai_port,
                               "called_ae": "STORESCP", "timeout": 10, "retry_max_delay": 2},
        }
        self.p = pipelines(start_uplink=False, spool={"keep_sent_bytes": keep_sent},
                           **dest, **ROUTES)
        self.cloud, self.rx, self.up = self.p.cloud, self.p.receiver, self.p.uplink
        self.files = {}
        for name, kw in {"head": {"body_part": "HEAD"}, "chest": {"body_part": "CHEST"},
                         "mammo": {"modality": "MG"}}.items():
            self.files[name] = dicomgen.make_ct_study(str(tmp_path / name), n, rows=64,
                                                      cols=64, seed=len(name), **kw)
        self.want = {
            "cloud": {uid(f) for fs in self.files.values() for f in fs},
            "pacs": {uid(f) for f in self.files["mammo"]},
            "ai": {uid(f) for f in self.files["head"]},
        }

    def send(self):
        for fs in self.files.values():
            r = storescu(self.rx.port, fs)
            assert r.returncode == 0, r.stderr

    def start_ai(self):
        self.ai = Storescp(str(self.ai_dir), port=self.ai_port)

    def deliveries(self, state=None):
        with self.rx.db() as con:
            return dict(con.execute(
                "SELECT destination, COUNT(*) FROM deliveries"
                + (" WHERE state = ?" if state else "") + " GROUP BY destination",
                (state,) if state else ()))

    def drained(self, dest):
        """Every delivery to dest confirmed (counted as settled: a sent
        delivery goes with its instance when that is evicted)."""
        with self.rx.db() as con:
            row = con.execute("SELECT value FROM counters WHERE name = ?",
                              (f"{dest}:uploaded_instances",)).fetchone()
        return (row[0] if row else 0) == len(self.want[dest])

    def ai_holds(self, repeats=False):
        got = self.ai.take(repeats)
        self.ai_got.update(got)
        return self.ai_got

    def assert_holds(self):
        """Each destination holds exactly its set, with the dataset bytes
        the receiver stored."""
        stored = {r["sop_instance_uid"]: dataset_bytes(self.rx.object_path(r["hash"]))
                  for r in self.rx.rows()}
        assert set(self.cloud.instances()) == self.want["cloud"]
        assert set(self.pacs.instances()) == self.want["pacs"]
        for u in self.want["cloud"]:
            assert dataset_bytes(self.cloud.instance_file(u)) == stored[u], u
        for u in self.want["pacs"]:
            assert dataset_bytes(self.pacs.instance_file(u)) == stored[u], u
        assert set(self.ai_got) == self.want["ai"]
        for u, b in self.ai_got.items():
            assert dataset_bytes(b) == stored[u], u

    def stop(self):
        if self.ai:
            self.ai.stop()
        self.pacs.stop()


@pytest.fixture
def site(tmp_path, pipelines):
    made = []

    def make(**kw):
        s = Site(tmp_path, pipelines, **kw)
        s.ai_got = {}
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def test_three_destinations_each_hold_what_their_routes_say(site):
    s = site()
    s.send()
    s.up.start()
    wait_for(lambda: all(s.drained(d) for d in ("cloud", "pacs", "ai")), DRAIN_TIMEOUT,
             what="every destination to confirm its deliveries")
    s.ai_holds()
    s.assert_holds()
    assert s.deliveries("sent") == {d: len(u) for d, u in s.want.items()}


def test_a_dead_destination_holds_nobody_back_and_nothing_is_evicted(site):
    # Nothing listens on the AI's port for the whole drain; sent objects are
    # not kept (keep_sent_bytes = 0), so only the AI's undelivered copies
    # keep the head study in the spool.
    s = site(keep_sent="0", ai_port=free_port())
    s.send()
    s.up.start()
    wait_for(lambda: s.drained("cloud") and s.drained("pacs"), DRAIN_TIMEOUT,
             what="the cloud and the PACS to drain while the AI is down")
    assert s.deliveries("sent").get("ai", 0) == 0
    # Evicted: what every destination has; kept: the head study.
    wait_for(lambda: {r["sop_instance_uid"] for r in s.rx.rows()} == s.want["ai"], 30,
             what="eviction of what every destination holds")
    assert any("event=uplink.link state=down" in line and line.endswith("dest=ai")
               for line in s.up.log().splitlines())
    # The AI comes back on its port: it drains, then the rest goes too.
    s.start_ai()
    wait_for(lambda: s.drained("ai"), DRAIN_TIMEOUT, what="the AI to drain once back")
    s.ai_holds()
    assert set(s.ai_got) == s.want["ai"]
    wait_for(lambda: not s.rx.rows(), 30, what="the last objects to be evicted")


def test_kill9_of_the_uplink_during_a_three_destination_drain(site):
    s = site(n=12)
    s.send()
    for i in range(10):
        s.up.start()
        time.sleep(0.2 + 0.1 * (i % 4))
        s.up.kill9()
        s.ai_holds(repeats=True)
    s.up.start()
    wait_for(lambda: all(s.drained(d) for d in ("cloud", "pacs", "ai")), DRAIN_TIMEOUT,
             what="every destination to drain after ten kill -9")
    s.ai_holds(repeats=True)
    s.assert_holds()


def test_a_401_at_one_destination_does_not_hold_the_others(tmp_path, pipelines):
    """A second STOW-RS destination refusing the credentials: its link is
    paused (an alarm, no attempt burnt) while the cloud drains fully."""
    region2 = Cloud(str(tmp_path / "region2"), bearer_token="the right one").start()
    try:
        token = tmp_path / "token"
        token.write_text("a wrong one\n")
        p = pipelines(start_uplink=False, **{
            "destination region2": {"type": "stow-rs", "url": region2.url,
                                    "ca_file": region2.ca_file, "auth": "bearer",
                                    "token_file": str(token), "retry_max_delay": 2},
            "route all": {"when": "Modality=*", "to": "cloud, region2"}})
        files = dicomgen.make_ct_study(str(tmp_path / "s"), 4, rows=32, cols=32)
        assert storescu(p.receiver.port, files).returncode == 0
        p.uplink.start()
        wait_for(lambda: set(p.cloud.instances()) == {uid(f) for f in files}, DRAIN_TIMEOUT,
                 what="the cloud to drain")
        wait_for(lambda: any("event=uplink.alarm state=paused" in line and "dest=region2" in line
                             for line in p.uplink.log().splitlines()), 20,
                 what="region2's credentials alarm")
        with p.receiver.db() as con:
            rows = con.execute("SELECT state, attempts FROM deliveries"
                               " WHERE destination = 'region2'").fetchall()
        assert [tuple(r) for r in rows] == [("queued", 0)] * 4
        assert not region2.instances()
    finally:
        region2.stop()
