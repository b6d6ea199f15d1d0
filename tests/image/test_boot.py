"""What the appliance gives away at boot and at rest (make test-image): no
shell when the initramfs cannot find its root, and the receiver's sandbox
in the image. A file of its own, so that make test-image's two workers
share the boxes evenly (it goes to whichever is free first)."""
import subprocess

from appliance import IMAGE, ROOTFS
from disk import gpt, rename_partition


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
    # A user of its own, sharing only the spool's group with the uplink,
    # and the ids an updated box's files were made with (outpost: 997, as
    # in release 0.1.0).
    assert (keys["User"], keys["Group"], keys["UMask"]) == ("outpost-dicom", "outpost-spool",
                                                            "0007")
    passwd = {line.split(":")[0]: line.split(":") for line in subprocess.run(
        ["unsquashfs", "-cat", ROOTFS, "etc/passwd"], capture_output=True, text=True,
        check=True).stdout.splitlines()}
    group = {line.split(":")[0]: line.split(":") for line in subprocess.run(
        ["unsquashfs", "-cat", ROOTFS, "etc/group"], capture_output=True, text=True,
        check=True).stdout.splitlines()}
    assert passwd["outpost"][2:4] == ["997", "997"], passwd["outpost"]
    assert passwd["outpost-dicom"][2:4] == ["989", "989"], passwd["outpost-dicom"]
    assert group["outpost-spool"][2:4] == ["989", "outpost"], group["outpost-spool"]
    assert "outpost-dicom" not in group["outpost"][3].split(",")
    for line in ("[console]", "listen = 0.0.0.0:443", "tls_cert = /data/console/cert.pem"):
        assert line in subprocess.run(["unsquashfs", "-cat", ROOTFS,
                                       "usr/share/outpost/outpost.ini"],
                                      capture_output=True, text=True, check=True).stdout


def test_the_boot_menu_is_locked(tmp_path):
    """GRUB's configuration, inside the EFI program on the boot partition:
    editing an entry or opening GRUB's command line needs a superuser,
    "root", who has no password; the one entry boots without one. (Read
    from the image: with timeout=0 the menu never shows under qemu.)"""
    offset, _ = gpt(IMAGE)["boot"]
    efi = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-n", "-i", f"{IMAGE}@@{offset}", "::EFI/BOOT/BOOTX64.EFI",
                    str(efi)], check=True)
    data = efi.read_bytes()
    cfg = data[data.index(b"set superusers="):]
    cfg = cfg[:cfg.index(b"\0")].decode()
    assert 'set superusers="root"' in cfg
    assert "password" not in cfg, cfg
    entries = [line for line in cfg.splitlines() if line.startswith("menuentry")]
    assert entries and all("--unrestricted" in line for line in entries), entries
