"""kill -9 of outpost-receiver in the middle of pushes, twenty times over one
spool: nothing acknowledged is lost or duplicated, and recovery leaves no
temporary file and no unindexed object behind.

The modality is DCMTK's storescu -v. Its output names each file before
sending it ("Sending file: PATH") and reports each response ("Received
Store Response (Success)"), one transfer at a time, so the success lines
map one to one onto the files storescu saw acknowledged.
"""
import collections
import os
import random
import re
import subprocess
import time

import pydicom

from outpost import DCMTK_ENV, blake2b, dataset_bytes, wait_for

ROUNDS = 20
SENDING = re.compile(r"^I: Sending file: (.+)$")
SUCCESS = "I: Received Store Response (Success)"


def acknowledged(storescu_output):
    """The files storescu -v reports as stored with status Success."""
    out, current = [], None
    for line in storescu_output.splitlines():
        m = SENDING.match(line)
        if m:
            current = m.group(1)
        elif line.startswith("I: Received Store Response") and current:
            if line.strip() == SUCCESS:
                out.append(current)
            current = None
    return out


def sop_uid(path):
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def start(rx, n_started):
    """Starts rx and waits for this start's receiver.ready (the log is
    appended to across restarts, so Receiver.start alone can return on an
    earlier run's line)."""
    rx.start()
    wait_for(lambda: rx.proc.poll() is not None or
             rx.log().count("event=receiver.ready") > n_started, 30, what="receiver.ready")
    assert rx.proc.poll() is None, rx.log()


def test_kill9_during_pushes_loses_nothing_acknowledged(receivers, ct_study):
    rng = random.Random(20261128)
    rx = receivers()
    acked = {}             # SOP Instance UID -> source file
    interrupted = 0        # rounds in which the kill cut a push short
    for i in range(ROUNDS):
        start(rx, i)
        # The whole study, starting a little further each time: a modality
        # re-sending after a failure, and new instances.
        first = i * 25 % len(ct_study)
        files = ct_study[first:] + ct_study[:first]
        push = subprocess.Popen(
            ["storescu", "-v", "-aet", "MODALITY", "-aec", "OUTPOST", "localhost",
             str(rx.port)] + files,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=DCMTK_ENV)
        try:
            time.sleep(rng.uniform(0.05, 0.6))
            rx.kill9()
            out, _ = push.communicate(timeout=120)
        finally:
            if push.poll() is None:
                push.kill()
                push.wait()
        stored = acknowledged(out)
        if push.returncode != 0 and len(stored) < len(files):
            interrupted += 1
        for path in stored:
            acked[sop_uid(path)] = path

    # The test only means something if kills landed mid-push and some
    # instances had been acknowledged by then.
    assert interrupted >= ROUNDS // 2, f"only {interrupted} pushes were cut short"
    assert acked, "storescu saw no instance acknowledged"

    start(rx, ROUNDS)  # the final recovery
    assert rx.stop() == 0

    log = rx.log()
    recoveries = [line for line in log.splitlines() if "event=spool.recover " in line]
    assert len(recoveries) == ROUNDS + 1
    for line in recoveries:
        # kill -9 leaves the page cache intact: every renamed file is whole
        # and every row's file was renamed before the row was committed.
        assert " damaged=0 " in line and line.endswith(" missing=0"), line
    assert rx.tmp_files() == []

    rows = rx.rows()
    per_uid = collections.Counter(row["sop_instance_uid"] for row in rows)
    assert [uid for uid, n in per_uid.items() if n > 1] == []
    by_uid = {row["sop_instance_uid"]: row for row in rows}

    lost = sorted(set(acked) - set(by_uid))
    assert lost == [], f"{len(lost)} acknowledged instances have no row"
    for uid, source in acked.items():
        row = by_uid[uid]
        path = rx.object_path(row["hash"])
        assert os.path.exists(path), f"{uid}: file missing"
        assert blake2b(path) == row["hash"], f"{uid}: file does not match its hash"
        assert os.path.getsize(path) == row["size"]
        assert dataset_bytes(path) == dataset_bytes(source), f"{uid}: dataset changed"
        assert row["state"] == "queued"

    # Every row (acknowledged or not) has its intact file, and every file in
    # objects/ has its row: no unindexed orphan survives recovery.
    files = rx.stored_files()
    assert sorted(files) == sorted(rx.object_path(row["hash"]) for row in rows)
    for row in rows:
        assert blake2b(rx.object_path(row["hash"])) == row["hash"]
    # Nothing but the study's instances was indexed.
    study = {sop_uid(path) for path in ct_study}
    assert set(by_uid) <= study
