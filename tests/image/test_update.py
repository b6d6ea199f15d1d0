"""Firmware updates under qemu (make test-image): a signed RAUC bundle from a
USB stick, then a failing one that the health gate rolls back; the spool
survives both.

The bundles are the image's own root slot (make image keeps it beside the
image as .rootfs.sqfs) with another firmware version stamped in, signed
with the keys the image trusts ($OUTPOST_KEYS, make keys). The failing
one (v3) has a receiver that cannot start.
"""
from appliance import (INSTALL_TIMEOUT, REFUSED_UNSIGNED, firmware, grubenv,
                       queue_then_install, site_stick, uids, wait_cloud_holds)


def test_an_update_then_a_failing_update_that_rolls_back(boxes, cloud, bundle, tmp_path):
    v2, v3 = bundle("0.2.0-test"), bundle("0.3.0-test")
    box = boxes(cloud_port=cloud.https_port)

    # v1 takes v2 from the stick once it is healthy, while it receives:
    # studies queued (uploads paused) before the update are there after it.
    api, files, at = queue_then_install(box, cloud, tmp_path, v2, "0.2.0-test", "b", 10)
    at = box.wait_log("outpost-initramfs: root rootfs-b", at)
    at = box.wait_log("outpost-health-gate: result=good slot=b version=0.2.0-test", at)
    # The stick is still in: v2 is running, so it is left alone.
    box.wait_log('outpost-update: result=skipped version=0.2.0-test reason="already running"',
                 at)
    fw = firmware(box)
    assert fw["booted"]["slot"] == "b" and fw["booted"]["version"] == "0.2.0-test", fw
    assert fw["last_update"]["result"] == "installed", fw
    assert fw["last_update"]["version"] == "0.2.0-test", fw
    env = grubenv(box)
    assert env["ORDER"] == "b a" and env["b_ok"] == "1" and env["b_trial"] == "0", env
    status = api.ok("GET", "/api/status")
    assert status["queue"]["queued"]["instances"] == 10, status["queue"]
    api.ok("POST", "/api/resume")
    wait_cloud_holds(cloud, uids(files))
    box.stop()

    # v3's receiver cannot start: its health check fails, the box marks it
    # bad and goes back to v2 by itself, and says so. The stick's site file
    # is not signed: the box, provisioned, keeps its own (its password).
    box.start(usb=site_stick(str(tmp_path / "stick3.img"), cloud, bundle=v3,
                             password="a-stick-from-the-car-park"))
    at = box.wait_log("outpost-update: result=installed version=0.3.0-test slot=a",
                      timeout=INSTALL_TIMEOUT)
    assert REFUSED_UNSIGNED in box.log()
    assert "outpost-provision: result=provisioned" not in box.log()
    at = box.wait_log("outpost-initramfs: root rootfs-a", at)
    at = box.wait_log("outpost-health-gate: result=failed slot=a version=0.3.0-test", at)
    at = box.wait_log("outpost-initramfs: root rootfs-b", at)
    at = box.wait_log("outpost-health-gate: slot=b version=0.2.0-test trial=no", at)
    box.wait_log('outpost-update: result=skipped version=0.3.0-test reason="rolled back before',
                 at)
    fw = firmware(box)  # (with PASSWORD: the site's, not the stick's)
    assert box.api("a-stick-from-the-car-park").get("/api/status").status == 401
    assert fw["booted"]["slot"] == "b" and fw["booted"]["version"] == "0.2.0-test", fw
    last = fw["last_update"]
    assert last["result"] == "rolled-back" and last["version"] == "0.3.0-test", last
    assert "receiver" in last["reason"], last
    env = grubenv(box)
    assert env["a_ok"] == "0" and env["b_ok"] == "1", env
