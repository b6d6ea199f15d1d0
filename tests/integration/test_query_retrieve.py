"""Query/retrieve at outpost-receiver (DICOM PS3.4 Annex C): C-FIND at
PATIENT, STUDY, SERIES and IMAGE levels (Patient Root and Study Root),
C-MOVE to a configured [peer NAME], C-GET on the requester's association,
C-CANCEL of a move, allow_query = no, a query during a cloud outage, and
instances that left the spool (evicted, discarded) no longer found.

The peers are DCMTK's own: findscu (answers extracted with -X to
rsp0001.dcm ... and read with pydicom, not parsed from its log), movescu,
getscu and storescp (tests/lib/outpost.py, bit-preserving +B). What is
sent is generated here: two patients, three studies, five series, eleven
small instances, distinct in every key the receiver matches on; one
patient's name in ISO_IR 100 (Latin-1) with SpecificCharacterSet set, and
one study stored in Implicit VR Little Endian (the others Explicit VR
Little Endian), so that retrieval shows whether the transfer syntax is
kept.

Every check compares what a user's query gets with what was sent: which
entities answer, and each returned value (counts of related studies,
series and instances, ModalitiesInStudy included).
"""
import glob
import io
import os
import re
import subprocess
import time

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         MRImageStorage, generate_uid)

import dicomgen
import dul
from integration_fixtures import flip_byte
from outpost import BUILD, DCMTK_ENV, Storescp, dataset_bytes, free_port, storescu, wait_for

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"

SUCCESS, CANCEL, MOVE_DESTINATION_UNKNOWN = 0x0000, 0xFE00, 0xA801

# --- what is sent --------------------------------------------------------------

PATIENTS = {
    "QRPAT1": {"PatientName": "Doe^Jane", "PatientBirthDate": "19700101", "PatientSex": "F"},
    # Latin-1 with its character set: the answers must say ISO_IR 100.
    "QRPAT2": {"PatientName": "Müller^Jürgen", "PatientBirthDate": "19851224",
               "PatientSex": "M", "SpecificCharacterSet": "ISO_IR 100"},
}

# name: patient, study attributes, transfer syntax, series (Modality,
# SeriesNumber, SeriesDescription, BodyPartExamined, instances).
STUDIES = {
    "head": {"patient": "QRPAT1", "ts": ExplicitVRLittleEndian,
             "attrs": {"StudyDate": "20200315", "StudyTime": "101500",
                       "AccessionNumber": "ACC001", "StudyID": "HEAD1",
                       "StudyDescription": "HEAD CT MR", "ReferringPhysicianName": "House^Gregory"},
             "series": [("CT", 1, "AXIAL", "HEAD", 3), ("CT", 2, "CORONAL", "HEAD", 2),
                        ("MR", 3, "T1 SAG", "HEAD", 2)]},
    "knee": {"patient": "QRPAT1", "ts": ExplicitVRLittleEndian,
             "attrs": {"StudyDate": "20210620", "StudyTime": "083000",
                       "AccessionNumber": "ACC002", "StudyID": "KNEE1",
                       "StudyDescription": "KNEE MR", "ReferringPhysicianName": "Grey^Meredith"},
             "series": [("MR", 1, "PD FS", "KNEE", 2)]},
    "chest": {"patient": "QRPAT2", "ts": ImplicitVRLittleEndian,
              "attrs": {"StudyDate": "20201231", "StudyTime": "235959",
                        "AccessionNumber": "ACC003", "StudyID": "CHEST1",
                        "StudyDescription": "CHEST CT", "ReferringPhysicianName": "Wilson^James"},
              "series": [("CT", 1, "LUNG", "CHEST", 2)]},
}


class Archive:
    """The generated files and what each entity holds (the expected answers)."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.files = []                    # every path, in send order
        self.study_uid, self.study_files = {}, {}
        self.series = {}                   # series UID -> dict (study, modality, ...)
        self.instances = {}                # SOP Instance UID -> dict (path, series, ...)
        rng = np.random.default_rng(7)
        for name, study in STUDIES.items():
            suid = generate_uid()
            self.study_uid[name] = suid
            self.study_files[name] = []
            for modality, number, desc, body_part, count in study["series"]:
                seuid = generate_uid()
                self.series[seuid] = {"study": name, "Modality": modality,
                                      "SeriesNumber": number, "SeriesDescription": desc,
                                      "BodyPartExamined": body_part, "instances": []}
                for i in range(count):
                    path = os.path.join(directory, f"{name}-{number}-{i + 1}.dcm")
                    sop = self._write(path, study, suid, seuid, modality, number, desc,
                                      body_part, i + 1, rng)
                    self.series[seuid]["instances"].append(sop)
                    self.instances[sop] = {"path": path, "series": seuid, "study": name,
                                           "InstanceNumber": i + 1,
                                           "SOPClassUID": MRImageStorage if modality == "MR"
                                           else CTImageStorage}
                    self.files.append(path)
                    self.study_files[name].append(path)

    @staticmethod
    def _write(path, study, suid, seuid, modality, number, desc, body_part, inst, rng):
        sop_class = MRImageStorage if modality == "MR" else CTImageStorage
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = study["ts"]
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        patient = dict(PATIENTS[study["patient"]])
        if "SpecificCharacterSet" in patient:
            ds.SpecificCharacterSet = patient.pop("SpecificCharacterSet")
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientID = study["patient"]
        for k, v in patient.items():
            setattr(ds, k, v)
        for k, v in study["attrs"].items():
            setattr(ds, k, v)
        ds.StudyInstanceUID = suid
        ds.SeriesInstanceUID = seuid
        ds.Modality = modality
        ds.SeriesNumber = number
        ds.SeriesDescription = desc
        ds.BodyPartExamined = body_part
        ds.InstanceNumber = inst
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, size=(16, 16), dtype=np.uint16).tobytes()
        ds.is_little_endian = True
        ds.is_implicit_VR = study["ts"] == ImplicitVRLittleEndian
        ds.save_as(path, write_like_original=False)
        return str(ds.SOPInstanceUID)

    # The expected answers, from what was generated.

    def studies_of(self, patient_id):
        return [n for n, s in STUDIES.items() if s["patient"] == patient_id]

    def series_of(self, name):
        return [u for u, s in self.series.items() if s["study"] == name]

    def study_answer(self, name):
        study = STUDIES[name]
        want = dict(study["attrs"], PatientID=study["patient"],
                    StudyInstanceUID=self.study_uid[name],
                    ModalitiesInStudy={m for m, *_ in study["series"]},
                    NumberOfStudyRelatedSeries=len(study["series"]),
                    NumberOfStudyRelatedInstances=sum(s[-1] for s in study["series"]))
        want.update({k: v for k, v in PATIENTS[study["patient"]].items()})
        return want

    def patient_answer(self, patient_id):
        names = self.studies_of(patient_id)
        want = dict(PATIENTS[patient_id], PatientID=patient_id,
                    NumberOfPatientRelatedStudies=len(names),
                    NumberOfPatientRelatedSeries=sum(len(STUDIES[n]["series"]) for n in names),
                    NumberOfPatientRelatedInstances=sum(
                        s[-1] for n in names for s in STUDIES[n]["series"]))
        return want


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("qr-files")
    return Archive(str(d))


def loaded(receivers, archive, name="rx", **overrides):
    """A started receiver holding every instance of the archive (queued: no
    uplink runs)."""
    rx = receivers(name, **overrides).start()
    send(rx, archive.files)
    return rx


def send(rx, files):
    """storescu, each file in its own transfer syntax: storescu converts a
    file to the syntax the receiver accepted, so the Implicit VR files go
    in an association that proposes only that (-xi)."""
    implicit = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True)
                .file_meta.TransferSyntaxUID == ImplicitVRLittleEndian]
    explicit = [f for f in files if f not in implicit]
    for batch, flags in ((explicit, ()), (implicit, ("-xi",))):
        if batch:
            _send(rx, batch, flags)


def _send(rx, files, flags):
    r = storescu(rx.port, files, flags, verbose=True)
    acked = r.stderr.count("Received Store Response (Success)")
    assert r.returncode == 0 and acked == len(files), \
        f"storescu: {acked} of {len(files)} stored, exit {r.returncode}:\n{r.stderr[-2000:]}"


# --- the SCUs ------------------------------------------------------------------


class Found(list):
    """findscu's answers (pydicom datasets, in the order received), with
    the process."""

    def __init__(self, proc, answers):
        super().__init__(answers)
        self.proc = proc

    def __repr__(self):
        return f"{len(self)} answers; findscu exit {self.proc.returncode}:\n" \
               f"{self.proc.stdout[-1500:]}{self.proc.stderr[-2500:]}"


def findscu(rx, tmp_path, level, keys, root="S", calling="FINDSCU"):
    """A C-FIND at level with keys {keyword or gggg,eeee: value} ("" for
    universal matching); root "S" (Study Root) or "P" (Patient Root).
    Returns the answers; asserts findscu succeeded."""
    out = tmp_path / f"find-{time.monotonic_ns()}"
    out.mkdir()
    cmd = ["findscu", f"-{root}", "-v", "-aet", calling, "-aec", "OUTPOST", "-X", "-od", str(out),
           "-k", f"QueryRetrieveLevel={level}"]
    for k, v in keys.items():
        cmd += ["-k", f"{k}={v}"]
    cmd += ["localhost", str(rx.port)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=DCMTK_ENV)
    answers = [pydicom.dcmread(p, force=True) for p in sorted(glob.glob(str(out / "rsp*.dcm")))]
    found = Found(proc, answers)
    assert proc.returncode == 0, found
    # findscu logs the final status; anything but Success fails the test.
    assert "Received Final Find Response (Success)" in proc.stderr + proc.stdout, found
    return found


def by(answers, keyword):
    """{value of keyword: answer}; each value answered once."""
    got = {}
    for a in answers:
        key = value(a, keyword)
        assert key not in got, f"{keyword} {key} answered twice: {answers!r}"
        got[key] = a
    return got


def value(answer, keyword):
    """An answer's value of keyword, as plain Python: str, int for IS/US,
    set for a multi-valued code string (ModalitiesInStudy)."""
    assert keyword in answer, f"{keyword} missing from the answer:\n{answer}"
    v = answer[keyword].value
    if keyword.startswith("NumberOf") or keyword in ("SeriesNumber", "InstanceNumber"):
        return int(v) if v not in (None, "") else None
    if keyword == "ModalitiesInStudy":
        if v in (None, ""):
            return set()
        return {str(x) for x in v} if isinstance(v, (list, pydicom.multival.MultiValue)) \
            else {str(v)}
    return "" if v is None else str(v)


def assert_values(answer, want):
    got = {k: value(answer, k) for k in want}
    assert got == want, f"answer differs from what was sent:\n got {got}\nwant {want}"


class Retrieved:
    """What movescu or getscu reported: the final response's status and
    sub-operation counts (from its debug dump of the C-MOVE-RSP/C-GET-RSP
    messages), and every Pending response."""

    def __init__(self, proc):
        self.proc = proc
        self.text = proc.stdout + proc.stderr
        self.responses = []
        for block in self.text.split("INCOMING DIMSE MESSAGE")[1:]:
            block = block.split("END DIMSE MESSAGE")[0]
            if not re.search(r"Message Type\s*: C-(MOVE|GET) RSP", block):
                continue
            rsp = {}
            for field, key in (("Remaining Suboperations", "remaining"),
                               ("Completed Suboperations", "completed"),
                               ("Failed Suboperations", "failed"),
                               ("Warning Suboperations", "warning")):
                m = re.search(field + r"\s*:\s*(\d+)", block)
                rsp[key] = int(m.group(1)) if m else None
            m = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
            rsp["status"] = int(m.group(1), 16) if m else None
            self.responses.append(rsp)

    @property
    def final(self):
        finals = [r for r in self.responses if r["status"] not in (0xFF00, 0xFF01)]
        assert len(finals) == 1, f"expected one final response, got {finals}:\n{self}"
        return finals[0]

    @property
    def pending(self):
        return [r for r in self.responses if r["status"] in (0xFF00, 0xFF01)]

    def __repr__(self):
        return f"exit {self.proc.returncode}:\n{self.text[-4000:]}"


def movescu(rx, keys, dest, level="STUDY", root="S", extra=(), timeout=120):
    cmd = ["movescu", f"-{root}", "-d", "-aet", "MOVESCU", "-aec", "OUTPOST", "-aem", dest,
           "-k", f"QueryRetrieveLevel={level}"]
    for k, v in keys.items():
        cmd += ["-k", f"{k}={v}"]
    cmd += list(extra) + ["localhost", str(rx.port)]
    return Retrieved(subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                    env=DCMTK_ENV))


def getscu(rx, keys, out, level="STUDY", root="S", extra=(), timeout=120):
    """getscu, bit-preserving (+B: each dataset written to disk as received)."""
    os.makedirs(out, exist_ok=True)
    cmd = ["getscu", f"-{root}", "-d", "+B", "-aet", "GETSCU", "-aec", "OUTPOST", "-od", str(out),
           "-k", f"QueryRetrieveLevel={level}"]
    for k, v in keys.items():
        cmd += ["-k", f"{k}={v}"]
    cmd += list(extra) + ["localhost", str(rx.port)]
    return Retrieved(subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                    env=DCMTK_ENV))


def assert_received_as_sent(received, sent_paths):
    """received: {SOP Instance UID: file bytes} (Storescp.take()) equals the
    sent files: the same UIDs, each dataset byte for byte, each in the
    transfer syntax it was sent in."""
    want = {}
    for p in sent_paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        want[str(ds.SOPInstanceUID)] = p
    assert set(received) == set(want), \
        f"missing {sorted(set(want) - set(received))}, extra {sorted(set(received) - set(want))}"
    for uid, data in received.items():
        with open(want[uid], "rb") as f:
            original = f.read()
        sent_ts = pydicom.dcmread(want[uid], stop_before_pixels=True).file_meta.TransferSyntaxUID
        got_ts = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True) \
            .file_meta.TransferSyntaxUID
        assert got_ts == sent_ts, f"{uid}: transfer syntax {got_ts}, sent in {sent_ts}"
        assert dataset_bytes(data) == dataset_bytes(original), \
            f"{uid}: dataset differs from what was sent " \
            f"({len(dataset_bytes(data))} vs {len(dataset_bytes(original))} bytes)"


def find_failed(rx, tmp_path, level, keys, root="S"):
    """A C-FIND that must not succeed: returns (process, answers)."""
    out = tmp_path / f"find-{time.monotonic_ns()}"
    out.mkdir()
    cmd = ["findscu", f"-{root}", "-v", "-aec", "OUTPOST", "-X", "-od", str(out),
           "-k", f"QueryRetrieveLevel={level}"]
    for k, v in keys.items():
        cmd += ["-k", f"{k}={v}"]
    cmd += ["localhost", str(rx.port)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=DCMTK_ENV)
    return proc, sorted(glob.glob(str(out / "rsp*.dcm")))


def names(answers, archive, keyword="StudyInstanceUID"):
    """The study names (or other values) the answers are about."""
    uid_to_name = {u: n for n, u in archive.study_uid.items()}
    got = [value(a, keyword) for a in answers]
    if keyword == "StudyInstanceUID":
        got = [uid_to_name.get(u, u) for u in got]
    assert len(got) == len(set(got)), f"an entity answered twice: {got}"
    return set(got)


def assert_level(answers, level):
    for a in answers:
        assert value(a, "QueryRetrieveLevel") == level, a


# --- C-FIND --------------------------------------------------------------------

PATIENT_KEYS = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                "NumberOfPatientRelatedInstances"]
STUDY_KEYS = ["StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
              "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
              "PatientName", "PatientID", "PatientBirthDate", "PatientSex"]
SERIES_KEYS = ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "BodyPartExamined", "NumberOfSeriesRelatedInstances"]
IMAGE_KEYS = ["SOPInstanceUID", "SOPClassUID", "InstanceNumber"]


def universal(keys, **given):
    return dict({k: "" for k in keys}, **given)


def test_find_patient_level_patient_root(receivers, archive, tmp_path):
    rx = loaded(receivers, archive)
    # Universal matching: every patient, each with every key's value.
    got = findscu(rx, tmp_path, "PATIENT", universal(PATIENT_KEYS), root="P")
    assert_level(got, "PATIENT")
    answers = by(got, "PatientID")
    assert set(answers) == {"QRPAT1", "QRPAT2"}, got
    for pid, a in answers.items():
        want = archive.patient_answer(pid)
        want.pop("SpecificCharacterSet", None)
        assert_values(a, want)
    # The Latin-1 name comes with its character set (decoded above as sent).
    assert value(answers["QRPAT2"], "SpecificCharacterSet") == "ISO_IR 100"

    # Wildcard, case ignored for names; a range of birth dates; single value.
    for keys, want in (({"PatientName": "doe*"}, {"QRPAT1"}),
                       ({"PatientName": "DOE^J?NE"}, {"QRPAT1"}),
                       ({"PatientBirthDate": "19800101-"}, {"QRPAT2"}),
                       ({"PatientSex": "M"}, {"QRPAT2"}),
                       ({"PatientID": "QRPAT1"}, {"QRPAT1"})):
        got = findscu(rx, tmp_path, "PATIENT", universal(["PatientID", "PatientName"], **keys),
                      root="P")
        assert set(by(got, "PatientID")) == want, (keys, got)

    # The Study Root model has no PATIENT level (PS3.4 C.6.2): refused, no answers.
    proc, files = find_failed(rx, tmp_path, "PATIENT", universal(["PatientID"]), root="S")
    assert files == [], proc.stderr
    assert "Received Final Find Response (Success)" not in proc.stderr, proc.stderr


def test_find_study_level_each_matching_kind(receivers, archive, tmp_path):
    rx = loaded(receivers, archive)
    uid = archive.study_uid

    # Universal matching (Study Root): every study, every value as sent,
    # with the counts and the modalities of its series.
    got = findscu(rx, tmp_path, "STUDY", universal(STUDY_KEYS))
    assert_level(got, "STUDY")
    answers = by(got, "StudyInstanceUID")
    assert set(answers) == set(uid.values()), got
    for name, u in uid.items():
        want = archive.study_answer(name)
        want.pop("SpecificCharacterSet", None)
        assert_values(answers[u], want)
    assert value(answers[uid["chest"]], "SpecificCharacterSet") == "ISO_IR 100"

    cases = [
        # single value
        ({"AccessionNumber": "ACC002"}, {"knee"}),
        ({"StudyID": "CHEST1"}, {"chest"}),
        ({"PatientName": "Doe^Jane"}, {"head", "knee"}),
        # wildcards; person names ignore case
        ({"PatientName": "DOE*"}, {"head", "knee"}),
        ({"PatientName": "doe*"}, {"head", "knee"}),
        ({"AccessionNumber": "ACC00?"}, {"head", "knee", "chest"}),
        ({"AccessionNumber": "ACC0?"}, set()),
        ({"StudyDescription": "*CT*"}, {"head", "chest"}),
        # date ranges, both ends inclusive, and open ones
        ({"StudyDate": "20200101-20201231"}, {"head", "chest"}),
        ({"StudyDate": "-20200401"}, {"head"}),
        ({"StudyDate": "20210101-"}, {"knee"}),
        # time range
        ({"StudyTime": "080000-120000"}, {"head", "knee"}),
        # list of UIDs
        ({"StudyInstanceUID": f"{uid['head']}\\{uid['chest']}"}, {"head", "chest"}),
        # a modality of one of the study's series
        ({"ModalitiesInStudy": "MR"}, {"head", "knee"}),
        # every key must match
        ({"PatientID": "QRPAT1", "StudyDate": "20200101-20201231"}, {"head"}),
        ({"AccessionNumber": "NOSUCH"}, set()),
    ]
    for keys, want in cases:
        got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID", "PatientID"], **keys))
        assert names(got, archive) == want, (keys, got)
        # A matching key is answered with the entity's value (not the query's).
        for a in got:
            name = names([a], archive).pop()
            for k in keys:
                if k in ("PatientName", "AccessionNumber", "StudyID", "StudyDate"):
                    assert value(a, k) == str(archive.study_answer(name)[k]), (keys, a)
                elif k == "ModalitiesInStudy":
                    assert value(a, k) == archive.study_answer(name)[k], (keys, a)

    # Patient Root, STUDY level under one patient.
    got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID", "StudyDate",
                                                    "NumberOfStudyRelatedInstances"],
                                                   PatientID="QRPAT1"), root="P")
    assert names(got, archive) == {"head", "knee"}, got
    for a in got:
        name = names([a], archive).pop()
        assert_values(a, {k: archive.study_answer(name)[k] for k in
                          ("StudyDate", "NumberOfStudyRelatedInstances")})


def test_find_series_and_image_levels(receivers, archive, tmp_path):
    rx = loaded(receivers, archive)
    head = archive.study_uid["head"]
    head_series = archive.series_of("head")

    got = findscu(rx, tmp_path, "SERIES", universal(SERIES_KEYS, StudyInstanceUID=head))
    assert_level(got, "SERIES")
    answers = by(got, "SeriesInstanceUID")
    assert set(answers) == set(head_series), got
    for seuid in head_series:
        s = archive.series[seuid]
        assert_values(answers[seuid], {
            "StudyInstanceUID": head, "Modality": s["Modality"],
            "SeriesNumber": s["SeriesNumber"], "SeriesDescription": s["SeriesDescription"],
            "BodyPartExamined": s["BodyPartExamined"],
            "NumberOfSeriesRelatedInstances": len(s["instances"])})

    mr = [u for u in head_series if archive.series[u]["Modality"] == "MR"]
    for keys, want in (({"Modality": "MR"}, set(mr)),
                       ({"SeriesDescription": "*SAG"}, set(mr)),
                       ({"SeriesNumber": "2"},
                        {u for u in head_series if archive.series[u]["SeriesNumber"] == 2}),
                       ({"SeriesInstanceUID": "\\".join(head_series[:2])}, set(head_series[:2]))):
        got = findscu(rx, tmp_path, "SERIES", universal(["SeriesInstanceUID"],
                                                        StudyInstanceUID=head, **keys))
        assert set(by(got, "SeriesInstanceUID")) == want, (keys, got)

    # Patient Root, SERIES level: the Latin-1 patient's study.
    (chest_series,) = archive.series_of("chest")
    got = findscu(rx, tmp_path, "SERIES",
                  universal(["SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances"],
                            PatientID="QRPAT2", StudyInstanceUID=archive.study_uid["chest"]),
                  root="P")
    assert set(by(got, "SeriesInstanceUID")) == {chest_series}, got
    assert_values(got[0], {"Modality": "CT", "NumberOfSeriesRelatedInstances": 2})
    assert value(got[0], "SpecificCharacterSet") == "ISO_IR 100"

    # IMAGE level: every instance of a series, with its class and number.
    for seuid in (head_series[0], mr[0]):
        got = findscu(rx, tmp_path, "IMAGE", universal(IMAGE_KEYS, StudyInstanceUID=head,
                                                       SeriesInstanceUID=seuid))
        assert_level(got, "IMAGE")
        answers = by(got, "SOPInstanceUID")
        assert set(answers) == set(archive.series[seuid]["instances"]), got
        for sop, a in answers.items():
            inst = archive.instances[sop]
            assert_values(a, {"SOPClassUID": inst["SOPClassUID"],
                              "InstanceNumber": inst["InstanceNumber"]})
    # A list of SOP Instance UIDs; an instance number.
    three = archive.series[head_series[0]]["instances"]
    got = findscu(rx, tmp_path, "IMAGE", universal(["SOPInstanceUID"], StudyInstanceUID=head,
                                                   SeriesInstanceUID=head_series[0],
                                                   SOPInstanceUID=f"{three[0]}\\{three[2]}"))
    assert set(by(got, "SOPInstanceUID")) == {three[0], three[2]}, got
    got = findscu(rx, tmp_path, "IMAGE", universal(["SOPInstanceUID"], StudyInstanceUID=head,
                                                   SeriesInstanceUID=head_series[0],
                                                   InstanceNumber="2"))
    assert set(by(got, "SOPInstanceUID")) == {three[1]}, got


# --- C-MOVE --------------------------------------------------------------------


def peer(scp):
    return {"peer scp": {"ae_title": "STORESCP", "host": "127.0.0.1", "port": scp.port}}


def test_move_study_to_a_configured_peer(receivers, archive, tmp_path):
    scp = Storescp(str(tmp_path / "scp"))
    try:
        rx = loaded(receivers, archive, **peer(scp))
        # Explicit VR LE (head) and Implicit VR LE (chest): each arrives as sent.
        for name in ("head", "chest"):
            r = movescu(rx, {"StudyInstanceUID": archive.study_uid[name]}, "STORESCP")
            n = len(archive.study_files[name])
            assert r.proc.returncode == 0, r
            assert r.final == {"status": SUCCESS, "completed": n, "failed": 0, "warning": 0,
                               "remaining": r.final["remaining"]}, r
            assert r.final["remaining"] in (None, 0), r
            assert_received_as_sent(scp.take(), archive.study_files[name])
        # SERIES level, Patient Root: that series only.
        seuid = archive.series_of("head")[2]
        r = movescu(rx, {"PatientID": "QRPAT1", "StudyInstanceUID": archive.study_uid["head"],
                         "SeriesInstanceUID": seuid}, "STORESCP", level="SERIES", root="P")
        assert r.final["status"] == SUCCESS and r.final["completed"] == 2, r
        assert_received_as_sent(scp.take(), [archive.instances[s]["path"]
                                             for s in archive.series[seuid]["instances"]])
    finally:
        scp.stop()


def test_move_to_an_unknown_destination_is_refused_and_sends_nothing(receivers, archive,
                                                                      tmp_path):
    scp = Storescp(str(tmp_path / "scp"))
    try:
        rx = loaded(receivers, archive, **peer(scp))
        r = movescu(rx, {"StudyInstanceUID": archive.study_uid["head"]}, "NOWHERE")
        assert r.final["status"] == MOVE_DESTINATION_UNKNOWN, r
        assert r.final["completed"] in (None, 0), r
        assert r.proc.returncode != 0, r  # movescu: "Move response with error status"
        time.sleep(0.5)  # anything sent would be on its way by now
        assert scp.take() == {}
        # The peer's title is what counts, not its port: still served.
        r = movescu(rx, {"StudyInstanceUID": archive.study_uid["knee"]}, "STORESCP")
        assert r.final["status"] == SUCCESS and r.final["completed"] == 2, r
        assert set(scp.take()) == set(archive.series[archive.series_of("knee")[0]]["instances"])
    finally:
        scp.stop()


def test_a_damaged_file_is_not_sent(receivers, archive, tmp_path):
    """A spool file that no longer matches its hash (a disk fault) is not
    sent, as the uplink would not send it: a failed sub-operation, named
    in FailedSOPInstanceUIDList (B000), the others sent."""
    scp = Storescp(str(tmp_path / "scp"))
    try:
        rx = loaded(receivers, archive, **peer(scp))
        files = archive.study_files["head"]
        victim = pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
        [row] = rx.rows("sop_instance_uid = ?", (victim,))
        flip_byte(rx.object_path(row["hash"]), row["size"] - 10)
        r = movescu(rx, {"StudyInstanceUID": archive.study_uid["head"]}, "STORESCP")
        assert r.final["status"] == 0xB000, r
        assert (r.final["completed"], r.final["failed"]) == (len(files) - 1, 1), r
        assert victim in r.text, r  # FailedSOPInstanceUIDList
        assert set(scp.take()) == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
                                   for f in files[1:]}
        assert "event=qr.damaged" in rx.log() and victim in rx.log()
    finally:
        scp.stop()


def test_cancel_stops_a_move(receivers, tmp_path):
    """movescu --cancel 3: a C-CANCEL-RQ once the third Pending response is
    in. The destination takes a second an instance (storescp
    --sleep-after 1), so the move of 40 is far from done then, however
    loaded the machine."""
    n = 40
    files = dicomgen.make_ct_study(str(tmp_path / "big"), n, rows=16, cols=16)
    slow = Storescp(str(tmp_path / "slow"), flags=["--sleep-after", "1"])
    scp = Storescp(str(tmp_path / "scp"))
    try:
        rx = receivers(**peer(scp), **{"peer slow": {"ae_title": "SLOWSCP", "host": "127.0.0.1",
                                                     "port": slow.port}}).start()
        send(rx, files)
        study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        r = movescu(rx, {"StudyInstanceUID": study}, "SLOWSCP", extra=["--cancel", "3"])
        if not r.pending:
            pytest.fail("no Pending C-MOVE response: movescu cancels after its 3rd "
                        f"response, so a C-CANCEL could not be sent\n{r}")
        final = r.final
        assert final["status"] == CANCEL, r
        assert final["completed"] is not None and 3 <= final["completed"] < n, r
        # The counts account for every instance (PS3.4 C.4.2.1.5, Cancel).
        assert final["remaining"] is not None, r
        assert final["completed"] + final["failed"] + final["warning"] + \
            final["remaining"] == n, r
        # The association to the destination is released once the
        # sub-operation in flight is done.
        time.sleep(1.5)
        received = slow.take()
        assert len(received) == final["completed"] < n, (len(received), r)
        # The receiver serves on: a full move afterwards.
        r = movescu(rx, {"StudyInstanceUID": study}, "STORESCP")
        assert r.final["status"] == SUCCESS and r.final["completed"] == n, r
        assert len(scp.take(repeats=True)) == n
    finally:
        slow.stop()
        scp.stop()


# --- C-GET ---------------------------------------------------------------------


def test_get_study_on_the_same_association(receivers, archive, tmp_path):
    rx = loaded(receivers, archive)
    for name in ("head", "knee"):
        out = tmp_path / f"get-{name}"
        r = getscu(rx, {"StudyInstanceUID": archive.study_uid[name]}, out)
        n = len(archive.study_files[name])
        assert r.proc.returncode == 0, r
        assert r.final["status"] == SUCCESS and r.final["completed"] == n and \
            r.final["failed"] == 0, r
        assert_received_as_sent(read_dir(out), archive.study_files[name])
    # The study stored in Implicit VR LE: getscu proposes one context per
    # storage SOP class (Explicit LE, Big Endian, Implicit LE), and the
    # receiver can accept only one syntax for it, before knowing what it
    # will send there. (DCMTK 3.6.7's getscu cannot ask for Implicit VR LE
    # alone: with +xi it proposes Explicit VR LE only.) Each instance must
    # arrive, its elements as sent, in the syntax accepted there.
    out = tmp_path / "get-chest"
    r = getscu(rx, {"StudyInstanceUID": archive.study_uid["chest"]}, out)
    assert r.final["status"] == SUCCESS and r.final["completed"] == 2, r
    received = read_dir(out)
    want = {uid_of(p): p for p in archive.study_files["chest"]}
    assert set(received) == set(want)
    for uid, data in received.items():
        assert elements(pydicom.dcmread(io.BytesIO(data))) == \
            elements(pydicom.dcmread(want[uid])), uid
    # IMAGE level: one instance.
    sop = archive.series[archive.series_of("head")[2]]["instances"][1]
    out = tmp_path / "get-one"
    r = getscu(rx, {"StudyInstanceUID": archive.study_uid["head"],
                    "SeriesInstanceUID": archive.series_of("head")[2],
                    "SOPInstanceUID": sop}, out, level="IMAGE")
    assert r.final["status"] == SUCCESS and r.final["completed"] == 1, r
    assert_received_as_sent(read_dir(out), [archive.instances[sop]["path"]])


def uid_of(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def elements(ds):
    """{tag: value} of a dataset, whatever its transfer syntax."""
    return {e.tag: bytes(e.value) if e.keyword == "PixelData" else e.value for e in ds}


def read_dir(out):
    got = {}
    for path in sorted(glob.glob(str(out / "*"))):
        uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
        assert uid not in got, f"{uid} received twice"
        with open(path, "rb") as f:
            got[uid] = f.read()
    return got


# --- who may query, and what is found ------------------------------------------

QR_CONTEXTS = [STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET,
               PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET]


def negotiate(rx):
    """{abstract syntax: accepted?} for the Q/R classes and CT storage,
    proposed together on one association."""
    proposed = [(a, [dul.EXPLICIT_LE, dul.IMPLICIT_LE])
                for a in QR_CONTEXTS + [dul.CT_IMAGE_STORAGE]]
    with dul.Client(rx.port) as c:
        n = c.associate(proposed)
        assert n.accepted, f"association {n.kind} ({n.result}, {n.source}, {n.reason})"
        got = {a: n.context_for(a) is not None for a, _ in proposed}
        c.release()
    return got


def test_allow_query_no_refuses_query_retrieve_but_stores(receivers, archive, tmp_path):
    # By default the Q/R classes are offered ...
    rx = receivers("default").start()
    assert negotiate(rx) == {a: True for a in QR_CONTEXTS + [dul.CT_IMAGE_STORAGE]}
    # ... with allow_query = no, none of them, and storage still is.
    rx = receivers("noquery", receiver={"allow_query": "no"}).start()
    assert negotiate(rx) == dict({a: False for a in QR_CONTEXTS}, **{dul.CT_IMAGE_STORAGE: True})
    send(rx, archive.files)
    assert len(rx.rows()) == len(archive.files)
    proc, files = find_failed(rx, tmp_path, "STUDY", universal(["StudyInstanceUID"]))
    assert proc.returncode != 0, proc.stderr
    assert files == [] and "Received Final Find Response" not in proc.stderr, proc.stderr
    r = getscu(rx, {"StudyInstanceUID": archive.study_uid["head"]}, tmp_path / "get")
    assert r.proc.returncode != 0 and not r.responses and read_dir(tmp_path / "get") == {}, r


def test_only_allowed_callers_may_query(receivers, archive, tmp_path):
    rx = receivers(receiver={"allowed_calling_aets": "STORESCU, VIEWER"}).start()
    send(rx, archive.files)
    got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID"]), calling="VIEWER")
    assert names(got, archive) == set(STUDIES)
    out = tmp_path / "find-other"
    out.mkdir()
    proc = subprocess.run(["findscu", "-S", "-aet", "OTHER", "-aec", "OUTPOST", "-X", "-od",
                           str(out), "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                           "localhost", str(rx.port)],
                          capture_output=True, text=True, timeout=60, env=DCMTK_ENV)
    assert proc.returncode != 0 and os.listdir(out) == [], proc.stderr


def test_query_during_a_cloud_outage_finds_the_queued_instances(receivers, archive, tmp_path):
    """The cloud unreachable (nothing listens at its URL): the uplink fails
    to send, the instances stay unsent, and a query finds them all."""
    rx = receivers(cloud={"url": f"https://127.0.0.1:{free_port()}/dicom-web",
                          "retry_max_delay": 2, "timeout": 5}).start()
    up = rx.uplink().start()
    send(rx, archive.files)
    wait_for(lambda: "event=uplink.link" in up.log() and "state=down" in up.log(), 20,
             what="the uplink to meet the outage")
    assert_unsent(rx, len(archive.files))
    got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID",
                                                    "NumberOfStudyRelatedInstances"]))
    assert names(got, archive) == set(STUDIES), got
    for a in got:
        name = names([a], archive).pop()
        assert value(a, "NumberOfStudyRelatedInstances") == len(archive.study_files[name])
    assert_unsent(rx, len(archive.files))


def assert_unsent(rx, n):
    """n rows, none sent: queued, or claimed by a probe of the link
    ("sending") and put back when it fails."""
    states = rx.states()
    assert set(states) <= {"queued", "sending"} and sum(states.values()) == n, states


def test_evicted_and_discarded_instances_are_no_longer_found(receivers, archive, tmp_path):
    """Sent to a DICOM destination with keep_sent_bytes = 0, head and knee
    are evicted; chest, damaged in the spool, is quarantined (and found),
    then discarded by the operator. What left the spool is found by
    neither C-FIND nor C-MOVE."""
    ai = Storescp(str(tmp_path / "ai"))
    scp = Storescp(str(tmp_path / "scp"))
    try:
        rx = loaded(receivers, archive, spool={"keep_sent_bytes": 0},
                    cloud={"enabled": "no"}, routing={"default": "ai"},
                    **{"destination ai": {"type": "dicom", "host": "127.0.0.1",
                                          "port": ai.port, "called_ae": "STORESCP",
                                          "timeout": 10, "retry_max_delay": 2}},
                    **peer(scp))
        got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID"]))
        assert names(got, archive) == set(STUDIES)
        chest = archive.study_uid["chest"]
        for row in rx.rows("study_uid = ?", (chest,)):
            flip_byte(rx.object_path(row["hash"]), row["size"] // 2)
        up = rx.uplink().start()
        wait_for(lambda: rx.states() == {"quarantined": 2}, 60, interval=0.2,
                 what="head and knee sent and evicted, chest quarantined")
        assert len(ai.take()) == len(archive.files) - 2

        # Quarantined: still found. Evicted: gone at every level.
        got = findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID",
                                                        "NumberOfStudyRelatedInstances"]))
        assert names(got, archive) == {"chest"}, got
        assert value(got[0], "NumberOfStudyRelatedInstances") == 2
        got = findscu(rx, tmp_path, "PATIENT", universal(["PatientID"]), root="P")
        assert set(by(got, "PatientID")) == {"QRPAT2"}, got
        head = archive.study_uid["head"]
        assert findscu(rx, tmp_path, "SERIES", universal(["SeriesInstanceUID"],
                                                         StudyInstanceUID=head)) == []
        seuid = archive.series_of("head")[0]
        assert findscu(rx, tmp_path, "IMAGE", universal(["SOPInstanceUID"], StudyInstanceUID=head,
                                                        SeriesInstanceUID=seuid)) == []
        r = movescu(rx, {"StudyInstanceUID": head}, "STORESCP")
        assert r.final["status"] == SUCCESS and r.final["completed"] in (None, 0) and \
            r.final["failed"] in (None, 0), r
        time.sleep(0.3)
        assert scp.take() == {}

        # The operator discards the quarantined study: gone too.
        ctl = subprocess.run([os.path.join(BUILD, "outpostctl"), "--config", rx.ini, "discard",
                              chest, "--yes"], capture_output=True, text=True, timeout=60)
        assert ctl.returncode == 0, ctl.stderr
        assert rx.rows() == []
        assert findscu(rx, tmp_path, "STUDY", universal(["StudyInstanceUID"])) == []
        assert findscu(rx, tmp_path, "PATIENT", universal(["PatientID"]), root="P") == []
        r = movescu(rx, {"StudyInstanceUID": chest}, "STORESCP")
        assert r.final["status"] == SUCCESS and r.final["completed"] in (None, 0), r
        time.sleep(0.3)
        assert scp.take() == {}
        assert "event=uplink.quarantine" in up.log()
    finally:
        ai.stop()
        scp.stop()
