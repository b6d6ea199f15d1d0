"""The appliance image under qemu (make test-image): booted with OVMF under
TCG, the guest's DICOM and console ports forwarded to host loopback, the
test cloud (Orthanc behind nginx, tests/lib/cloud.py) reached from the
guest at 10.0.2.100:443 through a guestfwd rule, provisioned from a site
file on a USB stick (a vfat image labelled OUTPOST).

The image is out/qemu-x86_64/outpost-<version>-qemu-x86_64.img (make
image), or $OUTPOST_IMAGE. Each test boots its own copy.
"""
import os
import re
import signal
import subprocess
import sys

import pydicom
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import dicomgen  # noqa: E402
from cloud import Cloud, TestPKI  # noqa: E402
from console import Api, password_hash  # noqa: E402
from disk import IMAGE, gpt  # noqa: E402
from outpost import ROOT, DCMTK_ENV, free_port, wait_for  # noqa: E402

CLOUD_NAME = "cloud.outpost.test"  # the guest's name for the test cloud
GUEST_CLOUD = "10.0.2.100"
BOOT_TIMEOUT = 240  # TCG: ~40 s here; a ceiling against hangs
PASSWORD = "image-test-pw-1"
STATIC_ADDRESS = "10.0.2.77"  # a second address a site's .network file may give


class Box:
    """One appliance: a copy of the image as its disk, qemu started and
    ended by PID, the serial console in a file."""

    def __init__(self, workdir, cloud_port=None, bigger_disk=None):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.disk = os.path.join(self.dir, "disk.img")
        subprocess.run(["cp", "--sparse=always", IMAGE, self.disk], check=True)
        if bigger_disk:  # the image flashed onto a bigger disk
            subprocess.run(["truncate", "-s", f"+{bigger_disk}", self.disk], check=True)
        self.serial = os.path.join(self.dir, "serial.log")
        self.dicom_port = free_port()
        self.console_port = free_port()
        self.extra_port = free_port()  # to the guest's 11112
        self.static_port = free_port()  # to the guest's 8080 at STATIC_ADDRESS
        self.cloud_port = cloud_port
        self.proc = None
        self.boots = 0

    def start(self, usb=None):
        env = dict(os.environ, OUTPOST_SERIAL=self.serial,
                   OUTPOST_HOSTFWD=f"{self.extra_port}:11112,"
                                   f"{self.static_port}:{STATIC_ADDRESS}:8080")
        env.pop("OUTPOST_USB", None)
        if usb:
            env["OUTPOST_USB"] = usb
        # qemu truncates the serial file: each boot's goes aside.
        if os.path.exists(self.serial):
            os.rename(self.serial, os.path.join(self.dir, f"serial.boot{self.boots}.log"))
        args = [os.path.join(ROOT, "firmware", "qemu"), self.disk, str(self.dicom_port),
                str(self.console_port)]
        if self.cloud_port:
            args.append(str(self.cloud_port))
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.boots += 1
        return self

    def log(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        """The services up (serial markers), then /healthz answering."""
        try:
            wait_for(lambda: self.proc.poll() is not None or
                     "event=uplink.ready" in self.log() and
                     "event=receiver.ready" in self.log(), timeout, interval=0.5,
                     what="the services on the serial console")
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            wait_for(lambda: self.health() is not None, 60, interval=0.5, what="/healthz")
        except (TimeoutError, AssertionError):
            raise AssertionError(f"the box did not come up:\n{self.log()[-5000:]}") from None
        return self

    def health(self):
        try:
            r = self.api().get("/healthz", auth=False)
            return r.json() if r.status in (200, 503) else None
        except OSError:
            return None

    def api(self, password=None, port=None):
        class _Rx:  # what console.Api needs to know of a receiver
            config = {"console": {"listen": f"127.0.0.1:{port or self.console_port}",
                                  "socket": ""}}
        return Api(_Rx(), password=password, timeout=20)

    def power_cut(self):
        """SIGKILL of qemu: the disk keeps what reached it, nothing more."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        self.power_cut()


@pytest.fixture(scope="session")
def image():
    if not os.path.exists(IMAGE):
        pytest.fail(f"{IMAGE} is missing: run make image (make test-image builds it)")
    return IMAGE


@pytest.fixture
def boxes(tmp_path, image):
    made = []

    def make(name="box", cloud_port=None, bigger_disk=None):
        b = Box(tmp_path / name, cloud_port, bigger_disk)
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


def site_files(cloud, password=PASSWORD, extra="", more=None):
    """A site file for the test cloud: {name: text}: site.ini, the cloud's
    CA, the name of the cloud as the guest reaches it, and more."""
    return (more or {}) | {
        "site.ini": f"""[cloud]
url = https://{CLOUD_NAME}/dicom-web
ca_file = /data/site/ca.pem
retry_max_delay = 5

[console]
password_hash = {password_hash(password)}
{extra}""",
        "ca.pem": open(cloud.pki.ca_file).read(),
        "hosts": f"{GUEST_CLOUD}\t{CLOUD_NAME}\n",
    }


def site_stick(path, cloud, password=PASSWORD, extra="", more=None):
    """A USB stick image (vfat, label OUTPOST) with the site file in outpost/."""
    d = path + ".d"
    os.makedirs(os.path.join(d, "outpost"), exist_ok=True)
    for name, text in site_files(cloud, password, extra, more).items():
        with open(os.path.join(d, "outpost", name), "w") as f:
            f.write(text)
    subprocess.run(["truncate", "-s", "8M", path], check=True)
    subprocess.run(["mkfs.vfat", "-n", "OUTPOST", path], check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", path, os.path.join(d, "outpost"), "::"], check=True)
    return path


def study(tmp_path, n, name="study", **kw):
    return dicomgen.make_ct_study(str(tmp_path / name), n, rows=64, cols=64, **kw)


def uids(files):
    return {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}


def storescu(port, files, timeout=600):
    return subprocess.run(["storescu", "-v", "-aec", "OUTPOST", "localhost", str(port)] +
                          list(files), capture_output=True, text=True, timeout=timeout,
                          env=DCMTK_ENV)


def echo(port, timeout=60):
    return subprocess.run(["echoscu", "-to", "20", "-ta", "20", "-aec", "OUTPOST", "localhost",
                           str(port)], capture_output=True, text=True, timeout=timeout,
                          env=DCMTK_ENV)


def wait_cloud_holds(cloud, want, timeout=300):
    try:
        wait_for(lambda: want <= set(cloud.instances()), timeout, interval=1,
                 what="the instances at the cloud")
    except TimeoutError:
        raise AssertionError(f"missing at the cloud: {len(want - set(cloud.instances()))} "
                             f"of {len(want)}") from None


# --- 1. boot, receive, upload ------------------------------------------------------------

def test_boot_receive_and_upload_a_study(boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port, bigger_disk="1G")
    box.start(usb=site_stick(str(tmp_path / "stick.img"), cloud)).wait_ready()
    log = box.log()
    assert "outpost-initramfs: root rootfs-a" in log
    assert "outpost-provision: result=provisioned" in log
    # The data partition took the disk's extra gigabyte.
    assert "outpost-grow-data: partition=/dev/vda4 grown_by_bytes=" in log
    disk = box.api(PASSWORD).ok("GET", "/api/status")["disk"]
    assert disk["total"] > 1.8e9, disk
    h = box.health()
    assert h["healthy"] is True and h["checks"]["receiver"]["ok"] is True, h
    assert echo(box.dicom_port).returncode == 0
    files = study(tmp_path, 50)
    r = storescu(box.dicom_port, files)
    assert r.returncode == 0 and r.stderr.count("Received Store Response (Success)") == 50, \
        r.stderr[-2000:]
    wait_cloud_holds(cloud, uids(files))
    api = box.api(PASSWORD)
    status = api.ok("GET", "/api/status")
    assert status["link"]["state"] == "up"
    assert status["counters"]["uploaded_instances"] == 50

    # A new site file through the console: checked, then applied by the
    # box (outpost-site.path) and the services reloaded.
    files = site_files(cloud)
    bad = dict(files, **{"site.ini": files["site.ini"] + "[shaping]\nrate = fast\n"})
    r = api.put("/api/site", {"site.ini": bad["site.ini"],
                              "files": {k: v for k, v in bad.items() if k != "site.ini"}})
    assert r.status == 400 and "rate" in r.json()["error"], r.body
    new = files["site.ini"] + "[shaping]\nrate = 3Mbit\n"
    r = api.put("/api/site", {"site.ini": new,
                              "files": {k: v for k, v in files.items() if k != "site.ini"}})
    assert r.status == 202, r.body
    wait_for(lambda: api.ok("GET", "/api/status")["rate"]["configured"] == 3_000_000, 60,
             interval=1, what="the uploaded site file in force")
    assert "outpost-provision: result=provisioned source=console" in box.log()
    assert [e for e in api.ok("GET", "/api/audit") if e["action"] == "site"]


# --- 2. power cut --------------------------------------------------------------------------

def test_power_cut_mid_push_loses_no_acknowledged_instance(boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port)
    stick = site_stick(str(tmp_path / "stick.img"), cloud,
                       extra="[shaping]\nrate = 0\n")  # nothing leaves before the cut
    box.start(usb=stick).wait_ready()
    files = study(tmp_path, 200)
    by_path = {f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
               for f in files}
    proc = subprocess.Popen(["storescu", "-v", "-aec", "OUTPOST", "localhost",
                             str(box.dicom_port)] + files, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=DCMTK_ENV)
    acked, current = [], None
    for line in proc.stderr:
        m = re.search(r"Sending file: (\S+)", line)
        if m:
            current = m.group(1)
        if "Received Store Response (Success)" in line:
            acked.append(by_path[current])
            if len(acked) == 60:
                box.power_cut()  # mid-push: the next instance is on its way
                break
    proc.kill()
    proc.wait()
    assert len(acked) == 60
    # The same disk boots again (no stick: the site stays provisioned),
    # the rate back to unlimited through the console.
    box.start().wait_ready()
    api = box.api(PASSWORD)
    api.ok("PUT", "/api/shaping", {"rate": "unlimited"})
    wait_cloud_holds(cloud, set(acked))
    held = set(cloud.instances())
    assert held <= set(by_path.values())  # nothing else, no half instance


# --- 3. unprovisioned, then provisioned ----------------------------------------------------

def test_unprovisioned_box_buffers_until_a_site_file_drains_it(boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port)
    # An empty data partition (as on a board whose image leaves it blank):
    # the box makes its file system at first boot.
    offset, _ = gpt(box.disk)["data"]
    with open(box.disk, "r+b") as f:
        f.seek(offset)
        f.write(bytes(1 << 20))
    box.start().wait_ready()
    assert "outpost-grow-data: filesystem=/dev/vda4 created" in box.log()
    assert 'outpost-provision: state=unprovisioned reason="no site file yet' in box.log()
    h = box.health()
    assert h["healthy"] is True and h["cloud"]["state"] == "unprovisioned", h
    files = study(tmp_path, 20)
    r = storescu(box.dicom_port, files)
    assert r.returncode == 0 and r.stderr.count("Received Store Response (Success)") == 20
    assert not cloud.instances()
    box.stop()
    box.start(usb=site_stick(str(tmp_path / "stick.img"), cloud)).wait_ready()
    wait_cloud_holds(cloud, uids(files))


# --- 4. only DICOM and the console from outside --------------------------------------------

def test_only_dicom_and_console_ports_answer_from_outside(boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port)
    # The receiver moved to 11112 by the site file: it listens there (the
    # box's own C-ECHO on loopback says so), yet the firewall lets only 104
    # and 8080 in.
    # The site's own network settings: static addresses, no DHCP (the
    # file sorts before the image's 20-dhcp.network, so it wins).
    static = f"""[Match]
Name=en*

[Network]
DHCP=no
Address=10.0.2.15/24
Address={STATIC_ADDRESS}/24
Gateway=10.0.2.2
"""
    stick = site_stick(str(tmp_path / "stick.img"), cloud, extra="[receiver]\nport = 11112\n",
                       more={"10-site.network": static})
    box.start(usb=stick).wait_ready()
    assert box.api(port=box.static_port).get("/healthz", auth=False).status == 200
    h = box.health()
    assert h["checks"]["receiver"]["ok"] is True, h
    assert box.api().get("/healthz", auth=False).status == 200
    r = echo(box.extra_port, timeout=90)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "event=receiver.ready ae_title=OUTPOST bind=0.0.0.0 port=11112" in box.log()
