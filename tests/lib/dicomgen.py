"""Synthesised DICOM studies for tests and benchmarks (pydicom + numpy).

make_ct_study(dir, n) writes n CT images of 512x512x16 bit (about 530 KB
each) with fresh UIDs: one study, one series, explicit VR little endian.
The pixel data is pseudo-random (seeded), so no compression or dedupe
can flatter a measurement.
"""
import os

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def make_ct_study(directory, n, seed=1, rows=512, cols=512, patient_id="TEST0001",
                  priority=None, study_uid=None, modality="CT", body_part=None,
                  patient_name="Test^Synthetic", accession=None, description=None):
    """Writes n instances into directory; returns their paths in order."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    paths = []
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(directory, f"ct{i:05d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.PatientID = patient_id
        ds.PatientName = patient_name
        if accession:
            ds.AccessionNumber = accession
        if description:
            ds.StudyDescription = description
        ds.Modality = modality
        if body_part:
            ds.BodyPartExamined = body_part
        ds.StudyDate = "20261128"
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, float(i)]
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if priority:
            ds.RequestedProcedurePriority = priority
        ds.PixelData = rng.integers(0, 4096, size=(rows, cols), dtype=np.uint16).tobytes()
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys
    make_ct_study(sys.argv[1], int(sys.argv[2]))
