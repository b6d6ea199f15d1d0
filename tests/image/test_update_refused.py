"""Firmware updates that must change nothing (make test-image): an older
release (a downgrade), a tampered bundle, a power cut in the middle of an
install, a bundle signed with another key. The older one comes on a USB
stick, the others through the web console (PUT /api/firmware), which
reports the progress and the result. (A separate file from
test_update.py, whose bundles come on USB sticks, so that the two run on
different boxes at once.) And a provisioned box takes a signed stick's
site file.
"""
import hashlib
import os
import shutil
import subprocess

from appliance import (INSTALL_TIMEOUT, KEYS, PASSWORD, ROOT, ROOTFS, firmware, grubenv,
                       site_stick, storescu, study, uids, wait_cloud_holds, wait_for)
from disk import VERSION


def test_an_older_or_tampered_bundle_changes_nothing_nor_does_a_power_cut_mid_install(
        boxes, cloud, bundle, tmp_path):
    v2 = bundle("0.2.0-test")
    # An older release, properly signed (the image's own root with an
    # older version in its manifest): a known hole must not come back.
    older = str(tmp_path / "outpost-0.0.9-test.raucb")
    subprocess.run([os.path.join(ROOT, "firmware", "build-bundle"), ROOTFS, "0.0.9-test",
                    KEYS, older], check=True, capture_output=True)
    tampered = str(tmp_path / "tampered.raucb")
    shutil.copy(v2, tampered)
    with open(tampered, "r+b") as f:  # one byte of the root filesystem's image
        f.seek(os.path.getsize(tampered) // 3)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    box = boxes(cloud_port=cloud.https_port)
    before = grubenv(box)

    box.start(usb=site_stick(str(tmp_path / "stick.img"), cloud, bundle=older)).wait_ready()
    box.wait_log('outpost-update: result=refused version=0.0.9-test from="usb" '
                 f'reason="0.0.9-test is older than the running firmware ({VERSION})')
    api = box.api(PASSWORD)
    last = firmware(box)["last_update"]
    assert last["result"] == "refused" and last["version"] == "0.0.9-test", last
    upload(api, tampered)
    box.wait_log('outpost-update: result=failed version=0.2.0-test from="console" '
                 'reason="Installation error',
                 timeout=INSTALL_TIMEOUT)  # dm-verity: the content does not match its hash
    fw = firmware(box)
    assert fw["booted"]["slot"] == "a" and fw["booted"]["version"] == VERSION, fw
    last = fw["last_update"]
    assert last["result"] == "failed" and last["from"] == "console", last
    assert "Installation error" in last["reason"], last
    api.ok("POST", "/api/pause")
    files = study(tmp_path, 5)
    r = storescu(box.dicom_port, files)
    assert r.returncode == 0 and r.stderr.count("Received Store Response (Success)") == 5

    # In the same boot, the power goes while v2 is being written into slot
    # B; meanwhile the status API shows the installation's progress.
    upload(api, v2)
    at = box.wait_log(f'outpost-update: installing version=0.2.0-test running={VERSION} slot=a '
                      'from="console"', timeout=INSTALL_TIMEOUT)
    wait_for(lambda: installing(firmware(box)["last_update"] or {}), 120,
             what="the progress in /api/status")
    box.wait_log("Copying image to rootfs.1", at)  # RAUC writing slot B
    box.power_cut()
    # Neither the tampered bundle nor the cut install changed the boot
    # choice (slot B, marked bad before each write, was never good).
    assert grubenv(box) == before

    # The box comes up with a stick whose site file is signed with the
    # site key: though provisioned, it takes it (a new upload rate).
    box.start(usb=site_stick(str(tmp_path / "signed.img"), cloud, signed=True,
                             extra="[shaping]\nrate = 3Mbit\n")).wait_ready()
    assert "outpost-provision: signature=verified source=/dev/disk/by-label/OUTPOST" in box.log()
    assert "outpost-provision: result=provisioned source=/dev/disk/by-label/OUTPOST" in box.log()
    assert api.ok("GET", "/api/status")["rate"]["configured"] == 3_000_000
    assert "outpost-initramfs: root rootfs-a" in box.log()
    fw = firmware(box)
    assert fw["booted"]["slot"] == "a" and fw["booted"]["version"] == VERSION, fw
    last = fw["last_update"]
    assert last["result"] == "interrupted" and last["version"] == "0.2.0-test", last
    assert api.ok("GET", "/api/status")["queue"]["queued"]["instances"] == 5
    api.ok("POST", "/api/resume")
    wait_cloud_holds(cloud, uids(files))


def upload(api, path):
    """PUT /api/firmware, as the console's page does."""
    with open(path, "rb") as f:
        data = f.read()
    api.timeout = 300  # 70 MB into a guest under TCG, then its fsync
    r = api.put("/api/firmware", data)
    assert r.status == 202, r.body
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()


def installing(last):
    return last.get("result") == "installing" and "%" in last.get("progress", "")


def test_the_image_trusts_only_its_own_keys(bundle, tmp_path):
    """RAUC on the box refuses a bundle signed with another key (checked
    here with the image's own system.conf and keyring)."""
    for name in ("etc/rauc/system.conf", "etc/rauc/keyring.pem"):
        data = subprocess.run(["unsquashfs", "-cat", ROOTFS, name], capture_output=True,
                              check=True).stdout
        (tmp_path / os.path.basename(name)).write_bytes(data)
    conf = (tmp_path / "system.conf").read_text().replace("/etc/rauc/keyring.pem",
                                                          str(tmp_path / "keyring.pem"))
    conf = conf.replace("statusfile=/data/rauc.status", "")
    (tmp_path / "system.conf").write_text(conf)
    other = tmp_path / "other-keys"
    subprocess.run([os.path.join(ROOT, "scripts", "make-keys"), str(other)], check=True,
                   capture_output=True)

    def info(path):
        return subprocess.run(["rauc", "info", f"--conf={tmp_path / 'system.conf'}", path],
                              capture_output=True, text=True)

    r = info(bundle("0.2.0-test"))
    assert r.returncode == 0 and "Version:    \t'0.2.0-test'" in r.stdout, r.stderr
    r = info(bundle("0.2.0-test", keys=str(other)))
    assert r.returncode != 0 and "signature verification failed" in r.stderr, r.stderr
