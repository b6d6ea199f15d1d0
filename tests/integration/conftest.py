"""pytest fixtures: every test gets its own directory, ports and processes."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

from outpost import Receiver  # noqa: E402
import dicomgen  # noqa: E402


@pytest.fixture
def tmpfs(tmp_path):
    """A 32 MiB tmpfs, unmounted at teardown (after the receivers fixture,
    requested later, has stopped the receivers)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], check=True)
    yield mnt
    if subprocess.run(["umount", str(mnt)]).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def receivers(tmp_path):
    """Makes receivers (started later by the test); stops them all by PID."""
    made = []

    def make(name="rx", **overrides):
        rx = Receiver(str(tmp_path / name), **overrides)
        made.append(rx)
        # Its uplink, when a test makes one, is stopped and checked too.
        make_uplink = rx.uplink

        def uplink():
            up = make_uplink()
            made.append(up)
            return up
        rx.uplink = uplink
        return rx

    yield make
    # A clean stop lets the sanitizers of an ASan build (make
    # integration-asan) report leaks; any report fails the test.
    reports = []
    for service in made:
        service.stop()
        log = service.log()
        if "Sanitizer" in log or "runtime error:" in log:
            reports.append(f"{service.log_path}:\n{log[-4000:]}")
    assert not reports, "\n".join(reports)


@pytest.fixture
def receiver(receivers):
    return receivers().start()


@pytest.fixture(scope="session")
def ct_study(tmp_path_factory):
    """The synthesised 500-instance CT study (512x512x16 bit, ~530 KB each)."""
    d = tmp_path_factory.mktemp("ct_study")
    return dicomgen.make_ct_study(str(d), 500)
