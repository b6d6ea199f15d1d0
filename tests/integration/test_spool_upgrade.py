"""The spool of release 0.1.0 (schema 1: one queue, the cloud's) opened by
this release (schema 2: one delivery per destination): upgraded at open, in
one transaction, with nothing lost - every instance, state, attempt count,
reason, counter, operator setting and audit entry - and then drained to the
cloud as if nothing had happened.

The spool was written by the 0.1.0 programs themselves:
data/spool-0.1.0.tar.gz, made by data/make-spool-0.1.0.py (its docstring
says how), described by data/spool-0.1.0.json.
"""
import json
import os
import sqlite3
import subprocess
import tarfile

from integration_fixtures import cloud_section, log_lines
from outpost import DCMTK_ENV, wait_for
from test_outpostctl import ctl, ok

DATA = os.path.join(os.path.dirname(__file__), "data")


def _unpack(dest):
    with tarfile.open(os.path.join(DATA, "spool-0.1.0.tar.gz")) as t:
        t.extractall(dest)
    with open(os.path.join(DATA, "spool-0.1.0.json")) as f:
        return json.load(f)


def _deliveries(rx):
    with rx.db() as con:
        return {r[0]: dict(zip(("destination", "state", "attempts", "last_error",
                                "priority"), r[1:]))
                for r in con.execute(
                    "SELECT i.sop_instance_uid, d.destination, d.state, d.attempts,"
                    " d.last_error, d.priority"
                    " FROM deliveries d JOIN instances i ON i.id = d.instance_id")}


def test_a_spool_written_by_0_1_0_is_upgraded_and_drains(tmp_path, pipelines):
    want = _unpack(str(tmp_path / "old"))
    with sqlite3.connect(str(tmp_path / "old" / "spool" / "spool.db")) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    p = pipelines(start_uplink=False, spool={"dir": str(tmp_path / "old" / "spool"),
                                             "keep_sent_bytes": "1G"})
    rx = p.receiver
    assert len(log_lines(rx, "spool.upgrade")) == 1
    with rx.db() as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counters = dict(con.execute("SELECT name, value FROM counters"))
        settings = dict(con.execute("SELECT key, value FROM settings"))
        audit = con.execute("SELECT COUNT(*) FROM audit").fetchone()[0]

    # Every instance, as 0.1.0 left it, and its one delivery: to the cloud,
    # in the same state, with the same attempts and reason.
    rows = {r["sop_instance_uid"]: r for r in rx.rows()}
    assert set(rows) == set(want["instances"])
    deliveries = _deliveries(rx)
    for uid, w in want["instances"].items():
        r, d = rows[uid], deliveries[uid]
        assert (r["state"], r["attempts"], r["hash"], r["priority"]) == \
            (w["state"], w["attempts"], w["hash"], w["priority"]), uid
        assert d == {"destination": "cloud", "state": w["state"], "attempts": w["attempts"],
                     "last_error": w["last_error"], "priority": w["priority"]}, uid
    assert counters == want["counters"]
    assert {k: settings[k] for k in want["settings"]} == want["settings"]
    assert audit == len(want["audit"])

    # 0.1.0 had no query index: each instance was indexed once, from its
    # file, at the first start; C-FIND finds the studies by patient.
    [done] = [line for line in log_lines(rx, "spool.qr_index") if "done=1" in line]
    assert f"indexed={len(want['instances'])} " in done
    assert f"qr_indexed={len(want['instances'])} " in log_lines(rx, "spool.recover")[-1]
    studies = {w["study_uid"] for w in want["instances"].values() if w["patient_id"] == "PAT-B"}
    r = subprocess.run(["findscu", "-S", "-aec", "OUTPOST", "-k", "QueryRetrieveLevel=STUDY",
                        "-k", "PatientID=PAT-B", "-k", "StudyInstanceUID", "localhost",
                        str(rx.port)], capture_output=True, text=True, timeout=60, env=DCMTK_ENV)
    assert r.returncode == 0, r.stderr
    assert {s for s in studies if s in r.stdout + r.stderr} == studies and studies
    assert (r.stdout + r.stderr).count("Find Response:") == len(studies)

    # Opening it again changes nothing (the upgrade ran once).
    rx.stop()
    rx.start()
    assert len(log_lines(rx, "spool.upgrade")) == 1
    assert " qr_indexed=0 " in log_lines(rx, "spool.recover")[-1]

    # The operator had paused the uplink in 0.1.0: still paused. Resumed,
    # the queued instances reach the cloud; the quarantined one stays.
    up = p.uplink.start()
    queued = {u for u, w in want["instances"].items() if w["state"] == "queued"}
    quarantined = {u for u, w in want["instances"].items() if w["state"] == "quarantined"}
    assert queued and quarantined
    assert rx.states().get("queued") == len(queued)
    ok(ctl(rx, "shaping", "--clear"))
    ok(ctl(rx, "resume"))
    wait_for(lambda: rx.states().get("queued", 0) == 0 and rx.states().get("sending", 0) == 0,
             timeout=60)
    assert set(p.cloud.instances()) >= queued
    assert not (set(p.cloud.instances()) & quarantined)
    assert {u for u, d in _deliveries(rx).items() if d["state"] == "quarantined"} == quarantined
    assert up.running()


def test_a_newer_spool_is_refused(tmp_path, receivers):
    """What 0.1.0 does with this release's spool, checked with this
    release's code path: a schema above its own is refused, loudly, and
    left as found."""
    rx = receivers().start()
    rx.stop()
    with sqlite3.connect(os.path.join(rx.spool, "spool.db")) as con:
        con.execute("PRAGMA user_version = 3")
    try:
        rx.start()
        assert False, "a spool of schema 3 was opened"
    except RuntimeError as e:
        assert "written by a newer release" in str(e)
    with sqlite3.connect(os.path.join(rx.spool, "spool.db")) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 3
