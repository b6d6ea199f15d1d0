"""outpost-receiver against a hostile LAN host (issue 15): idle connections
(slowloris) from an allowed host and from one outside allowed_hosts, C-STORE
priority HIGH from an AE nobody trusts, and peer-supplied strings made to
forge log lines. In every case a real modality (storescu) still stores.
"""
import io
import os
import socket

import pydicom

import dul
from outpost import PYDICOM_FILES, dataset_bytes, storescu, wait_for

CT = os.path.join(PYDICOM_FILES, "CT_small.dcm")
CT_CONTEXT = [(dul.CT_IMAGE_STORAGE, [dul.EXPLICIT_LE])]
IDLE = 40  # more than max_associations (16) + the 16 extra waiting places
HIGH, MEDIUM = 1, 0  # the command's Priority values (PS3.7 C.1)


def idle_connections(port, n, source="127.0.0.1"):
    """n TCP connections from source that never send a byte."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_peer(s, timeout):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def assert_modality_stores(rx):
    r = storescu(rx.port, [CT], verbose=True)
    assert r.returncode == 0 and "Received Store Response (Success)" in r.stderr, r.stderr
    assert [row["sop_instance_uid"] for row in rx.rows()] == \
        [str(pydicom.dcmread(CT, stop_before_pixels=True).SOPInstanceUID)]


def test_idle_connections_from_an_allowed_host_do_not_lock_a_modality_out(receivers):
    # acse_timeout an hour: the idle connections are not simply timed out
    # (test_garbage.py shows acse_timeout closing silent ones).
    rx = receivers(receiver={"acse_timeout": 3600}).start()
    socks = idle_connections(rx.port, IDLE)
    try:
        # At most max_pending_per_host (4) of them are kept: each newer one
        # closed the oldest.
        wait_for(lambda: rx.log().count("reason=\"idle, closed to make room") >= IDLE - 4, 10,
                 what="the idle connections beyond the per-host cap closed")
        assert sum(closed_by_peer(s, 0.5) for s in socks) == IDLE - 4
        assert_modality_stores(rx)
        assert "too many connections" not in rx.log()
        # The modality's connection took the place of one more idle one.
        assert sum(not closed_by_peer(s, 0.5) for s in socks) == 3
    finally:
        for s in socks:
            s.close()


def test_a_host_outside_allowed_hosts_is_closed_at_accept_and_holds_nothing(receivers):
    rx = receivers(receiver={"allowed_hosts": "127.0.0.1/32", "acse_timeout": 3600}).start()
    socks = idle_connections(rx.port, IDLE, source="127.0.0.2")
    try:
        # Closed at once, not after acse_timeout (an hour here).
        assert all(closed_by_peer(s, 10) for s in socks)
        assert_modality_stores(rx)
        # A flood is a line a second, with the count.
        def refused():
            lines = [line for line in rx.log().splitlines() if "event=assoc.rejected" in line]
            assert all('peer=127.0.0.2 reason="host not in allowed_hosts"' in line
                       for line in lines)
            return sum(int(line.split("connections=")[1]) for line in lines)
        wait_for(lambda: refused() == IDLE, 5, what="the refused connections logged")
        assert rx.log().count("event=assoc.rejected") <= 3
    finally:
        for s in socks:
            s.close()


def store_with_priority(rx, calling, sop_uid, priority):
    ds = pydicom.dcmread(CT)
    ds.SOPInstanceUID = sop_uid
    with dul.Client(rx.port) as c:
        assert c.associate(CT_CONTEXT, calling=calling).accepted
        status, comment = c.c_store(dul.CT_IMAGE_STORAGE, sop_uid, dataset_bytes(_encode(ds)),
                                    priority=priority)
        c.release()
    assert status == 0, (hex(status), comment)
    return rx.rows("sop_instance_uid = ?", (sop_uid,))[0]["priority"]


def _encode(ds):
    out = io.BytesIO()
    ds.save_as(out, write_like_original=False)
    return out.getvalue()


def test_priority_high_is_believed_only_from_trusted_aets(receivers):
    rx = receivers(priority={"urgent_calling_aets": "ER_CT",
                             "trust_priority_from": "MAMMO_1"}).start()
    # The spool's priority: 2 urgent, 1 normal (MEDIUM).
    assert store_with_priority(rx, "INTRUDER", "1.2.826.0.1.3680043.10.9.1", HIGH) == 1
    assert store_with_priority(rx, "MAMMO_1", "1.2.826.0.1.3680043.10.9.2", HIGH) == 2
    assert store_with_priority(rx, "MAMMO_1", "1.2.826.0.1.3680043.10.9.3", MEDIUM) == 1
    assert store_with_priority(rx, "ER_CT", "1.2.826.0.1.3680043.10.9.4", MEDIUM) == 2
    lines = [line for line in rx.log().splitlines() if "event=store.priority" in line]
    assert len(lines) == 1 and 'calling="INTRUDER" priority=medium' in lines[0], lines


def test_peer_supplied_strings_cannot_forge_a_log_line(receivers):
    rx = receivers().start()
    ds = pydicom.dcmread(CT)
    # The command's SOP Instance UID is the peer's word, unlike the
    # dataset's (which must be a valid UID to be stored). DCMTK strips
    # white space from it and allows at most 64 characters, but passes a
    # quote (which would end the value and start a forged key) and other
    # control characters (ESC: a terminal rewriting the line).
    command_uid = '1.2.3"result=forged\x1b[1A\x7f'
    with dul.Client(rx.port) as c:
        assert c.associate(CT_CONTEXT, calling='EVIL"\\AE').accepted
        status, _ = c.c_store(dul.CT_IMAGE_STORAGE, command_uid, dataset_bytes(_encode(ds)))
        c.release()
    assert status == 0
    log = rx.log()
    assert "\x1b" not in log and "\x7f" not in log
    mismatch = [line for line in log.splitlines() if "event=store.mismatch" in line]
    assert len(mismatch) == 1, log
    assert 'command_sop="1.2.3\\"result=forged\\x1b[1A\\x7f" ' in mismatch[0], mismatch
    assert 'calling="EVIL\\"\\\\AE"' in log
