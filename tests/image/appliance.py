"""An appliance under qemu for the tests (tests/image/): Box (one qemu,
its disk a copy of the image, its serial console in a file), site files
and sticks, studies, and the DICOM tools against a box.

The image is out/qemu-x86_64/outpost-<version>-qemu-x86_64.img (make
image), or $OUTPOST_IMAGE. The test cloud (Orthanc behind nginx,
tests/lib/cloud.py) is reached from the guest at 10.0.2.100:443 through
a guestfwd rule.
"""
import hashlib
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading

import pydicom

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import dicomgen  # noqa: E402
from console import Api, password_hash  # noqa: E402
from disk import IMAGE, gpt  # noqa: E402
from outpost import ROOT, DCMTK_ENV, free_port, wait_for  # noqa: E402

CLOUD_NAME = "cloud.outpost.test"  # the guest's name for the test cloud
GUEST_CLOUD = "10.0.2.100"
BOOT_TIMEOUT = 360  # TCG: ~50 s alone, 2-3 min beside another box; a ceiling
PASSWORD = "image-test-pw-1"
POWER_OFF = "reboot: Power down"  # the kernel's last line before it powers off
REFUSED_UNSIGNED = ('outpost-provision: result=refused source=/dev/disk/by-label/OUTPOST '
                    'reason="the box is provisioned: a stick\'s site file must be signed')
STATIC_ADDRESS = "10.0.2.77"  # a second address a site's .network file may give


class Box:
    """One appliance: a copy of the image as its disk, qemu started and
    ended by PID, the serial console in a file.

    A reset of the guest (a reboot, the watchdog) ends qemu and the box
    starts it again at once, as a power cycle: under TCG, qemu 7.2's warm
    reset sometimes left OVMF and GRUB minutes slow on the next boot (its
    time in page_collection_lock), and a cold start has never been. A
    power-off ends qemu too; the kernel's last words tell it from a
    reset."""

    def __init__(self, workdir, cloud_port=None, bigger_disk=None, flash=False, tpm=True):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.disk = os.path.join(self.dir, "disk.img")
        self.flash_output = None
        if flash:  # written by outpost-flash, as a field engineer does (flash=DIR: --site DIR)
            subprocess.run(["truncate", "-s", str(os.path.getsize(IMAGE)), self.disk], check=True)
            site = [] if flash is True else ["--site", str(flash)]
            r = subprocess.run([os.path.join(ROOT, "firmware", "flash")] + site + [IMAGE, self.disk],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
            assert r.returncode == 0, r.stderr
            self.flash_output = r.stdout
        else:
            subprocess.run(["cp", "--sparse=always", IMAGE, self.disk], check=True)
        if bigger_disk:  # the image flashed onto a bigger disk
            subprocess.run(["truncate", "-s", f"+{bigger_disk}", self.disk], check=True)
        self.serial = os.path.join(self.dir, "serial.log")
        self.stderr = os.path.join(self.dir, "qemu.stderr")
        self.dicom_port = free_port()
        self.console_port = free_port()
        self.extra_port = free_port()  # to the guest's 11112
        self.static_port = free_port()  # to the guest's 443 at STATIC_ADDRESS
        self.plain_port = free_port()  # to the guest's 8080 (no plain HTTP there)
        self.cloud_port = cloud_port
        self.proc = None
        self.supervisor = None
        self.lock = threading.Lock()
        self.stopping = False
        self.boots = 0
        # The box's TPM 2.0 (swtpm): its state outlives power cuts, as a
        # board's does; tpm=False, a box without one.
        self.tpm_dir = os.path.join(self.dir, "tpm") if tpm else None
        self.tpm = None

    def start(self, usb=None):
        env = dict(os.environ, OUTPOST_SERIAL=self.serial, OUTPOST_QEMU_SMP="1",
                   OUTPOST_QEMU_RESET="exit",
                   OUTPOST_HOSTFWD=f"{self.extra_port}:11112,"
                                   f"{self.static_port}:{STATIC_ADDRESS}:443,"
                                   f"{self.plain_port}:8080")
        env.pop("OUTPOST_USB", None)
        env["OUTPOST_TPM"] = os.path.join(self.tpm_dir, "ctrl.sock") if self.tpm_dir else "none"
        if usb:
            env["OUTPOST_USB"] = usb
        # Each start's serial console goes to its own file (a start may
        # hold several boots: the guest reboots itself).
        if os.path.exists(self.serial):
            os.rename(self.serial, os.path.join(self.dir, f"serial.boot{self.boots}.log"))
        args = [os.path.join(ROOT, "firmware", "qemu"), self.disk, str(self.dicom_port),
                str(self.console_port)]
        if self.cloud_port:
            args.append(str(self.cloud_port))

        def spawn():
            if self.tpm_dir:  # a TPM powered up with the board (see start_tpm)
                self.start_tpm()
            with open(self.stderr, "ab") as err:
                return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err)

        def supervise():  # qemu ends 0 on a reset or a power-off of the guest
            while self.proc.wait() == 0 and not self.log().rstrip().endswith(POWER_OFF):
                with self.lock:
                    if self.stopping:
                        return
                    self.proc = spawn()

        self.stopping = False
        self.proc = spawn()
        self.supervisor = threading.Thread(target=supervise, daemon=True)
        self.supervisor.start()
        self.boots += 1
        return self

    def start_tpm(self):
        """A fresh swtpm for each qemu start, on the box's TPM state (kept
        in tpm_dir across power cuts and reboots, as a board's TPM keeps
        its NV memory): qemu shuts its swtpm down when the guest resets,
        and one that a power cut left running is ended first."""
        sock = os.path.join(self.tpm_dir, "ctrl.sock")
        self.stop_tpm()
        os.makedirs(self.tpm_dir, exist_ok=True)
        if not os.path.exists(os.path.join(self.tpm_dir, "tpm2-00.permall")):
            # A new TPM with its SHA-256 PCR bank only, as many boards ship
            # theirs (swtpm alone would activate SHA-1, -256, -384 and
            # -512): OVMF hashes what it measures (GRUB, the kernel) once
            # per active bank, in the guest, slow under TCG.
            subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", self.tpm_dir,
                            "--pcr-banks", "sha256"], check=True, capture_output=True,
                           stdin=subprocess.DEVNULL)
        if os.path.exists(sock):
            os.unlink(sock)
        self.tpm = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.tpm_dir}",
             "--ctrl", f"type=unixio,path={sock}",
             "--log", f"file={os.path.join(self.dir, 'swtpm.log')}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: os.path.exists(sock), 10, interval=0.1, what="swtpm's socket")
        return sock

    def new_tpm(self):
        """Another TPM in the box (a fresh swtpm state): the box is off."""
        self.stop_tpm()
        shutil.rmtree(self.tpm_dir)

    def stop_tpm(self):
        if self.tpm is not None:
            self.tpm.terminate()
            self.tpm.wait()
            self.tpm = None

    def ended(self):
        """qemu ended other than by a reset of the guest."""
        return self.supervisor is not None and not self.supervisor.is_alive()

    def qemu_error(self):
        with open(self.stderr, errors="replace") as f:
            return f"qemu ended: {f.read()[-3000:]}"

    def log(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text, after=0, timeout=BOOT_TIMEOUT):
        """Waits for text on the serial console at or past position after;
        returns where it ends (the guest may reboot within one qemu run)."""
        try:
            wait_for(lambda: self.ended() or self.log().find(text, after) >= 0,
                     timeout, interval=0.5, what=text)
        except TimeoutError:
            raise AssertionError(f"not on the serial console: {text!r}\n"
                                 f"{self.log()[after:][-5000:]}") from None
        assert not self.ended(), self.qemu_error()
        return self.log().find(text, after) + len(text)

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        """The services up (serial markers), then /healthz answering."""
        try:
            wait_for(lambda: self.ended() or
                     "event=uplink.ready" in self.log() and
                     "event=receiver.ready" in self.log(), timeout, interval=0.5,
                     what="the services on the serial console")
            assert not self.ended(), self.qemu_error()
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

    def fingerprint(self):
        """The console certificate's SHA-256 as the box last printed it on
        its serial console (outpost-console-setup), hex without colons."""
        found = re.findall(r"outpost-console: tls_sha256=([0-9A-F:]{95})", self.log())
        return found[-1].replace(":", "").lower() if found else None

    def api(self, password=None, port=None):
        class _Rx:  # what console.Api needs to know of a receiver
            config = {"console": {"listen": f"127.0.0.1:{port or self.console_port}",
                                  "socket": ""}}
        return PinnedApi(_Rx(), self.fingerprint(), password=password, timeout=20)

    def power_cut(self):
        """SIGKILL of qemu: the disk keeps what reached it, nothing more."""
        with self.lock:
            self.stopping = True
            if self.proc and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        if self.supervisor:
            self.supervisor.join()

    def stop(self):
        self.power_cut()
        self.stop_tpm()


class FingerprintMismatch(ssl.SSLError):
    pass


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the box's self-signed console: the certificate is taken when
    its SHA-256 is the one the box printed, as an operator compares it."""

    def __init__(self, port, fingerprint, timeout):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        super().__init__("127.0.0.1", port, timeout=timeout, context=ctx)
        self.fingerprint = fingerprint

    def connect(self):
        super().connect()
        got = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()
        if got != self.fingerprint:
            self.sock.close()
            raise FingerprintMismatch(f"the console's certificate is {got}, the serial "
                                      f"console said {self.fingerprint}")


class PinnedApi(Api):
    """console.Api over HTTPS pinned to the fingerprint, with the header the
    console's own page sends on every request (X-Outpost-Request)."""

    def __init__(self, rx, fingerprint, **kw):
        super().__init__(rx, **kw)
        self.fingerprint = fingerprint

    def _conn(self):
        if self.fingerprint is None:
            raise ConnectionRefusedError("no certificate fingerprint on the serial console yet")
        return _PinnedHTTPS(self.port, self.fingerprint, self.timeout)

    def request(self, method, path, body=None, headers=None, auth=True):
        return super().request(method, path, body,
                               dict(headers or {}, **{"X-Outpost-Request": "1"}), auth)


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


def site_stick(path, cloud, password=PASSWORD, extra="", more=None, bundle=None, signed=False):
    """A USB stick image (vfat, label OUTPOST) with the site file in outpost/
    and, with bundle, a firmware update as outpost/update.raucb. signed:
    with outpost/site.sig by outpost-flash --sign-site and the site key the
    image trusts (a provisioned box takes only such a stick)."""
    d = path + ".d"
    os.makedirs(os.path.join(d, "outpost"), exist_ok=True)
    for name, text in site_files(cloud, password, extra, more).items():
        with open(os.path.join(d, "outpost", name), "w") as f:
            f.write(text)
    if signed:
        subprocess.run([os.path.join(ROOT, "firmware", "flash"), "--sign-site",
                        os.path.join(d, "outpost"), "--keys", KEYS], check=True,
                       capture_output=True)
    if bundle:
        os.link(bundle, os.path.join(d, "outpost", "update.raucb"))
    size = 8 + (os.path.getsize(bundle) >> 20) + 8 if bundle else 8
    subprocess.run(["truncate", "-s", f"{size}M", path], check=True)
    subprocess.run(["mkfs.vfat", "-n", "OUTPOST", path], check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", path, os.path.join(d, "outpost"), "::"], check=True)
    return path


def no_http_answer(port, timeout=5):
    """A plain HTTP request to a forwarded port gets no HTTP answer (the
    port is closed, or it speaks only TLS): what it got back, or b""."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: outpost\r\n\r\n")
            got = s.recv(4096)
        except (socket.timeout, ConnectionError):
            got = b""
    assert not got.startswith(b"HTTP/"), got[:200]
    return got


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


# --- firmware updates ----------------------------------------------------------------------

KEYS = os.environ.get("OUTPOST_KEYS") or os.path.join(ROOT, "keys", "dev")
ROOTFS = IMAGE[:-len(".img")] + ".rootfs.sqfs"
INSTALL_TIMEOUT = 600  # TCG: writing a slot takes a while


# A test firmware that hangs the whole box once systemd runs (and so pets
# the watchdog): a busy loop at real-time priority on every CPU, with the
# kernel's real-time throttling off, leaves nothing else a moment to run.
HANG = """#!/bin/sh
echo "outpost-test: hanging" > /dev/kmsg
echo -1 > /proc/sys/kernel/sched_rt_runtime_us
for _ in $(seq "$(nproc)"); do chrt -f 99 sh -c 'while :; do :; done' & done
wait
"""


def restamped_rootfs(workdir, version, change=None):
    """The image's root slot as firmware version `version`; change:
    "broken" (a receiver that cannot start: the health check fails) or
    "hangs" (the box hangs early in every boot)."""
    root = workdir / f"root-{version}"
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(root), ROOTFS], check=True)
    (root / "usr/lib/outpost/firmware-version").write_text(version + "\n")
    units = root / "etc/systemd/system"
    if change == "broken":
        d = units / "outpost-receiver.service.d"
        d.mkdir(parents=True, exist_ok=True)
        (d / "broken.conf").write_text("[Service]\nExecStart=\nExecStart=/bin/false\n")
    elif change == "hangs":
        script = root / "usr/lib/outpost/test-hang"
        script.write_text(HANG)
        script.chmod(0o755)
        (units / "outpost-test-hang.service").write_text(
            "[Unit]\nDefaultDependencies=no\nAfter=systemd-journald.service\n"
            "[Service]\nExecStart=/usr/lib/outpost/test-hang\n")
        wants = units / "sysinit.target.wants"
        wants.mkdir(exist_ok=True)
        (wants / "outpost-test-hang.service").symlink_to("../outpost-test-hang.service")
        # The watchdog as shipped, only quicker to fire (10 s, not 30 s), so that
        # the test's three hung boots cost a minute less.
        (root / "etc/systemd/system.conf.d/outpost-watchdog.conf").write_text(
            "[Manager]\nRuntimeWatchdogSec=10s\nRebootWatchdogSec=2min\n")
    sqfs = workdir / f"rootfs-{version}.sqfs"
    # gzip at its quickest level (-1): a test root is made at every run, and
    # gzip -9 (the default) or the image's xz took minutes of it on two busy
    # cores; GRUB reads gzip as it reads xz. The image keeps its xz.
    subprocess.run(["mksquashfs", str(root), str(sqfs), "-comp", "gzip",
                    "-Xcompression-level", "1", "-all-root", "-noappend", "-quiet"], check=True)
    shutil.rmtree(root)
    return sqfs


def queue_then_install(box, cloud, tmp_path, bundle, version, slot, n):
    """Starts box with a site stick that carries bundle (of version, for
    slot) and, while the box installs it, queues a study of n instances
    (uploads paused). Returns the console API, the study's files and where
    the serial console says the install is done."""
    box.start(usb=site_stick(str(tmp_path / f"stick-{os.path.basename(bundle)}.img"), cloud,
                             bundle=bundle)).wait_ready()
    api = box.api(PASSWORD)
    api.ok("POST", "/api/pause")
    files = study(tmp_path, n, name=f"study-{os.path.basename(bundle)}")
    r = storescu(box.dicom_port, files)
    assert r.returncode == 0 and r.stderr.count("Received Store Response (Success)") == n
    at = box.wait_log(f"outpost-update: result=installed version={version} slot={slot}",
                      timeout=INSTALL_TIMEOUT)
    return api, files, at


def grubenv(box):
    """The boot choice on the box's disk (the boot partition's grubenv)."""
    offset, _ = gpt(box.disk)["boot"]
    text = subprocess.run(["mtype", "-i", f"{box.disk}@@{offset}", "::grubenv"],
                          capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in text.splitlines()
                if "=" in line and not line.startswith("#"))


def firmware(box):
    return box.api(PASSWORD).ok("GET", "/api/status")["firmware"]


def scan_disk(disk, patient_id):
    """What a thief reads on a box's disk file: ({offsets of 'DICM' where a
    DICOM file's magic sits, 128 bytes into a 4 KiB block of the data
    partition}, whether the patient's ID or dicomgen's patient name is
    anywhere on the disk)."""
    offset, size = gpt(disk)["data"]
    magic, phi = set(), False
    chunk, keep = 16 << 20, 64
    with open(disk, "rb") as f:
        at, tail = 0, b""
        while True:
            buf = f.read(chunk)
            if not buf:
                break
            data = tail + buf
            phi = phi or patient_id.encode() in data or b"Test^Synthetic" in data
            base = at - len(tail)
            i = data.find(b"DICM")
            while i >= 0:
                pos = base + i
                if offset <= pos < offset + size and (pos - offset) % 4096 == 128:
                    magic.add(pos)
                i = data.find(b"DICM", i + 1)
            tail = data[-keep:]
            at += len(buf)
    return magic, phi
