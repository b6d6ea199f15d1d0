"""Fixtures of the image tests: the image, boxes (ended by PID after each
test) and the test cloud."""
import fcntl
import os
import subprocess

import pytest

from appliance import CLOUD_NAME, IMAGE, KEYS, ROOT, Box, restamped_rootfs
from cloud import Cloud, TestPKI


# The files with the longest tests first: make test-image runs files on two
# workers (-n 2 --dist loadfile), and a worker takes its next file while it
# runs its last test; in name order one worker ran both update files while
# the other sat idle for minutes. A worker holds its next file from the
# start: test_update_refused.py (one test, ~270 s) beside test_update.py
# (~510 s), test_image.py (two, ~340 s) beside test_watchdog.py (~450 s),
# so that the two end together (2026-12-06, both loaded by other work).
LONGEST_FIRST = ["test_update.py", "test_watchdog.py", "test_update_refused.py",
                 "test_image.py"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)


@pytest.fixture(scope="session")
def image():
    if not os.path.exists(IMAGE):
        pytest.fail(f"{IMAGE} is missing: run make image (make test-image builds it)")
    return IMAGE


@pytest.fixture
def boxes(tmp_path, image):
    made = []

    def make(name="box", cloud_port=None, bigger_disk=None, flash=False, tpm=True):
        b = Box(tmp_path / name, cloud_port, bigger_disk, flash, tpm)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


@pytest.fixture
def cloud(tmp_path):
    pki = TestPKI(tmp_path / "pki")
    c = Cloud(tmp_path / "cloud", pki=pki,
              server_cert=pki.server_cert_for(CLOUD_NAME)).start()
    yield c
    c.stop()


CHANGES = {"0.3.0-test": "broken", "0.4.0-test": "hangs"}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """bundle(version, keys=KEYS): a signed bundle of firmware v2
    (0.2.0-test), v3 (0.3.0-test, its receiver cannot start) or v4
    (0.4.0-test, it hangs the box in every boot). Made once per run: the
    xdist workers share one folder (their base folders' parent), a lock
    per version."""
    base = tmp_path_factory.getbasetemp()
    work = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "bundles"
    work.mkdir(exist_ok=True)

    def make(version, keys=KEYS):
        out = work / f"outpost-{version}-{os.path.basename(keys)}.raucb"
        with open(work / f".{version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sqfs = work / f"rootfs-{version}.sqfs"
            if not sqfs.exists():
                restamped_rootfs(work, version, CHANGES.get(version))
            if not out.exists():
                part = out.with_suffix(".part")
                subprocess.run([os.path.join(ROOT, "firmware", "build-bundle"),
                                str(sqfs), version, keys, str(part)],
                               check=True, capture_output=True)
                os.rename(part, out)
        return str(out)
    return make
