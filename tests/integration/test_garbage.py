"""outpost-receiver under hostile input: garbage before and inside an
association, connections cut mid-dataset, datasets that cannot be read, and
bit-exact storage of every valid pydicom sample sent unchanged (dul.py).

Every case ends by proving the daemon still serves (storescu of CT_small
succeeds) and that the spool holds nothing it should not: only the expected
rows, one file per row, tmp/ empty.
"""
import glob
import io
import os
import random
import socket
import struct
import subprocess
import warnings

import pydicom
import pytest

import dul
from outpost import (DCMTK_ENV, PYDICOM_FILES, Receiver, blake2b, dataset_bytes, free_port,
                     storescu, wait_for)

CT_SMALL = os.path.join(PYDICOM_FILES, "CT_small.dcm")
CT_SMALL_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
CT_CONTEXT = [(dul.CT_IMAGE_STORAGE, [dul.EXPLICIT_LE])]

# Long enough that a connection closed because of acse_timeout can never be
# mistaken for one the receiver closed because of what it was sent.
NEVER = {"acse_timeout": 3600}


def sample(name):
    return os.path.join(PYDICOM_FILES, name)


def logged(rx, text, count=1, timeout=15):
    """True once the receiver's log holds `count` lines containing text."""
    try:
        wait_for(lambda: rx.log().count(text) >= count, timeout, what=text)
        return True
    except TimeoutError:
        return False


def assert_still_serves(rx, also_stored=()):
    """storescu of CT_small succeeds; the spool holds CT_small and also_stored
    (SOP Instance UIDs) and nothing else, one complete file per row."""
    # Under dul's calling AE title: storescu re-encodes CT_small, and other
    # bytes from another AE would not replace the unsent instance dul stored.
    r = storescu(rx.port, [CT_SMALL], verbose=True, calling="DULTEST")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Received Store Response (Success)" in r.stdout + r.stderr
    assert rx.proc.poll() is None
    rows = rx.rows()
    assert sorted(row["sop_instance_uid"] for row in rows) == sorted({CT_SMALL_SOP, *also_stored})
    assert sorted(rx.stored_files()) == sorted(rx.object_path(row["hash"]) for row in rows)
    for row in rows:
        assert blake2b(rx.object_path(row["hash"])) == row["hash"]
    assert rx.tmp_files() == []


def ct_small_without(keyword):
    """CT_small's dataset bytes (explicit VR LE) with one attribute removed."""
    ds = pydicom.dcmread(CT_SMALL)
    delattr(ds, keyword)
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return dataset_bytes(buf.getvalue())


# --- before an association: the first PDU ---------------------------------------


def random_not_associate_rq():
    data = bytearray(random.Random(1).randbytes(1024))
    if data[0] == dul.A_ASSOCIATE_RQ:
        data[0] = 0xA5
    return bytes(data)


FIRST_PDUS = {
    "random-bytes": random_not_associate_rq(),
    "http-request": b"GET / HTTP/1.1\r\nHost: outpost\r\nUser-Agent: test\r\n\r\n",
    "tls-client-hello": bytes.fromhex("16030100c8010000c40303") + bytes(190),
    "p-data-tf-first": dul.p_data_tf(dul.pdv(1, dul.c_store_rq(1, dul.CT_IMAGE_STORAGE, "1.2.3"),
                                             command=True)),
    "a-release-rq-first": dul.release_rq(),
}


@pytest.mark.parametrize("payload", FIRST_PDUS.values(), ids=FIRST_PDUS.keys())
def test_first_pdu_not_associate_rq_is_closed_at_once(receivers, payload):
    rx = receivers(receiver=NEVER).start()
    with dul.Client(rx.port) as c:
        c.send(payload)
        # Closed by the receiver (acse_timeout is an hour): nothing answered.
        assert c.wait_closed(timeout=15), "receiver kept a garbage connection open"
        assert c.seen == b""
    assert logged(rx, 'event=assoc.dropped peer=127.0.0.1 reason="not an A-ASSOCIATE-RQ"')
    assert "event=assoc.request" not in rx.log()
    assert_still_serves(rx)


def test_truncated_associate_rq_then_close_is_dropped(receivers):
    """Half an A-ASSOCIATE-RQ, then the client closes: the receiver must
    notice the closed connection and drop it, not wait out acse_timeout
    (an hour here) for bytes that can never come."""
    rx = receivers(receiver=NEVER).start()
    rq = dul.associate_rq(CT_CONTEXT)
    with dul.Client(rx.port) as c:
        c.send(rq[:len(rq) // 2])
    assert logged(rx, "event=assoc.dropped"), (
        "the receiver did not notice that the client closed the connection after "
        "half an A-ASSOCIATE-RQ (it waits for acse_timeout)")
    assert "event=assoc.request" not in rx.log()
    assert_still_serves(rx)


def test_silent_clients_do_not_block_others(receivers):
    """Two clients hold connections open without completing an association
    request (one sends nothing, one half a request); a third stores at the
    same time; acse_timeout then closes the two."""
    rx = receivers(receiver={"acse_timeout": 2}).start()
    rq = dul.associate_rq(CT_CONTEXT)
    with dul.Client(rx.port) as silent, dul.Client(rx.port) as half:
        half.send(rq[:40])
        r = storescu(rx.port, [CT_SMALL])
        assert r.returncode == 0, r.stderr
        # The store completed while both were still waiting (acse_timeout
        # 2 s against a store of ~50 ms): a receiver that read association
        # requests one at a time would have dropped them before storing.
        log = rx.log()
        assert "event=store.ok" in log and "event=assoc.dropped" not in log
        assert silent.wait_closed(timeout=30) and half.wait_closed(timeout=30)
    assert logged(rx, 'reason="no association request within acse_timeout"', count=2)
    assert_still_serves(rx)


# --- inside an association ------------------------------------------------------


def associated(rx):
    c = dul.Client(rx.port)
    ac = c.associate(CT_CONTEXT)
    assert ac.accepted and ac.context_for(dul.CT_IMAGE_STORAGE) == 1
    return c


@pytest.mark.parametrize("where", ["command", "dataset"])
def test_pdu_length_beyond_bytes_sent_then_close(receivers, where):
    """A P-DATA-TF whose length field promises more than is sent, then the
    client closes: the association is aborted and nothing is stored."""
    rx = receivers().start()
    data = dataset_bytes(CT_SMALL)
    c = associated(rx)
    command = dul.c_store_rq(1, dul.CT_IMAGE_STORAGE, "1.2.826.0.1.3680043.10.1.99.1")
    if where == "command":
        pdu = dul.p_data_tf(dul.pdv(1, command, command=True))
    else:
        c.send_command(1, command)
        pdu = dul.p_data_tf(dul.pdv(1, data[:20000]))
    c.send(pdu[:len(pdu) // 3])
    c.sock.shutdown(socket.SHUT_WR)
    assert c.wait_closed()
    c.close()
    assert logged(rx, "event=assoc.end")
    assert 'how="release"' not in rx.log()
    if where == "dataset":
        assert "event=store.aborted" in rx.log()
    assert_still_serves(rx)


def test_random_bytes_after_association_abort_it(receivers):
    """Bytes that are no PDU, inside an association: the receiver aborts the
    association (A-ABORT) and closes, by itself."""
    rx = receivers().start()
    junk = bytearray(random.Random(2).randbytes(4096))
    junk[0] = 0xC3  # not a PDU type, so no length field to wait out
    with associated(rx) as c:
        c.send(bytes(junk))
        assert c.wait_closed(), "receiver kept the association open after garbage"
        assert c.seen[:1] == bytes([dul.A_ABORT])
    assert logged(rx, "event=assoc.end")
    assert 'how="release"' not in rx.log()
    assert_still_serves(rx)


def test_random_pdvs_in_a_p_data_tf_abort_it(receivers):
    """A well-framed P-DATA-TF whose content is random: the association is
    aborted; the client then closes."""
    rx = receivers().start()
    body = random.Random(3).randbytes(4096)
    with associated(rx) as c:
        c.send(dul.pdu(dul.P_DATA_TF, body))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed()
    assert logged(rx, "event=assoc.end")
    assert 'how="release"' not in rx.log()
    assert_still_serves(rx)


@pytest.mark.parametrize("how", ["close", "a-abort"])
def test_dataset_cut_off_is_not_stored(receivers, how):
    """The client sends the C-STORE command and part of the dataset, then
    closes the connection (or sends an A-ABORT): nothing is stored, and no
    temporary file is left behind."""
    rx = receivers().start()
    data = dataset_bytes(CT_SMALL)
    with associated(rx) as c:
        c.send_command(1, dul.c_store_rq(1, dul.CT_IMAGE_STORAGE, CT_SMALL_SOP))
        half = len(data) // 4 * 2  # even: an odd PDV is refused for that alone
        c.send_dataset(1, data[:half], fragment=4096, last=False)
        if how == "a-abort":
            c.abort()
    assert logged(rx, "event=store.aborted")
    assert logged(rx, "event=assoc.end")
    assert rx.rows() == [] and rx.stored_files() == [] and rx.tmp_files() == []
    assert_still_serves(rx)


# --- complete datasets that are bad -----------------------------------------------


def bad_datasets():
    """(id, SOP class, SOP instance, transfer syntax, dataset bytes, what the
    Error Comment must mention) for datasets the receiver must refuse."""
    mr_trunc = sample("MR_truncated.dcm")
    rtplan_trunc = sample("rtplan_truncated.dcm")
    mr = pydicom.dcmread(mr_trunc, stop_before_pixels=True)
    rt = pydicom.dcmread(rtplan_trunc, stop_before_pixels=True)
    cases = [
        # Pixel Data's length runs past the end of the dataset.
        ("MR_truncated", mr.SOPClassUID, mr.SOPInstanceUID, dul.EXPLICIT_LE,
         dataset_bytes(mr_trunc), ""),
        # The file is 1829 bytes: odd, which no DICOM encoder produces and
        # DCMTK refuses at the PDV level (see test_odd_length_dataset_...).
        # Cut to even length it is still truncated inside an element.
        ("rtplan_truncated-even", rt.SOPClassUID, rt.SOPInstanceUID, dul.IMPLICIT_LE,
         dataset_bytes(rtplan_trunc)[:-1], ""),
        # A bare dataset with a stray leading byte (pydicom cannot read it
        # either); odd length too, so cut to even.
        ("no_meta-even", dul.CT_IMAGE_STORAGE, "1.2.826.0.1.3680043.10.1.99.2",
         dul.EXPLICIT_LE, dataset_bytes(sample("no_meta.dcm"))[:-1], ""),
    ]
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        cases.append((f"CT_small-without-{keyword}", dul.CT_IMAGE_STORAGE, CT_SMALL_SOP,
                      dul.EXPLICIT_LE, ct_small_without(keyword), keyword))
    return cases


BAD = bad_datasets()


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_unreadable_dataset_is_refused_and_association_continues(receivers, case):
    _, sop_class, sop_uid, ts, data, mention = case
    rx = receivers().start()
    with dul.Client(rx.port) as c:
        ac = c.associate([(sop_class, [ts]), (dul.CT_IMAGE_STORAGE, [dul.EXPLICIT_LE])])
        assert ac.accepted
        status, comment = c.c_store(sop_class, sop_uid, data, transfer_syntax=ts)
        # 0xC000 "cannot understand", with a reason the modality can log.
        assert status == 0xC000, f"status {status:#06x} for an unreadable dataset"
        assert comment and mention in comment
        assert rx.rows() == [] and rx.stored_files() == [] and rx.tmp_files() == []
        # The association goes on: the next instance is stored.
        ok = c.c_store(dul.CT_IMAGE_STORAGE, CT_SMALL_SOP, dataset_bytes(CT_SMALL))
        assert ok == (0x0000, "")
        c.release()
    assert "event=store.rejected" in rx.log()
    assert_still_serves(rx)


@pytest.mark.parametrize("name,sop_class,ts", [
    ("rtplan_truncated.dcm", "1.2.840.10008.5.1.4.1.1.481.5", dul.IMPLICIT_LE),
    ("no_meta.dcm", dul.CT_IMAGE_STORAGE, dul.EXPLICIT_LE),
])
def test_odd_length_dataset_aborts_the_association(receivers, name, sop_class, ts):
    """Sent bit-exact, these two datasets have odd length. DCMTK's DIMSE layer
    refuses a PDV of odd length ("DIMSE: Odd Fragment Length", PS3.5 7.1:
    every value is of even length, so every dataset is) and the receiver
    aborts the association: never a success, nothing stored."""
    rx = receivers().start()
    data = dataset_bytes(sample(name))
    assert len(data) % 2 == 1
    with dul.Client(rx.port) as c:
        assert c.associate([(sop_class, [ts])]).accepted
        with pytest.raises(dul.PeerAborted):
            c.c_store(sop_class, "1.2.826.0.1.3680043.10.1.99.3", data)
    assert logged(rx, "event=store.aborted")
    assert rx.rows() == [] and rx.tmp_files() == []
    assert_still_serves(rx)


def test_bad_vr_dataset_is_readable_and_stored_exactly(receivers):
    """badVR.dcm is well formed, but some values break the rules of their
    VR (an IS of "1A": pydicom's strict mode raises). DCMTK parses it and
    all four UIDs are there. A storage SCP stores what it is sent without
    judging attribute values, so it must be accepted and kept bit for bit."""
    rx = receivers().start()
    path = sample("badVR.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    data = dataset_bytes(path)
    with dul.Client(rx.port) as c:
        assert c.associate([(ds.SOPClassUID, [dul.EXPLICIT_LE])]).accepted
        assert c.c_store(ds.SOPClassUID, ds.SOPInstanceUID, data) == (0x0000, "")
        c.release()
    (row,) = rx.rows()
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert dataset_bytes(rx.object_path(row["hash"])) == data
    assert_still_serves(rx, also_stored=[ds.SOPInstanceUID])


# --- bit-exact storage of every valid sample --------------------------------------

# Files pydicom ships as broken on purpose (tested above).
BROKEN = {"MR_truncated.dcm", "rtplan_truncated.dcm", "badVR.dcm", "no_meta.dcm"}


def samples():
    """pydicom's samples (sub-folders included) with a File Meta Information
    header naming their transfer syntax and all four UIDs readable by
    pydicom, as pytest params
    (path, SOP class, SOP instance, transfer syntax); and separately the
    ones whose dataset is not encoded in the transfer syntax their header
    names (pydicom reads them only by guessing the encoding)."""
    good, mislabelled = [], []
    paths = sorted(glob.glob(os.path.join(PYDICOM_FILES, "**", "*"), recursive=True))
    for path in paths:
        name = os.path.relpath(path, PYDICOM_FILES)
        if name in BROKEN or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            if f.read(132)[128:] != b"DICM":
                continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "TransferSyntaxUID" not in ds.file_meta or not all(
                k in ds for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
                                  "SeriesInstanceUID")):
            continue
        param = pytest.param(path, ds.SOPClassUID, ds.SOPInstanceUID,
                             ds.file_meta.TransferSyntaxUID, id=name)
        guessed = any("found implicit VR" in str(w.message) or "found explicit VR" in
                      str(w.message) for w in caught)
        (mislabelled if guessed else good).append(param)
    return good, mislabelled


VALID, MISLABELLED = samples()


def test_sample_lists_are_what_this_file_expects():
    # The cases below are generated; make sure they did not silently vanish.
    assert len(VALID) >= 100
    assert [p.id for p in MISLABELLED] == ["SC_rgb_jpeg.dcm"]


@pytest.mark.parametrize("path,sop_class,sop_uid,ts", MISLABELLED)
def test_dataset_not_in_the_negotiated_syntax_is_refused(receiver, path, sop_class, sop_uid,
                                                         ts):
    """SC_rgb_jpeg.dcm declares JPEG Baseline (explicit VR) but its dataset
    is implicit VR: sent in the declared syntax it cannot be parsed, so
    0xC000 is right (pydicom reads it only by guessing)."""
    with dul.Client(receiver.port) as c:
        assert c.associate([(sop_class, [ts])]).accepted
        status, comment = c.c_store(sop_class, sop_uid, dataset_bytes(path))
        c.release()
    assert status == 0xC000 and comment
    assert receiver.rows() == [] and receiver.tmp_files() == []
    assert_still_serves(receiver)


def meta_of(path):
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta


@pytest.fixture(scope="module")
def samples_receiver(tmp_path_factory):
    """One receiver for all the samples (a hundred receiver starts would
    cost more than the stores). Several samples share a SOP Instance UID;
    each store then replaces the row, so every check reads the row as it is
    right after its own store."""
    rx = Receiver(str(tmp_path_factory.mktemp("samples"))).start()
    yield rx
    rx.stop()
    log = rx.log()
    assert "Sanitizer" not in log and "runtime error:" not in log, log[-4000:]


@pytest.mark.parametrize("path,sop_class,sop_uid,ts", VALID)
def test_sample_dataset_is_stored_bit_exact(samples_receiver, path, sop_class, sop_uid, ts):
    """The dataset bytes of the file, sent unchanged in the file's own
    transfer syntax, are stored unchanged after the receiver's File Meta
    Information. (rtdose_rle*.dcm encode every attribute with VR UN, which
    explicit VR allows: the UIDs are there and must be found.)"""
    rx = samples_receiver
    data = dataset_bytes(path)
    if len(data) % 2:
        # image_dfl.dcm: its deflated stream is 4303 bytes. PS3.5 A.5 wants
        # it padded with one trailing NUL to even length (pydicom's writer
        # does so); sent as is, DCMTK aborts on the odd PDV (see
        # test_odd_length_dataset_aborts_the_association).
        data += b"\0"
    with dul.Client(rx.port) as c:
        ac = c.associate([(sop_class, [ts])])
        assert ac.context_for(sop_class, ts) == 1, f"context refused: {ac.contexts}"
        # Small fragments: the dataset crosses many PDUs.
        assert c.c_store(sop_class, sop_uid, data, fragment=1000) == (0x0000, "")
        c.release()
    (row,) = rx.rows("sop_instance_uid = ?", (sop_uid,))
    assert row["transfer_syntax"] == ts
    stored = rx.object_path(row["hash"])
    assert blake2b(stored) == row["hash"] and os.path.getsize(stored) == row["size"]
    assert dataset_bytes(stored) == data
    meta = meta_of(stored)
    assert meta.TransferSyntaxUID == ts
    assert meta.MediaStorageSOPInstanceUID == sop_uid
    assert meta.MediaStorageSOPClassUID == sop_class
    assert rx.tmp_files() == []


def test_fragmentation_does_not_change_what_is_stored(receiver):
    """The same dataset in one PDV and then starting with a thousand 2-byte
    PDVs is one instance, stored once (result=duplicate), bytes unchanged."""
    data = dataset_bytes(CT_SMALL)
    with dul.Client(receiver.port) as c:
        c.associate(CT_CONTEXT)
        assert c.c_store(dul.CT_IMAGE_STORAGE, CT_SMALL_SOP, data) == (0x0000, "")
        c.send_command(1, dul.c_store_rq(2, dul.CT_IMAGE_STORAGE, CT_SMALL_SOP))
        for i in range(0, 2000, 2):
            c.send(dul.p_data_tf(dul.pdv(1, data[i:i + 2], last=False)))
        c.send_dataset(1, data[2000:])
        rsp = c.recv_command()
        assert struct.unpack("<H", rsp[0x0900])[0] == 0x0000
        c.release()
    (row,) = receiver.rows()
    assert dataset_bytes(receiver.object_path(row["hash"])) == data
    assert "result=duplicate" in receiver.log()


# --- the raw client itself, against another implementation ----------------------


def test_dul_client_interoperates_with_dcmtk_storescp(tmp_path):
    """dul.py is the oracle of the tests above: check it against DCMTK's
    storescp, which must accept its PDUs and store the dataset (bit-
    preserving mode) exactly as dul.py sent it."""
    out = tmp_path / "storescp"
    out.mkdir()
    port = free_port()
    scp = subprocess.Popen(["storescp", "-aet", "STORESCP", "+B", "-od", str(out), str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=DCMTK_ENV)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, what="storescp listening")
        data = dataset_bytes(CT_SMALL)
        with dul.Client(port) as c:
            ac = c.associate(CT_CONTEXT + [("1.2.3.4.5.6.7", [dul.EXPLICIT_LE])],
                             called="STORESCP")
            assert ac.accepted and ac.max_pdu > 0
            assert ac.contexts[1] == (0, dul.EXPLICIT_LE)
            assert ac.contexts[3][0] == 3  # abstract syntax not supported
            assert ac.context_for("1.2.3.4.5.6.7") is None
            assert c.c_store(dul.CT_IMAGE_STORAGE, CT_SMALL_SOP, data, fragment=4000) == (0, "")
            c.release()
    finally:
        scp.kill()
        scp.wait()
    (stored,) = list(out.iterdir())
    assert dataset_bytes(stored.read_bytes()) == data


def test_dul_client_reads_an_association_reject(receivers):
    rx = receivers(receiver={"allowed_calling_aets": "MODALITY"}).start()
    with dul.Client(rx.port) as c:
        rj = c.associate(CT_CONTEXT, calling="INTRUDER")
    # Rejected permanently by the service user: calling AE title not recognised.
    assert (rj.kind, rj.result, rj.source, rj.reason) == ("reject", 1, 1, 3)
    with dul.Client(rx.port) as c:
        assert c.associate(CT_CONTEXT, calling="MODALITY").accepted
        c.release()
