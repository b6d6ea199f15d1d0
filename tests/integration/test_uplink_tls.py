"""outpost-uplink and the cloud's certificates: real nginx serving the bad
certificates of the test PKI (tests/lib/cloud.py), a public-key pin, and
mutual TLS.

A certificate problem is the link's fault, never the instances': for every
refusal nothing reaches the cloud (Orthanc holds nothing, nginx logs no
request), the rows stay queued with no attempt counted, the uplink says
why in words a field engineer can act on, it probes with back-off (a few
handshakes, not a hot loop), and once the certificate (or the pin) is put
right it delivers everything by itself.
"""
import os
import signal
import subprocess
import time

import pytest

from faultproxy import drain
from integration_fixtures import spooled
from outpost import BUILD, wait_for

WINDOW = 4  # seconds the uplink is watched failing


@pytest.fixture
def cloud(shared_cloud, pki):
    """The module's cloud, put back to the good certificate and no client
    certificate check after each test."""
    yield shared_cloud
    if shared_cloud.server_cert != pki.server or shared_cloud.client_ca is not None:
        shared_cloud.restart_with(server_cert=pki.server, client_ca=None)


def spooled_uids(receivers, tmp_path, cloud_keys, n=3):
    """A started receiver holding a fresh study of n small instances, and
    their SOP Instance UIDs."""
    rx, rows = spooled(receivers, tmp_path, cloud_keys, n)
    return rx, {row["sop_instance_uid"] for row in rows}


def settled_rows(rx):
    """The rows once no request is in flight (a probe may be at the moment
    of looking: its rows are 'sending' for a few milliseconds)."""
    return wait_for(lambda: (lambda rows: rows if all(r["state"] != "sending" for r in rows)
                             else None)(rx.rows()), 10, what="no request in flight")


def delivered(rx, cloud, up, uids):
    drain(rx, cloud, up)
    rows = rx.rows()
    assert {r["state"] for r in rows} == {"sent"}
    held = set(cloud.instances())
    assert uids <= held, uids - held


def pin_of(cert_path):
    r = subprocess.run([os.path.join(BUILD, "outpost-uplink"), "--pin", cert_path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


# --- refusals ---------------------------------------------------------------------

REFUSALS = {
    # case: (the words the uplink must say, in its log and the rows' last_error)
    "untrusted": ["not correctly signed by the trusted CA"],
    "otherhost": ["CN", "does not match"],
    "expired": ["expired"],
    "not_yet_valid": ["future"],
    "pin": ["pin"],
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_server_certificate_sends_nothing_and_keeps_the_rows(
        receivers, tmp_path, cloud, pki, case):
    keys = {"url": cloud.url, "ca_file": pki.ca_file}
    if case == "pin":
        # The right certificate, but the pin is another key's.
        keys["pin_sha256"] = pki.pin_b64(pki.server_cert_for("otherhost").cert)
    else:
        cloud.restart_with(server_cert={"untrusted": pki.untrusted_server,
                                        "otherhost": lambda: pki.server_cert_for("otherhost"),
                                        "expired": pki.expired_server,
                                        "not_yet_valid": pki.not_yet_valid_server}[case]())
    rx, uids = spooled_uids(receivers, tmp_path, keys)
    posts_before = len(cloud.requests())
    up = rx.uplink().start()
    time.sleep(WINDOW)

    # Nothing sent.
    assert not uids & set(cloud.instances())
    assert len(cloud.requests()) == posts_before, "a request went out over a refused link"
    # The rows wait, untouched: queued, no attempt counted, the reason kept.
    rows = settled_rows(rx)
    assert [(r["state"], r["attempts"]) for r in rows] == [("queued", 0)] * len(rows)
    words = REFUSALS[case]
    for r in rows:
        assert r["last_error"] and all(w in r["last_error"] for w in words), r["last_error"]
    # The log says why, on the link's state line.
    down = [line for line in up.log().splitlines()
            if "event=uplink.link state=down" in line and all(w in line for w in words)]
    assert down, up.log()
    assert "event=uplink.quarantine" not in up.log()
    # Probed with back-off: a few handshakes in the window, not a hot loop.
    probes = up.log().count("event=uplink.backoff")
    assert 2 <= probes <= 2 + WINDOW, up.log()
    assert up.running()

    # Put right, it delivers by itself (a new pin needs a reload).
    if case == "pin":
        rx.reconfigure(cloud={"pin_sha256": pki.pin_b64(pki.server.cert)})
        up.signal(signal.SIGHUP)
    else:
        cloud.restart_with(server_cert=pki.server)
    delivered(rx, cloud, up, uids)
    assert all(r["attempts"] == 1 for r in rx.rows())


@pytest.mark.parametrize("form", ["bare", "sha256//"])
def test_right_pin_is_accepted(receivers, tmp_path, cloud, pki, form):
    pin = pin_of(pki.server.cert)
    assert pin == pki.pin_b64(pki.server.cert)  # outpost-uplink --pin agrees with Python
    value = pin if form == "bare" else "sha256//" + pin
    rx, uids = spooled_uids(receivers, tmp_path,
                       {"url": cloud.url, "ca_file": pki.ca_file, "pin_sha256": value})
    up = rx.uplink().start()
    delivered(rx, cloud, up, uids)
    assert not [line for line in up.log().splitlines() if "event=uplink.link state=down" in line
                and "not yet connected" not in line], up.log()


# --- mutual TLS -------------------------------------------------------------------

def test_mutual_tls_with_the_client_certificate(receivers, tmp_path, cloud, pki):
    cloud.restart_with(client_ca=pki.client_ca_file)
    client = pki.client()
    rx, uids = spooled_uids(receivers, tmp_path, {
        "url": cloud.url, "ca_file": pki.ca_file,
        "client_cert": client.cert, "client_key": client.key})
    posts_before = len(cloud.requests())
    up = rx.uplink().start()
    delivered(rx, cloud, up, uids)
    posts = cloud.requests()[posts_before:]
    assert posts and all(p["ssl_client_verify"] == "SUCCESS" for p in posts)
    assert all("CN=outpost-test-device" in p["ssl_client_s_dn"] for p in posts)


@pytest.mark.parametrize("which", ["none", "untrusted"])
def test_mutual_tls_refused_client_certificate_quarantines_nothing(
        receivers, tmp_path, cloud, pki, which):
    # nginx completes the handshake and answers HTTP 400 (text/html): "No
    # required SSL certificate was sent" / "The SSL certificate error".
    cloud.restart_with(client_ca=pki.client_ca_file)
    keys = {"url": cloud.url, "ca_file": pki.ca_file, "retry_max_delay": 1}
    if which == "untrusted":
        rogue = pki.untrusted_client()
        keys.update(client_cert=rogue.cert, client_key=rogue.key)
    rx, uids = spooled_uids(receivers, tmp_path, keys)
    posts_before = len(cloud.requests())
    up = rx.uplink().start()
    # Each instance refused more often than it takes to quarantine one the
    # cloud keeps not confirming (5): six attempts counted if the uplink
    # retries them, or six probes (each carrying the whole batch) if it
    # pauses with an alarm.
    wait_for(lambda: max(r["attempts"] for r in rx.rows()) >= 6 or (
        "event=uplink.alarm" in up.log() and len(cloud.requests()[posts_before:]) >= 6),
        40, what="six refusals")
    time.sleep(0.5)  # the last answer settled
    rows = rx.rows()
    assert not [r for r in rows if r["state"] == "quarantined"], rows
    assert "event=uplink.quarantine" not in up.log()
    assert not uids & set(cloud.instances())
    posts = cloud.requests()[posts_before:]
    assert posts and {p["status"] for p in posts} == {400}
    verify = {p["ssl_client_verify"].split(":")[0] for p in posts}
    assert verify == ({"NONE"} if which == "none" else {"FAILED"})
    assert "HTTP 400" in up.log()

    # Given the right certificate (and a reload), it delivers by itself.
    client = pki.client()
    rx.reconfigure(cloud={"client_cert": client.cert, "client_key": client.key})
    up.signal(signal.SIGHUP)
    delivered(rx, cloud, up, uids)



def test_a_reload_during_a_handshake_leaves_it_its_settings(receivers, tmp_path, pki):
    """SIGHUP replaces the TLS settings while a connection is still in its
    handshake with the old ones: they must stay until it ends. (They were
    freed at once, and the end of the handshake read them: ASan caught it
    once in the pin test above; under ASan this test catches it every
    time.)"""
    import socket
    import ssl

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        port = server.getsockname()[1]
        rx, uids = spooled_uids(receivers, tmp_path, {
            "url": f"https://localhost:{port}/dicom-web", "ca_file": pki.ca_file,
            "timeout": 30, "connections": 1})
        up = rx.uplink().start()
        server.settimeout(15)
        conn, _ = server.accept()
        conn.settimeout(15)
        # The ClientHello has come; the handshake waits for the answer.
        assert conn.recv(5, socket.MSG_PEEK)[:1] == b"\x16"
        up.signal(signal.SIGHUP)
        wait_for(lambda: "event=config.reload result=ok" in up.log(), 10, what="the reload")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server.cert, pki.server.key)
        tls = ctx.wrap_socket(conn, server_side=True)  # the handshake completes
        assert tls.recv(4096).startswith(b"POST ")  # the request, after it
        tls.close()
        wait_for(lambda: "event=uplink.link state=down" in up.log(), 15,
                 what="the connection's end")
        assert up.running()
        assert not set(cloud_rows_sent(rx)), "nothing was answered"
    finally:
        server.close()


def cloud_rows_sent(rx):
    return [r["sop_instance_uid"] for r in rx.rows() if r["state"] == "sent"]
