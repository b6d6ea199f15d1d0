/*
 * jpls: the JPEG-LS Lossless encoder and its proof of jpls.h, on DCMTK
 * 3.6.7's dcmjpls.
 *
 * Encoding is DCMTK's: load the file, check here what JPEG-LS and DICOM
 * allow (so that DCMTK's encoder never falls back to its "cooked" mode),
 * chooseRepresentation(EXS_JPEGLSLossless), write a Part 10 file. The
 * proof reads both files back from disk as a third party would: it
 * compares every attribute as little endian implicit VR bytes (which
 * normalises byte order and VR) and every pixel sample after DCMTK's
 * JPEG-LS decoder.
 */
#include "dicom/jpls.h"
#include "dicom/shim.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcostrma.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcwcache.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static std::atomic<int> corrupt_for_test(0);

void op_jpls_test_corrupt(int on)
{
	corrupt_for_test.store(on ? 1 : 0);
}

void op_jpls__register_codecs(void)
{
	static std::once_flag once;
	std::call_once(once, [] {
		DJDecoderRegistration::registerCodecs();
		DJLSDecoderRegistration::registerCodecs();
		DcmRLEDecoderRegistration::registerCodecs();
		/* Raw mode (preferCookedEncoding false, jpls.h says why), default
		 * JPEG-LS parameters, one fragment per frame, a basic offset
		 * table, the interleave the planar configuration implies, no new
		 * SOP Instance UID, no Secondary Capture conversion. */
		DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, OFFalse, 0, OFTrue,
							EJLSUC_never, OFFalse,
							DJLSCodecParameter::interleaveDefault);
	});
}

/* --- output: a file descriptor or a string ------------------------------------ */

/* A DcmConsumer that writes to fd, or appends to *str. */
class Sink : public DcmConsumer
{
public:
	Sink(int fd, std::string *str) : fd_(fd), str_(str), errno_(0) {}
	OFBool good() const override { return errno_ == 0; }
	OFCondition status() const override { return errno_ == 0 ? EC_Normal : EC_InvalidStream; }
	OFBool isFlushed() const override { return OFTrue; }
	offile_off_t avail() const override { return 1 << 30; }
	offile_off_t write(const void *buf, offile_off_t len) override
	{
		const char *p = (const char *)buf;
		offile_off_t left = len;

		if (str_) {
			str_->append(p, (size_t)len);
			return len;
		}
		while (errno_ == 0 && left > 0) {
			ssize_t n = ::write(fd_, p, (size_t)left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				errno_ = n < 0 ? errno : EIO;
				break;
			}
			p += n;
			left -= n;
		}
		return errno_ == 0 ? len : 0;
	}
	void flush() override {}
	int error() const { return errno_; }

private:
	int fd_;
	std::string *str_;
	int errno_;
};

class SinkStream : public DcmOutputStream
{
public:
	SinkStream(int fd, std::string *str) : DcmOutputStream(&sink_), sink_(fd, str) {}
	int error() const { return sink_.error(); }

private:
	Sink sink_;
};

/* An element's tag, length and value as implicit VR little endian: the
 * same bytes whatever VR and byte order the file had. */
static bool implicit_bytes(DcmElement *e, std::string &out)
{
	SinkStream s(-1, &out);

	out.clear();
	e->transferInit();
	OFCondition c = e->write(s, EXS_LittleEndianImplicit, EET_ExplicitLength, NULL);
	e->transferEnd();
	s.flush();
	return c.good();
}

/* --- reading ------------------------------------------------------------------- */

/* Opens path as a Part 10 file (a meta header required) with every value
 * in memory. */
static int load(const char *path, const char *what, DcmFileFormat &ff, char *err, size_t errlen)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		op_dicom__say(err, errlen, "cannot open the %s file %s: %s", what, path,
			      strerror(e));
		return -e;
	}
	bool regular = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
	close(fd);
	if (!regular) {
		op_dicom__say(err, errlen, "the %s file %s is not a regular file", what, path);
		return -EINVAL;
	}
	OFCondition c =
		ff.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
	if (c.good())
		c = ff.loadAllDataIntoMemory();
	if (c.bad()) {
		op_dicom__say(err, errlen, "the %s file is not a readable DICOM Part 10 file: %s",
			      what, c.text());
		return -EINVAL;
	}
	return 0;
}

/* The transfer syntax a file's meta header names ("" if none). */
static std::string meta_xfer(DcmFileFormat &ff)
{
	OFString v;

	if (ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, v).bad())
		return "";
	return std::string(v.c_str());
}

/* Is ff in one of the three uncompressed syntaxes, as its meta header says
 * and as DCMTK read it? Else why not, in why. */
static bool uncompressed(DcmFileFormat &ff, std::string &why)
{
	static const E_TransferSyntax plain[] = { EXS_LittleEndianImplicit,
						  EXS_LittleEndianExplicit, EXS_BigEndianExplicit };
	std::string uid = meta_xfer(ff);
	E_TransferSyntax read = ff.getDataset()->getOriginalXfer();

	for (E_TransferSyntax x : plain)
		if (uid == DcmXfer(x).getXferID() && read == x)
			return true;
	DcmXfer x(uid.c_str());
	if (uid.empty())
		why = "no transfer syntax in the meta header";
	else if (x.getXfer() != EXS_Unknown &&
		 (x.isEncapsulated() || x.getStreamCompression() != ESC_none))
		why = "transfer syntax " + uid + " is already compressed";
	else
		why = "transfer syntax " + uid + " is not one JPEG-LS encoding starts from " +
		      "(implicit or explicit VR little endian, explicit VR big endian)";
	return false;
}

/* --- what JPEG-LS takes ------------------------------------------------------------ */

struct Image {
	Uint16 rows, columns, samples, bits_allocated, bits_stored, high_bit, pixel_rep;
	Uint16 planar;
	bool planar_present;
	long frames;
	OFString photometric;
	unsigned long frame_samples() const { return (unsigned long)rows * columns * samples; }
	/* The bytes of all frames, unpadded. */
	unsigned long long bytes() const
	{
		return (unsigned long long)frame_samples() * (unsigned long long)frames *
		       (bits_allocated / 8);
	}
};

static bool has_nested_pixel_data(DcmDataset *ds)
{
	for (unsigned long i = 0; i < ds->card(); i++) {
		DcmElement *e = ds->getElement(i);
		if (e->ident() != EVR_SQ)
			continue;
		DcmSequenceOfItems *sq = OFstatic_cast(DcmSequenceOfItems *, e);
		for (unsigned long j = 0; j < sq->card(); j++)
			if (sq->getItem(j)->tagExists(DCM_PixelData, OFTrue))
				return true;
	}
	return false;
}

/* Reads the Image Pixel attributes of ds and says whether JPEG-LS Lossless
 * (PS3.5 8.2.3) and DCMTK's raw encoder take them; why not in why. */
static bool codable(DcmDataset *ds, Image &im, std::string &why)
{
	char buf[200];
	OFString frames;

	if (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData)) {
		why = "floating point pixel data: JPEG-LS codes integer samples";
		return false;
	}
	if (!ds->tagExists(DCM_PixelData)) {
		why = "no pixel data";
		return false;
	}
	if (has_nested_pixel_data(ds)) {
		why = "pixel data inside a sequence (an icon image) is not handled";
		return false;
	}
	struct {
		DcmTagKey tag;
		Uint16 *v;
		const char *name;
	} const need[] = {
		{ DCM_Rows, &im.rows, "Rows" },
		{ DCM_Columns, &im.columns, "Columns" },
		{ DCM_SamplesPerPixel, &im.samples, "SamplesPerPixel" },
		{ DCM_BitsAllocated, &im.bits_allocated, "BitsAllocated" },
		{ DCM_BitsStored, &im.bits_stored, "BitsStored" },
		{ DCM_HighBit, &im.high_bit, "HighBit" },
		{ DCM_PixelRepresentation, &im.pixel_rep, "PixelRepresentation" },
	};
	for (const auto &n : need) {
		if (ds->findAndGetUint16(n.tag, *n.v).bad()) {
			why = std::string(n.name) + " is missing or not a number";
			return false;
		}
	}
	if (ds->findAndGetOFString(DCM_PhotometricInterpretation, im.photometric).bad()) {
		why = "PhotometricInterpretation is missing";
		return false;
	}
	im.planar = 0;
	im.planar_present = ds->findAndGetUint16(DCM_PlanarConfiguration, im.planar).good();
	const OFString &pi = im.photometric;
	buf[0] = '\0';
	if (im.bits_allocated > 16 || im.bits_allocated < 2)
		snprintf(buf, sizeof(buf), "%u bit%s allocated: JPEG-LS takes 2 to 16 bits",
			 im.bits_allocated, im.bits_allocated == 1 ? "" : "s");
	else if (im.bits_allocated != 8 && im.bits_allocated != 16)
		snprintf(buf, sizeof(buf), "%u bits allocated: the encoder takes 8 or 16",
			 im.bits_allocated);
	else if (im.bits_stored < 2 || im.bits_stored > 16)
		snprintf(buf, sizeof(buf), "%u bit%s stored: JPEG-LS takes 2 to 16 bits",
			 im.bits_stored, im.bits_stored == 1 ? "" : "s");
	else if (im.bits_stored > im.bits_allocated || im.high_bit >= im.bits_allocated)
		snprintf(buf, sizeof(buf), "%u bits stored, high bit %u do not fit %u allocated",
			 im.bits_stored, im.high_bit, im.bits_allocated);
	else if (im.rows == 0 || im.columns == 0)
		snprintf(buf, sizeof(buf), "an empty image (%u rows, %u columns)", im.rows,
			 im.columns);
	else if (im.samples == 1 && pi != "MONOCHROME1" && pi != "MONOCHROME2" &&
		 pi != "PALETTE COLOR")
		snprintf(buf, sizeof(buf), "photometric interpretation %s with 1 sample per pixel",
			 pi.c_str());
	else if (im.samples == 3 && pi != "RGB" && pi != "YBR_FULL")
		snprintf(buf, sizeof(buf),
			 "photometric interpretation %s: JPEG-LS takes RGB and YBR_FULL colour",
			 pi.c_str());
	else if (im.samples != 1 && im.samples != 3)
		snprintf(buf, sizeof(buf), "%u samples per pixel: JPEG-LS takes 1 or 3",
			 im.samples);
	else if (pi == "YBR_FULL" && im.bits_allocated != 8)
		snprintf(buf, sizeof(buf), "YBR_FULL with %u bits allocated: JPEG-LS takes 8",
			 im.bits_allocated);
	else if (im.pixel_rep != 0 && pi != "MONOCHROME1" && pi != "MONOCHROME2")
		snprintf(buf, sizeof(buf), "signed samples with photometric interpretation %s",
			 pi.c_str());
	else if (im.samples == 3 && im.planar > 1)
		snprintf(buf, sizeof(buf), "PlanarConfiguration %u is neither 0 nor 1", im.planar);
	if (buf[0]) {
		why = buf;
		return false;
	}
	im.frames = 1;
	if (ds->findAndGetOFString(DCM_NumberOfFrames, frames).good()) {
		char *end = NULL;
		errno = 0;
		im.frames = strtol(frames.c_str(), &end, 10);
		while (end && *end == ' ')
			end++;
		if (errno || !end || *end || im.frames < 1) {
			why = std::string("NumberOfFrames \"") + frames.c_str() +
			      "\" is not a positive number";
			return false;
		}
	}
	DcmElement *pd = NULL;
	ds->findAndGetElement(DCM_PixelData, pd);
	unsigned long long have = pd ? pd->getLength() : 0, want = im.bytes();
	if (have != want + (want & 1)) {
		snprintf(buf, sizeof(buf),
			 "pixel data holds %llu bytes; %u rows x %u columns x %u samples x %ld "
			 "frames x %u bytes need %llu",
			 have, im.rows, im.columns, im.samples, im.frames, im.bits_allocated / 8,
			 want + (want & 1));
		why = buf;
		return false;
	}
	if (want > 0xfffffffeull) {
		why = "pixel data of 4 GiB or more";
		return false;
	}
	return true;
}

/* --- the proof ------------------------------------------------------------------ */

/* "(0010,0020) PatientID", or under path: "(0008,1140) ReferencedImage
 * Sequence[0] (0008,1155) ReferencedSOPInstanceUID". */
static std::string name(const std::string &path, DcmElement *e)
{
	DcmTag t = e->getTag();
	char buf[120];

	snprintf(buf, sizeof(buf), "(%04X,%04X) %s", t.getGTag(), t.getETag(), t.getTagName());
	return path.empty() ? buf : path + " " + buf;
}

/* The value of a short text element, for the message ("" otherwise). */
static std::string shown(DcmElement *e)
{
	OFString v;

	if (!e->isaString() || e->getLength() > 64 || e->getOFStringArray(v).bad())
		return "";
	return std::string("\"") + v.c_str() + "\"";
}

typedef bool skip_fn(const DcmTagKey &tag, bool top);

/* Attributes compared elsewhere or allowed to change (jpls.h). */
static bool skip_dataset(const DcmTagKey &tag, bool top)
{
	return tag.getElement() == 0x0000 ||
	       (top && (tag == DCM_PixelData || tag == DCM_PlanarConfiguration));
}

static bool skip_meta(const DcmTagKey &tag, bool)
{
	return tag == DCM_FileMetaInformationGroupLength || tag == DCM_TransferSyntaxUID ||
	       tag == DCM_ImplementationClassUID || tag == DCM_ImplementationVersionName;
}

/* Compares the elements of a and b (sorted by tag, as DCMTK keeps them),
 * into sequence items; the first difference in why. */
static bool same_items(DcmItem *a, DcmItem *b, skip_fn *skip, bool top, const std::string &path,
		       std::string &why)
{
	unsigned long i = 0, j = 0, na = a->card(), nb = b->card();
	std::string va, vb;

	while (i < na || j < nb) {
		DcmElement *ea = i < na ? a->getElement(i) : NULL;
		DcmElement *eb = j < nb ? b->getElement(j) : NULL;
		if (ea && skip(ea->getTag(), top)) {
			i++;
			continue;
		}
		if (eb && skip(eb->getTag(), top)) {
			j++;
			continue;
		}
		if (!eb || (ea && ea->getTag() < eb->getTag())) {
			why = name(path, ea) + " is missing from the compressed file";
			return false;
		}
		if (!ea || eb->getTag() < ea->getTag()) {
			why = name(path, eb) + " is in the compressed file only";
			return false;
		}
		bool sa = ea->ident() == EVR_SQ, sb = eb->ident() == EVR_SQ;
		if (sa && sb) {
			DcmSequenceOfItems *qa = OFstatic_cast(DcmSequenceOfItems *, ea);
			DcmSequenceOfItems *qb = OFstatic_cast(DcmSequenceOfItems *, eb);
			if (qa->card() != qb->card()) {
				why = name(path, ea) + " has " + std::to_string(qa->card()) +
				      " items in the original, " + std::to_string(qb->card()) +
				      " in the compressed file";
				return false;
			}
			for (unsigned long k = 0; k < qa->card(); k++)
				if (!same_items(qa->getItem(k), qb->getItem(k), skip, false,
						name(path, ea) + "[" + std::to_string(k) + "]",
						why))
					return false;
		} else if (sa != sb || !implicit_bytes(ea, va) || !implicit_bytes(eb, vb) ||
			   va != vb) {
			std::string sva = shown(ea), svb = shown(eb);
			why = name(path, ea) + " differs";
			if (!sva.empty() && !svb.empty())
				why += ": " + sva + " in the original, " + svb + " compressed";
			return false;
		}
		i++;
		j++;
	}
	return true;
}

/* The samples of ds's native pixel data (8 or 16 bits): at p8 or p16. */
static bool samples(DcmDataset *ds, const Image &im, Uint8 **p8, Uint16 **p16)
{
	DcmElement *pd = NULL;

	*p8 = NULL;
	*p16 = NULL;
	if (ds->findAndGetElement(DCM_PixelData, pd).bad() || !pd || pd->getLength() < im.bytes())
		return false;
	if (im.bits_allocated == 8)
		return pd->getUint8Array(*p8).good() && *p8;
	return pd->getUint16Array(*p16).good() && *p16;
}

/* Index of (frame, row, column, sample) in pixel data of that planar
 * configuration. */
static unsigned long long at(const Image &im, Uint16 planar, unsigned long long f,
			     unsigned long long r, unsigned long long c, unsigned long long s)
{
	unsigned long long px = (unsigned long long)im.rows * im.columns;

	if (planar == 1)
		return f * px * im.samples + s * px + r * im.columns + c;
	return ((f * im.rows + r) * im.columns + c) * im.samples + s;
}

/* Compares every sample of the original (planar configuration im.planar)
 * with the decoded (planar configuration planar_b). */
static bool same_pixels(DcmDataset *a, DcmDataset *b, const Image &im, Uint16 planar_b,
			std::string &why)
{
	Uint8 *a8, *b8;
	Uint16 *a16, *b16;
	char buf[300];

	if (!samples(a, im, &a8, &a16)) {
		why = "the original's pixel data cannot be read";
		return false;
	}
	if (!samples(b, im, &b8, &b16)) {
		why = "the decoded pixel data is shorter than the original's";
		return false;
	}
	/* In the order of colour-by-pixel: n = ((f * rows + r) * columns + c)
	 * * samples + s. */
	unsigned long long total = (unsigned long long)im.frame_samples() * im.frames;
	for (unsigned long long n = 0; n < total; n++) {
		unsigned long long s = n % im.samples, c = n / im.samples % im.columns;
		unsigned long long r = n / im.samples / im.columns % im.rows;
		unsigned long long f = n / im.frame_samples();
		unsigned long long ia = at(im, im.planar, f, r, c, s);
		unsigned long long ib = at(im, planar_b, f, r, c, s);
		unsigned va = a8 ? a8[ia] : a16[ia], vb = b8 ? b8[ib] : b16[ib];
		if (va == vb)
			continue;
		snprintf(buf, sizeof(buf),
			 "(7FE0,0010) PixelData differs at frame %llu, row %llu, column %llu, "
			 "sample %llu (byte offset %llu of the original's pixel data): 0x%04X in "
			 "the original, 0x%04X decoded",
			 f, r, c, s, ia * (im.bits_allocated / 8), va, vb);
		why = buf;
		return false;
	}
	return true;
}

/* PlanarConfiguration in compressed, by the rule of jpls.h. */
static bool planar_allowed(DcmDataset *b, const Image &im, Uint16 *planar_b, std::string &why)
{
	bool present = b->findAndGetUint16(DCM_PlanarConfiguration, *planar_b).good();

	if (im.samples == 3 && (!present || *planar_b != 0)) {
		why = "(0028,0006) PlanarConfiguration of the compressed colour image is not 0";
		return false;
	}
	if (im.samples == 1 && present && (!im.planar_present || *planar_b != im.planar)) {
		why = "(0028,0006) PlanarConfiguration differs";
		return false;
	}
	*planar_b = 0;
	return true;
}

int op_jpls_verify(const char *original, const char *compressed, char *err, size_t errlen)
{
	DcmFileFormat fa, fb;
	std::string why;
	Image im;
	Uint16 planar_b = 0;
	int rc;

	op_dicom__say(err, errlen, "%s", "");
	op_jpls__register_codecs();
	rc = load(original, "original", fa, err, errlen);
	if (rc == 0)
		rc = load(compressed, "compressed", fb, err, errlen);
	if (rc)
		return rc;
	DcmDataset *a = fa.getDataset(), *b = fb.getDataset();
	if (!uncompressed(fa, why)) {
		op_dicom__say(err, errlen, "the original is not uncompressed: %s", why.c_str());
		return -EINVAL;
	}
	if (meta_xfer(fb) != UID_JPEGLSLosslessTransferSyntax ||
	    b->getOriginalXfer() != EXS_JPEGLSLossless) {
		op_dicom__say(err, errlen,
			      "(0002,0010) TransferSyntaxUID of the compressed file is \"%s\", not "
			      "JPEG-LS Lossless " UID_JPEGLSLosslessTransferSyntax,
			      meta_xfer(fb).c_str());
		return OP_JPLS_MISMATCH;
	}
	if (!codable(a, im, why)) {
		op_dicom__say(err, errlen, "the original cannot be compared: %s", why.c_str());
		return -EINVAL;
	}
	if (!same_items(fa.getMetaInfo(), fb.getMetaInfo(), skip_meta, true, "", why) ||
	    !same_items(a, b, skip_dataset, true, "", why) ||
	    !planar_allowed(b, im, &planar_b, why)) {
		op_dicom__say(err, errlen, "%s", why.c_str());
		return OP_JPLS_MISMATCH;
	}
	OFCondition c = b->chooseRepresentation(EXS_LittleEndianExplicit, NULL);
	if (c.bad() || !b->canWriteXfer(EXS_LittleEndianExplicit)) {
		op_dicom__say(err, errlen,
			      "(7FE0,0010) PixelData: the JPEG-LS data does not decode: %s",
			      c.bad() ? c.text() : "no decoder");
		return OP_JPLS_MISMATCH;
	}
	if (!same_pixels(a, b, im, planar_b, why)) {
		op_dicom__say(err, errlen, "%s", why.c_str());
		return OP_JPLS_MISMATCH;
	}
	return 0;
}

/* --- encoding ------------------------------------------------------------------- */

/* Flips one bit in the middle of the first frame's JPEG-LS data (the test
 * hook). */
static void corrupt(DcmDataset *ds, const DcmRepresentationParameter *param)
{
	DcmElement *e = NULL;
	DcmPixelSequence *seq = NULL;
	DcmPixelItem *item = NULL;
	Uint8 *data = NULL;

	if (ds->findAndGetElement(DCM_PixelData, e).bad() || !e)
		return;
	DcmPixelData *pd = OFstatic_cast(DcmPixelData *, e);
	if (pd->getEncapsulatedRepresentation(EXS_JPEGLSLossless, param, seq).bad() || !seq)
		return;
	/* Item 0 is the offset table. */
	if (seq->getItem(item, 1).bad() || !item || item->getUint8Array(data).bad() || !data)
		return;
	data[item->getLength() / 2] ^= 0x10;
}

/* Writes ff to out in JPEG-LS Lossless (see jpls.h for the meta header;
 * not fsync'ed, see there). On failure out is removed. */
static int write_file(DcmFileFormat &ff, const char *out, char *err, size_t errlen)
{
	DcmWriteCache cache;
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	int e = 0;

	/* 0640 also when out existed with another mode, as spool objects are. */
	if (fd < 0 || fchmod(fd, 0640) != 0) {
		e = errno;
		op_dicom__say(err, errlen, "cannot create %s: %s", out, strerror(e));
		if (fd >= 0) {
			close(fd);
			unlink(out);
		}
		return -e;
	}
	{
		SinkStream s(fd, NULL);
		ff.transferInit();
		OFCondition c = ff.write(s, EXS_JPEGLSLossless, EET_ExplicitLength, &cache,
					 EGL_recalcGL, EPD_noChange, 0, 0, 0, EWM_fileformat);
		ff.transferEnd();
		s.flush();
		e = s.error();
		if (e == 0 && c.bad()) {
			op_dicom__say(err, errlen, "writing %s failed: %s", out, c.text());
			e = EIO;
		} else if (e) {
			op_dicom__say(err, errlen, "writing %s failed: %s", out, strerror(e));
		}
	}
	if (close(fd) != 0 && e == 0) {
		e = errno;
		op_dicom__say(err, errlen, "closing %s failed: %s", out, strerror(e));
	}
	if (e == 0)
		return 0;
	unlink(out);
	return e == ENOSPC || e == EDQUOT ? -ENOSPC : -EIO;
}

int op_jpls_encode(const char *src, const char *out, char *err, size_t errlen)
{
	struct stat ss, so;
	std::string why;
	Image im;
	int rc;

	op_dicom__say(err, errlen, "%s", "");
	op_jpls__register_codecs();
	if (stat(src, &ss) == 0 && stat(out, &so) == 0 && ss.st_dev == so.st_dev &&
	    ss.st_ino == so.st_ino) {
		op_dicom__say(err, errlen, "the output file %s is the source file", out);
		return -EINVAL;
	}
	{
		DcmFileFormat ff;
		rc = load(src, "source", ff, err, errlen);
		if (rc)
			goto out;
		DcmDataset *ds = ff.getDataset();
		if (!uncompressed(ff, why) || !codable(ds, im, why)) {
			op_dicom__say(err, errlen, "%s", why.c_str());
			rc = OP_JPLS_NOT_CODABLE;
			goto out;
		}
		DJLSRepresentationParameter lossless(0, OFTrue);
		OFCondition c = ds->chooseRepresentation(EXS_JPEGLSLossless, &lossless);
		if (c.bad() || !ds->canWriteXfer(EXS_JPEGLSLossless)) {
			op_dicom__say(err, errlen, "DCMTK's JPEG-LS encoder refused it: %s",
				      c.bad() ? c.text() : "no encoder");
			rc = OP_JPLS_NOT_CODABLE;
			goto out;
		}
		if (corrupt_for_test.load())
			corrupt(ds, &lossless);
		rc = write_file(ff, out, err, errlen);
		if (rc)
			goto out;
	} /* the instance freed before the proof loads it again */
	rc = op_jpls_verify(src, out, err, errlen);
	if (rc != 0)
		unlink(out);
	/* src was parsed a moment ago: what the proof cannot parse is out, as
	 * written, and the proof has failed. */
	if (rc == -EINVAL)
		rc = OP_JPLS_MISMATCH;
out:
	return rc;
}
