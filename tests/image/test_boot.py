"""What the appliance gives away at boot and at rest (make test-image): no
shell when the initramfs cannot find its root, and the receiver's sandbox
in the image. A file of its own, so that make test-image's two workers
share the boxes evenly (it goes to whichever is free first)."""
import subprocess

from appliance import ROOTFS
from disk import rename_partition


def test_a_missing_root_reboots_without_a_shell(boxes):
    """The initramfs cannot find its root (the slot's partition renamed): it
    says so and reboots, where it used to give a root shell."""
    box = boxes()
    rename_partition(box.disk, "rootfs-a", "rootfs-gone")
    box.start()
    at = box.wait_log("outpost-initramfs: no partition labelled 'rootfs-a': rebooting in 10 s")
    box.wait_log("reboot: Restarting system", at)
    log = box.log()
    assert "can't access tty" not in log and "\n/ # " not in log, log[-2000:]


def test_the_receiver_reaches_only_the_spool():
    """The receiver's unit in the image: it writes only the spool, and the
    cloud's credentials, what root installs from, the console's key and the
    admin socket are not there for it (systemd's sandbox; under qemu the
    other image tests show it still receives)."""
    unit = subprocess.run(["unsquashfs", "-cat", ROOTFS,
                           "usr/lib/systemd/system/outpost-receiver.service"],
                          capture_output=True, text=True, check=True).stdout
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and
                not line.startswith("#"))
    assert keys["ReadWritePaths"] == "/data/spool"
    assert set(keys["InaccessiblePaths"].split()) >= {
        "-/data/site", "-/data/upload", "-/data/console", "-/data/firmware", "-/run/outpost"}
    assert keys["MemoryMax"] and keys["TasksMax"]
    for line in ("[console]", "listen = 0.0.0.0:443", "tls_cert = /data/console/cert.pem"):
        assert line in subprocess.run(["unsquashfs", "-cat", ROOTFS,
                                       "usr/share/outpost/outpost.ini"],
                                      capture_output=True, text=True, check=True).stdout
