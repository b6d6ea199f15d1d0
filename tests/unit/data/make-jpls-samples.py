# Makes the small synthetic instances of tests/unit/test_jpls.c (see the
# README here): uncompressed images of every kind the JPEG-LS encoder takes
# or refuses. Run once with Debian's pydicom 2.3.1 and numpy:
#
#     cd tests/unit/data && /usr/bin/python3 make-jpls-samples.py
#
# The pixel values come from fixed formulas (no randomness), so running it
# again writes the same files.
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

ROOT = "1.2.826.0.1.3680043.8.498.77"
SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
MF_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
CT = "1.2.840.10008.5.1.4.1.1.2"
count = 0


def base(sop_class=SC, ts=ExplicitVRLittleEndian):
    global count
    count += 1
    uid = "%s.%d" % (ROOT, count)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = ROOT + ".1000"
    ds.SeriesInstanceUID = ROOT + ".1001"
    ds.Modality = "OT"
    ds.PatientID = "JPLS"
    ds.PatientName = "Sample^Jpls"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    return ds


def image(ds, arr, bits_stored, signed=False, photometric="MONOCHROME2", planar=None,
          frames=None):
    """arr: (frames,) rows x cols (x 3) of the stored values, as written."""
    ds.SamplesPerPixel = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    ds.PhotometricInterpretation = photometric
    if planar is not None:
        ds.PlanarConfiguration = planar
    if frames is not None:
        ds.NumberOfFrames = frames
    shape = arr.shape[1:] if frames is not None else arr.shape
    ds.Rows, ds.Columns = shape[0], shape[1]
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    big = not ds.is_little_endian
    data = arr.astype(arr.dtype.newbyteorder(">" if big else "<")).tobytes()
    if len(data) % 2:
        data += b"\0"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if arr.dtype.itemsize == 1 else "OW"
    return ds


def save(ds, name):
    ds.save_as(name, write_like_original=False)


def smooth(rows, cols, scale, offset=0):
    y, x = np.mgrid[0:rows, 0:cols]
    return offset + (scale * (np.sin(x / 5.0) + np.cos(y / 7.0) + 2) / 4).astype(np.int64)


def rgb(rows, cols):
    y, x = np.mgrid[0:rows, 0:cols]
    return np.stack([(x * 255 // max(cols - 1, 1)), (y * 255 // max(rows - 1, 1)),
                     ((x + y) * 7) % 256], axis=-1).astype(np.uint8)


# 8 bits, 64 x 64, a smooth picture (compresses well); a sequence and a
# private element ride along, for the attribute comparison.
ds = base()
ds.ReferencedImageSequence = Sequence([Dataset()])
ds.ReferencedImageSequence[0].ReferencedSOPClassUID = SC
ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = ROOT + ".999"
ds.add_new(0x00090010, "LO", "OUTPOST TEST")
ds.add_new(0x00091001, "US", 4242)
mono8 = smooth(64, 64, 255).astype(np.uint8)
image(ds, mono8, 8)
save(ds, "jpls_mono8.dcm")

# Its twins for op_jpls_verify(): one pixel changed, PatientID changed.
one = mono8.copy()
one[40, 7] ^= 0x10
image(ds, one, 8)
save(ds, "jpls_mono8_pixel.dcm")
image(ds, mono8, 8)
ds.PatientID = "OTHER"
save(ds, "jpls_mono8_patient.dcm")

# 12 bits stored in 16, unsigned, odd size 17 x 13.
save(image(base(CT), smooth(13, 17, 4095).astype(np.uint16), 12), "jpls_mono12.dcm")

# 16 bits stored, unsigned and signed.
save(image(base(), smooth(32, 32, 65535).astype(np.uint16), 16), "jpls_mono16u.dcm")
save(image(base(CT), smooth(32, 32, 4000, -2000).astype(np.int16), 16, signed=True),
     "jpls_mono16s.dcm")

# 12 bits stored in 16, signed, negative values sign-extended into the
# four unused high bits (-1 is 0xFFFF), as most CT scanners write them.
save(image(base(CT), smooth(16, 16, 4000, -2000).astype(np.int16), 12, signed=True),
     "jpls_mono12s_signext.dcm")

# 12 bits stored in 16, unsigned, junk in the unused high bits (an overlay
# plane in bit 12, others set at random-looking places).
junk = smooth(16, 16, 4095).astype(np.uint16)
junk |= ((np.arange(256).reshape(16, 16) * 37 % 16) << 12).astype(np.uint16)
save(image(base(CT), junk, 12), "jpls_mono12u_junk.dcm")

# Three frames, 16 bits allocated, 10 stored, 20 x 15.
frames = np.stack([smooth(15, 20, 1023, 0) // (i + 1) for i in range(3)]).astype(np.uint16)
save(image(base(MF_SC), frames, 10, frames=3), "jpls_multiframe.dcm")

# Colour: RGB planar 0 and 1 (odd size), YBR_FULL, and YBR_FULL_422 (refused).
c = rgb(13, 17)
save(image(base(), c, 8, photometric="RGB", planar=0), "jpls_rgb_planar0.dcm")
ds = base()
image(ds, c, 8, photometric="RGB", planar=1)
ds.PixelData = np.ascontiguousarray(c.transpose(2, 0, 1)).tobytes() + b"\0"
save(ds, "jpls_rgb_planar1.dcm")
save(image(base(), rgb(16, 16), 8, photometric="YBR_FULL", planar=0), "jpls_ybr_full.dcm")
ds = base()
image(ds, rgb(16, 16), 8, photometric="YBR_FULL_422", planar=0)
ds.PixelData = rgb(16, 16)[:, :, 0].repeat(2, axis=1).tobytes()  # 2 x Y + Cb Cr per pair
save(ds, "jpls_ybr_full_422.dcm")

# Explicit VR big endian (16 and 8 bits) and implicit VR little endian.
save(image(base(CT, ExplicitVRBigEndian), smooth(20, 24, 3000, -1000).astype(np.int16), 16,
           signed=True), "jpls_big_endian.dcm")
save(image(base(SC, ExplicitVRBigEndian), smooth(13, 17, 255).astype(np.uint8), 8),
     "jpls_big_endian8.dcm")
ds = base(CT, ImplicitVRLittleEndian)
ds.add_new(0x00090010, "LO", "OUTPOST TEST")
ds.add_new(0x00091002, "LO", "implicit private")
save(image(ds, smooth(24, 24, 4095).astype(np.uint16), 12), "jpls_implicit.dcm")

# Refused: 32 bits allocated, float pixel data, pixel data too short.
save(image(base(), smooth(8, 8, 100000).astype(np.uint32), 32), "jpls_bits32.dcm")
ds = base()
image(ds, smooth(8, 8, 100).astype(np.uint16), 16)
del ds.PixelData
del ds.PixelRepresentation
ds.BitsAllocated = 32
del ds.BitsStored
del ds.HighBit
ds.add_new(0x7FE00008, "OF", smooth(8, 8, 100).astype("<f4").tobytes())
save(ds, "jpls_float.dcm")
ds = base()
image(ds, smooth(16, 16, 255).astype(np.uint8), 8)
ds.PixelData = ds.PixelData[:200]
save(ds, "jpls_short.dcm")
