"""The test cloud itself (tests/lib/cloud.py), checked with Debian's curl.

Orthanc + DICOMweb behind nginx must store what STOW-RS sends, fail the way
a cloud fails (502 when Orthanc is down, connection refused when nginx is),
and refuse the certificates and credentials the uplink must never accept.
What the cloud holds is read from Orthanc's REST API.

These tests also pin down the Orthanc 1.10.1 + DICOMweb 1.7 behaviour that
docs/notes-orthanc.md describes (refused and dropped instances), so that an
Orthanc upgrade that changes it is noticed.
"""
import hashlib
import io
import json
import os
import socket
import ssl
import subprocess

import pydicom
import pytest
from pydicom.uid import generate_uid

from cloud import Cloud, curl_args, multipart_related
from outpost import PYDICOM_FILES, dataset_bytes, wait_for

CT = os.path.join(PYDICOM_FILES, "CT_small.dcm")
MR = os.path.join(PYDICOM_FILES, "MR_small.dcm")

REFERENCED = "00081199"
FAILED = "00081198"
SOP_INSTANCE = "00081155"


@pytest.fixture(scope="module")
def cloud(shared_cloud):
    """One cloud for the tests that leave its configuration as they found it."""
    return shared_cloud


@pytest.fixture
def clouds(tmp_path, pki):
    """Makes clouds with their own configuration; stops them all by PID."""
    made = []

    def make(name="cloud", **kw):
        c = Cloud(tmp_path / name, pki=pki, **kw).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def curl(cloud, *args, url=None, body=None, content_type=None, tmp=None):
    """curl -i against the cloud (trusting its CA); returns (rc, status, headers, body, stderr)."""
    cmd = curl_args(cloud, "-i", *args)
    if body is not None:
        path = os.path.join(tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(body)
        cmd += ["-H", f"Content-Type: {content_type}", "--data-binary", "@" + path]
    cmd.append(url or cloud.stow_url)
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    status, headers, payload = None, {}, b""
    if r.stdout:
        head, _, payload = r.stdout.partition(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100"):  # interim response
            head, _, payload = payload.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return r.returncode, status, headers, payload, r.stderr.decode(errors="replace")


def stow(cloud, tmp, files_or_bytes, *args):
    parts = [open(p, "rb").read() if isinstance(p, str) else p for p in files_or_bytes]
    body, ctype = multipart_related(parts)
    return curl(cloud, *args, body=body, content_type=ctype, tmp=tmp)


def sop_uids(response_json, tag):
    return [item[SOP_INSTANCE]["Value"][0]
            for item in response_json.get(tag, {}).get("Value", [])]


def instance(patient_id="TEST-HARNESS"):
    """A new instance (CT_small with fresh UIDs): (bytes, SOP Instance UID)."""
    ds = pydicom.dcmread(CT)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id
    out = io.BytesIO()
    ds.save_as(out, write_like_original=True)
    return out.getvalue(), ds.SOPInstanceUID


# --- storing -------------------------------------------------------------------

def test_stow_two_samples_in_one_request_are_stored_as_sent(cloud, tmp_path):
    rc, status, headers, body, err = stow(cloud, tmp_path, [CT, MR])
    assert rc == 0, err
    assert status == 200, body
    assert headers["content-type"] == "application/dicom+json"
    answer = json.loads(body)
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in (CT, MR)]
    assert sorted(sop_uids(answer, REFERENCED)) == sorted(uids)
    assert sop_uids(answer, FAILED) == []

    held = cloud.instances()
    for path, uid in zip((CT, MR), uids):
        assert uid in held
        stored = cloud.instance_file(uid)
        assert dataset_bytes(stored) == dataset_bytes(path)
    posts = cloud.requests("POST")
    assert posts[-1]["status"] == 200 and posts[-1]["upstream_status"] == "200"


def test_the_same_instance_twice_is_one_copy(cloud, tmp_path):
    data, uid = instance()
    before = cloud.instance_count()
    for _ in range(2):
        rc, status, _, body, err = stow(cloud, tmp_path, [data])
        assert (rc, status) == (0, 200), err
        assert sop_uids(json.loads(body), REFERENCED) == [uid]
    assert cloud.instance_count() == before + 1


def test_keep_alive_and_expect_100_continue_through_nginx(cloud, tmp_path):
    a, uid_a = instance()
    b, uid_b = instance()
    paths = []
    for name, data in (("a", a), ("b", b)):
        body, ctype = multipart_related([data], boundary="outpost-test-boundary")
        paths.append(str(tmp_path / name))
        with open(paths[-1], "wb") as f:
            f.write(body)
    # One curl, two requests: the second reuses the connection. No
    # "-H Expect:" here: nginx answers 100-continue itself.
    cmd = ["curl", "-sS", "-v", "--cacert", cloud.ca_file, "-o", "/dev/null",
           "-H", f"Content-Type: {ctype}", "-H", "Expect: 100-continue",
           "--data-binary", "@" + paths[0], cloud.stow_url, "--next",
           "--cacert", cloud.ca_file, "-o", "/dev/null", "-H", f"Content-Type: {ctype}",
           "--data-binary", "@" + paths[1], cloud.stow_url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "< HTTP/1.1 100 Continue" in r.stderr
    assert "Re-using existing connection" in r.stderr
    posts = cloud.requests("POST")[-2:]
    assert [p["status"] for p in posts] == [200, 200]
    assert len(cloud.connections(posts)) == 1
    assert [p["connection_requests"] for p in posts] == [1, 2]
    assert posts[0]["expect"] == "100-continue"
    held = cloud.instances()
    assert uid_a in held and uid_b in held


def test_idle_keep_alive_connection_is_closed_by_nginx(cloud):
    cloud.restart_with(keepalive_timeout=1)
    try:
        ctx = ssl.create_default_context(cafile=cloud.ca_file)
        with socket.create_connection(("localhost", cloud.https_port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /dicom-web/studies HTTP/1.1\r\nHost: localhost\r\n\r\n")
                s.settimeout(30)
                got = b""
                while b"\r\n\r\n" not in got:
                    got += s.recv(4096)
                assert got.startswith(b"HTTP/1.1 200")
                assert b"Connection: keep-alive" in got
                # Then nothing more to read until nginx closes the idle connection.
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
    finally:
        cloud.restart_with(keepalive_timeout=5)


# --- the cloud down ------------------------------------------------------------

def test_502_while_orthanc_is_down_then_stored_again(cloud, tmp_path):
    data, uid = instance()
    cloud.stop_orthanc()
    try:
        rc, status, headers, body, err = stow(cloud, tmp_path, [data])
        assert rc == 0, err
        assert status == 502
        assert headers["content-type"] == "text/html"
        assert b"502 Bad Gateway" in body
    finally:
        cloud.start_orthanc()
    assert uid not in cloud.instances()
    rc, status, _, _, err = stow(cloud, tmp_path, [data])
    assert (rc, status) == (0, 200), err
    assert uid in cloud.instances()


def test_connection_refused_while_nginx_is_down(cloud, tmp_path):
    cloud.stop_nginx()
    try:
        rc, status, _, _, err = stow(cloud, tmp_path, [open(CT, "rb").read()])
        assert rc == 7, err  # CURLE_COULDNT_CONNECT
        assert status is None
    finally:
        cloud.start_nginx()
    rc, status, _, _, err = curl(cloud, url=cloud.url + "/studies")
    assert (rc, status) == (0, 200), err


# --- certificates ----------------------------------------------------------------

@pytest.mark.parametrize("which, message", [
    ("expired", "certificate has expired"),
    ("otherhost", "no alternative certificate subject name matches"),
    ("untrusted", "unable to get local issuer certificate"),
])
def test_curl_refuses_bad_server_certificates(cloud, pki, which, message):
    bad = {"expired": pki.expired_server, "otherhost": lambda: pki.server_cert_for("otherhost"),
           "untrusted": pki.untrusted_server}[which]()
    cloud.restart_with(server_cert=bad)
    try:
        rc, status, _, _, err = curl(cloud, url=cloud.url + "/studies")
        assert rc == 60, err  # CURLE_PEER_FAILED_VERIFICATION
        assert message in err
        # The server itself works: only the certificate is wrong.
        rc, status, _, _, err = curl(cloud, "-k", url=cloud.url + "/studies")
        assert (rc, status) == (0, 200), err
    finally:
        cloud.restart_with(server_cert=pki.server)
    rc, status, _, _, err = curl(cloud, url=cloud.url + "/studies")
    assert (rc, status) == (0, 200), err


def test_public_key_pin(cloud, pki):
    assert pki.pin(pki.server.cert) == "sha256//" + pki.pin_b64(pki.server.cert)
    assert cloud.server_pin == pki.pin(pki.server.cert)
    rc, status, _, _, err = curl(cloud, "--pinnedpubkey", cloud.server_pin,
                                 url=cloud.url + "/studies")
    assert (rc, status) == (0, 200), err
    other = pki.pin(pki.server_cert_for("otherhost").cert)
    rc, _, _, _, err = curl(cloud, "--pinnedpubkey", other, url=cloud.url + "/studies")
    assert rc == 90, err  # CURLE_SSL_PINNEDPUBKEYNOTMATCH


def test_mutual_tls(clouds, pki, tmp_path):
    c = clouds(client_ca=pki.client_ca_file)
    url = c.url + "/studies"
    # nginx completes the handshake without a client certificate and answers
    # HTTP 400 (not a TLS alert).
    rc, status, _, body, err = curl(c, url=url)
    assert (rc, status) == (0, 400), err
    assert b"No required SSL certificate was sent" in body
    rogue = pki.untrusted_client()
    rc, status, _, body, err = curl(c, "--cert", rogue.cert, "--key", rogue.key, url=url)
    assert (rc, status) == (0, 400), err
    assert b"The SSL certificate error" in body
    good = pki.client()
    rc, status, _, _, err = stow(c, tmp_path, [CT], "--cert", good.cert, "--key", good.key)
    assert (rc, status) == (0, 200), err
    assert pydicom.dcmread(CT).SOPInstanceUID in c.instances()
    entry = c.requests("POST")[-1]
    assert entry["ssl_client_verify"] == "SUCCESS"
    assert "CN=outpost-test-device" in entry["ssl_client_s_dn"]


# --- authentication --------------------------------------------------------------

def test_basic_auth(clouds, tmp_path):
    c = clouds(basic_auth=("outpost", "s3cret"))
    rc, status, headers, _, err = stow(c, tmp_path, [CT])
    assert (rc, status) == (0, 401), err
    assert headers["www-authenticate"].startswith("Basic ")
    rc, status, _, _, err = stow(c, tmp_path, [CT], "-u", "outpost:wrong")
    assert (rc, status) == (0, 401), err
    assert c.instance_count() == 0
    rc, status, _, _, err = stow(c, tmp_path, [CT], "-u", "outpost:s3cret")
    assert (rc, status) == (0, 200), err
    assert c.instance_count() == 1
    assert c.requests("POST")[-1]["remote_user"] == "outpost"


def test_bearer_auth(clouds, tmp_path):
    c = clouds(bearer_token="tok-123")
    rc, status, headers, _, err = stow(c, tmp_path, [CT])
    assert (rc, status) == (0, 401), err
    assert headers["www-authenticate"].startswith("Bearer ")
    rc, status, _, _, err = stow(c, tmp_path, [CT], "-H", "Authorization: Bearer nope")
    assert (rc, status) == (0, 401), err
    assert c.instance_count() == 0
    rc, status, _, _, err = stow(c, tmp_path, [CT], "-H", "Authorization: Bearer tok-123")
    assert (rc, status) == (0, 200), err
    assert c.instance_count() == 1


# --- how Orthanc 1.10.1 + DICOMweb 1.7 answer refusals (docs/notes-orthanc.md) ---

def test_refused_instance_is_in_neither_sequence_and_so_are_the_parts_after_it(
        cloud, tmp_path):
    good, good_uid = instance()
    refused, refused_uid = instance("REFUSE-ME")
    after, after_uid = instance()
    rc, status, _, body, err = stow(cloud, tmp_path, [good, refused, after])
    assert (rc, status) == (0, 200), err
    answer = json.loads(body)
    assert sop_uids(answer, REFERENCED) == [good_uid]
    assert sop_uids(answer, FAILED) == []
    held = cloud.instances()
    assert good_uid in held
    assert refused_uid not in held
    assert after_uid not in held  # dropped with the refused part, not reported
    assert "refused by the Outpost test cloud" in cloud.orthanc_log_text()


def test_dropped_instance_is_reported_stored_but_is_not(cloud, tmp_path):
    dropped, uid = instance("DROP-ME")
    rc, status, _, body, err = stow(cloud, tmp_path, [dropped])
    assert (rc, status) == (0, 200), err
    assert sop_uids(json.loads(body), REFERENCED) == [uid]
    assert uid not in cloud.instances()


def test_part_with_another_content_type_is_skipped_silently(cloud, tmp_path):
    data, uid = instance()
    body = (b"--B\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--B--\r\n")
    rc, status, _, payload, err = curl(
        cloud, body=body, content_type='multipart/related; type="application/dicom"; boundary=B',
        tmp=tmp_path)
    assert (rc, status) == (0, 200), err
    answer = json.loads(payload)
    assert sop_uids(answer, REFERENCED) == [] and sop_uids(answer, FAILED) == []
    assert uid not in cloud.instances()


def test_pids_are_ours_and_stop_ends_them(clouds):
    c = clouds()
    pids = c.pids()
    assert set(pids) == {"orthanc", "nginx"}
    for pid in pids.values():
        with open(f"/proc/{pid}/status") as f:
            ppid = [line.split()[1] for line in f if line.startswith("PPid:")][0]
        assert int(ppid) == os.getpid()
    c.stop()
    assert c.pids() == {}
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids.values()), 10,
             what="the cloud's processes to be gone")


def test_hung_cloud_gives_504_yet_may_store_and_full_cloud_stores_nothing(clouds, tmp_path):
    c = clouds(upstream_timeout=1)
    # A paused Orthanc: nginx times out (504), but the request already sits
    # in Orthanc's socket, and Orthanc stores it once resumed.
    data, uid = instance()
    c.pause_orthanc()
    try:
        rc, status, _, body, err = stow(c, tmp_path, [data])
        assert (rc, status) == (0, 504), err
    finally:
        c.resume_orthanc()
    wait_for(lambda: uid in c.instances(), 30, what="the timed-out instance to be stored")

    # A full cloud: no room for a new patient. STOW-RS answers 200 and lists
    # the instance in neither sequence (DICOMweb 1.7; docs/notes-orthanc.md).
    c.reconfigure_orthanc(MaximumPatientCount=1)
    c.protect_all_patients()
    other, other_uid = instance("ANOTHER-PATIENT")
    rc, status, _, body, err = stow(c, tmp_path, [other])
    assert (rc, status) == (0, 200), err
    answer = json.loads(body)
    assert sop_uids(answer, REFERENCED) == [] and sop_uids(answer, FAILED) == []
    assert other_uid not in c.instances()
    assert "The file storage is full" in c.orthanc_log_text()
    assert c.instance_md5(uid) == hashlib.md5(data).hexdigest()
