"""The appliance image under qemu (make test-image): booted with OVMF under
TCG, the guest's DICOM and console ports forwarded to host loopback,
provisioned from a site file on a USB stick (a vfat image labelled
OUTPOST) or through the console. Each test boots its own copy of the image
(appliance.py).
"""
import re
import subprocess

import pydicom

from appliance import (DCMTK_ENV, PASSWORD, STATIC_ADDRESS, echo, no_http_answer,
                       scan_disk, site_files, site_stick, storescu, study, uids,
                       wait_cloud_holds, wait_for)
from disk import gpt

PATIENT_ID = "PHI-AT-REST-5c2e81"


# --- 1. boot, receive, upload ------------------------------------------------------------

def test_boot_receive_and_upload_a_study(boxes, cloud, tmp_path):
    # Written by outpost-flash with the site file, onto a bigger disk;
    # outpost-flash made the console's certificate and printed its
    # fingerprint: the box keeps it and prints the same one.
    site = tmp_path / "site"
    site.mkdir()
    for name, text in site_files(cloud).items():
        (site / name).write_text(text)
    box = boxes(cloud_port=cloud.https_port, bigger_disk="1G", flash=site)
    printed = re.search(r"sha256 fingerprint ([0-9A-F:]{95})", box.flash_output).group(1)
    box.start().wait_ready()
    log = box.log()
    assert "outpost-initramfs: root rootfs-a" in log
    # The first boot grew the data partition, then encrypted it (LUKS2, its
    # key sealed to the TPM) and kept what outpost-flash had put there.
    assert "outpost-grow-data: encryption=luks2 tpm=yes state=created partition=/dev/vda4" in log
    assert "outpost-provision: result=provisioned source=/data/upload/site" in log
    enc = box.api(PASSWORD).ok("GET", "/api/status")["firmware"]["encryption"]
    assert (enc["encrypted"], enc["tpm"], enc["receiving"]) == ("yes", "yes", "yes"), enc
    # Every call below is HTTPS, pinned to the printed fingerprint.
    assert f"outpost-console: tls_sha256={printed} certificate=kept" in log
    assert box.fingerprint() == printed.replace(":", "").lower()
    # Two users: the receiver outpost-dicom (989) in the spool's group
    # (989), the uplink outpost (997, the uid release 0.1.0 gave it).
    assert re.search(r"event=receiver\.ready .* uid=989 gid=989\b", log), log[-3000:]
    assert re.search(r"event=uplink\.ready .* uid=997 gid=997\b", log), log[-3000:]
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
    # The cloud may hold the last instance a moment before the uplink has
    # counted its answer.
    wait_for(lambda: api.ok("GET", "/api/status")["counters"]["uploaded_instances"] == 50, 30,
             interval=1, what="50 instances counted as uploaded")
    assert api.ok("GET", "/api/status")["link"]["state"] == "up"

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

    # The disk in a box with another TPM (or this one cleared): locked, said
    # so, nothing starts, nothing is formatted.
    box.power_cut()
    box.new_tpm()
    box.start()
    box.wait_log("outpost-grow-data: encryption=luks2 tpm=yes state=locked reason=\"the TPM "
                 "does not unseal the data partition's key")
    assert box.health() is None


# --- 2. power cut; 3. unprovisioned, then provisioned; 4. only DICOM and the console -------

def test_unprovisioned_box_keeps_through_a_power_cut_what_a_site_file_then_drains(
        boxes, cloud, tmp_path):
    box = boxes(cloud_port=cloud.https_port)
    # An empty data partition (as on a board whose image leaves it blank):
    # the box makes its file system at first boot.
    offset, _ = gpt(box.disk)["data"]
    with open(box.disk, "r+b") as f:
        f.seek(offset)
        f.write(bytes(1 << 20))
    box.start().wait_ready()
    assert "outpost-grow-data: filesystem=/dev/vda4 created" in box.log()
    assert re.search(r"outpost-console: tls_sha256=[0-9A-F:]{95} certificate=made", box.log())
    made = box.fingerprint()
    assert 'outpost-provision: state=unprovisioned reason="no site file yet' in box.log()
    h = box.health()
    assert h["healthy"] is True and h["cloud"]["state"] == "unprovisioned", h

    # Unprovisioned, it receives and buffers; the power goes mid-push.
    files = study(tmp_path, 200, patient_id=PATIENT_ID)
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
    assert not cloud.instances()
    # What a thief reads on the disk now: the data partition is LUKS2, its
    # key sealed to this box's TPM; no DICOM file, no patient's ID or name
    # (test_luks.py shows the same scan finds them on a plain partition).
    assert "outpost-grow-data: encryption=luks2 tpm=yes state=created" in box.log()
    magic, phi = scan_disk(box.disk, PATIENT_ID)
    assert not magic, f"DICOM files readable on the disk at {sorted(magic)[:5]}"
    assert not phi, "the patient's ID or name is readable on the disk"

    # The same disk boots with a site file: it moves the receiver to 11112
    # and gives the site's own network settings, static addresses without
    # DHCP (the file sorts before the image's 20-dhcp.network, so it wins).
    # Every acknowledged instance reaches the cloud, nothing else.
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
    assert "outpost-grow-data: encryption=luks2 tpm=yes state=unlocked" in box.log()
    wait_cloud_holds(cloud, set(acked))
    assert set(cloud.instances()) <= set(by_path.values())  # no half instance
    assert box.api(port=box.static_port).get("/healthz", auth=False).status == 200

    # The receiver listens on 11112 (the box's own C-ECHO on loopback says
    # so), yet the firewall lets only 104 and 443 in.
    assert "event=receiver.ready ae_title=OUTPOST bind=0.0.0.0 port=11112" in box.log()
    h = box.health()
    assert h["checks"]["receiver"]["ok"] is True, h
    r = echo(box.extra_port, timeout=90)
    assert r.returncode != 0, r.stdout + r.stderr
    # The console: HTTPS only, with the certificate the box made at its
    # first boot (its data partition was empty) and printed; no plain HTTP
    # from the LAN, neither on 443 nor on the old 8080.
    assert box.fingerprint() == made
    assert re.search(r"outpost-console: tls_sha256=[0-9A-F:]{95} certificate=kept", box.log())
    no_http_answer(box.console_port)
    no_http_answer(box.plain_port)

