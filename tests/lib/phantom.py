"""A synthesised CT study that compresses like a real one (pydicom + numpy),
for the compression benchmark. dicomgen.make_ct_study's random pixels hardly
compress (1.24x, the 4 unused bits); this one is anatomy plus CT-like noise.

make_phantom_study(dir, n=300) writes n axial CT slices of 512x512, 16 bits
allocated, 12 stored (HighBit 11, unsigned), RescaleIntercept -1024, slope
1: one study, one series, CT Image Storage, explicit VR little endian Part
10 files. Everything is deterministic in `seed` (and n, rows, cols): the
pixels come from numpy's default_rng(seed), the UIDs from pydicom's
generate_uid hashing the seed, n, the patient ID and a name, and no tag holds
the time of writing; the same call writes the same bytes.

How a slice is made (all sizes in mm, then sampled on the pixel grid):
- the n slices cover the same 375 mm from the upper chest to the pelvis
  whatever n is (spacing 375/n, 1.25 mm for 300), so a short study samples
  the whole body and compresses like the long one; the field of view is
  384 mm (0.75 mm pixels at 512), outside its reconstruction circle the
  pixel padding value 0 (-1024 HU), as scanners write it;
- shapes are filled ellipses with a one-pixel soft edge (partial volume),
  painted in order, each over what is under it: air (-1000 HU), a
  carbon-fibre table under the patient (-300 HU foam, +200 HU shell); the
  body, an ellipse whose size changes along z, with a subcutaneous fat
  layer (-100 HU) 12-30 mm thick over muscle/soft tissue (40-50 HU),
  paraspinal and psoas muscles in their fat;
- chest: two lungs (-850 HU) that grow from the apex and end at the
  diaphragm's domes (the right one higher), with ~60 vessels each (40 HU,
  1-4 mm, drifting slowly along z so they form branches), the heart
  (45 HU) and aorta (40 HU) between them, a sternum, and ribs: on each
  side 11 places along the body wall where a rib's section (cortex
  900 HU, marrow 300 HU) appears when the slice cuts it, the ribs slanting
  down from back to front;
- a spine throughout: vertebral body (cancellous 250 HU, cortex 800 HU)
  with a disc (80 HU) every 30 mm, spinal canal (15 HU), lamina and
  spinous process (700 HU);
- abdomen: liver (60 HU, with darker vessels), spleen (48 HU), stomach
  (fluid 15 HU under a gas bubble), kidneys (35 HU cortex around sinus fat
  -60 HU), bowel loops with gas and fluid drifting along z, iliac wings
  (bone) at the pelvis; each organ a smooth ellipse whose size follows a
  sine profile over its z range;
- soft texture: a smooth random field of +-6 HU (a 17x17 grid per 25 mm of
  z, interpolated) over the body, so organs are not flat;
- noise: Gaussian, blurred by a light 3x3 kernel ([1 8 1]/10 each way:
  neighbours correlated ~0.25, as CT noise is, a little), scaled to sigma
  20 HU inside the body and 14 HU in air (1.25 mm slices, standard
  kernel); a stronger blur makes neighbours predictable and flatters
  JPEG-LS (3.75x with [1 2 1]/4 at 14 HU);
- stored value: round(HU + 1024) clipped to 0..4095.

About 3x lossless with JPEG-LS (DCMTK's dcmcjpls), as 12-bit CT is
(2.5-3.5x in the literature); the random pixels of dicomgen, 1.24x.
Generating 300 slices takes ~20 s.
"""
import os

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

LENGTH_MM = 375.0     # upper chest to pelvis
FOV_MM = 384.0
NOISE_BODY_HU = 20.0
NOISE_AIR_HU = 14.0
BLUR = (0.1, 0.8, 0.1)  # the noise's 3x3 kernel, each way (separable)
BLUR_GAIN = sum(w * w for w in BLUR)  # the std of unit white noise after it


def _profile(t, t0, t1):
    """0 outside [t0, t1], a half sine inside: an organ's size along z."""
    if t <= t0 or t >= t1:
        return 0.0
    return float(np.sin(np.pi * (t - t0) / (t1 - t0)))


class _Canvas:
    """A slice in HU on a grid of x (left-right) and y (anterior-posterior), mm."""

    def __init__(self, rows, cols, spacing):
        self.spacing = spacing
        self.x0 = -(cols - 1) / 2 * spacing
        self.y0 = -(rows - 1) / 2 * spacing
        self.rows, self.cols = rows, cols
        self.hu = np.full((rows, cols), -1000.0, dtype=np.float32)
        self.body = np.zeros((rows, cols), dtype=np.float32)

    def _box(self, cx, cy, r):
        s = self.spacing
        c0 = max(0, int((cx - r - self.x0) / s) - 2)
        c1 = min(self.cols, int((cx + r - self.x0) / s) + 3)
        r0 = max(0, int((cy - r - self.y0) / s) - 2)
        r1 = min(self.rows, int((cy + r - self.y0) / s) + 3)
        return r0, r1, c0, c1

    def weight(self, cx, cy, a, b, angle=0.0):
        """(slice of the image, coverage 0..1 of the ellipse) or None."""
        if a <= 0.2 or b <= 0.2:
            return None
        r0, r1, c0, c1 = self._box(cx, cy, max(a, b))
        if r0 >= r1 or c0 >= c1:
            return None
        y = (self.y0 + np.arange(r0, r1, dtype=np.float32) * self.spacing - cy)[:, None]
        x = (self.x0 + np.arange(c0, c1, dtype=np.float32) * self.spacing - cx)[None, :]
        if angle:
            ca, sa = np.cos(angle), np.sin(angle)
            x, y = x * ca + y * sa, y * ca - x * sa
        d = np.sqrt((x / a) ** 2 + (y / b) ** 2)
        # The distance to the edge in pixels, roughly; one pixel of soft edge.
        w = np.clip((1.0 - d) * min(a, b) / self.spacing + 0.5, 0.0, 1.0)
        return (slice(r0, r1), slice(c0, c1)), w

    def paint(self, hu, cx, cy, a, b, angle=0.0, body=False):
        got = self.weight(cx, cy, a, b, angle)
        if got is None:
            return
        (rs, cs), w = got
        view = self.hu[rs, cs]
        view += (hu - view) * w
        if body:
            np.maximum(self.body[rs, cs], w, out=self.body[rs, cs])


class _Anatomy:
    """Everything random about one phantom, drawn once from the seed, so
    structures continue from slice to slice."""

    def __init__(self, rng):
        self.rng = rng
        # Lung vessels: x, y at the top of their run, drift per mm of z, radius, z range.
        self.vessels = []
        for side in (-1, 1):
            for _ in range(60):
                self.vessels.append(dict(
                    side=side, x=side * rng.uniform(40, 125), y=rng.uniform(-70, 60),
                    dx=rng.normal(0, 0.25), dy=rng.normal(0, 0.25), r=rng.uniform(1.0, 4.0),
                    z0=rng.uniform(-30, 200), len=rng.uniform(20, 120)))
        self.liver_vessels = [dict(x=rng.uniform(-120, -30), y=rng.uniform(-40, 50),
                                   dx=rng.normal(0, 0.2), dy=rng.normal(0, 0.2),
                                   r=rng.uniform(2, 6), z0=rng.uniform(140, 260),
                                   len=rng.uniform(20, 60)) for _ in range(14)]
        self.bowel = [dict(x=rng.uniform(-100, 100), y=rng.uniform(-70, 30),
                           dx=rng.normal(0, 0.4), dy=rng.normal(0, 0.3),
                           a=rng.uniform(10, 22), b=rng.uniform(8, 16),
                           angle=rng.uniform(0, np.pi), gas=rng.uniform() < 0.4,
                           z0=rng.uniform(220, 375), len=rng.uniform(15, 80))
                      for _ in range(40)]
        self.rib_phase = rng.uniform(0, 1, size=(2, 11))
        # The soft texture: a coarse 3D field, 17x17 in the plane, one plane per 25 mm.
        self.texture = rng.normal(0, 1, size=(int(LENGTH_MM / 25) + 3, 17, 17)).astype(np.float32)


def _texture_matrix(n, coarse=17):
    """Linear interpolation from `coarse` points to n (an n x coarse matrix)."""
    pos = np.linspace(0, coarse - 1, n)
    i = np.minimum(pos.astype(int), coarse - 2)
    f = pos - i
    m = np.zeros((n, coarse), dtype=np.float32)
    m[np.arange(n), i] = 1 - f
    m[np.arange(n), i + 1] = f
    return m


def _blur(a):
    """The 3x3 BLUR, edges replicated."""
    k0, k1, k2 = BLUR
    p = np.pad(a, 1, mode="edge")
    h = k0 * p[:, :-2] + k1 * p[:, 1:-1] + k2 * p[:, 2:]
    return k0 * h[:-2] + k1 * h[1:-1] + k2 * h[2:]


def _slice_hu(anat, z, rows, cols, noise_rng, wy, wx):
    """One slice at z mm from the top, in HU (float32), noise included."""
    t = z / LENGTH_MM
    cv = _Canvas(rows, cols, FOV_MM / max(rows, cols))
    paint = cv.paint

    # The table under the patient: a curved carbon-fibre slab, 16 mm.
    paint(200.0, 0, 330, 260, 185)
    paint(-300.0, 0, 330, 257, 182)
    paint(200.0, 0, 346, 254, 185)
    paint(-1000.0, 0, 346, 251, 182)

    # The body: wider at the chest and hips, a little narrower at the waist.
    a = 158 + 10 * np.cos(2 * np.pi * t) + 8 * t
    b = 112 + 6 * np.sin(np.pi * t)
    cy = 20.0
    fat = 12 + 18 * _profile(t, 0.35, 1.4)
    paint(-100.0, 0, cy, a, b, body=True)
    paint(40.0, 0, cy, a - fat, b - fat * 0.8)
    ia, ib = a - fat, b - fat * 0.8  # inside the fat layer

    # Back muscles in their fat.
    for s in (-1, 1):
        paint(-70.0, s * 38, cy + ib - 38, 32, 28)
        paint(50.0, s * 38, cy + ib - 38, 30, 26)

    # Ribs: on each side 11 places along the wall; a rib shows when the
    # slice cuts it, later (lower) towards the front.
    rib_hi = _profile(t, -0.02, 1.25)
    if t < 0.62:
        for si, s in enumerate((-1, 1)):
            for k in range(11):
                theta = np.pi * (0.12 + 0.76 * k / 10)          # from the back round to the front
                phase = (z / 28.0 + k * 0.09 + anat.rib_phase[si, k] * 0.1) % 1.0
                if phase > 0.32 or rib_hi == 0:
                    continue
                rx = s * (ia - 9) * np.sin(theta)
                ry = cy + (ib - 9) * np.cos(theta)
                ang = np.pi / 2 - theta * s
                paint(900.0, rx, ry, 11, 5.5, angle=ang)
                paint(300.0, rx, ry, 8.5, 3.0, angle=ang)

    # Lungs, from the apex to the diaphragm (the right, -x, ends higher).
    for s, t_end in ((-1, 0.48), (1, 0.53)):
        f = _profile(t, -0.06, t_end) ** 0.5 if t < t_end else 0.0
        if f > 0:
            lx, ly = s * 72, cy - 12
            paint(-850.0, lx, ly, 58 * f, 86 * f, angle=-s * 0.15)
    # Lung vessels: only inside the lungs (blend by lungness of the pixel).
    lung = (cv.hu < -700) & (cv.body > 0.99)
    for v in anat.vessels:
        dz = z - v["z0"]
        if 0 <= dz <= v["len"]:
            got = cv.weight(v["x"] + v["dx"] * dz, cy - 12 + v["y"] + v["dy"] * dz, v["r"], v["r"])
            if got:
                (rs, cs), w = got
                w = w * lung[rs, cs]
                view = cv.hu[rs, cs]
                view += (40.0 - view) * w

    # Mediastinum: heart, aorta, sternum.
    h = _profile(t, 0.12, 0.46)
    if h > 0:
        paint(45.0, 22, cy - 25, 62 * h, 50 * h, angle=0.5)
        paint(40.0, 5, cy - 30, 14 * h, 14 * h)  # ascending aorta
    if t < 0.85:
        paint(40.0, 14, cy + ib - 72, 12.5, 12.5)  # descending aorta
    st = _profile(t, 0.05, 0.45)
    if st > 0:
        paint(650.0, 0, cy - ib + 8, 16, 7)
        paint(250.0, 0, cy - ib + 8, 12, 4)

    # Abdomen.
    lv = _profile(t, 0.38, 0.78)
    if lv > 0:
        paint(60.0, -62, cy - 5, 88 * lv, 72 * lv, angle=0.2)
        for v in anat.liver_vessels:
            dz = z - v["z0"]
            if 0 <= dz <= v["len"]:
                got = cv.weight(v["x"] + v["dx"] * dz, cy + v["y"] + v["dy"] * dz, v["r"], v["r"])
                if got:
                    (rs, cs), w = got
                    w = w * (np.abs(cv.hu[rs, cs] - 60.0) < 15)
                    view = cv.hu[rs, cs]
                    view += (35.0 - view) * w
    sp = _profile(t, 0.42, 0.62)
    if sp > 0:
        paint(48.0, 95, cy + 25, 30 * sp, 48 * sp, angle=-0.5)
    so = _profile(t, 0.44, 0.62)
    if so > 0:
        paint(15.0, 55, cy - 35, 45 * so, 35 * so, angle=0.3)
        paint(-1000.0, 55, cy - 35 - 25 * so, 28 * so, 12 * so)
    kd = _profile(t, 0.55, 0.79)
    if kd > 0:
        for s in (-1, 1):
            paint(35.0, s * 72, cy + 42, 30 * kd, 42 * kd, angle=s * 0.35)
            paint(-60.0, s * 62, cy + 40, 10 * kd, 16 * kd, angle=s * 0.35)
    ps = _profile(t, 0.6, 1.6)
    if ps > 0:
        for s in (-1, 1):
            paint(50.0, s * (34 + 20 * ps), cy + 48, 13 + 15 * ps, 14 + 10 * ps)
    for bw in anat.bowel:
        dz = z - bw["z0"]
        if 0 <= dz <= bw["len"]:
            f = _profile(dz, 0, bw["len"]) ** 0.5
            x, y = bw["x"] + bw["dx"] * dz, cy + bw["y"] + bw["dy"] * dz
            paint(30.0, x, y, bw["a"] * f, bw["b"] * f, angle=bw["angle"])
            paint(-1000.0 if bw["gas"] else 10.0, x, y, bw["a"] * f - 3, bw["b"] * f - 3,
                  angle=bw["angle"])
    il = _profile(t, 0.84, 1.25)
    if il > 0:
        for s in (-1, 1):
            paint(850.0, s * 100, cy + 25, 22 + 25 * il, 10 + 6 * il, angle=s * 0.6)
            paint(280.0, s * 100, cy + 25, 18 + 25 * il, 6 + 6 * il, angle=s * 0.6)

    # The spine: vertebral body with a disc every 30 mm, canal, lamina, spinous process.
    vy = cy + ib - 62
    disc = (z % 30.0) < 5.0
    if disc:
        paint(80.0, 0, vy, 20 + 6 * t, 17 + 4 * t)
    else:
        paint(800.0, 0, vy, 20 + 6 * t, 17 + 4 * t)
        paint(250.0, 0, vy, 17.5 + 6 * t, 14.5 + 4 * t)
    paint(700.0, 0, vy + 27, 13, 11)
    paint(15.0, 0, vy + 26, 8, 7)
    paint(700.0, 0, vy + 42, 4.5, 10)

    # The soft texture, inside the body.
    zi = z / 25.0
    k = min(int(zi), anat.texture.shape[0] - 2)
    f = zi - k
    coarse = (1 - f) * anat.texture[k] + f * anat.texture[k + 1]
    hu = cv.hu + 6.0 * (wy @ coarse @ wx.T) * cv.body

    # Noise: blurred Gaussian, more in the body than in air.
    sigma = NOISE_AIR_HU + (NOISE_BODY_HU - NOISE_AIR_HU) * cv.body
    noise = _blur(noise_rng.standard_normal((rows, cols), dtype=np.float32))
    hu += noise * (sigma / BLUR_GAIN)
    return hu


def phantom_pixels(z, anat, rows, cols, noise_rng, wy, wx):
    """Stored values (uint16) of one slice: HU + 1024, clipped, padding outside the FOV."""
    hu = _slice_hu(anat, z, rows, cols, noise_rng, wy, wx)
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
    yy, xx = np.ogrid[:rows, :cols]
    r = min(rows, cols) / 2
    stored[(yy - (rows - 1) / 2) ** 2 + (xx - (cols - 1) / 2) ** 2 > r * r] = 0
    return stored


def make_phantom_study(directory, n=300, seed=1, rows=512, cols=512, patient_id="PHANTOM1",
                       study_uid=None, body_part="CHEST"):
    """Writes n CT slices of the phantom into directory; returns their paths in order."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    anat = _Anatomy(rng)
    noise_rng = np.random.default_rng([seed, 1])
    wy, wx = _texture_matrix(rows), _texture_matrix(cols)

    def uid(*what):
        return generate_uid(entropy_srcs=["outpost-phantom", str(seed), str(n), patient_id,
                                          *what])

    study_uid = study_uid or uid("study")
    series_uid = uid("series")
    frame_uid = uid("frame")
    spacing = FOV_MM / max(rows, cols)
    step = LENGTH_MM / n
    paths = []
    for i in range(n):
        z = (i + 0.5) * step
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid("instance", str(i))
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(directory, f"ct{i:05d}.dcm")
        ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20261128"
        ds.StudyTime = "101500"
        ds.SeriesTime = "101812"
        ds.AcquisitionTime = ds.ContentTime = f"1018{12 + i * 10 // n:02d}.{i % 1000:03d}"
        ds.AccessionNumber = f"ACC{seed:07d}"
        ds.Modality = "CT"
        ds.Manufacturer = "Outpost"
        ds.ManufacturerModelName = "Synthetic phantom"
        ds.InstitutionName = "Outpost Test Site"
        ds.ReferringPhysicianName = "Referrer^Test"
        ds.StudyDescription = "CT CHEST ABDOMEN PELVIS"
        ds.SeriesDescription = "Axial 1.25mm soft tissue" if n == 300 else "Axial soft tissue"
        ds.PatientName = "Phantom^Outpost"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19620314"
        ds.PatientSex = "O"
        ds.PatientAge = "064Y"
        if body_part:
            ds.BodyPartExamined = body_part
        ds.SliceThickness = f"{step:.4g}"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = f"{FOV_MM:.0f}"
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 2
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [f"{-(cols - 1) / 2 * spacing:.4f}",
                                   f"{-(rows - 1) / 2 * spacing:.4f}", f"{-z:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{-z:.4f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{spacing:.6g}", f"{spacing:.6g}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelPaddingValue = 0
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = phantom_pixels(z, anat, rows, cols, noise_rng, wy, wx).tobytes()
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        ds.save_as(path, write_like_original=False)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys
    make_phantom_study(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300)
