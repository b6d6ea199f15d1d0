#!/usr/bin/python3
"""Makes spool-0.1.0.tar.gz and spool-0.1.0.json: a spool written by the
0.1.0 binaries (spool schema 1), the input of the schema upgrade test.

    tests/integration/data/make-spool-0.1.0.py [REF]     (REF: default the tag 0.1.0)

It checks REF out into a temporary git worktree, builds that tree's
outpost-receiver, outpost-uplink and outpostctl, and runs them with real
peers, using that tree's own tests/lib helpers: DCMTK storescu as the
modality, Orthanc + DICOMweb behind nginx (HTTPS) as the cloud. The spool
then holds rows in every state a schema-1 spool can be left in by a clean
stop:
  - sent: three studies (one of them urgent), kept because keep_sent_bytes
    is large;
  - quarantined: one instance the cloud refuses for good (PatientID
    REFUSE-ME, refused by the test cloud's Lua filter) in a study whose
    other instance was sent;
  - queued with attempts > 0: a study sent while Orthanc was down (nginx
    answers 502);
  - queued, urgent, no attempt: an instance received after the operator
    paused uploads;
  - counters, settings (the operator's pause and shaping rate) and audit
    rows (outpostctl's pause and shaping).
Every process is ended by PID (SIGTERM, a clean stop; each must exit 0),
the WAL is checkpointed (see pack()), then the spool directory (spool.db,
objects/, tmp/) is packed and what it holds is read back from spool.db
into the JSON. The run fails unless that holds sent, queued and
quarantined rows, urgent ones among them, and an object for every row.

The worktree and every scratch file live in a temporary directory that is
removed at the end (git worktree prune). Needs what `make deps` installs.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = subprocess.run(["git", "-C", HERE, "rev-parse", "--show-toplevel"],
                      check=True, capture_output=True, text=True).stdout.strip()
TARBALL = os.path.join(HERE, "spool-0.1.0.tar.gz")
MANIFEST = os.path.join(HERE, "spool-0.1.0.json")
MAX_TARBALL = 300 * 1024


def git(*args, **kw):
    return subprocess.run(["git", "-C", REPO] + list(args), check=True,
                          capture_output=True, text=True, **kw).stdout.strip()


def resolve(ref):
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "--verify", "--quiet", ref + "^{commit}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"make-spool: {ref} is not a commit here (is the tag fetched? "
                 f"git fetch --tags); give the release's commit as the argument")
    return r.stdout.strip()


def scenario(src, run, commit, ref):
    """Runs the release's programs in `run`; returns the spool directory."""
    build = os.path.join(src, "build")
    os.environ["OUTPOST_BUILD"] = build
    sys.path.insert(0, os.path.join(src, "tests", "lib"))
    import dicomgen  # the release's own helpers
    import pydicom
    from cloud import REFUSE_PATIENT_ID, Cloud, TestPKI
    from outpost import Receiver, storescu, wait_for

    def send(rx, files, calling="STORESCU"):
        r = storescu(rx.port, files, calling=calling, verbose=True)
        acked = r.stderr.count("I: Received Store Response (Success)")
        if r.returncode != 0 or acked != len(files):
            raise RuntimeError(f"storescu: {acked} of {len(files)} acknowledged:\n{r.stderr}")

    def study(name, n, seed, patient_id):
        return dicomgen.make_ct_study(os.path.join(run, "studies", name), n, seed=seed,
                                      rows=64, cols=64, patient_id=patient_id)

    def ctl(rx, *args):
        r = subprocess.run([os.path.join(build, "outpostctl"), "--config", rx.ini] + list(args),
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"outpostctl {' '.join(args)}: exit {r.returncode}\n{r.stderr}")

    def unfinished(rx):
        return rx.rows("state IN ('queued', 'sending')")

    cloud = rx = up = None
    try:
        pki = TestPKI(os.path.join(run, "pki"))
        cloud = Cloud(os.path.join(run, "cloud"), pki=pki).start()
        rx = Receiver(os.path.join(run, "rx"),
                      spool={"keep_sent_bytes": "1G"},
                      cloud={"url": cloud.url, "ca_file": cloud.ca_file, "timeout": 5,
                             "retry_max_delay": 1},
                      priority={"urgent_calling_aets": "URGENT"}).start()
        up = rx.uplink().start()

        # Sent: studies A (4) and B (3), the urgent study U (2).
        send(rx, study("a", 4, 1, "PAT-A"))
        send(rx, study("b", 3, 2, "PAT-B"))
        send(rx, study("u", 2, 3, "PAT-U"), calling="URGENT")
        # Quarantined: study R, its second instance refused by the cloud for
        # good (5 attempts), its first sent.
        r_files = study("r", 2, 4, "PAT-R")
        ds = pydicom.dcmread(r_files[1])
        ds.PatientID = REFUSE_PATIENT_ID
        ds.save_as(r_files[1], write_like_original=True)
        send(rx, r_files)
        wait_for(lambda: not unfinished(rx), 120, interval=0.2, what="the spool to drain")

        # Queued with attempts: study C (3) while Orthanc is down.
        cloud.stop_orthanc()
        send(rx, study("c", 3, 5, "PAT-C"))
        wait_for(lambda: all(r["attempts"] >= 1 for r in rx.rows("study_uid IN (SELECT "
                             "study_uid FROM instances WHERE patient_id = 'PAT-C')")),
                 60, interval=0.2, what="study C's first attempts")
        # The operator's settings and audit rows; then an urgent instance
        # that stays queued (the pause also requeues what is in flight).
        ctl(rx, "shaping", "2Mbit")
        ctl(rx, "pause")
        wait_for(lambda: not rx.rows("state = 'sending'"), 30, interval=0.2,
                 what="the pause to requeue what was in flight")
        send(rx, study("v", 1, 6, "PAT-V"), calling="URGENT")

        for service in (up, rx):
            rc = service.stop()
            if rc != 0:
                raise RuntimeError(f"{service.program} exited {rc}:\n{service.log()[-3000:]}")
        return rx.spool
    finally:
        for service in (up, rx):
            if service is not None and service.running():
                service.stop()
        if cloud is not None:
            cloud.stop()


def pack(spool):
    """Packs the spool directory (as spool/) into TARBALL."""
    # 0.1.0 leaves a WAL behind even after a clean stop (its sqlite3_close
    # does not get to checkpoint): checkpointed here, with the same sqlite
    # library, so that the tarball is one file of schema 1 as asked. sqlite
    # would replay that WAL the same way when the next release opens it.
    wal = os.path.join(spool, "spool.db-wal")
    wal_bytes = os.path.getsize(wal) if os.path.exists(wal) else 0
    if wal_bytes:
        con = sqlite3.connect(os.path.join(spool, "spool.db"))
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        con.close()
        if busy or (os.path.exists(wal) and os.path.getsize(wal)):
            raise RuntimeError("spool.db-wal could not be checkpointed")
    for leftover in (wal, os.path.join(spool, "spool.db-shm")):
        if os.path.exists(leftover):
            os.unlink(leftover)  # empty WAL, or its index: nothing in them
    subprocess.run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                    "-C", os.path.dirname(spool), "-czf", TARBALL, os.path.basename(spool)],
                   check=True)
    size = os.path.getsize(TARBALL)
    if size > MAX_TARBALL:
        raise RuntimeError(f"{TARBALL}: {size} bytes, over {MAX_TARBALL}")
    return wal_bytes


def manifest(spool, ref, commit, wal_bytes):
    """What the spool holds, read back from a copy of spool.db (reading the
    original would make a -shm file in the spool)."""
    copy = os.path.join(os.path.dirname(spool), "readback.db")
    shutil.copyfile(os.path.join(spool, "spool.db"), copy)
    con = sqlite3.connect(copy)
    con.row_factory = sqlite3.Row
    user_version = con.execute("PRAGMA user_version").fetchone()[0]
    if user_version != 1:
        raise RuntimeError(f"PRAGMA user_version is {user_version}, not 1")
    instances = {}
    for r in con.execute("SELECT * FROM instances ORDER BY id"):
        instances[r["sop_instance_uid"]] = {
            "study_uid": r["study_uid"], "state": r["state"], "priority": r["priority"],
            "attempts": r["attempts"], "hash": r["hash"], "size": r["size"],
            "patient_id": r["patient_id"], "calling_aet": r["calling_aet"],
            "last_error": r["last_error"]}
        path = os.path.join(spool, "objects", r["hash"][:2], r["hash"] + ".dcm")
        if not os.path.exists(path):
            raise RuntimeError(f"{r['sop_instance_uid']}: no object {path}")
    states = {r["state"] for r in instances.values()}
    if not {"sent", "queued", "quarantined"} <= states or \
            not any(r["priority"] == 2 for r in instances.values()):
        raise RuntimeError(f"the spool lacks a state or an urgent row: {instances}")
    tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    out = {
        "made_by": "tests/integration/data/make-spool-0.1.0.py",
        "ref": ref, "commit": commit,
        "user_version": user_version,
        "wal_bytes_at_stop": wal_bytes,
        "instances": instances,
        "states": dict(con.execute("SELECT state, COUNT(*) FROM instances GROUP BY state "
                                   "ORDER BY state")),
    }
    if "counters" in tables:
        out["counters"] = dict(con.execute("SELECT name, value FROM counters ORDER BY name"))
    if "settings" in tables:
        out["settings"] = dict(con.execute("SELECT key, value FROM settings ORDER BY key"))
    if "audit" in tables:
        out["audit"] = [dict(r) for r in con.execute(
            "SELECT who, origin, action, detail FROM audit ORDER BY id")]
    schema = "\n".join(s for (s,) in con.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"))
    con.close()
    os.unlink(copy)
    with open(MANIFEST, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    return out, schema


def main():
    ref = sys.argv[1] if len(sys.argv) > 1 else "0.1.0"
    commit = resolve(ref)
    tmp = tempfile.mkdtemp(prefix="outpost-spool-0.1.0-")
    src = os.path.join(tmp, "src")
    run = os.path.join(tmp, "run")
    # SIGTERM ends the run through the finally blocks (processes by PID,
    # the worktree removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        git("worktree", "add", "--detach", src, commit)
        subprocess.run(["make", "-C", src, "-j2", "build/outpost-receiver",
                        "build/outpost-uplink", "build/outpostctl"], check=True)
        spool = scenario(src, run, commit, ref)
        wal_bytes = pack(spool)
        out, schema = manifest(spool, ref, commit, wal_bytes)
        print(f"{ref} ({commit}): {TARBALL} ({os.path.getsize(TARBALL)} bytes), "
              f"states {out['states']}")
        print(schema)
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", src],
                       capture_output=True)
        subprocess.run(["git", "-C", REPO, "worktree", "prune"], check=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
