"""A DICOM destination's faults, seen through the uplink (the sender's own
answers are test_dicom_send.py's): what each does to the delivery -
retried with an attempt counted, quarantined with the peer's status and
comment, or back to the queue with the link down - and that nothing is
lost. Real storescp where it can misbehave on demand (--abort-during,
--refuse; no +xa for an unacceptable syntax), the raw-PDU fault peer for
statuses no program answers on demand (0xA700, 0xC000).
"""
import os

import pytest

import dicomgen
from faultpeer import FaultPeer
from outpost import PYDICOM_FILES, storescu, wait_for
from test_dicom_send import PlainStorescp

JPEG_LS = os.path.join(PYDICOM_FILES, "MR_small_jpeg_ls_lossless.dcm")


def routed_to(receivers, port, **dest):
    """A receiver whose every instance goes to one dicom destination at
    port (no cloud), its uplink started."""
    keys = {"type": "dicom", "host": "127.0.0.1", "port": port, "called_ae": "PEER",
            "timeout": 5, "retry_max_delay": 1}
    keys.update(dest)
    rx = receivers(**{"destination peer": keys},
                   **{"route all": {"when": "SOPInstanceUID=*", "to": "peer"}}).start()
    rx.up = rx.uplink().start()
    return rx


def delivery(rx):
    with rx.db() as con:
        return [dict(zip(("state", "attempts", "last_error"), r)) for r in con.execute(
            "SELECT state, attempts, last_error FROM deliveries WHERE destination = 'peer'")]


def send(tmp_path, rx, n=2, files=None, flags=()):
    files = files or dicomgen.make_ct_study(str(tmp_path / "study"), n, rows=32, cols=32)
    r = storescu(rx.port, files, flags=flags)
    assert r.returncode == 0, r.stderr
    return files


@pytest.mark.parametrize("status,state", [(0xA700, "queued"), (0xC000, "quarantined")])
def test_a_failure_status(tmp_path, receivers, status, state):
    with FaultPeer(status=status, comment="the peer says no") as peer:
        rx = routed_to(receivers, peer.port)
        send(tmp_path, rx)
        if state == "queued":  # out of resources: tried again, attempts counted
            wait_for(lambda: all(d["attempts"] >= 2 for d in delivery(rx)), 30,
                     what="two attempts each")
            assert {d["state"] for d in delivery(rx)} <= {"queued", "sending"}
            assert any("event=uplink.retry" in line and line.endswith("dest=peer")
                       for line in rx.up.log().splitlines())
        else:  # refused for good: quarantined with the status and the comment
            wait_for(lambda: {d["state"] for d in delivery(rx)} == {"quarantined"}, 30,
                     what="quarantine")
            for d in delivery(rx):
                assert "0xC000" in d["last_error"] and "the peer says no" in d["last_error"]
                assert d["attempts"] == 1
        assert len(rx.rows()) == 2  # nothing lost


def test_the_peer_aborts_mid_instance(tmp_path, receivers):
    scp = PlainStorescp(str(tmp_path), "--abort-during")
    try:
        rx = routed_to(receivers, scp.port)
        send(tmp_path, rx, n=1)
        wait_for(lambda: any(d["attempts"] >= 2 for d in delivery(rx)), 30,
                 what="the aborted instance to be tried again")
        d = delivery(rx)[0]
        assert d["state"] in ("queued", "sending") and d["last_error"]
    finally:
        scp.stop()


def test_the_peer_refuses_the_association(tmp_path, receivers):
    scp = PlainStorescp(str(tmp_path), "--refuse")
    try:
        rx = routed_to(receivers, scp.port)
        send(tmp_path, rx, n=2)
        wait_for(lambda: any("event=uplink.link state=down" in line and line.endswith("dest=peer")
                             for line in rx.up.log().splitlines()), 30, what="the link down")
        wait_for(lambda: sum("event=uplink.backoff" in line and line.endswith("dest=peer")
                             for line in rx.up.log().splitlines()) >= 2, 30,
                 what="a second probe")
        # Not the instances' fault: back to the queue, no attempt counted.
        assert [d["attempts"] for d in delivery(rx)] == [0, 0]
        assert {d["state"] for d in delivery(rx)} <= {"queued", "sending"}
    finally:
        scp.stop()


def test_no_offered_syntax_is_accepted(tmp_path, receivers):
    """A peer that takes none of the syntaxes offered (the instance's own,
    then Explicit and Implicit VR Little Endian): quarantined with that
    reason, nothing sent."""
    with FaultPeer(accept=()) as peer:
        rx = routed_to(receivers, peer.port)
        send(tmp_path, rx, files=[JPEG_LS], flags=["-xt"])
        wait_for(lambda: [d["state"] for d in delivery(rx)] == ["quarantined"], 30,
                 what="quarantine")
        assert "accepted none of the offered transfer syntaxes" in delivery(rx)[0]["last_error"]
        assert not peer.received
