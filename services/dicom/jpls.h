/*
 * jpls: JPEG-LS Lossless compression of a stored instance, with a proof.
 * Part of the DCMTK shim (dicom.h): the uplink compresses an instance
 * before upload, and sends the original whenever this says anything but
 * OP_JPLS_OK.
 *
 * The encoder is DCMTK 3.6.7's (dcmjpls, CharLS) in its "raw" mode, the
 * default of DCMTK's own dcmcjpls: each sample is coded with all its
 * Bits Allocated bits (8 or 16), so the JPEG-LS stream's precision is Bits
 * Allocated, not Bits Stored. What that means for the unused high bits,
 * tried on DCMTK 3.6.7 here (tests/unit/test_jpls.c):
 *   - signed data (Pixel Representation 1) with Bits Stored 12 in 16 and
 *     negative values sign-extended into the high bits: coded and decoded
 *     bit for bit, OP_JPLS_OK;
 *   - unsigned data with junk (an overlay plane, anything) in the bits
 *     above High Bit: likewise kept, OP_JPLS_OK.
 * DCMTK's other ("cooked") mode renders through DicomImage and codes Bits
 * Stored bits only: it drops junk high bits (the proof would fail), and
 * on signed 12-bit data CharLS fails an assert() and aborts the process.
 * It is never used here: this module registers DCMTK's JPEG-LS codecs
 * itself, once per process (shim.h), in raw mode, with no new SOP
 * Instance UID and no Secondary Capture conversion.
 *
 * Debian's DCMTK keeps CharLS's assert()s. The proof decodes what was just
 * written; flipping each bit of two samples' JPEG-LS data in turn never
 * made the decoder abort (it failed, or decoded other values).
 *
 * What is codable: a Part 10 file in Implicit VR Little Endian, Explicit
 * VR Little Endian or Explicit VR Big Endian, with Pixel Data (7FE0,0010)
 * in the top-level dataset only (an icon image in a sequence is not
 * handled); Bits Allocated 8 or 16; Bits Stored 2 to 16, at most Bits
 * Allocated; Samples per Pixel 1 (MONOCHROME1, MONOCHROME2, PALETTE
 * COLOR) or 3 (RGB; YBR_FULL with 8 bits), as PS3.5 8.2.3 allows; signed
 * samples only for MONOCHROME1/2; any number of frames; Pixel Data exactly
 * as long as its frames (and the pad byte). Colour is coded as the planar
 * configuration lays it out (0: one scan, sample-interleaved, JPEG-LS
 * ILV 2; 1: a scan per component, ILV 0), and Planar Configuration becomes
 * 0 either way: it describes the decoded pixels (see op_jpls_verify).
 * Odd widths and heights and many frames need nothing special (a fragment
 * per frame, a basic offset table). Everything else is
 * OP_JPLS_NOT_CODABLE, with the reason.
 *
 * Threads: every function may run on several threads at once, each on
 * its own files. DCMTK's codec list is process-wide and locked by DCMTK.
 * Memory: a call holds the instance about three times (the original, the
 * coded and the decoded pixel data).
 */
#ifndef OP_DICOM_JPLS_H
#define OP_DICOM_JPLS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum op_jpls_result {
	/* out holds the instance as JPEG-LS Lossless (1.2.840.10008.1.2.4.80),
	 * proven lossless. */
	OP_JPLS_OK = 0,
	/* JPEG-LS cannot take it; why in err; out not written. */
	OP_JPLS_NOT_CODABLE = 1,
	/* Encoded, but the proof failed; why in err; out not written
	 * (removed). */
	OP_JPLS_MISMATCH = 2,
};

/*
 * Encodes the DICOM Part 10 file at src into a new file at out, then
 * proves out against src with op_jpls_verify() (reading both back from
 * disk).
 *
 * out is created or truncated (mode 0640, O_NOFOLLOW); the
 * caller gives a temporary name and renames it. It must not name src.
 * out is written completely (not fsync'ed: a copy is checked against its
 * recorded hash before it is used, and made again when it does not match)
 * before OP_JPLS_OK is returned; on any other result out does not exist
 * afterwards.
 *
 * out's File Meta Information is src's, but for Transfer Syntax UID
 * (JPEG-LS Lossless), its group length, and Implementation Class UID and
 * Version Name, which DCMTK sets to its own (they name the software that
 * wrote the file, PS3.10 7.1, which is DCMTK here). Its dataset is src's,
 * but for the pixel data's encoding and the attributes op_jpls_verify()
 * lets change.
 *
 * Returns an op_jpls_result (>= 0), or a negative errno: -EINVAL when src
 * cannot be parsed as a Part 10 file (err says why; also when out names
 * src), -ENOENT, -EACCES, ... when src cannot be opened or out cannot be
 * created, -EIO or -ENOSPC when reading or writing failed. err (errlen
 * bytes, may be NULL) says why for anything but OP_JPLS_OK.
 */
int op_jpls_encode(const char *src, const char *out, char *err, size_t errlen);

/*
 * The proof: decodes compressed (with DCMTK's JPEG-LS decoder) and
 * compares it with original, an uncompressed Part 10 file.
 *
 * Pixel Data (7FE0,0010) is compared as sample values, bit for bit: every
 * frame, every sample, all Bits Allocated bits of each (not only Bits
 * Stored), each file read in its own byte order and planar configuration
 * (the original may be big endian or implicit VR). Pad bytes are not
 * samples and are not compared.
 *
 * Every other attribute, of the File Meta Information and of the dataset,
 * sequences and their items included, must have the same value (compared
 * as little endian bytes, whatever the VR or byte order they were read
 * with), except:
 *   - Transfer Syntax UID (0002,0010): JPEG-LS Lossless
 *     1.2.840.10008.1.2.4.80 in compressed, required (PS3.10 7.1, PS3.5 A.4.3);
 *   - File Meta Information Group Length (0002,0000), and every group
 *     length (gggg,0000) of the dataset: they count the bytes of an
 *     encoding (PS3.5 7.2), which has changed;
 *   - Implementation Class UID (0002,0012) and Implementation Version
 *     Name (0002,0013): they name the writer of the file (PS3.10 7.1);
 *   - Planar Configuration (0028,0006): must be 0 in compressed when
 *     Samples per Pixel is 3 (PS3.5 8.2.3, and PS3.3 C.7.6.3.1.3 as
 *     changed by CP 1843), whatever it was in original; with 1 sample it
 *     may be absent from compressed (PS3.3 C.7.6.3: only required when
 *     Samples per Pixel is above 1);
 *   - Pixel Data (7FE0,0010) itself: native OB/OW in original,
 *     encapsulated (PS3.5 A.4) in compressed.
 * A lossless JPEG-LS compression changes nothing else: the SOP Instance
 * UID, Image Type, Lossy Image Compression and Derivation Description stay
 * as they were (PS3.3 C.7.6.1.1.5 asks for changes only when the
 * compression is lossy).
 *
 * Returns 0 when they are identical, OP_JPLS_MISMATCH when they are not
 * (also when compressed is not JPEG-LS Lossless or its pixel data does not
 * decode) with the first difference named in err (the attribute's tag and
 * keyword, nested items by index; for pixel data the frame, row, column,
 * sample and byte offset), or a negative errno: -EINVAL when either file
 * cannot be parsed or original is not uncompressed, -ENOENT, -EACCES, ...
 * when one cannot be opened.
 */
int op_jpls_verify(const char *original, const char *compressed, char *err, size_t errlen);

/*
 * Test-only: when on, op_jpls_encode() flips one bit in the middle of the
 * first frame's JPEG-LS data before writing it, so that the mismatch path
 * can be tested end to end. Default off. Process-wide (an atomic), so a
 * test that sets it must not encode on other threads meanwhile.
 */
void op_jpls_test_corrupt(int on);

#ifdef __cplusplus
}
#endif

#endif
