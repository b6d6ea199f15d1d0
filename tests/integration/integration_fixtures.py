"""The integration tests' fixtures, in one module (conftest.py loads it
as a plugin, so a test names a fixture without importing it; helpers such
as spooled() or log_lines() are imported from here). Every test gets its
own directory, ports and processes, and every process is ended by PID.

The whole chain for uplink tests: a modality (storescu) -> outpost-receiver
-> spool -> outpost-uplink -> nginx (HTTPS) -> Orthanc + DICOMweb.

    from integration_fixtures import log_lines  # helpers; fixtures need no import

    def test_x(pipeline):                     # cloud, receiver and uplink running
        pipeline.send(files)                  # storescu; asserts every C-STORE succeeded
        pipeline.wait_drained()               # no row queued or sending any more
        pipeline.assert_cloud_holds(uids)     # Orthanc's REST API, not Outpost's word

    def test_y(pipelines):                    # your own options
        p = pipelines(cloud_options={"overwrite_instances": True},
                      cloud={"connections": 1}, spool={"keep_sent_bytes": "1M"},
                      start_uplink=False)

Each pipeline has its own fresh test PKI, cloud, ports, spool and logs
under the test's tmp_path. The receiver and its uplink come from the
`receivers` factory, so they are stopped by PID and their logs checked for
sanitizer reports; the clouds are stopped by PID here, after the uplinks
(an uplink outliving its cloud would only log link failures).

The [cloud] section defaults to the cloud's URL and CA with
retry_max_delay = 2 s, so that back-off never makes a test wait long.

A test module that shares one cloud among its tests takes `shared_cloud`
(module-scoped, on the module's `pki`) and puts back what a test changed
in a `cloud` fixture of its own.
"""
import os
import subprocess

import pydicom
import pytest

import dicomgen
from cloud import Cloud, TestPKI
from outpost import Receiver, dataset_bytes, storescu, wait_for

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


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The module's test PKI (tests/lib/cloud.py)."""
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def shared_cloud(tmp_path_factory, pki):
    """One cloud for the module's tests, stopped by PID at its end."""
    c = Cloud(tmp_path_factory.mktemp("cloud"), pki=pki).start()
    yield c
    c.stop()
    assert not c.pids()


def spooled(receivers, tmp_path, cloud_keys, n=3, edit=None):
    """A started receiver (its uplink not started) holding a fresh study of
    n small instances, all queued, the files first passed to edit(paths)
    if given. Returns (receiver, rows in the order received)."""
    files = dicomgen.make_ct_study(str(tmp_path / "study"), n, rows=64, cols=64)
    if edit:
        edit(files)
    keys = {"timeout": 5, "retry_max_delay": 2}
    keys.update(cloud_keys)
    rx = receivers(cloud=keys).start()
    r = storescu(rx.port, files)
    assert r.returncode == 0, r.stderr
    rows = rx.rows("1=1 ORDER BY id")
    assert len(rows) == n and {row["state"] for row in rows} == {"queued"}
    return rx, rows


# What a test may wait for a drain of a few hundred instances (a ceiling
# against hangs, not a speed requirement).
DRAIN_TIMEOUT = 120


def cloud_section(cloud, **keys):
    """The [cloud] keys that point an uplink at `cloud`, plus `keys`."""
    section = {"url": cloud.url, "ca_file": cloud.ca_file, "retry_max_delay": 2}
    section.update(keys)
    return section


def flip_byte(path, at):
    """Damages a stored object in place (the uplink then quarantines it)."""
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))


def log_lines(service, event):
    """The lines of a service's log about one event (e.g. "uplink.batch")."""
    return [line for line in service.log().splitlines() if f"event={event} " in line + " "]


def uid_of(path):
    """The SOP Instance UID of a DICOM file."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_all_sent(receiver, n):
    """The spool holds n rows, all 'sent' (none queued, sending or quarantined)."""
    rows = receiver.rows()
    assert len(rows) == n, f"{len(rows)} rows, {n} instances received"
    assert receiver.states() == {"sent": n}, \
        [(r["sop_instance_uid"], r["state"], r["last_error"]) for r in rows
         if r["state"] != "sent"][:5]


class Pipeline:
    """A cloud, a receiver whose config points at it, and that receiver's
    uplink (started or not)."""

    def __init__(self, cloud, receiver, uplink):
        self.cloud = cloud
        self.receiver = receiver
        self.uplink = uplink

    def __iter__(self):  # cloud, receiver, uplink = pipeline
        return iter((self.cloud, self.receiver, self.uplink))

    def send(self, files, flags=(), **kw):
        """storescu to the receiver; every C-STORE must be answered Success."""
        files = list(files)
        r = storescu(self.receiver.port, files, flags, verbose=True, **kw)
        acked = r.stderr.count("I: Received Store Response (Success)")
        assert r.returncode == 0 and acked == len(files), \
            f"storescu: {acked} of {len(files)} acknowledged, exit {r.returncode}:\n" \
            f"{r.stderr[-3000:]}"
        return r

    def unfinished(self):
        """Rows the uplink still has to deal with (queued or sending)."""
        return self.receiver.rows("state IN ('queued', 'sending')")

    def wait_drained(self, timeout=DRAIN_TIMEOUT):
        """Waits until no row is queued or sending (sent or quarantined)."""
        try:
            wait_for(lambda: not self.unfinished(), timeout, interval=0.2,
                     what="the spool to drain")
        except TimeoutError:
            raise AssertionError(
                f"not drained after {timeout}s: states {self.receiver.states()}\n"
                f"uplink log tail:\n{self.uplink.log()[-3000:]}") from None

    def assert_cloud_holds(self, uids, compare=None):
        """Orthanc holds exactly `uids` (a set of SOP Instance UIDs). For the
        UIDs in `compare` (default: all), Orthanc's stored file has the same
        dataset bytes as the spool's object for that UID."""
        held = set(self.cloud.instances())
        uids = set(uids)
        assert held == uids, (f"missing at the cloud: {sorted(uids - held)[:5]} "
                              f"({len(uids - held)}); extra: {sorted(held - uids)[:5]} "
                              f"({len(held - uids)})")
        rows = {r["sop_instance_uid"]: r for r in self.receiver.rows()}
        for uid in sorted(uids if compare is None else compare):
            path = self.receiver.object_path(rows[uid]["hash"])
            with open(path, "rb") as f:
                local = dataset_bytes(f.read())
            remote = dataset_bytes(self.cloud.instance_file(uid))
            assert remote == local, (f"{uid}: the cloud's dataset ({len(remote)} bytes) "
                                     f"differs from the spool's ({len(local)} bytes)")


@pytest.fixture
def pipelines(tmp_path, receivers):
    """Makes pipelines: pipelines(name="p", cloud_options={...},
    start_uplink=True, **receiver_overrides). cloud_options go to Cloud();
    receiver_overrides are INI sections ({"cloud": {...}} is merged over
    cloud_section())."""
    made = []

    def make(name="p", cloud_options=None, start_uplink=True, pki_options=None, **overrides):
        base = tmp_path / name
        pki = TestPKI(base / "pki", **(pki_options or {}))
        cloud = Cloud(base / "cloud", pki=pki, **(cloud_options or {}))
        made.append((cloud, []))
        cloud.start()
        overrides["cloud"] = cloud_section(cloud, **overrides.get("cloud", {}))
        receiver = receivers(os.path.join(name, "rx"), **overrides).start()
        uplink = receiver.uplink()
        made[-1][1].append(uplink)
        if start_uplink:
            uplink.start()
        return Pipeline(cloud, receiver, uplink)

    yield make
    for cloud, uplinks in made:
        for uplink in uplinks:
            uplink.stop()
        cloud.stop()


@pytest.fixture
def pipeline(pipelines):
    """A running pipeline with the default options."""
    return pipelines()
