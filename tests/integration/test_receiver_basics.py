"""outpost-receiver: C-ECHO, a first C-STORE, and what lands in the spool."""
import os

from outpost import PYDICOM_FILES, blake2b, dataset_bytes, echoscu, storescu


def test_echo(receiver):
    r = echoscu(receiver.port)
    assert r.returncode == 0, r.stderr
    assert "event=assoc.end" in receiver.log()


def test_store_lands_in_spool_with_row_and_hash(receiver):
    src = os.path.join(PYDICOM_FILES, "CT_small.dcm")
    r = storescu(receiver.port, [src])
    assert r.returncode == 0, r.stderr
    rows = receiver.rows()
    assert len(rows) == 1
    row = rows[0]
    assert row["sop_instance_uid"] == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert row["study_uid"] == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert row["modality"] == "CT"
    assert row["calling_aet"] == "STORESCU"
    assert row["state"] == "queued"
    path = receiver.object_path(row["hash"])
    assert blake2b(path) == row["hash"]
    assert os.path.getsize(path) == row["size"]
    assert receiver.tmp_files() == []
    # The log names the instance by UID and never carries the patient's name.
    log = receiver.log()
    assert "event=store.ok" in log and row["sop_instance_uid"] in log
    assert "CompressedSamples" not in log  # CT_small's PatientName


def test_same_instance_twice_is_one_row(receiver):
    src = os.path.join(PYDICOM_FILES, "CT_small.dcm")
    assert storescu(receiver.port, [src]).returncode == 0
    assert storescu(receiver.port, [src]).returncode == 0
    assert len(receiver.rows()) == 1
    assert "result=duplicate" in receiver.log()
    assert len(receiver.stored_files()) == 1
