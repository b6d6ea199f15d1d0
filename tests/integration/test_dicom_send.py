"""The C-STORE sender of the DCMTK shim (op_dicom_send, services/dicom/
send.h), driven through build/tests/dicom_send_cli against real peers:
DCMTK's storescp (bit-preserving, +B) and Orthanc's DICOM port; and, for
the answers no real program gives on demand (0xA700, 0xC000, a warning,
no accepted context, no response), the raw-PDU peer of tests/lib/
faultpeer.py.

What each outcome means for the uplink: SENT (stored), RETRY (try again
later), QUARANTINE (this peer will never take it), per send.h.
"""
import errno
import os
import socket
import subprocess
import time

import pydicom
import pytest

from cloud import Cloud
from faultpeer import FaultPeer
from outpost import BUILD, DCMTK_ENV, PYDICOM_FILES, Storescp, dataset_bytes, echoscu, \
    free_port, wait_for

CLI = os.path.join(BUILD, "tests", "dicom_send_cli")
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

# Distinct SOP Instance UIDs (storescp names its files by them), one per
# kind: CT explicit LE, SC RLE, SC deflated, RT plan and dose implicit LE,
# SR, 12-lead ECG, segmentation, SC JPEG baseline.
BATCH = ["CT_small.dcm", "SC_rgb_rle.dcm", "image_dfl.dcm", "rtplan.dcm", "rtdose.dcm",
         "test-SR.dcm", "waveform_ecg.dcm", "liver_1frame.dcm", "SC_rgb_jpeg_dcmtk.dcm"]
# The MR_small family shares one SOP Instance UID: one file per call.
SINGLES = ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
           "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm"]


def sample(name):
    return os.path.join(PYDICOM_FILES, name)


def meta(path):
    return pydicom.dcmread(path, stop_before_pixels=True)


class Sent:
    """What one dicom_send_cli run printed."""

    def __init__(self, proc, elapsed):
        self.proc, self.elapsed = proc, elapsed
        self.results, self.returns, self.bytes = {}, [], None
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                head, _, reason = line.partition(" reason=")
                _, index, outcome, status, ts, path = head.split(" ", 5)
                self.results[int(index)] = {
                    "outcome": outcome, "status": status.split("=", 1)[1],
                    "ts": ts.split("=", 1)[1], "path": path.split("=", 1)[1],
                    "reason": reason}
            elif line.startswith("RETURN "):
                rc, _, err = line[len("RETURN "):].partition(" err=")
                self.returns.append((int(rc), err))
            elif line.startswith("BYTES "):
                self.bytes = int(line.split()[1])

    def outcomes(self):
        return [self.results[i]["outcome"] for i in sorted(self.results)]

    def __repr__(self):
        return f"rc={self.proc.returncode}\n{self.proc.stdout}\n{self.proc.stderr}"


def send(port, files, called="STORESCP", calling="OUTPOSTSCU", options=(), timeout=60):
    start = time.monotonic()
    proc = subprocess.run([CLI, *options, "127.0.0.1", str(port), called, calling, *files],
                          capture_output=True, text=True, timeout=timeout)
    sent = Sent(proc, time.monotonic() - start)
    assert "Sanitizer" not in proc.stderr, sent  # the ASan+UBSan build (OUTPOST_BUILD)
    assert proc.returncode in (0, 1), sent
    assert len(sent.results) == len(files), sent
    return sent


@pytest.fixture
def storescp(tmp_path):
    scp = Storescp(str(tmp_path))  # storescp +B +xa
    yield scp
    scp.stop()


class PlainStorescp:
    """storescp +B with extra flags (no +xa: uncompressed syntaxes only
    unless a flag says otherwise)."""

    def __init__(self, directory, *flags):
        self.out = os.path.join(directory, "plain-received")
        os.makedirs(self.out, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(directory, "plain-storescp.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["storescp", "+B", *flags, "-od", self.out, str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=DCMTK_ENV)
        if "--refuse" not in flags:
            wait_for(lambda: self.proc.poll() is not None or echoscu(self.port).returncode == 0,
                     10, what="storescp to answer C-ECHO")
        else:
            wait_for(lambda: self._listening(), 10, what="storescp to listen")

    def _listening(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def files(self):
        return [os.path.join(self.out, f) for f in sorted(os.listdir(self.out))]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def plain_storescp(tmp_path):
    started = []

    def make(*flags):
        started.append(PlainStorescp(str(tmp_path), *flags))
        return started[-1]
    yield make
    for s in started:
        s.stop()


# --- bytes as stored ------------------------------------------------------------


def padded(data):
    """A dataset as it goes out: an odd one (image_dfl.dcm's deflated
    stream) with the NUL pad byte PDVs need (PS3.5 A.5)."""
    return data + b"\0" if len(data) % 2 else data


def command_size(path):
    """The C-STORE-RQ command set's length for the instance in path: group
    length, two UIDs (padded to even) and four US elements (PS3.7 9.3.1.1)."""
    m = meta(path)
    even = lambda uid: len(uid) + len(uid) % 2  # noqa: E731
    return 12 + 8 + even(m.SOPClassUID) + 4 * (8 + 2) + 8 + even(m.SOPInstanceUID)


def assert_identical(received, files):
    """received: {SOP Instance UID: file bytes} from storescp +B."""
    for f in files:
        m = meta(sample(f))
        got = received[str(m.SOPInstanceUID)]
        assert dataset_bytes(got) == padded(dataset_bytes(sample(f))), f
        got_ts = pydicom.dcmread(pydicom.filebase.DicomBytesIO(got),
                                 stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert got_ts == m.file_meta.TransferSyntaxUID, f


def test_a_batch_reaches_storescp_byte_for_byte(storescp):
    sent = send(storescp.port, [sample(f) for f in BATCH])
    assert sent.returns == [(0, "")], sent
    assert sent.outcomes() == ["SENT"] * len(BATCH), sent
    for i, f in enumerate(BATCH):
        r = sent.results[i]
        assert r["status"] == "0x0000" and r["reason"] == "", sent
        assert r["ts"] == meta(sample(f)).file_meta.TransferSyntaxUID, sent
    assert_identical(storescp.take(), BATCH)
    # progress counted every byte of each command and dataset, nothing more.
    assert sent.bytes == sum(command_size(sample(f)) + len(padded(dataset_bytes(sample(f))))
                             for f in BATCH)


@pytest.mark.parametrize("name", SINGLES)
def test_each_transfer_syntax_is_sent_as_stored(storescp, name):
    sent = send(storescp.port, [sample(name)])
    assert sent.outcomes() == ["SENT"], sent
    assert_identical(storescp.take(), [name])


def test_parallel_calls_each_on_its_own_association(storescp):
    files = [sample(f) for f in BATCH]
    sent = send(storescp.port, files, options=["--threads", "3"])
    assert sent.returns == [(0, "")] * 3, sent
    assert sent.outcomes() == ["SENT"] * len(BATCH), sent
    assert_identical(storescp.take(), BATCH)


# --- fallback syntaxes ---------------------------------------------------------------


def test_a_compressed_instance_is_decoded_for_a_peer_without_its_syntax(plain_storescp, tmp_path):
    scp = plain_storescp()  # uncompressed syntaxes only
    sent = send(scp.port, [sample("SC_rgb_rle.dcm"), sample("MR_small_jpeg_ls_lossless.dcm")])
    assert sent.outcomes() == ["SENT", "SENT"], sent
    assert [sent.results[i]["ts"] for i in (0, 1)] == [EXPLICIT_LE, EXPLICIT_LE], sent
    # The pixels are the original's, decoded by DCMTK's own tools.
    for name in ("SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        ref = str(tmp_path / (name + ".ref"))
        tool = "dcmdrle" if "rle" in name else "dcmdjpls"
        subprocess.run([tool, sample(name), ref], check=True)
        uid = str(meta(sample(name)).SOPInstanceUID)
        got = [f for f in scp.files() if uid in os.path.basename(f)]
        assert len(got) == 1, scp.files()
        received = pydicom.dcmread(got[0])
        assert received.file_meta.TransferSyntaxUID == EXPLICIT_LE
        assert received.PixelData == pydicom.dcmread(ref).PixelData, name


def test_an_implicit_only_peer_gets_implicit(plain_storescp):
    scp = plain_storescp("+xi")
    sent = send(scp.port, [sample("CT_small.dcm")])
    assert sent.outcomes() == ["SENT"] and sent.results[0]["ts"] == IMPLICIT_LE, sent
    (got,) = scp.files()
    assert pydicom.dcmread(got).file_meta.TransferSyntaxUID == IMPLICIT_LE
    assert pydicom.dcmread(got).PixelData == pydicom.dcmread(sample("CT_small.dcm")).PixelData


def test_an_instance_dcmtk_cannot_decode_is_quarantined(plain_storescp):
    scp = plain_storescp()
    sent = send(scp.port, [sample("JPEG2000.dcm"), sample("CT_small.dcm")])
    assert sent.outcomes() == ["QUARANTINE", "SENT"], sent
    r = sent.results[0]
    assert "accepted only 1.2.840.10008.1.2.1" in r["reason"], sent
    assert "cannot be converted from 1.2.840.10008.1.2.4.91" in r["reason"], sent
    assert r["status"] == "none" and r["ts"] == "", sent
    assert len(scp.files()) == 1  # the association carried on with the CT


def test_no_accepted_context_is_quarantined_with_the_syntaxes_offered():
    with FaultPeer(accept=()) as peer:
        sent = send(peer.port, [sample("JPEG2000.dcm")])
    assert sent.returns == [(0, "")], sent
    assert sent.outcomes() == ["QUARANTINE"], sent
    assert sent.results[0]["reason"] == (
        "the peer accepted none of the offered transfer syntaxes "
        "(1.2.840.10008.1.2.4.91, 1.2.840.10008.1.2.1, 1.2.840.10008.1.2)"), sent
    assert peer.received == []


def test_a_refused_sop_class_is_quarantined_and_the_rest_goes():
    with FaultPeer(refuse_classes=("1.2.840.10008.5.1.4.1.1.481.5",)) as peer:
        sent = send(peer.port, [sample("rtplan.dcm"), sample("CT_small.dcm")])
    assert sent.outcomes() == ["QUARANTINE", "SENT"], sent
    assert sent.results[0]["reason"] == (
        "the peer does not accept SOP class 1.2.840.10008.5.1.4.1.1.481.5"), sent
    assert [d for _, _, d in peer.received] == [dataset_bytes(sample("CT_small.dcm"))]


def test_the_own_syntax_is_preferred_when_accepted():
    """The fault peer takes the first syntax of each context: all three
    contexts are accepted, and the one with the file's own syntax is used."""
    with FaultPeer() as peer:
        sent = send(peer.port, [sample("rtplan.dcm"), sample("MR_small_bigendian.dcm")])
    assert sent.outcomes() == ["SENT", "SENT"], sent
    assert [sent.results[i]["ts"] for i in (0, 1)] == [IMPLICIT_LE, "1.2.840.10008.1.2.2"]
    assert [d for _, _, d in peer.received] == [
        dataset_bytes(sample("rtplan.dcm")), dataset_bytes(sample("MR_small_bigendian.dcm"))]


# --- statuses --------------------------------------------------------------------------


@pytest.mark.parametrize("status, comment, outcome, reason", [
    (0xC000, "cannot parse pixel data", "QUARANTINE",
     "C-STORE failed: status 0xC000 (comment: cannot parse pixel data)"),
    (0xC123, "", "QUARANTINE", "C-STORE failed: status 0xC123"),
    (0x0122, "", "QUARANTINE", "C-STORE failed: status 0x0122"),
    (0xA700, "disk full", "RETRY", "C-STORE refused: status 0xA700 (comment: disk full)"),
    (0xA900, "", "RETRY", "C-STORE refused: status 0xA900"),
    (0xB000, "coerced", "SENT", "stored with a warning: status 0xB000 (comment: coerced)"),
    (0x0001, "", "SENT", "stored with a warning: status 0x0001"),
])
def test_the_response_status_decides(status, comment, outcome, reason):
    with FaultPeer(status=status, comment=comment) as peer:
        sent = send(peer.port, [sample("CT_small.dcm"), sample("rtplan.dcm")])
        wait_for(lambda: "release" in peer.events, 5, what="the release")
    assert sent.returns == [(0, "")], sent
    for i in (0, 1):
        r = sent.results[i]
        assert (r["outcome"], r["status"], r["reason"]) == (outcome, f"0x{status:04X}", reason)
    assert [d for _, _, d in peer.received] == [
        dataset_bytes(sample("CT_small.dcm")), dataset_bytes(sample("rtplan.dcm"))]


# --- faults ------------------------------------------------------------------------------


def test_a_closed_port_is_connection_refused():
    port = free_port()  # nothing listens there
    sent = send(port, [sample("CT_small.dcm"), sample("rtplan.dcm")])
    assert sent.proc.returncode == 1
    ((rc, err),) = sent.returns
    assert rc == -errno.ECONNREFUSED, sent
    assert sent.outcomes() == ["RETRY", "RETRY"], sent
    assert sent.results[0]["reason"].startswith("not sent: association failed"), sent


def test_a_refused_association_is_retried(plain_storescp):
    scp = plain_storescp("--refuse")
    sent = send(scp.port, [sample("CT_small.dcm")])
    ((rc, err),) = sent.returns
    assert rc == -errno.EACCES and err.startswith("association rejected:"), sent
    assert sent.outcomes() == ["RETRY"], sent


def test_a_peer_that_never_answers_the_association_times_out():
    with FaultPeer(mode="silent") as peer:
        sent = send(peer.port, [sample("CT_small.dcm")], options=["--timeout-ms", "1500"])
    ((rc, err),) = sent.returns
    assert rc == -errno.ETIMEDOUT, sent
    assert sent.outcomes() == ["RETRY"], sent
    assert 1.0 < sent.elapsed < 6, sent


def test_a_peer_that_never_answers_a_store_times_out():
    with FaultPeer(mode="no-response") as peer:
        sent = send(peer.port, [sample("CT_small.dcm"), sample("rtplan.dcm")],
                    options=["--timeout-ms", "1500"])
        assert len(peer.received) == 1
    assert sent.returns == [(0, "")], sent
    assert sent.outcomes() == ["RETRY", "RETRY"], sent
    assert sent.results[0]["reason"] == "no C-STORE response within 2 s", sent
    assert sent.results[1]["reason"] == "not sent: no C-STORE response in time", sent
    assert sent.elapsed < 8, sent


def test_a_peer_aborting_mid_instance_leaves_everything_to_retry(plain_storescp):
    scp = plain_storescp("--abort-during")
    sent = send(scp.port, [sample("CT_small.dcm"), sample("rtplan.dcm")])
    assert sent.returns[0][0] == 0, sent  # the association was established
    assert sent.outcomes() == ["RETRY", "RETRY"], sent
    assert scp.files() == []


def test_progress_stops_the_association_with_an_abort():
    with FaultPeer() as peer:
        sent = send(peer.port, [sample("CT_small.dcm"), sample("rtplan.dcm")],
                    options=["--stop-after", "8000"])
        wait_for(lambda: "abort" in peer.events, 5, what="the A-ABORT")
    ((rc, err),) = sent.returns
    assert rc == -errno.ECANCELED, sent
    assert sent.outcomes() == ["RETRY", "RETRY"], sent
    assert "stopped by the caller" in sent.results[0]["reason"], sent
    assert peer.received == [] and "release" not in peer.events
    # No byte went out beyond what progress allowed (one PDU at most).
    assert sent.bytes < 8000 + 16384


def test_a_stop_between_instances_keeps_the_ones_sent():
    """progress is asked before each command too: a stop after the first
    instance's last byte aborts before the second one starts."""
    first = sample("CT_small.dcm")
    budget = command_size(first) + len(dataset_bytes(first))
    with FaultPeer() as peer:
        sent = send(peer.port, [first, sample("rtplan.dcm")],
                    options=["--stop-after", str(budget)])
        wait_for(lambda: "abort" in peer.events, 5, what="the A-ABORT")
    assert sent.returns[0][0] == -errno.ECANCELED, sent
    assert sent.outcomes() == ["SENT", "RETRY"], sent
    assert sent.results[1]["reason"] == (
        "not sent: stopped by the caller (association aborted)"), sent
    assert [d for _, _, d in peer.received] == [dataset_bytes(first)]


def test_progress_may_block_to_shape_the_rate(storescp):
    size = len(dataset_bytes(sample("CT_small.dcm")))
    sent = send(storescp.port, [sample("CT_small.dcm")], options=["--max-bps", str(size)])
    assert sent.outcomes() == ["SENT"], sent
    assert sent.elapsed >= 0.8, sent
    assert_identical(storescp.take(), ["CT_small.dcm"])


# --- Orthanc -------------------------------------------------------------------------------


@pytest.fixture
def orthanc(tmp_path):
    cloud = Cloud(str(tmp_path / "cloud"), dicom_port=True, refuse_patient_ids=(),
                  drop_patient_ids=(), orthanc_extra={
                      "DicomCheckCalledAet": True,
                      "DicomModalities": {"outpost": ["OUTPOSTSCU", "127.0.0.1", free_port()]},
                      "DicomCheckModalityHost": True,
                      "DicomAlwaysAllowStore": False})
    cloud.start_orthanc()
    yield cloud
    cloud.stop_orthanc()


def test_orthanc_stores_what_is_sent(orthanc):
    """Orthanc's DICOM port, the calling AE title registered in
    DicomModalities: it stores the dataset bytes as sent."""
    files = [sample(f) for f in ["CT_small.dcm", "rtplan.dcm", "test-SR.dcm",
                                 "SC_rgb_rle.dcm", "MR_small_bigendian.dcm"]]
    sent = send(orthanc.dicom_port, files, called="OUTPOSTCLOUD")
    assert sent.returns == [(0, "")], sent
    assert sent.outcomes() == ["SENT"] * len(files), sent
    held = orthanc.instances()
    for f in files:
        uid = str(meta(f).SOPInstanceUID)
        assert uid in held, f
        stored = orthanc.instance_file(uid)
        assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored)).SOPInstanceUID == uid
        assert dataset_bytes(stored) == padded(dataset_bytes(f)), f


def test_orthanc_aborts_for_an_unknown_calling_ae(orthanc):
    """Orthanc 1.10 accepts the association of an AE title it does not know
    (DicomAlwaysAllowStore false) and aborts it at the first C-STORE: the
    instance is retried, never quarantined (the fix is Orthanc's config)."""
    sent = send(orthanc.dicom_port, [sample("CT_small.dcm"), sample("rtplan.dcm")],
                called="OUTPOSTCLOUD", calling="STRANGER")
    assert sent.returns == [(0, "")], sent
    assert sent.outcomes() == ["RETRY", "RETRY"], sent
    # The abort comes after the last data PDU, or (a loaded machine, an
    # instance of many PDUs) while they are still being written.
    assert sent.results[0]["reason"] in (
        "no C-STORE response: Peer aborted Association (or never connected)",
        "not stored: the association broke while sending: TCP I/O Error (Connection reset "
        "by peer) occurred in routine: writeDataPDU"), sent
    assert orthanc.instances() == {}
