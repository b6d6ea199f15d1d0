"""outpost-receiver at its limits: a full disk, the spool's max_bytes, and
min_free_bytes. At each limit a C-STORE gets 0xA700 (out of resources),
never success; nothing half-written stays; the receiver keeps running, and
accepting resumes by itself when space is freed or the limit raised.

The full disk is a small tmpfs mounted by the test (needs root, as in CI).
"""
import os
import signal
import subprocess

import pydicom

import dul
from outpost import blake2b, dataset_bytes, echoscu, storescu, wait_for

OUT_OF_RESOURCES = 0xA700
MiB = 1 << 20


def uids(path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return ds.SOPClassUID, ds.SOPInstanceUID


def push(rx, files):
    """Sends files in one association with dul.py until one is not stored;
    returns the statuses in order."""
    statuses = []
    with dul.Client(rx.port) as c:
        assert c.associate([(dul.CT_IMAGE_STORAGE, [dul.EXPLICIT_LE])]).accepted
        for path in files:
            status, _ = c.c_store(*uids(path), dataset_bytes(path))
            statuses.append(status)
            if status != 0x0000:
                break
        c.release()  # a refusal does not end the association
    return statuses


def assert_spool_intact(rx):
    """No partial file in tmp/; every row's file complete; no other file."""
    assert rx.tmp_files() == []
    rows = rx.rows()
    assert sorted(rx.stored_files()) == sorted(rx.object_path(r["hash"]) for r in rows)
    for r in rows:
        assert blake2b(rx.object_path(r["hash"])) == r["hash"]
        assert os.path.getsize(rx.object_path(r["hash"])) == r["size"]


def assert_stored(rx, path):
    sop = uids(path)[1]
    (row,) = rx.rows("sop_instance_uid = ?", (sop,))
    assert dataset_bytes(rx.object_path(row["hash"])) == dataset_bytes(path)


def reload(rx, **overrides):
    n = rx.log().count("event=config.reload result=ok")
    rx.reconfigure(**overrides)
    rx.signal(signal.SIGHUP)
    wait_for(lambda: rx.log().count("event=config.reload result=ok") > n, what="config.reload")


def test_full_disk_refuses_then_resumes_when_space_is_freed(tmpfs, receivers, ct_study):
    # Most of the disk is a plain file, so the spool fills after a few
    # instances; deleting it later frees the space.
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:
        f.write(bytes(24 * MiB))
    spool = str(tmpfs / "spool")
    rx = receivers(spool={"dir": spool, "min_free_bytes": 0, "max_bytes": 0})
    rx.spool = spool
    rx.start()

    statuses = push(rx, ct_study[:40])
    assert statuses[-1] == OUT_OF_RESOURCES, [hex(s) for s in statuses]
    assert set(statuses[:-1]) == {0x0000} and len(statuses) > 1
    refused = ct_study[len(statuses) - 1]
    assert rx.proc.poll() is None
    assert "event=store.refused" in rx.log() or "event=store.failed" in rx.log()
    assert_spool_intact(rx)
    assert len(rx.rows()) == len(statuses) - 1
    assert echoscu(rx.port).returncode == 0

    # Still full: a real modality is refused too, and told why.
    r = storescu(rx.port, [refused], verbose=True)
    assert "Received Store Response (Refused: OutOfResources)" in r.stdout + r.stderr

    # Space freed: the refused instance is stored, without a restart.
    os.unlink(filler)
    r = storescu(rx.port, [refused], verbose=True)
    assert r.returncode == 0, r.stderr
    assert "Received Store Response (Success)" in r.stdout + r.stderr
    assert_stored(rx, refused)
    assert_spool_intact(rx)
    assert rx.log().count("event=receiver.ready") == 1


def test_max_bytes_refuses_then_sighup_raises_it(receivers, ct_study):
    rx = receivers(spool={"max_bytes": "3M", "min_free_bytes": 0}).start()
    statuses = push(rx, ct_study[:20])
    assert statuses[-1] == OUT_OF_RESOURCES, [hex(s) for s in statuses]
    assert set(statuses[:-1]) == {0x0000}
    rows = rx.rows()
    used = sum(r["size"] for r in rows)
    # Stored right up to the limit: the refused one would have crossed it.
    assert len(rows) == len(statuses) - 1 >= 4
    assert used <= 3 * MiB < used + max(r["size"] for r in rows)
    assert_spool_intact(rx)
    assert rx.proc.poll() is None

    refused = ct_study[len(statuses) - 1]
    reload(rx, spool={"max_bytes": "6M"})
    r = storescu(rx.port, [refused], verbose=True)
    assert r.returncode == 0, r.stderr
    assert "Received Store Response (Success)" in r.stdout + r.stderr
    assert_stored(rx, refused)
    assert_spool_intact(rx)


def test_min_free_bytes_above_free_space_refuses_at_once(receivers, ct_study, tmp_path):
    vfs = os.statvfs(tmp_path)
    free = vfs.f_bavail * vfs.f_frsize
    rx = receivers(spool={"min_free_bytes": str(free + (1 << 30))}).start()
    assert push(rx, ct_study[:1]) == [OUT_OF_RESOURCES]
    r = storescu(rx.port, ct_study[:1], verbose=True)
    assert "Received Store Response (Refused: OutOfResources)" in r.stdout + r.stderr
    assert rx.rows() == [] and rx.stored_files() == [] and rx.tmp_files() == []
    assert rx.proc.poll() is None

    reload(rx, spool={"min_free_bytes": "1M"})
    r = storescu(rx.port, ct_study[:1], verbose=True)
    assert r.returncode == 0, r.stderr
    assert_stored(rx, ct_study[0])
    assert_spool_intact(rx)


def test_disk_out_of_inodes_refuses_then_resumes(tmpfs, receivers, ct_study):
    """A disk with free bytes but no free inodes: creating the temporary file
    fails with ENOSPC from the filesystem itself (no size check can see it
    coming). Refused with 0xA700; accepted again once inodes are freed."""
    spool = str(tmpfs / "spool")
    rx = receivers(spool={"dir": spool, "min_free_bytes": 0})
    rx.spool = spool
    rx.start()
    assert push(rx, ct_study[:2]) == [0x0000, 0x0000]
    vfs = os.statvfs(tmpfs)
    in_use = vfs.f_files - vfs.f_ffree
    subprocess.run(["mount", "-o", f"remount,nr_inodes={in_use}", str(tmpfs)], check=True)

    assert push(rx, ct_study[2:3]) == [OUT_OF_RESOURCES]
    assert rx.proc.poll() is None
    assert len(rx.rows()) == 2
    assert_spool_intact(rx)

    subprocess.run(["mount", "-o", f"remount,nr_inodes={in_use + 1000}", str(tmpfs)],
                   check=True)
    assert push(rx, ct_study[2:3]) == [0x0000]
    assert_stored(rx, ct_study[2])
    assert_spool_intact(rx)
