"""Issue 15: a modality cannot replace another modality's queued instance
by re-using its SOP Instance UID with other bytes. The C-STORE is refused
(0x0124 "Refused: Not Authorized", with an Error Comment), the attempt is
logged, and the cloud receives the original. The same calling AE sending
other bytes still replaces its own instance (DESIGN: the newer version).
"""
import io

import pydicom

import dicomgen
import dul
from outpost import dataset_bytes, storescu

REFUSED = 0x0124
COMMENT = "SOP Instance UID queued from another AE"


def other_bytes(path, out):
    ds = pydicom.dcmread(path)
    ds.SeriesDescription = "FORGED"
    ds.save_as(out)
    return out


def test_another_ae_cannot_replace_a_queued_instance(pipelines, tmp_path):
    p = pipelines(start_uplink=False)
    original, own = dicomgen.make_ct_study(str(tmp_path / "s"), 2, rows=64, cols=64)
    uid = str(pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID)
    own_uid = str(pydicom.dcmread(own, stop_before_pixels=True).SOPInstanceUID)
    p.send([original, own], calling="MOD_A")
    forged = other_bytes(original, str(tmp_path / "forged.dcm"))
    row = p.receiver.rows("sop_instance_uid = ?", (uid,))[0]

    # A real modality under another AE title is told no.
    r = storescu(p.receiver.port, [forged], calling="MOD_B", verbose=True)
    assert "Received Store Response (Success)" not in r.stderr
    assert "0x124" in r.stderr, r.stderr
    # With the reason in the Error Comment.
    with dul.Client(p.receiver.port) as c:
        assert c.associate([(dul.CT_IMAGE_STORAGE, [dul.EXPLICIT_LE])], calling="MOD_C").accepted
        assert c.c_store(dul.CT_IMAGE_STORAGE, uid, dataset_bytes(forged)) == (REFUSED, COMMENT)
        c.release()
    assert p.receiver.rows("sop_instance_uid = ?", (uid,))[0]["hash"] == row["hash"]
    lines = [line for line in p.receiver.log().splitlines() if "event=store.refused" in line]
    assert len(lines) == 2, lines
    assert f'peer=127.0.0.1 calling="MOD_B" sop="{uid}" status=not-authorized' in lines[0]

    # The same AE still replaces its own instance.
    p.send([other_bytes(own, str(tmp_path / "own2.dcm"))], calling="MOD_A")
    assert p.receiver.log().count("result=replaced") == 1

    p.uplink.start()
    p.wait_drained()
    p.assert_cloud_holds({uid, own_uid})
    assert dataset_bytes(p.cloud.instance_file(uid)) == dataset_bytes(original)
    held = pydicom.dcmread(io.BytesIO(p.cloud.instance_file(own_uid)))
    assert held.SeriesDescription == "FORGED"  # the own replacement was sent
