"""transfer_syntax = jpeg-ls: what JPEG-LS can code reaches the cloud as
JPEG-LS Lossless, and DCMTK's own decoder (dcmdjpls) gives back the very
pixel data the modality sent; everything else arrives byte-identical. A
copy that fails its proof is never sent (the original is), a destination
that refuses JPEG-LS gets the originals, and a kill -9 while encoding
leaves no copy behind, half-written or not.
"""
import os
import subprocess

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from integration_fixtures import DRAIN_TIMEOUT, log_lines
from outpost import PYDICOM_FILES, Storescp, dataset_bytes, storescu, wait_for
from test_destination_operator import metrics, status

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, "..", "unit", "data")  # make-jpls-samples.py's
JPEG_LS = "1.2.840.10008.1.2.4.80"
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")

# pydicom's uncompressed samples that JPEG-LS can code (each MR_small
# variant gets a SOP Instance UID of its own: they share one).
PYDICOM_CODABLE = ["CT_small.dcm", "ExplVR_BigEnd.dcm", "MR_small.dcm", "MR_small_bigendian.dcm",
                   "MR_small_expb.dcm", "MR_small_implicit.dcm", "SC_rgb_small_odd.dcm"]
# ... and some it cannot: 32 bits, already compressed, no pixel data, and
# pixel data longer than its frames (MR_small_padded: 128 bytes after the
# last frame, which a JPEG-LS copy would not keep).
PYDICOM_NOT_CODABLE = ["rtdose_1frame.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "test-SR.dcm",
                       "MR_small_padded.dcm"]


def own_uid_copy(src, out_dir):
    """src with a SOP Instance UID of its own, in its own transfer syntax."""
    ds = pydicom.dcmread(src)
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    out = os.path.join(out_dir, os.path.basename(src))
    ds.save_as(out, write_like_original=True)
    return out


def storescu_flag(path):
    ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return {"1.2.840.10008.1.2": "-xi", "1.2.840.10008.1.2.1": "-xe",
            "1.2.840.10008.1.2.2": "-xb", "1.2.840.10008.1.2.4.90": "-xv",
            "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr"}.get(ts, "-xe")


def send(rx, files):
    for f in files:  # one association each: storescu proposes one syntax per run
        r = storescu(rx.port, [f], [storescu_flag(f)])
        assert r.returncode == 0, (f, r.stderr[-2000:])


def encodings(rx):
    """{SOP Instance UID: (state, reason)} of the spool's encodings."""
    with rx.db() as con:
        return {uid: (state, reason) for uid, state, reason in con.execute(
            "SELECT i.sop_instance_uid, e.state, e.reason FROM encodings e"
            " JOIN instances i ON i.hash = e.hash")}


def pixels_le(path, tmp):
    """The pixel values of a DICOM file, decoded by DCMTK into Explicit VR
    Little Endian (dcmdjpls for JPEG-LS, dcmconv for the rest), as pixel
    by pixel samples (Planar Configuration may change: PS3.5 8.2.3)."""
    out = os.path.join(tmp, os.path.basename(path) + ".le.dcm")
    ts = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    tool = ["dcmdjpls", "+te"] if ts == JPEG_LS else ["dcmconv", "+te"]
    subprocess.run(tool + [path, out], check=True, capture_output=True)
    ds = pydicom.dcmread(out)
    return ds.pixel_array.tobytes() + str(ds.pixel_array.dtype).encode()


def test_what_jpeg_ls_codes_arrives_as_jpeg_ls_with_the_same_pixels(tmp_path, pipelines):
    src = tmp_path / "src"
    src.mkdir()
    codable = [own_uid_copy(os.path.join(PYDICOM_FILES, f), str(src)) for f in PYDICOM_CODABLE]
    # (not the proof's own unit-test fixtures: one pixel, one attribute
    # changed under the same SOP Instance UID)
    codable += sorted(os.path.join(SAMPLES, f) for f in os.listdir(SAMPLES)
                      if f.startswith("jpls_") and f.endswith(".dcm") and
                      not f.endswith(("_patient.dcm", "_pixel.dcm")))
    other = [own_uid_copy(os.path.join(PYDICOM_FILES, f), str(src))
             for f in PYDICOM_NOT_CODABLE]
    p = pipelines(cloud={"transfer_syntax": "jpeg-ls"})
    send(p.receiver, codable + other)
    p.wait_drained()
    rows = {r["sop_instance_uid"]: r for r in p.receiver.rows()}
    assert {r["state"] for r in rows.values()} == {"sent"}
    held = p.cloud.instances()
    assert set(held) == set(rows)
    cloud_ts = {}
    for uid, row in rows.items():
        stored = tmp_path / f"{uid}.cloud.dcm"
        stored.write_bytes(p.cloud.instance_file(uid))
        cloud_ts[uid] = p.cloud.rest("GET", f"/instances/{held[uid]}/metadata/TransferSyntax",
                                     raw=True).decode()
        if cloud_ts[uid] == JPEG_LS:
            original = p.receiver.object_path(row["hash"])
            assert pixels_le(str(stored), str(tmp_path)) == \
                pixels_le(original, str(tmp_path)), uid
        else:
            assert cloud_ts[uid] == row["transfer_syntax"], (uid, cloud_ts[uid])
            with open(p.receiver.object_path(row["hash"]), "rb") as f:
                assert dataset_bytes(stored.read_bytes()) == dataset_bytes(f.read()), uid
    copies = sum(ts == JPEG_LS for ts in cloud_ts.values())
    # Every pydicom sample that JPEG-LS can code went as a copy, none of
    # those it cannot; each one sent as received says why.
    uid_of = {os.path.basename(f): str(pydicom.dcmread(f, stop_before_pixels=True)
                                       .SOPInstanceUID) for f in codable + other}
    for name in PYDICOM_CODABLE:
        assert cloud_ts[uid_of[name]] == JPEG_LS, (name, encodings(p.receiver)
                                                   .get(uid_of[name]))
    found = encodings(p.receiver)
    for name in PYDICOM_NOT_CODABLE:
        assert cloud_ts[uid_of[name]] != JPEG_LS, name
    for uid, ts in cloud_ts.items():
        if ts != JPEG_LS and rows[uid]["transfer_syntax"] in UNCOMPRESSED:
            assert found[uid][0] == "original" and found[uid][1], (uid, found.get(uid))
    st = status(p.receiver)["destinations"][0]["compression"]
    assert st["mode"] == "jpeg-ls" and st["since_start"]["sent_copies"] == copies, st
    assert st["since_start"]["bytes_after"] < st["since_start"]["bytes_before"], st
    m = metrics(p.receiver)
    assert m['outpost_destination_compressed_bytes_before_total{destination="cloud"}'] == \
        st["since_start"]["bytes_before"]
    assert m['outpost_destination_compressed_bytes_after_total{destination="cloud"}'] == \
        st["since_start"]["bytes_after"]
    assert m['outpost_destination_encode_seconds_total{destination="cloud"}'] > 0
    assert m['outpost_destination_sent_original_total{destination="cloud",reason="mismatch"}'] == 0
    # Sent everywhere: no copy is kept.
    assert not [f for f in p.receiver.stored_files() if f.endswith(".jls")]


def smooth_study(directory, n, rows=256, cols=256):
    """n CT slices that compress (a smooth body and mild noise, 12 bits)."""
    os.makedirs(directory, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    y, x = np.mgrid[0:rows, 0:cols]
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        ds = pydicom.Dataset()
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        uid = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.Modality, ds.InstanceNumber = "JPLS0001", "CT", i + 1
        body = ((x - cols / 2) ** 2 / (cols * 0.4) ** 2 + (y - rows / 2) ** 2 /
                (rows * 0.3) ** 2) < 1
        img = np.where(body, 1064 + (x + i) % 50, 24) + rng.normal(0, 8, (rows, cols))
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.clip(img, 0, 4095).astype("<u2").tobytes()
        path = os.path.join(directory, f"{i:04d}.dcm")
        ds.save_as(path, write_like_original=False)
        out.append(path)
    return out


def test_a_copy_that_fails_its_proof_is_never_sent(tmp_path, pipelines):
    p = pipelines(start_uplink=False, cloud={"transfer_syntax": "jpeg-ls"})
    p.uplink.env = {"OUTPOST_TEST_CORRUPT_JPLS": "1"}
    p.uplink.start()
    files = smooth_study(str(tmp_path / "s"), 3, rows=64, cols=64)
    p.send(files)
    p.wait_drained()
    uids = {r["sop_instance_uid"] for r in p.receiver.rows()}
    p.assert_cloud_holds(uids)  # the originals, byte for byte
    lines = log_lines(p.uplink, "uplink.encode.mismatch")
    assert len(lines) == 3 and all("level=error" in ln for ln in lines), lines
    assert {ln.split("sop=")[1].split()[0].strip('"') for ln in lines} == uids
    assert {s for s, _ in encodings(p.receiver).values()} == {"original"}
    st = status(p.receiver)["destinations"][0]["compression"]["since_start"]
    assert st["sent_original_mismatch"] == 3 and st["sent_copies"] == 0, st
    # A retry never encodes again: what was found is kept.
    p.uplink.stop()
    p.uplink.env = None
    p.uplink.start()
    assert len(log_lines(p.uplink, "uplink.encode.mismatch")) == 3


def test_a_destination_that_refuses_jpeg_ls_gets_the_originals(tmp_path, pipelines):
    scp = Storescp(str(tmp_path / "scp"), accept_all=False)
    try:
        p = pipelines(**{
            "cloud": {"enabled": "no"},
            "destination pacs": {"type": "dicom", "host": "127.0.0.1", "port": scp.port,
                                 "called_ae": "STORESCP", "retry_max_delay": 2,
                                 "transfer_syntax": "jpeg-ls"},
            "routing": {"default": "pacs"}})
        files = smooth_study(str(tmp_path / "s"), 4, rows=64, cols=64)
        p.send(files)
        p.wait_drained()
        got = scp.take()
        rows = {r["sop_instance_uid"]: r for r in p.receiver.rows()}
        assert set(got) == set(rows)
        for uid, data in got.items():
            with open(p.receiver.object_path(rows[uid]["hash"]), "rb") as f:
                assert dataset_bytes(data) == dataset_bytes(f.read()), uid
        assert any("mode=original" in ln and "refused JPEG-LS" in ln
                   for ln in log_lines(p.uplink, "uplink.compression")), p.uplink.log()[-2000:]
        d = [d for d in status(p.receiver)["destinations"] if d["name"] == "pacs"][0]
        assert d["compression"]["mode"] == "original", d["compression"]
        assert d["compression"]["since_start"]["sent_original_refused"] >= 1
    finally:
        scp.stop()


def test_kill9_while_encoding_leaves_no_copy_behind(tmp_path, pipelines):
    p = pipelines(start_uplink=False, cloud={"transfer_syntax": "jpeg-ls",
                                             "batch_max_instances": 5})
    files = smooth_study(str(tmp_path / "s"), 30, rows=512, cols=512)
    p.send(files)
    tmp_dir = os.path.join(p.receiver.spool, "tmp")
    kills = 0
    for _ in range(5):
        p.uplink.start()
        # Killed while a copy is being written, or soon after start.
        try:
            wait_for(lambda: any(f.endswith(".jls.part") for f in os.listdir(tmp_dir)), 10,
                     interval=0.005)
        except TimeoutError:
            pass
        p.uplink.kill9()
        kills += 1
    p.uplink.start()
    p.wait_drained()
    rows = {r["sop_instance_uid"]: r for r in p.receiver.rows()}
    assert {r["state"] for r in rows.values()} == {"sent"}
    held = p.cloud.instances()
    assert set(held) == set(rows)
    for uid, row in rows.items():
        stored = tmp_path / f"{uid}.dcm"
        stored.write_bytes(p.cloud.instance_file(uid))
        assert pixels_le(str(stored), str(tmp_path)) == \
            pixels_le(p.receiver.object_path(row["hash"]), str(tmp_path)), uid
    assert not [f for f in os.listdir(tmp_dir) if f.endswith(".jls.part")]
    assert not [f for f in p.receiver.stored_files() if f.endswith(".jls")]
    with p.receiver.db() as con:
        assert con.execute("SELECT COUNT(*) FROM encodings WHERE state = 'copy'"
                           ).fetchone()[0] == 0
    assert kills == 5


def test_auto_compresses_on_a_slow_link_and_not_on_a_fast_one(tmp_path, pipelines):
    slow = pipelines("slow", cloud={"transfer_syntax": "auto"}, shaping={"rate": "4Mbit"})
    files = smooth_study(str(tmp_path / "s"), 4, rows=64, cols=64)
    slow.send(files)
    slow.wait_drained()
    c = status(slow.receiver)["destinations"][0]["compression"]
    assert c["setting"] == "auto" and c["mode"] == "jpeg-ls", c
    assert "the link moves 0.5 MB/s" in c["why"], c
    assert c["since_start"]["sent_copies"] == 4, c
    held = slow.cloud.instances()
    assert {slow.cloud.rest("GET", f"/instances/{i}/metadata/TransferSyntax", raw=True)
            .decode() for i in held.values()} == {JPEG_LS}

    # Loopback and no shaping: the link outpaces one encoder thread, once
    # requests have measured it (full-size slices: requests of small ones
    # measured 8.6 MB/s on a loaded machine, below the encoder's 10 MB/s
    # guess).
    fast = pipelines("fast", cloud={"transfer_syntax": "auto"}, uplink={"encode_threads": 1})
    fast.send(smooth_study(str(tmp_path / "f"), 16, rows=512, cols=512))
    fast.wait_drained()
    wait_for(lambda: "not known" not in status(fast.receiver)["destinations"][0]
             ["compression"]["why"], 10, interval=0.2, what="auto to have measured the link")
    c = status(fast.receiver)["destinations"][0]["compression"]
    link, enc = (float(x.split(" MB/s")[0]) for x in c["why"].split("moves ")[1]
                 .split("codes ")[:2])
    assert link > enc and c["mode"] == "original", c
    assert any("mode=original" in ln for ln in log_lines(fast.uplink, "uplink.compression"))


def test_a_damaged_copy_is_made_again_not_sent(tmp_path, pipelines):
    p = pipelines(start_uplink=False, cloud={"transfer_syntax": "jpeg-ls"})
    p.cloud.stop_orthanc()  # nginx answers 502: the copies are made, and wait
    p.uplink.start()
    files = smooth_study(str(tmp_path / "s"), 3, rows=64, cols=64)
    p.send(files)
    copies = lambda: [f for f in p.receiver.stored_files() if f.endswith(".jls")]  # noqa: E731
    wait_for(lambda: len(copies()) == 3, DRAIN_TIMEOUT, what="three copies")
    with open(copies()[0], "r+b") as f:  # a disk fault in one copy
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 0x40]))
    p.cloud.start_orthanc()
    p.wait_drained()
    rows = {r["sop_instance_uid"]: r for r in p.receiver.rows()}
    assert {r["state"] for r in rows.values()} == {"sent"}
    held = p.cloud.instances()
    for uid, row in rows.items():
        stored = tmp_path / f"{uid}.dcm"
        stored.write_bytes(p.cloud.instance_file(uid))
        assert p.cloud.rest("GET", f"/instances/{held[uid]}/metadata/TransferSyntax",
                            raw=True).decode() == JPEG_LS
        assert pixels_le(str(stored), str(tmp_path)) == \
            pixels_le(p.receiver.object_path(row["hash"]), str(tmp_path)), uid
    assert len(log_lines(p.uplink, "spool.encoding.dropped")) == 1
    assert not log_lines(p.uplink, "uplink.quarantine")
