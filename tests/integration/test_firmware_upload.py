"""PUT /api/firmware: a firmware bundle uploaded through the console
(docs/API.md), against the real uplink.

The body is streamed to upload/firmware.part beside the configuration,
then made durable and renamed upload/update.raucb, where the appliance's
outpost-update-upload.path unit installs it (tests/image/test_update.py
does that under qemu). Here: what lands on disk, what is refused before
the body is read, and what an interrupted or disk-filling upload leaves
(nothing).
"""
import base64
import hashlib
import os
import socket
import threading

from console import Api
from outpost import wait_for
from test_api import PASSWORD, audit, start

MIB = 1 << 20


def upload_dir(rx):
    return os.path.join(rx.workdir, "upload")


def listing(rx):
    d = upload_dir(rx)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def open_put(rx, length, password=PASSWORD, path="/api/firmware", expect=False, body=b""):
    """A connection that has sent a PUT's headers, and with them body
    (none by default), in one write."""
    host, port = rx.config["console"]["listen"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    # X-Outpost-Request: as the console's page sends (CSRF defence).
    head = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nX-Outpost-Request: 1\r\n"
            f"Content-Length: {length}\r\n")
    if password:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        head += f"Authorization: Basic {token}\r\n"
    if expect:
        head += "Expect: 100-continue\r\n"
    s.sendall((head + "\r\n").encode() + body)
    return s


def read_reply(s):
    """Everything the server sends until it closes (or 30 s)."""
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def send_quietly(s, data):
    """Sends what the server still takes (it may answer and close first)."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def test_a_bundle_is_streamed_to_disk_over_https_checked_and_audited(receivers, tmp_path):
    from cloud import TestPKI

    pki = TestPKI(tmp_path / "pki")
    rx, up, api, local = start(receivers, console={"tls_cert": pki.server.cert,
                                                    "tls_key": pki.server.key})
    https = Api(rx, password=PASSWORD, ca_file=pki.ca_file, timeout=120)
    bundle = os.urandom(24 * MIB)
    assert https.get("/api/status").status == 200  # Argon2's 19 MiB, once
    before = up.rss_peak_kb()
    r = https.put("/api/firmware", bundle)
    assert r.status == 202, r.body
    got = r.json()
    assert got["bytes"] == len(bundle)
    assert got["sha256"] == hashlib.sha256(bundle).hexdigest()
    assert listing(rx) == ["update.raucb"]
    with open(os.path.join(upload_dir(rx), "update.raucb"), "rb") as f:
        assert f.read() == bundle
    if not os.environ["OUTPOST_BUILD"].endswith("asan"):  # ASan keeps freed reads
        # Streamed, not held: the uplink's peak memory grew by far less
        # than the bundle.
        assert up.rss_peak_kb() - before < 8 * 1024
    (entry,) = audit(local, "firmware")
    assert entry["who"] == "admin" and got["sha256"] in entry["detail"]

    # While the installer has not taken it, another bundle waits.
    r = https.put("/api/firmware", b"x" * 100000)
    assert r.status == 409 and "/api/status" in r.json()["error"]
    assert os.path.getsize(os.path.join(upload_dir(rx), "update.raucb")) == len(bundle)

    # Taken: a small bundle (held, not streamed) lands the same way;
    # an empty one is refused.
    os.unlink(os.path.join(upload_dir(rx), "update.raucb"))
    assert https.put("/api/firmware", b"").status == 400
    small = os.urandom(1000)
    r = local.put("/api/firmware", small)
    assert r.status == 202 and r.json()["sha256"] == hashlib.sha256(small).hexdigest()
    assert listing(rx) == ["update.raucb"]
    assert [e["who"] for e in audit(local, "firmware")] == ["local", "admin"]


def test_refusals_come_before_the_body(receivers):
    rx, up, api, local = start(receivers)
    length = 50 * MIB
    for password, status in ((None, b"401"), ("wrong", b"401")):
        s = open_put(rx, length, password=password)
        reply = read_reply(s)  # answered and closed with no body sent
        s.close()
        assert reply.startswith(b"HTTP/1.1 " + status), reply
        assert b"Connection: close" in reply
    s = open_put(rx, 2 << 30)
    assert b"at most 1 GiB" in read_reply(s)
    s.close()
    # A client that sends its body anyway, before reading: the refusal
    # waits for it (the rest is read and dropped) instead of a reset.
    s = open_put(rx, 8 * MIB, password=None)
    sent = []
    sender = threading.Thread(target=lambda: sent.append(s.sendall(os.urandom(8 * MIB))))
    sender.start()
    sender.join(30)
    reply = read_reply(s)
    s.close()
    assert sent == [None] and reply.startswith(b"HTTP/1.1 401 "), reply
    # Only a bundle's body may be over 64 KiB.
    s = open_put(rx, 100000, path="/api/site")
    reply = read_reply(s)
    s.close()
    assert reply.startswith(b"HTTP/1.1 413 ") and b"at most 64 KiB" in reply
    assert listing(rx) == []

    # A client that asks first is told to go on, then sends.
    bundle = os.urandom(MIB)
    s = open_put(rx, len(bundle), expect=True)
    assert s.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(bundle)
    s.shutdown(socket.SHUT_WR)
    reply = read_reply(s)
    s.close()
    assert reply.startswith(b"HTTP/1.1 202 ")
    assert hashlib.sha256(bundle).hexdigest().encode() in reply
    assert listing(rx) == ["update.raucb"]
    assert up.running()


def test_a_body_sent_with_its_headers_waits_for_the_password_check(receivers):
    """The headers and the start of the body in one segment, as a slow
    link delivers them, while the password is checked (Argon2, first use):
    what comes meanwhile waits in the socket, and the bundle lands whole.
    (The uplink read on and cut the connection at 74 KiB held.)"""
    rx, up, api, local = start(receivers)
    bundle = os.urandom(4 * MIB)
    s = open_put(rx, len(bundle), body=bundle[:1 << 20])
    s.sendall(bundle[1 << 20:])
    s.shutdown(socket.SHUT_WR)
    reply = read_reply(s)
    s.close()
    assert reply.startswith(b"HTTP/1.1 202 "), reply[:300]
    with open(os.path.join(upload_dir(rx), "update.raucb"), "rb") as f:
        assert f.read() == bundle


def test_an_interrupted_upload_leaves_nothing(receivers):
    rx, up, api, local = start(receivers)
    s = open_put(rx, 10 * MIB)
    s.sendall(os.urandom(2 * MIB))
    part = os.path.join(upload_dir(rx), "firmware.part")
    wait_for(lambda: os.path.exists(part) and os.path.getsize(part) > 0, 10,
             what="the upload to begin")
    s.close()
    wait_for(lambda: "result=failed" in up.log() and listing(rx) == [], 10,
             what="the partial bundle to go")
    assert 'reason="the client went away"' in up.log()
    assert audit(local, "firmware") == []
    # The next upload is not blocked by it.
    r = api.put("/api/firmware", os.urandom(200000))
    assert r.status == 202 and listing(rx) == ["update.raucb"]


def test_an_upload_cut_by_a_crash_is_removed_when_the_uplink_starts(receivers):
    rx, up, api, local = start(receivers)
    s = open_put(rx, 10 * MIB)
    s.sendall(os.urandom(2 * MIB))
    part = os.path.join(upload_dir(rx), "firmware.part")
    wait_for(lambda: os.path.exists(part) and os.path.getsize(part) >= 2 * MIB, 10,
             what="the upload to begin")
    up.kill9()  # as a power cut: nothing is cleaned up
    s.close()
    assert listing(rx) == ["firmware.part"]
    up.start()
    assert listing(rx) == []
    assert "event=console.firmware result=removed" in up.log()
    r = api.put("/api/firmware", os.urandom(200000))
    assert r.status == 202 and listing(rx) == ["update.raucb"]


def test_a_disk_without_room_refuses_and_one_that_fills_keeps_nothing(tmpfs, receivers):
    """The upload directory on a 32 MiB disk, the receiver keeping 8 MiB."""
    rx, up, api, local = start(receivers, spool={"min_free_bytes": "8M"})
    os.symlink(tmpfs, upload_dir(rx))
    # 30 MiB would leave the receiver less than its 8 MiB.
    s = open_put(rx, 30 * MIB)
    reply = read_reply(s)
    s.close()
    assert reply.startswith(b"HTTP/1.1 507 ") and b"min_free_bytes" in reply

    # 20 MiB fits, until something else takes the disk meanwhile (the
    # receiver's spool, here a filler): the free space is checked as the
    # body is written, and the upload stops before it eats the receiver's
    # 8 MiB, not only when the disk is full.
    s = open_put(rx, 20 * MIB)
    s.sendall(os.urandom(4 * MIB))
    part = os.path.join(upload_dir(rx), "firmware.part")
    wait_for(lambda: os.path.getsize(part) >= 4 * MIB, 10, what="4 MiB written")
    with open(tmpfs / "filler", "wb") as f:
        f.write(b"\0" * 10 * MIB)  # 4 + 10 + the 16 to come: it would fit, but only just
    sender = threading.Thread(target=send_quietly, args=(s, os.urandom(16 * MIB)))
    sender.start()
    reply = read_reply(s)
    sender.join()
    s.close()
    assert reply.startswith(b"HTTP/1.1 507 ") and b"the disk filled up meanwhile" in reply
    assert b"min_free_bytes" in reply
    assert sorted(os.listdir(tmpfs)) == ["filler"]
    assert "reason=\"the receiver's reserve reached\"" in up.log()
    # Room again: it goes through.
    os.unlink(tmpfs / "filler")
    assert api.put("/api/firmware", os.urandom(5 * MIB)).status == 202
