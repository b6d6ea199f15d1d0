"""The operator discards a quarantined study (issue 15: unsent data that
nothing could remove filled the spool): POST /api/discard and `outpostctl
discard`, confirmed, audited; rows and files go, the spool shrinks, and a
study with nothing quarantined (queued, or sent) is never touched.
"""
import os
import subprocess

import pydicom

import dicomgen
from console import Api, password_hash
from integration_fixtures import flip_byte
from outpost import BUILD

PASSWORD = "correct horse 8b1f"
CTL = os.path.join(BUILD, "outpostctl")


def study_uid(files):
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def ctl(rx, *args, stdin=subprocess.DEVNULL):
    return subprocess.run([CTL, "--config", rx.ini, *args], stdin=stdin, capture_output=True,
                          text=True, timeout=60)


def ctl_on_terminal(rx, typed, *args):
    """outpostctl with a terminal as stdin, the operator typing `typed`."""
    master, slave = os.openpty()
    try:
        os.write(master, typed.encode() + b"\n")
        return ctl(rx, *args, stdin=slave)
    finally:
        os.close(slave)
        os.close(master)


def spool_bytes(rx):
    return sum(os.path.getsize(f) for f in rx.stored_files())


def test_discard_removes_only_a_quarantined_study_confirmed_and_audited(pipelines, tmp_path):
    p = pipelines(start_uplink=False, console={"password_hash": password_hash(PASSWORD)})
    rx = p.receiver
    bad1 = dicomgen.make_ct_study(str(tmp_path / "bad1"), 3, rows=64, cols=64)
    bad2 = dicomgen.make_ct_study(str(tmp_path / "bad2"), 2, rows=64, cols=64, seed=2)
    good = dicomgen.make_ct_study(str(tmp_path / "good"), 2, rows=64, cols=64, seed=3)
    p.send(bad1 + bad2 + good)
    # Damaged in the spool: the uplink quarantines them (never sends them).
    for uid in (study_uid(bad1), study_uid(bad2)):
        for row in rx.rows("study_uid = ?", (uid,)):
            flip_byte(rx.object_path(row["hash"]), row["size"] // 2)
    p.uplink.start()
    p.wait_drained()
    assert rx.states() == {"quarantined": 5, "sent": 2}

    api, local = Api(rx, password=PASSWORD), Api(rx, unix=True)
    assert api.ok("POST", "/api/pause") == {"paused": True}
    queued = dicomgen.make_ct_study(str(tmp_path / "queued"), 2, rows=64, cols=64, seed=4)
    p.send(queued)

    # Confirmation required: the same UID twice.
    s1 = study_uid(bad1)
    for body in ({"study": s1}, {"study": s1, "confirm": s1 + ".9"}, {"confirm": s1}, [s1]):
        assert api.post("/api/discard", body).status == 400
    # Nothing quarantined in a queued or a sent study: refused, untouched.
    for uid in (study_uid(queued), study_uid(good)):
        r = api.post("/api/discard", {"study": uid, "confirm": uid})
        assert r.status == 409, r.text
        assert "no quarantined instance" in r.json()["error"]
    assert rx.states() == {"quarantined": 5, "sent": 2, "queued": 2}

    before_bytes, before_files = spool_bytes(rx), len(rx.stored_files())
    gone = rx.rows("study_uid = ?", (s1,))
    got = api.ok("POST", "/api/discard", {"study": s1, "confirm": s1})
    assert got == {"discarded": 3, "bytes": sum(r["size"] for r in gone)}
    assert rx.rows("study_uid = ?", (s1,)) == []
    assert not any(os.path.exists(rx.object_path(r["hash"])) for r in gone)
    assert len(rx.stored_files()) == before_files - 3
    assert spool_bytes(rx) == before_bytes - got["bytes"]
    assert local.ok("GET", "/api/status")["queue"]["quarantined"]["instances"] == 2
    entry = [e for e in local.ok("GET", "/api/audit") if e["action"] == "discard"][0]
    assert entry["who"] == "admin" and entry["from"] == "127.0.0.1"
    assert entry["detail"] == f"study={s1} instances=3 bytes={got['bytes']}"
    assert f'event=spool.discard study="{s1}" instances=3' in p.uplink.log()

    # outpostctl: --yes, or the UID typed again on a terminal.
    s2 = study_uid(bad2)
    r = ctl(rx, "discard", s2)
    assert r.returncode == 2 and "--yes" in r.stderr
    r = ctl_on_terminal(rx, "1.2.3", "discard", s2)
    assert r.returncode == 1 and "not confirmed" in r.stderr
    assert len(rx.rows("study_uid = ?", (s2,))) == 2
    r = ctl(rx, "discard", study_uid(queued), "--yes")
    assert r.returncode == 1 and "no quarantined instance" in r.stderr
    r = ctl_on_terminal(rx, s2, "discard", s2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("discarded 2 instances")
    assert rx.states() == {"sent": 2, "queued": 2}
    assert [e["action"] for e in local.ok("GET", "/api/audit")][:2] == ["discard", "discard"]

    # The queued study still goes once resumed.
    assert api.ok("POST", "/api/resume") == {"paused": False}
    p.wait_drained()
    assert rx.states() == {"sent": 4}
