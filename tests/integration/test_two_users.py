"""Two users share the spool (issue 15), as on the appliance: the receiver
runs as one user, the uplink as another, both in the spool's group, with
UMask=0007, and the spool's top folder setgid and group-writable
(rootfs/deb/outpost.tmpfiles). The receiver can write nothing but the
spool and read nothing of the uplink's (here: the cloud's CA file, mode
0600). What the receiver writes, the uplink must read, send and evict;
what either creates, the other must be able to use.

Numeric ids that no account on this machine has: the test needs no user
made on the machine, and cleans its folder up by itself.
"""
import gc
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

import dicomgen
from cloud import Cloud, TestPKI
from integration_fixtures import cloud_section
from outpost import BUILD, ROOT, Receiver, storescu, wait_for

SPOOL_GID = 61000  # outpost-spool
RECEIVER_UID = 61001  # outpost-dicom
UPLINK_UID = 61002  # outpost


RECEIVER = {"user": RECEIVER_UID, "group": SPOOL_GID, "extra_groups": [], "umask": 0o007}
UPLINK = {"user": UPLINK_UID, "group": UPLINK_UID, "extra_groups": [SPOOL_GID], "umask": 0o007}


class Box:
    """A cloud, and a folder for one box's receiver and uplink: the cloud's
    CA copied there for the uplink alone (mode 0600)."""

    def __init__(self, cloud, work, bin_dir):
        self.cloud, self.work, self.bin_dir = cloud, work, bin_dir
        self.ca = os.path.join(work, "ca.pem")
        shutil.copy(cloud.ca_file, self.ca)
        os.chown(self.ca, UPLINK_UID, UPLINK_UID)
        os.chmod(self.ca, 0o600)
        self.services = []

    def receiver(self, run_as, **overrides):
        rx = Receiver(self.work, cloud=cloud_section(self.cloud, ca_file=self.ca), **overrides)
        os.chown(self.work, UPLINK_UID, UPLINK_UID)  # (the console's socket is made there)
        rx.run_as = run_as
        rx.bin_dir = self.bin_dir
        self.services.append(rx)
        return rx

    def uplink(self, rx):
        up = rx.uplink()
        up.run_as = UPLINK
        up.bin_dir = self.bin_dir
        self.services.append(up)
        return up.start()


@pytest.fixture
def box(tmp_path):
    # Under /tmp, not pytest's folder (root's, 0700: the users could not
    # reach their files through it); the programs copied there too (the
    # checkout may be in a folder only root can enter).
    base = tempfile.mkdtemp(prefix="outpost-two-users-")
    os.chmod(base, 0o711)
    work, bin_dir = os.path.join(base, "box"), os.path.join(base, "bin")
    os.mkdir(work)
    os.mkdir(bin_dir)
    for program in ("outpost-receiver", "outpost-uplink"):
        shutil.copy(os.path.join(BUILD, program), bin_dir)
    cloud = Cloud(tmp_path / "cloud", pki=TestPKI(tmp_path / "pki")).start()
    b = Box(cloud, work, bin_dir)
    yield b
    for s in reversed(b.services):
        s.stop()
    cloud.stop()
    gc.collect()  # (the test's own sqlite connections, closed: their WAL goes)
    shutil.rmtree(base)


def send(rx, files):
    r = storescu(rx.port, files, verbose=True)
    assert r.returncode == 0 and \
        r.stderr.count("Received Store Response (Success)") == len(files), r.stderr[-2000:]


def test_receiver_and_uplink_as_two_users_share_the_spool(tmp_path, box):
    cloud = box.cloud
    spool = os.path.join(box.work, "spool")
    os.mkdir(spool)
    os.chown(spool, UPLINK_UID, SPOOL_GID)
    os.chmod(spool, 0o2770)
    rx = box.receiver(RECEIVER, spool={"keep_sent_bytes": 0})
    os.chown(rx.ini, UPLINK_UID, SPOOL_GID)
    os.chmod(rx.ini, 0o640)
    rx.start()
    send(rx, dicomgen.make_ct_study(str(tmp_path / "study"), 12, rows=64, cols=64))
    objects = [os.stat(p) for p in rx.stored_files()]
    assert len(objects) == 12
    assert all((s.st_uid, s.st_gid, s.st_mode & 0o7777) == (RECEIVER_UID, SPOOL_GID, 0o640)
               for s in objects), [(s.st_uid, s.st_gid, oct(s.st_mode)) for s in objects]

    # The uplink, another user, reads them, sends them and (keep_sent_bytes
    # = 0) evicts them: their rows and files go.
    up = box.uplink(rx)
    wait_for(lambda: len(cloud.instances()) == 12, 60, what="the cloud to hold the study")
    wait_for(lambda: not rx.rows() and not rx.stored_files(), 30,
             what="the sent instances evicted")
    assert "event=uplink.quarantine" not in up.log()

    # What each made, the other may use: the database and its journal
    # files group-writable; every folder the spool's group's, writable,
    # setgid; no file or folder of either user's own group.
    for root, dirs, names in os.walk(spool):
        for name in dirs + names + ([] if root != spool else ["."]):
            path = os.path.normpath(os.path.join(root, name))
            st = os.lstat(path)
            assert st.st_gid == SPOOL_GID, f"{path}: group {st.st_gid}"
            if stat.S_ISDIR(st.st_mode):
                assert st.st_mode & 0o2070 == 0o2070, f"{path}: {oct(st.st_mode)}"
            assert not st.st_mode & 0o007, f"{path}: {oct(st.st_mode)} (others)"
    for name in ("spool.db", "spool.db-wal", "spool.db-shm"):
        st = os.stat(os.path.join(spool, name))
        assert st.st_mode & 0o060 == 0o060, f"{name}: {oct(st.st_mode)}"

    # Received after the uplink made its files: the receiver still writes.
    send(rx, dicomgen.make_ct_study(str(tmp_path / "more"), 3, seed=2, rows=64, cols=64))
    wait_for(lambda: len(cloud.instances()) == 15, 60, what="the cloud to hold 15")


def test_a_spool_of_one_user_is_given_to_the_group_once(tmp_path, box):
    """The spool an earlier release wrote (one user: everything
    outpost:outpost, objects 0600, folders 0750) is given to the spool's
    group by spool-owners (the receiver unit's ExecStartPre, as root); then
    the two users carry on with it. A link planted in the spool is not
    followed."""
    # The earlier release: one user, its own group, umask 0027.
    rx = box.receiver({"user": UPLINK_UID, "group": UPLINK_UID, "extra_groups": [],
                       "umask": 0o027})
    rx.start()
    send(rx, dicomgen.make_ct_study(str(tmp_path / "study"), 6, rows=64, cols=64))
    rx.stop()
    spool = rx.spool
    for root, dirs, names in os.walk(spool):
        for name in dirs + names:
            os.chown(os.path.join(root, name), UPLINK_UID, UPLINK_UID)
            if name in names and root.startswith(os.path.join(spool, "objects")):
                os.chmod(os.path.join(root, name), 0o600)  # (mkostemps' mode)
    os.chown(spool, UPLINK_UID, UPLINK_UID)
    os.chown(rx.ini, UPLINK_UID, UPLINK_UID)
    os.chmod(rx.ini, 0o640)
    outside = os.path.join(box.work, "outside")
    with open(outside, "w") as f:
        f.write("not the spool's\n")
    os.chmod(outside, 0o600)
    os.symlink(outside, os.path.join(spool, "objects", "00", "planted.dcm"))
    os.symlink(outside, os.path.join(spool, "objects", "ab-link"))

    script = os.path.join(ROOT, "rootfs", "deb", "spool-owners")
    for run in range(2):
        r = subprocess.run([script, spool, rx.ini, str(SPOOL_GID)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        # Once: the second run finds it done.
        assert ("giving it to group" in r.stdout) == (run == 0), r.stdout
    st = os.stat(outside)
    assert (st.st_gid, st.st_mode & 0o7777) == (0, 0o600), "a link in the spool was followed"
    st = os.stat(rx.ini)
    assert (st.st_gid, st.st_mode & 0o777) == (SPOOL_GID, 0o640)

    os.unlink(os.path.join(spool, "objects", "00", "planted.dcm"))
    os.unlink(os.path.join(spool, "objects", "ab-link"))
    rx.run_as = RECEIVER
    rx.start()
    send(rx, dicomgen.make_ct_study(str(tmp_path / "more"), 3, seed=2, rows=64, cols=64))
    box.uplink(rx)
    wait_for(lambda: len(box.cloud.instances()) == 9, 60, what="the cloud to hold all 9")
    wait_for(lambda: rx.states() == {"sent": 9}, 30, what="every row sent")
