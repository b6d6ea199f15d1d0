# Makes the DICOM fixtures of tests/unit/data (see README there).
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

def make(name, drop=None, **override):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.Modality = "OT"
    ds.PatientID = "FIXTURE"
    for k, v in override.items():
        setattr(ds, k, v)
    if drop:
        delattr(ds, drop)
    ds.save_as(name, write_like_original=False)

make("no_sop_instance_uid.dcm", drop="SOPInstanceUID")
make("no_series_uid.dcm", drop="SeriesInstanceUID")
make("bad_sop_instance_uid.dcm", SOPInstanceUID="1.2.abc.4")
make("long_study_uid.dcm", StudyInstanceUID="1.2.826.0.1.3680043.8.498." + "1" * 45)
make("valid_minimal.dcm")
