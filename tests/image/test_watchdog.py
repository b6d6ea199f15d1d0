"""A firmware that hangs the box (make test-image): the hardware watchdog
(qemu's i6300esb) resets it, every boot of the new slot hangs, and after
its 3 boots GRUB goes back to the old slot, whose health gate marks the new
one bad and says so. The spool survives the resets.

v4 (0.4.0-test) hangs early in every boot, once systemd runs: a busy loop
at real-time priority starves everything, systemd's petting of the
watchdog too (appliance.HANG).
"""
import re

from appliance import firmware, grubenv, queue_then_install, uids, wait_cloud_holds
from disk import VERSION


def test_a_hanging_update_is_reset_by_the_watchdog_and_rolled_back_after_3_boots(
        boxes, cloud, bundle, tmp_path):
    v4 = bundle("0.4.0-test")
    box = boxes(cloud_port=cloud.https_port)
    api, files, at = queue_then_install(box, cloud, tmp_path, v4, "0.4.0-test", "b", 5)

    # Three boots of the new slot, each hung and then reset from outside
    # the kernel: no reboot or panic of its own before the firmware starts
    # again.
    for boot in range(3):
        at = box.wait_log("outpost-initramfs: root rootfs-b", at)
        hung = box.wait_log("outpost-test: hanging", at)
        reset = box.wait_log("BdsDxe: loading", hung)
        between = box.log()[hung:reset]
        assert not re.search(r"reboot: |Kernel panic", between), (boot, between[-3000:])
        at = reset

    # Then the old slot, by GRUB's count alone; its health gate says why.
    at = box.wait_log("outpost-initramfs: root rootfs-a", at)
    at = box.wait_log("outpost-health-gate: result=rolled-back slot=b version=0.4.0-test "
                      'reason="no health check passed in 3 boots"', at)
    at = box.wait_log(f"outpost-health-gate: slot=a version={VERSION} trial=no", at)
    # The stick is still in: what was rolled back is not installed again.
    box.wait_log('outpost-update: result=skipped version=0.4.0-test reason="rolled back before',
                 at)
    assert box.log().count("outpost-initramfs: root rootfs-b") == 3

    fw = firmware(box)
    assert fw["booted"]["slot"] == "a" and fw["booted"]["version"] == VERSION, fw
    last = fw["last_update"]
    assert last["result"] == "rolled-back" and last["version"] == "0.4.0-test", last
    assert "3 boots" in last["reason"], last
    env = grubenv(box)
    assert env["b_ok"] == "0" and env["a_ok"] == "1", env

    # What was queued before the update went through four resets and is
    # still there; it reaches the cloud.
    status = api.ok("GET", "/api/status")
    assert status["queue"]["queued"]["instances"] == 5, status["queue"]
    api.ok("POST", "/api/resume")
    wait_cloud_holds(cloud, uids(files))
