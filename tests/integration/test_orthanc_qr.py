"""Orthanc as the query/retrieve SCU of outpost-receiver: Debian 12's
Orthanc 1.10.1 (the real program) queries the receiver through its REST
API (POST /modalities/{id}/query, then /queries/{id}/answers...) and
retrieves from it (POST /modalities/{id}/move, /queries/{id}/retrieve,
/queries/{id}/answers/{i}/retrieve) into itself, as a site PACS would.

Orthanc is tests/lib/cloud.py's Cloud with its DICOM server on
(dicom_port=True), the receiver in its "DicomModalities" as "outpost",
and only Orthanc started (start_orthanc(): no nginx, no TLS; the test
talks to Orthanc's REST API on loopback, plain HTTP). The receiver knows
Orthanc as `[peer orthanc]`, so a C-MOVE to Orthanc's AE title goes to
Orthanc's DICOM port. Each test has its own Orthanc (empty storage) and
receiver, both stopped by PID.

What is sent is test_query_retrieve.py's archive (two patients, three
studies, one patient's name in Latin-1 with ISO_IR 100, one study in
Implicit VR Little Endian), sent with storescu. What Orthanc's answers
and Orthanc's storage hold is compared with what was sent.

Orthanc 1.10.1 facts these tests rely on (measured here):
- POST /modalities/{id}/move is synchronous only (no job, "Synchronous":
  false is ignored); a C-MOVE ending in a failure status gives HTTP 500
  with "Details": "C-MOVE SCU to AET ... has failed with DIMSE status
  0xA801". POST /queries/{id}/retrieve with "Synchronous": false makes a
  DicomMoveScu job that ends in State "Failure" with that ErrorDetails.
- A query sends SpecificCharacterSet (ISO_IR 100, Orthanc's default
  encoding Latin1) and the keys asked; the answers' JSON has names
  decoded to UTF-8, and SpecificCharacterSet "ISO_IR 100" in every
  answer even when the SCP answered it empty.
- query-series / query-instances on an answer query the level below
  with the answer's unique keys.
- Over DICOM, Orthanc (StorageCompression false, no IngestTranscoding)
  stores each dataset as received: same bytes, same transfer syntax.
"""
import io
import json
import time
import urllib.error

import pydicom
import pytest

from cloud import Cloud
from outpost import dataset_bytes, free_port, wait_for
from test_query_retrieve import Archive, send

ORTHANC_AET = "ORTHANCQR"    # Orthanc's DicomAet, the C-MOVE destination
RECEIVER_AET = "OUTPOST"     # Receiver's default [receiver] ae_title
MODALITY = "outpost"         # the receiver's name in Orthanc's DicomModalities

# What a user asks at STUDY level, and checks in every answer.
STUDY_KEYS = ["StudyInstanceUID", "PatientName", "PatientID", "AccessionNumber", "StudyDate",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return Archive(str(tmp_path_factory.mktemp("orthanc-qr-files")))


class OrthancQR:
    """An Orthanc (Cloud, DICOM server on) and a receiver holding the archive,
    each knowing the other."""

    def __init__(self, cloud, rx, archive):
        self.cloud = cloud
        self.rx = rx
        self.archive = archive

    def _rest(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        return self.cloud.rest(method, path, data, raw=raw)

    def rest(self, method, path, body=None, raw=False):
        """A request that must succeed (Orthanc's error and the logs if not)."""
        try:
            return self._rest(method, path, body, raw)
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} {body}: HTTP {e.code} "
                                 f"{e.read().decode(errors='replace')}\n"
                                 f"{self.log_tails()}") from None

    def rest_error(self, method, path, body=None):
        """A request that must fail: (HTTP status, Orthanc's JSON error)."""
        try:
            got = self._rest(method, path, body)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, {"raw": text}
        raise AssertionError(f"{method} {path} {body} succeeded, answered {got}\n"
                             f"{self.log_tails()}")

    def query(self, level, query):
        """POST /modalities/outpost/query; returns (query id, answers: a list
        of {keyword: value}, Orthanc's simplified JSON)."""
        started = self.rest("POST", f"/modalities/{MODALITY}/query",
                            {"Level": level, "Query": query})
        return started["ID"], self.answers(started["ID"])

    def answers(self, qid):
        indexes = self.rest("GET", f"/queries/{qid}/answers")
        expanded = self.rest("GET", f"/queries/{qid}/answers?expand&simplify")
        assert len(expanded) == len(indexes), (indexes, expanded)
        return expanded

    def holds(self):
        """{SOP Instance UID: Orthanc id} of what Orthanc stored."""
        return self.cloud.instances()

    def assert_holds_as_sent(self, sent_paths):
        """Orthanc holds exactly these files' instances, each stored file
        (GET /instances/{id}/file) with the dataset bytes and the transfer
        syntax storescu sent."""
        want = {}
        for p in sent_paths:
            want[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p
        held = self.holds()
        assert set(held) == set(want), \
            f"Orthanc lacks {sorted(set(want) - set(held))}, has extra " \
            f"{sorted(set(held) - set(want))}\n{self.log_tails()}"
        for uid, oid in held.items():
            stored = self.rest("GET", f"/instances/{oid}/file", raw=True)
            with open(want[uid], "rb") as f:
                sent = f.read()
            sent_ts = pydicom.dcmread(io.BytesIO(sent), stop_before_pixels=True) \
                .file_meta.TransferSyntaxUID
            stored_ts = pydicom.dcmread(io.BytesIO(stored), stop_before_pixels=True) \
                .file_meta.TransferSyntaxUID
            assert stored_ts == sent_ts, f"{uid}: Orthanc stored {stored_ts}, sent {sent_ts}"
            assert dataset_bytes(stored) == dataset_bytes(sent), \
                f"{uid}: Orthanc's dataset ({len(dataset_bytes(stored))} bytes) differs " \
                f"from what storescu sent ({len(dataset_bytes(sent))} bytes)"

    def log_tails(self):
        """The receiver's Q/R lines and Orthanc's log since it started."""
        rx = [line for line in self.rx.log().splitlines()
              if "event=store.ok" not in line and "event=assoc." not in line]
        orthanc = self.cloud.orthanc_log_text().split("Orthanc has started")[-1]
        return ("receiver log (Q/R):\n" + "\n".join(rx[-30:]) +
                f"\nOrthanc log:\n{orthanc[-2500:]}")


@pytest.fixture
def qr(tmp_path, pki, receivers, archive):
    rx_port = free_port()
    cloud = Cloud(tmp_path / "orthanc", pki=pki, dicom_port=True,
                  refuse_patient_ids=(), drop_patient_ids=(),
                  orthanc_extra={"DicomAet": ORTHANC_AET,
                                 "DicomModalities": {
                                     MODALITY: [RECEIVER_AET, "127.0.0.1", rx_port]}})
    try:
        rx = receivers(receiver={"ae_title": RECEIVER_AET, "port": rx_port},
                       **{"peer orthanc": {"ae_title": ORTHANC_AET, "host": "127.0.0.1",
                                           "port": cloud.dicom_port}})
        cloud.start_orthanc()
        rx.start()
        send(rx, archive.files)
        yield OrthancQR(cloud, rx, archive)
    finally:
        cloud.stop()
    assert not cloud.pids()


def study_name(archive, answer):
    uid_to_name = {u: n for n, u in archive.study_uid.items()}
    uid = answer.get("StudyInstanceUID")
    assert uid in uid_to_name, f"an answer about no study sent: {answer}"
    return uid_to_name[uid]


def plain(keyword, value):
    """An answer's value (Orthanc's simplified JSON: strings) as the archive
    states it: ints for counts, a set for ModalitiesInStudy."""
    if keyword.startswith("NumberOf"):
        return int(value) if value not in (None, "") else None
    if keyword == "ModalitiesInStudy":
        return set(value.split("\\")) if value else set()
    return value


def test_orthanc_queries_studies_and_gets_the_values_sent(qr):
    archive = qr.archive
    universal = {k: "" for k in STUDY_KEYS}
    cases = [
        ({"PatientID": "QRPAT1"}, {"head", "knee"}),
        ({"StudyDate": "20200101-20201231"}, {"head", "chest"}),
        # Latin-1 through Orthanc's ISO_IR 100, with a wildcard.
        ({"PatientName": "Müller*"}, {"chest"}),
        ({"PatientName": "D?e^*", "StudyDate": "-20201231"}, {"head"}),
        ({"AccessionNumber": "NOSUCH"}, set()),
    ]
    for keys, want in cases:
        qid, answers = qr.query("Study", dict(universal, **keys))
        names = [study_name(archive, a) for a in answers]
        assert len(names) == len(set(names)), f"{keys}: a study answered twice: {answers}"
        assert set(names) == want, f"{keys}: {answers}\n{qr.log_tails()}"
        for name, a in zip(names, answers):
            assert a.get("QueryRetrieveLevel") == "STUDY", a
            expected = archive.study_answer(name)
            got = {k: plain(k, a.get(k)) for k in STUDY_KEYS}
            assert got == {k: expected[k] for k in STUDY_KEYS}, \
                f"{keys}: Orthanc got {got}\nsent {expected}"

    # Browsing down from an answer, as Orthanc Explorer does: the head
    # study's series, then the instances of its MR series.
    qid, answers = qr.query("Study", {"StudyInstanceUID": "", "PatientID": "QRPAT1",
                                      "StudyDate": "20200315"})
    assert [study_name(archive, a) for a in answers] == ["head"], answers
    series_q = qr.rest("POST", f"/queries/{qid}/answers/0/query-series", {})["ID"]
    series = qr.answers(series_q)
    assert {a.get("QueryRetrieveLevel") for a in series} == {"SERIES"}, series
    got = [a.get("SeriesInstanceUID") for a in series]
    assert sorted(got) == sorted(archive.series_of("head")), series
    mr = got.index(next(u for u in archive.series_of("head")
                        if archive.series[u]["Modality"] == "MR"))
    images_q = qr.rest("POST", f"/queries/{series_q}/answers/{mr}/query-instances", {})["ID"]
    images = qr.answers(images_q)
    assert {a.get("QueryRetrieveLevel") for a in images} == {"IMAGE"}, images
    assert sorted(a.get("SOPInstanceUID") for a in images) == \
        sorted(archive.series[got[mr]]["instances"]), images


def test_orthanc_moves_studies_to_itself_as_sent(qr):
    archive = qr.archive
    assert qr.holds() == {}
    # /modalities/{id}/move: the head study (Explicit VR LE, 7 instances).
    answer = qr.rest("POST", f"/modalities/{MODALITY}/move",
                     {"Level": "Study", "TargetAet": ORTHANC_AET,
                      "Resources": [{"StudyInstanceUID": archive.study_uid["head"]}]})
    assert answer == {}, answer
    qr.assert_holds_as_sent(archive.study_files["head"])

    # Query, then retrieve an answer: the Latin-1 patient's study, stored
    # in Implicit VR LE, arrives in that syntax. The knee study stays.
    qid, answers = qr.query("Study", {"PatientName": "Müller*", "StudyInstanceUID": ""})
    assert [study_name(archive, a) for a in answers] == ["chest"], answers
    qr.rest("POST", f"/queries/{qid}/answers/0/retrieve",
            {"TargetAet": ORTHANC_AET, "Synchronous": True})
    qr.assert_holds_as_sent(archive.study_files["head"] + archive.study_files["chest"])
    # The stored name, decoded by Orthanc from ISO_IR 100, is the one sent.
    oid = qr.holds()[str(pydicom.dcmread(archive.study_files["chest"][0]).SOPInstanceUID)]
    assert qr.rest("GET", f"/instances/{oid}/simplified-tags")["PatientName"] == \
        "Müller^Jürgen"


def test_orthanc_move_to_an_unknown_target_fails_and_nothing_arrives(qr):
    archive = qr.archive
    knee = archive.study_uid["knee"]
    # Synchronous (/modalities/{id}/move): the REST call fails, with the
    # receiver's status A801 (Move Destination unknown, PS3.4 C.4.2.1.4).
    status, error = qr.rest_error("POST", f"/modalities/{MODALITY}/move",
                                  {"Level": "Study", "TargetAet": "NOWHERE",
                                   "Resources": [{"StudyInstanceUID": knee}]})
    assert status == 500 and "0xA801" in error.get("Details", ""), (status, error)

    # As a job (/queries/{id}/retrieve, asynchronous): the job fails.
    qid, answers = qr.query("Study", {"StudyInstanceUID": knee})
    assert [study_name(archive, a) for a in answers] == ["knee"], answers
    job = qr.rest("POST", f"/queries/{qid}/retrieve",
                  {"TargetAet": "NOWHERE", "Synchronous": False})["ID"]
    wait_for(lambda: qr.rest("GET", f"/jobs/{job}")["State"] in ("Success", "Failure"),
             20, what="Orthanc's retrieve job to end")
    info = qr.rest("GET", f"/jobs/{job}")
    assert info["State"] == "Failure" and "0xA801" in info.get("ErrorDetails", ""), info

    time.sleep(0.5)  # anything sent would have arrived by now
    assert qr.holds() == {}, qr.log_tails()

    # Orthanc's own AE title is served (so the nothing above was the
    # receiver's refusal, not Orthanc unable to receive).
    qr.rest("POST", f"/queries/{qid}/retrieve", {"TargetAet": ORTHANC_AET, "Synchronous": True})
    qr.assert_holds_as_sent(archive.study_files["knee"])
