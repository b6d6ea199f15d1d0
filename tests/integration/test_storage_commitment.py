"""Storage commitment (push model, PS3.4 annex J) at outpost-receiver.

The modality is Orthanc 1.10.1 (tests/lib/cloud.py's Orthanc, without nginx),
storing to Outpost with `POST /modalities/outpost/store` and
`StorageCommitment: true`: it sends the C-STOREs, then the N-ACTION on a
new association which it closes at once, and learns the result from the
N-EVENT-REPORT Outpost sends to its DICOM port (`GET
/storage-commitment/{transaction}`). The report on the same association,
for an SCU that keeps it open, and the failure of an instance Outpost never
received are driven with the raw client of tests/lib/dul.py.

What is checked is what the technologist's scanner would show: success for
what Outpost commits to keep (`commitment = local`: in the spool; `cloud`:
confirmed by the cloud), failure with the reason for what it does not, and
no answer lost to a kill -9 of either service.
"""
import io
import json
import struct
import time

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

import dicomgen
import dul
from cloud import REFUSE_PATIENT_ID, Cloud
from console import Api
from integration_fixtures import log_lines
from outpost import free_port, storescu, wait_for

COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
PROCESSING_FAILURE, NO_SUCH_INSTANCE = 0x0110, 0x0112


class Modality:
    """An Orthanc that stores to Outpost (AE OUTPOST on rx_port) and asks
    it for storage commitment; AE title MODALITY."""

    def __init__(self, workdir, rx_port):
        self.orthanc = Cloud(workdir, dicom_port=True, refuse_patient_ids=(),
                             drop_patient_ids=(),
                             orthanc_extra={"DicomAet": "MODALITY", "Plugins": [],
                                            "DicomModalities": {
                                                "outpost": ["OUTPOST", "127.0.0.1", rx_port]}})
        self.orthanc.start_orthanc()

    @property
    def peer(self):
        """The [peer NAME] section that names it to Outpost."""
        return {"ae_title": "MODALITY", "host": "127.0.0.1", "port": self.orthanc.dicom_port}

    def store_and_commit(self, files):
        """Uploads files to Orthanc, has it store them to Outpost with
        storage commitment; returns the transaction UID."""
        ids = []
        for path in files:
            with open(path, "rb") as f:
                ids.append(self.orthanc.rest("POST", "/instances", f.read())["ID"])
        r = self.orthanc.rest("POST", "/modalities/outpost/store", json.dumps(
            {"Resources": ids, "StorageCommitment": True, "Synchronous": True}).encode())
        assert r["FailedInstancesCount"] == 0, r
        return r["StorageCommitmentTransactionUID"]

    def report(self, txn):
        """What Orthanc learnt of the transaction: {"Status": "Pending" |
        "Success" | "Failure", "Success": [...], "Failures": [...]}."""
        return self.orthanc.rest("GET", f"/storage-commitment/{txn}")

    def wait_report(self, txn, timeout=60):
        wait_for(lambda: self.report(txn)["Status"] != "Pending", timeout, interval=0.2,
                 what="the storage commitment report")
        return self.report(txn)

    def stop(self):
        self.orthanc.stop_orthanc()


@pytest.fixture
def modality(tmp_path):
    made = []

    def make(rx_port):
        m = Modality(tmp_path / f"modality{len(made)}", rx_port)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def study(tmp_path, name, n=3, patient_id=None):
    files = dicomgen.make_ct_study(str(tmp_path / name), n, rows=16, cols=16)
    if patient_id:
        for path in files:
            ds = pydicom.dcmread(path)
            ds.PatientID = patient_id
            ds.save_as(path)
    return files


def uids(files):
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}


def committed(report):
    return {s["SOPInstanceUID"] for s in report.get("Success", [])}


def failures(report):
    return {f["SOPInstanceUID"]: f["FailureReason"] for f in report.get("Failures", [])}


def test_local_commits_what_the_spool_holds(receivers, modality, tmp_path):
    port = free_port()
    mod = modality(port)
    rx = receivers(receiver={"port": port, "commitment": "local"},
                   **{"peer modality": mod.peer}).start()
    files = study(tmp_path, "s")
    txn = mod.store_and_commit(files)
    report = mod.wait_report(txn)
    assert report["Status"] == "Success", report
    assert committed(report) == uids(files)
    # Orthanc closed the N-ACTION's association: the report went on one of
    # Outpost's own, to the [peer]'s address (logged once it is recorded,
    # just after Orthanc has it).
    wait_for(lambda: log_lines(rx, "commit.report"), 10, what="the report's log line")
    [line] = log_lines(rx, "commit.report")
    assert "via=new-association" in line and f"committed={len(files)} failed=0" in line


def test_cloud_waits_for_the_cloud_then_commits(pipelines, modality, tmp_path):
    port = free_port()
    mod = modality(port)
    cloud, rx, uplink = pipelines(start_uplink=False, receiver={"port": port},
                                  **{"peer modality": mod.peer})
    cloud.stop_orthanc()  # the cloud is down: nginx answers 502
    uplink.start()
    files = study(tmp_path, "s")
    txn = mod.store_and_commit(files)
    # The cloud has none of them, so nothing is committed yet, however
    # long the modality waits; the operator sees the request pending.
    wait_for(lambda: log_lines(rx, "commit.request"), 10, what="the request")
    for _ in range(3):
        assert mod.report(txn)["Status"] == "Pending"
        time.sleep(1)
    api = Api(rx, unix=True)
    status = api.ok("GET", "/api/status")
    assert status["commitments"]["pending"] == 1
    assert 3 <= status["commitments"]["oldest_age"] <= 60
    assert "outpost_commitments_pending 1" in api.get("/metrics").text
    cloud.start_orthanc()
    report = mod.wait_report(txn)
    assert report["Status"] == "Success", report
    assert committed(report) == uids(files)
    assert set(cloud.instances()) == uids(files)
    # Recorded just after Orthanc has the report (its log line says so).
    wait_for(lambda: log_lines(rx, "commit.report"), 10, what="the report's log line")
    assert api.ok("GET", "/api/status")["commitments"] == {"pending": 0, "oldest_age": None}


def test_cloud_fails_a_quarantined_instance(pipelines, modality, tmp_path):
    port = free_port()
    mod = modality(port)
    cloud, rx, uplink = pipelines(receiver={"port": port}, **{"peer modality": mod.peer})
    good = study(tmp_path, "good", n=2)
    refused = study(tmp_path, "refused", n=1, patient_id=REFUSE_PATIENT_ID)
    txn = mod.store_and_commit(good + refused)
    report = mod.wait_report(txn)
    assert report["Status"] == "Failure", report
    assert committed(report) == uids(good)
    assert failures(report) == {u: PROCESSING_FAILURE for u in uids(refused)}
    assert rx.rows("state = 'quarantined'")


@pytest.mark.parametrize("victim", ["receiver", "uplink"])
def test_commitment_survives_kill9(pipelines, modality, tmp_path, victim):
    port = free_port()
    mod = modality(port)
    cloud, rx, uplink = pipelines(start_uplink=False, receiver={"port": port},
                                  **{"peer modality": mod.peer})
    files = study(tmp_path, "s")
    txn = mod.store_and_commit(files)
    wait_for(lambda: log_lines(rx, "commit.request"), 10, what="the request")
    if victim == "receiver":
        rx.kill9()
        assert mod.report(txn)["Status"] == "Pending"
        rx.start()
        uplink.start()
    else:
        uplink.start()
        uplink.kill9()
        assert mod.report(txn)["Status"] == "Pending"
        uplink.start()
    report = mod.wait_report(txn)
    assert report["Status"] == "Success", report
    assert committed(report) == uids(files)


# --- the raw client: the same association, and an unknown instance ---------


def encode(ds):
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    return buf.getvalue()


def n_action_rq(message_id):
    us = lambda v: struct.pack("<H", v)  # noqa: E731
    return dul.command_set([
        (0x0003, dul._uid(COMMITMENT)),           # RequestedSOPClassUID
        (0x0100, us(N_ACTION_RQ)),                # CommandField
        (0x0110, us(message_id)),                 # MessageID
        (0x0800, us(0x0000)),                     # CommandDataSetType: a dataset follows
        (0x1001, dul._uid(COMMITMENT_INSTANCE)),  # RequestedSOPInstanceUID
        (0x1008, us(1)),                          # ActionTypeID: request commitment
    ])


def commitment_request(uids, txn="2.25.1234567", sop_class=dul.CT_IMAGE_STORAGE):
    """An N-ACTION's dataset asking to commit uids, encoded."""
    ds = Dataset()
    ds.TransactionUID = txn
    ds.ReferencedSOPSequence = []
    for uid in uids:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = uid
        ds.ReferencedSOPSequence.append(item)
    return encode(ds)


def ask_and_leave(port, uids, calling="RAWSCU"):
    """Asks the receiver on port to commit uids and releases at once (the
    report then goes to a new association, to calling's [peer])."""
    with dul.Client(port) as c:
        c.associate([(COMMITMENT, [dul.EXPLICIT_LE])], calling=calling)
        pc = c.negotiation.context_for(COMMITMENT)
        c.send_command(pc, n_action_rq(1))
        c.send_dataset(pc, commitment_request(uids))
        rsp = c.recv_command()
        assert dul._us(rsp[0x0100]) == N_ACTION_RSP and dul._us(rsp[0x0900]) == 0, rsp
        c.release()


def recv_dataset(client):
    """The dataset PDVs that follow a command, decoded (explicit VR LE)."""
    data = b""
    while True:
        pdu_type, body = client.recv_pdu()
        assert pdu_type == dul.P_DATA_TF, pdu_type
        pos = 0
        while pos < len(body):
            length, _, control = struct.unpack_from(">IBB", body, pos)
            data += body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if control & dul.PDV_LAST:
                return pydicom.dcmread(io.BytesIO(data), force=True)


def test_same_association_report_and_unknown_instance(receivers, tmp_path):
    rx = receivers(receiver={"commitment": "local"}).start()
    files = study(tmp_path, "s", n=2)
    assert storescu(rx.port, files).returncode == 0
    known = sorted(uids(files))
    with dul.Client(rx.port) as c:
        c.associate([(COMMITMENT, [dul.EXPLICIT_LE])], calling="RAWSCU")
        pc = c.negotiation.context_for(COMMITMENT)
        assert pc is not None, "the Storage Commitment context was not accepted"
        c.send_command(pc, n_action_rq(1))
        c.send_dataset(pc, commitment_request(known + ["2.25.999"]))
        rsp = c.recv_command()
        assert dul._us(rsp[0x0100]) == N_ACTION_RSP and dul._us(rsp[0x0900]) == 0
        # Kept open: the report comes here.
        rq = c.recv_command()
        assert dul._us(rq[0x0100]) == N_EVENT_REPORT_RQ
        assert dul._text(rq[0x1000]) == COMMITMENT_INSTANCE
        assert dul._us(rq[0x1002]) == 2  # some failed
        report = recv_dataset(c)
        us = lambda v: struct.pack("<H", v)  # noqa: E731
        c.send_command(pc, dul.command_set([
            (0x0002, dul._uid(COMMITMENT)), (0x0100, us(N_EVENT_REPORT_RSP)),
            (0x0120, rq[0x0110]), (0x0800, us(0x0101)), (0x0900, us(0)),
            (0x1000, dul._uid(COMMITMENT_INSTANCE)), (0x1002, rq[0x1002])]))
        c.release()
    assert report.TransactionUID == "2.25.1234567"
    assert [i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence] == known
    [failed] = report.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == "2.25.999"
    assert failed.FailureReason == NO_SUCH_INSTANCE
    wait_for(lambda: log_lines(rx, "commit.report"), 10, what="the report's log line")
    assert "via=same-association" in log_lines(rx, "commit.report")[0]


def test_malformed_request_is_refused(receivers):
    rx = receivers().start()
    ds = Dataset()
    ds.TransactionUID = "2.25.77"  # no Referenced SOP Sequence
    with dul.Client(rx.port) as c:
        c.associate([(COMMITMENT, [dul.EXPLICIT_LE])], calling="RAWSCU")
        pc = c.negotiation.context_for(COMMITMENT)
        c.send_command(pc, n_action_rq(1))
        c.send_dataset(pc, encode(ds))
        rsp = c.recv_command()
        assert dul._us(rsp[0x0900]) == 0x0115
        c.release()
    [line] = log_lines(rx, "commit.refused")
    assert "Referenced SOP Sequence" in line
    with rx.db() as con:
        assert con.execute("SELECT COUNT(*) FROM commitments").fetchone()[0] == 0
