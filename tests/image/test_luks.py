"""PHI at rest (issue 15): the data partition is LUKS2, its key sealed to
the box's TPM 2.0 (swtpm under qemu) against PCR 7, unlocked at boot
without a prompt. Every test box has a TPM, so every image test runs on an
encrypted partition (the power-cut tests too); what a thief reads on the
disk after a power cut mid-push is checked in test_image.py
(test_unprovisioned_box_keeps_through_a_power_cut_what_a_site_file_then_drains),
and the first boot's conversion, which keeps what outpost-flash put on the
partition, and the same disk locked with another TPM in
test_boot_receive_and_upload_a_study. Here: a box without a TPM receives
onto its plain partition only when the site file allows it (and that site
file's `[console] allowed_hosts` is applied by nftables).
"""
import os

from appliance import PASSWORD, scan_disk, site_stick, storescu, study, wait_for

PATIENT_ID = "PHI-AT-REST-7f3a9c"


def test_a_box_without_tpm_receives_unencrypted_only_when_the_site_allows(
        boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port, tpm=False)
    box.start(usb=site_stick(str(tmp_path / "stick.img"), cloud))
    box.wait_log("event=uplink.ready")
    box.wait_log("outpost-grow-data: receiving=no reason=")
    assert "outpost-grow-data: encryption=none tpm=no" in box.log()
    api = box.api(PASSWORD)
    wait_for(lambda: api.ok("GET", "/api/status")["firmware"]["encryption"] is not None, 30,
             interval=1, what="the encryption record")
    enc = api.ok("GET", "/api/status")["firmware"]["encryption"]
    assert (enc["encrypted"], enc["tpm"], enc["receiving"]) == ("no", "no", "no"), enc
    h = box.health()
    assert h["checks"]["receiver"]["ok"] is False, h

    # The site file allows it (through the console): the receiver starts.
    # It also lets only 10.9.0.0/16 reach the console, which leaves out the
    # host (10.0.2.2 to the box): nftables itself drops the host's
    # connections, before the console could see and refuse them.
    files = {"ca.pem": open(cloud.pki.ca_file).read(), "hosts": "10.0.2.100\tcloud.outpost.test\n"}
    ini = open(os.path.join(str(tmp_path / "stick.img") + ".d", "outpost", "site.ini")).read()
    r = api.put("/api/site", {"site.ini": ini + "\n[security]\nallow_unencrypted = yes\n"
                              "[console]\nallowed_hosts = 10.9.0.0/16\n", "files": files})
    assert r.status == 202, r.body
    box.wait_log("event=receiver.ready")
    assert "outpost-grow-data: receiving=yes" in box.log()
    box.wait_log('outpost-console: firewall=443 from="10.9.0.0/16"')
    assert box.health() is None, "the console answered a host outside allowed_hosts"
    assert "event=console.refused" not in box.log(), "the console saw the connection"
    files = study(tmp_path, 5, patient_id=PATIENT_ID)
    r = storescu(box.dicom_port, files)
    assert r.returncode == 0 and r.stderr.count("Received Store Response (Success)") == 5
    # What the scan finds on a plain disk (so it would have found it above).
    box.power_cut()
    magic, phi = scan_disk(box.disk, PATIENT_ID)
    assert magic and phi
