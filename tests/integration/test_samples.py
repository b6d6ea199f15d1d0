"""outpost-receiver against every storable pydicom sample, bit for bit.

Each sample is sent by storescu with the transfer-syntax flag that matches
the file's own transfer syntax. storescu re-encodes many files on the way
(NOTES.md), so the file itself is not the oracle: the same storescu
invocation also goes to DCMTK's storescp +B (--bit-preserving; note that
storescp's -B is --normal, which re-encodes), and the dataset Outpost stored
must equal the dataset storescp stored for that SOP Instance UID. Outpost must also keep the transfer syntax the file was sent
in (no transcoding) and index the file's own UIDs.

Samples are the files under pydicom's test_files (sub-folders included)
with File Meta Information giving a transfer syntax and a dataset whose
SOPClassUID and SOPInstanceUID pydicom reads. That rules out today:
  no File Meta Information: ExplVR_BigEndNoMeta.dcm, ExplVR_LitEndNoMeta.dcm,
    no_meta.dcm, rtstruct.dcm, and the non-DICOM README.txt, *.json,
    *.dump, zipMR.gz, dicomdirtests/README.txt, TINY_ALPHA/README;
  no transfer syntax in the meta: meta_missing_tsyntax.dcm;
  no SOP Class/Instance UID in the dataset: UN_sequence.dcm,
    empty_charset_LEI.dcm, nested_priv_SQ.dcm, no_meta_group_length.dcm,
    priv_SQ.dcm, and the DICOMDIRs under dicomdirtests/ (media directories,
    not storage instances).
Of the rest, storescu cannot load the ones in STORESCU_CANNOT_SEND (the
reasons are beside them; test_storescu_still_cannot_send_the_skipped_samples
keeps that list honest). Everything else is sent.
"""
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field

import pydicom
import pydicom.filereader
import pytest

from outpost import PYDICOM_FILES, Receiver, Storescp, blake2b, dataset_bytes, storescu

HERE = os.path.dirname(os.path.abspath(__file__))
STORESCU_CFG = os.path.join(HERE, "data", "storescu-all.cfg")

# storescu's flag for each transfer syntax: propose that syntax (and, for the
# compressed ones, the uncompressed ones after it).
FLAG_FOR_TS = {
    "1.2.840.10008.1.2": "-xi",          # implicit VR little endian
    "1.2.840.10008.1.2.1": "-xe",        # explicit VR little endian
    "1.2.840.10008.1.2.2": "-xb",        # explicit VR big endian
    "1.2.840.10008.1.2.1.99": "-xd",     # deflated explicit VR little endian
    "1.2.840.10008.1.2.4.50": "-xy",     # JPEG baseline
    "1.2.840.10008.1.2.4.51": "-xx",     # JPEG extended
    "1.2.840.10008.1.2.4.70": "-xs",     # JPEG lossless SV1
    "1.2.840.10008.1.2.4.90": "-xv",     # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",     # JPEG 2000
    "1.2.840.10008.1.2.4.80": "-xt",     # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "-xu",     # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "-xr",        # RLE lossless
}

# SOP classes missing from storescu's built-in list: sent with the profile of
# data/storescu-all.cfg instead of a transfer-syntax flag.
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
NEEDS_PROFILE = {SEGMENTATION}

# Samples that pass the pydicom checks but that storescu (DCMTK 3.6.7) cannot
# load, with the words of its refusal.
STORESCU_CANNOT_SEND = {
    # PixelData runs past the end of the file.
    "MR_truncated.dcm": "Bad DICOM file",
    # IsocenterPosition runs past the end of the file.
    "rtplan_truncated.dcm": "Bad DICOM file",
    # Says explicit VR but is not: DCMTK reads garbage tags and gives up.
    "SC_rgb_jpeg.dcm": "Bad DICOM file",
    # Every element is written with VR UN: DCMTK finds no SOP Class UID.
    "rtdose_rle.dcm": "No SOP Class or Instance UID",
    "rtdose_rle_1frame.dcm": "No SOP Class or Instance UID",
}

# How many samples are sent today (DCMTK 3.6.7, pydicom 2.3.1). Fewer means
# samples are being skipped that were not before.
SENT_TODAY = 134

# Several MR_small variants share one SOP Instance UID. The order is not the
# file names' order, so "the last one sent" is not "the last one listed".
# MR_small_bigendian and MR_small_expb go over the wire as the same bytes:
# they are not sent one after the other, and neither is last.
MR_SMALL_UID = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"
MR_SMALL_ORDER = [
    "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_expb.dcm",
    "MR_small_jp2klossless.dcm", "MR_small_padded.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_implicit.dcm",
]


@dataclass
class Sample:
    rel: str
    path: str
    ts: str
    sop_class: str
    sop_instance: str
    study: str
    series: str

    def storescu_flags(self):
        if self.sop_class in NEEDS_PROFILE:
            return ["-xf", STORESCU_CFG, "Extra"]
        return [FLAG_FOR_TS.get(self.ts, "--unknown-transfer-syntax-" + self.ts)]


def _survey():
    """The storage instances among pydicom's test files, in a stable order."""
    found = []
    for dirpath, dirs, files in os.walk(PYDICOM_FILES):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    meta = pydicom.filereader.read_file_meta_info(path)
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                except Exception:  # not DICOM, or no File Meta Information
                    continue
                ts = meta.get("TransferSyntaxUID")
                uids = [ds.get(k) for k in ("SOPClassUID", "SOPInstanceUID",
                                            "StudyInstanceUID", "SeriesInstanceUID")]
            if not ts or not uids[0] or not uids[1]:
                continue
            found.append(Sample(os.path.relpath(path, PYDICOM_FILES), path, str(ts),
                                *[str(u) if u else "" for u in uids]))
    return found


SAMPLES = _survey()
SENDABLE = [s for s in SAMPLES if s.rel not in STORESCU_CANNOT_SEND]
BY_NAME = {s.rel: s for s in SAMPLES}


@dataclass
class Outcome:
    """What happened to one sample: both storescu runs and what each SCP kept."""
    batch: list
    ref_run: subprocess.CompletedProcess
    rx_run: subprocess.CompletedProcess
    reference: bytes = None     # the file storescp +B wrote
    rows: list = field(default_factory=list)
    stored_copy: str = None     # a copy of Outpost's object, taken right away


def _batches(samples):
    """Groups samples sent with the same storescu flags into runs whose SOP
    Instance UIDs are distinct, so each UID maps to one file on both sides."""
    groups = {}
    for s in samples:
        groups.setdefault(tuple(s.storescu_flags()), []).append(s)
    for flags, members in groups.items():
        runs = []
        for s in members:
            for run in runs:
                if all(o.sop_instance != s.sop_instance for o in run):
                    run.append(s)
                    break
            else:
                runs.append([s])
        for run in runs:
            yield list(flags), run


def _first_difference(a, b):
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"{len(a)} vs {len(b)} bytes, first difference at offset {n}"


def _log_about(log, uid):
    return "\n".join(line for line in log.splitlines() if uid in line)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    scp = Storescp(str(tmp_path_factory.mktemp("storescp")))
    yield scp
    scp.stop()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, reference):
    """Sends every sample to storescp and to one receiver, batch by batch."""
    work = tmp_path_factory.mktemp("samples")
    copies = work / "stored"
    copies.mkdir()
    rx = Receiver(str(work / "rx")).start()
    results = {}
    try:
        for flags, batch in _batches(SENDABLE):
            files = [s.path for s in batch]
            ref_run = storescu(reference.port, files, flags, verbose=True)
            rx_run = storescu(rx.port, files, flags, verbose=True)
            received = reference.take()
            for s in batch:
                o = Outcome([b.rel for b in batch], ref_run, rx_run, received.get(s.sop_instance))
                o.rows = rx.rows("sop_instance_uid = ?", (s.sop_instance,))
                if len(o.rows) == 1 and os.path.exists(rx.object_path(o.rows[0]["hash"])):
                    # A later batch may replace this UID's object: keep a copy.
                    o.stored_copy = str(copies / f"{len(results):04d}.dcm")
                    shutil.copyfile(rx.object_path(o.rows[0]["hash"]), o.stored_copy)
                results[s.rel] = o
        results["__log__"] = rx.log()
        results["__tmp__"] = rx.tmp_files()
        yield results
    finally:
        rx.kill9()


@pytest.mark.parametrize("sample", SENDABLE, ids=[s.rel for s in SENDABLE])
def test_sample_is_stored_as_storescp_stores_it(sample, outcomes):
    o = outcomes[sample.rel]
    flags = " ".join(sample.storescu_flags())
    assert sample.ts in FLAG_FOR_TS or sample.sop_class in NEEDS_PROFILE, \
        f"no storescu flag known for transfer syntax {sample.ts}"
    assert o.ref_run.returncode == 0 and o.reference is not None, \
        f"reference run (storescu {flags} -> storescp) failed:\n{o.ref_run.stderr}"
    assert o.rx_run.returncode == 0, \
        f"storescu {flags} -> outpost failed (batch {o.batch}):\n{o.rx_run.stderr}\n" \
        f"receiver log:\n{_log_about(outcomes['__log__'], sample.sop_instance)}"
    assert len(o.rows) == 1, f"{len(o.rows)} rows for {sample.sop_instance}"
    row = o.rows[0]
    assert o.stored_copy, f"no object file for row hash {row['hash']}"

    # The file is the one its name and row say it is.
    assert blake2b(o.stored_copy) == row["hash"]
    assert os.path.getsize(o.stored_copy) == row["size"]

    # Bit-preserving: the dataset is what went over the wire, as storescp +B kept it.
    with open(o.stored_copy, "rb") as f:
        stored = dataset_bytes(f.read())
    ref = dataset_bytes(o.reference)
    assert stored == ref, "dataset differs from storescp +B's: " + _first_difference(stored, ref)

    # No transcoding: the file's own transfer syntax, in the meta header and the row.
    meta = pydicom.filereader.read_file_meta_info(o.stored_copy)
    assert meta.TransferSyntaxUID == sample.ts
    assert row["transfer_syntax"] == sample.ts
    assert meta.MediaStorageSOPClassUID == sample.sop_class
    assert meta.MediaStorageSOPInstanceUID == sample.sop_instance

    # The row indexes the file's own UIDs.
    assert row["sop_class_uid"] == sample.sop_class
    assert row["study_uid"] == sample.study
    assert row["series_uid"] == sample.series


def test_samples_leave_no_temporary_files_or_errors(outcomes):
    assert outcomes["__tmp__"] == []
    log = outcomes["__log__"]
    for bad in ("event=store.refused", "event=store.rejected", "event=store.aborted",
                "event=store.failed", "level=error"):
        assert bad not in log, [line for line in log.splitlines() if bad in line][:5]


def test_number_of_samples_sent_does_not_shrink():
    assert len(SENDABLE) >= SENT_TODAY, (
        f"only {len(SENDABLE)} samples are sent (was {SENT_TODAY}); "
        f"skipped: {sorted(set(BY_NAME) - {s.rel for s in SENDABLE})}")
    # Every transfer syntax storescu has a flag for among the samples is covered.
    assert {s.ts for s in SENDABLE} >= set(FLAG_FOR_TS) - {"1.2.840.10008.1.2.4.81"}


@pytest.mark.parametrize("name", sorted(STORESCU_CANNOT_SEND))
def test_storescu_still_cannot_send_the_skipped_samples(name, reference):
    """If DCMTK learns to load one of these, it belongs in the samples sent."""
    assert name in BY_NAME, f"{name} no longer passes the pydicom checks"
    s = BY_NAME[name]
    r = storescu(reference.port, [s.path], s.storescu_flags())
    assert r.returncode != 0
    assert STORESCU_CANNOT_SEND[name] in r.stderr
    assert reference.take() == {}


def test_mr_small_variants_replace_one_another(receivers, tmp_path):
    """Same SOP Instance UID, other bytes: one row, the newest version's file."""
    variants = [BY_NAME[n] for n in MR_SMALL_ORDER]
    assert {v.sop_instance for v in variants} == {MR_SMALL_UID}
    assert len({v.ts for v in variants}) >= 6
    ref_scp = Storescp(str(tmp_path / "storescp"))
    rx = receivers().start()
    seen = []
    try:
        for i, v in enumerate(variants):
            flags = v.storescu_flags()
            assert storescu(ref_scp.port, [v.path], flags).returncode == 0
            ref = dataset_bytes(ref_scp.take()[MR_SMALL_UID])
            # Each version differs from the one before, so each must replace it.
            assert not seen or ref != seen[-1][1] or v.ts != seen[-1][0]
            seen.append((v.ts, ref))

            before = rx.log().count("event=store.ok")
            r = storescu(rx.port, [v.path], flags)
            assert r.returncode == 0, r.stderr
            new = [line for line in rx.log().splitlines() if "event=store.ok" in line][before:]
            assert len(new) == 1, new
            assert f'sop="{MR_SMALL_UID}" ' in new[0]
            assert ("result=stored" if i == 0 else "result=replaced") in new[0], new[0]

            rows = rx.rows()
            assert len(rows) == 1
            row = rows[0]
            assert row["sop_instance_uid"] == MR_SMALL_UID
            assert row["transfer_syntax"] == v.ts
            assert f"hash={row['hash']} " in new[0]
            # The replaced version's file is gone: only the newest is kept.
            assert rx.stored_files() == [rx.object_path(row["hash"])]
            with open(rx.object_path(row["hash"]), "rb") as f:
                stored = dataset_bytes(f.read())
            assert stored == ref, _first_difference(stored, ref)
        # The survivor is the last version sent and none of the earlier ones.
        assert [i for i, (ts, ref) in enumerate(seen)
                if ts == row["transfer_syntax"] and ref == stored] == [len(seen) - 1]
        assert rx.log().count("result=replaced") == len(variants) - 1
    finally:
        ref_scp.stop()
