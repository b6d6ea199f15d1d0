/*
 * send: the C-STORE sender of send.h, on DCMTK 3.6.7's association layer.
 *
 * DCMTK negotiates and releases the association (ASC_*) and reads the
 * responses (DIMSE_receiveCommand); the C-STORE-RQ command and the dataset
 * PDVs are written here with DUL_WritePDVs, because DIMSE_storeUser, even
 * given a file name, loads the whole file and re-encodes it (dimse.cc,
 * DIMSE_sendMessage): group lengths recomputed, padding dropped, sequence
 * lengths rewritten. Writing the PDVs here also puts the caller's progress
 * callback between two PDUs, where an A-ABORT can be sent cleanly.
 */
#include "dicom/send.h"
#include "dicom/shim.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcwcache.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_CONTEXTS 128 /* odd IDs 1..255 (PS3.8 9.3.2.2) */

static const char *const FALLBACKS[] = { UID_LittleEndianExplicitTransferSyntax,
					 UID_LittleEndianImplicitTransferSyntax };

const char *op_dicom_outcome_name(op_dicom_outcome o)
{
	return o == OP_DICOM_SENT ? "SENT" : o == OP_DICOM_RETRY ? "RETRY" : "QUARANTINE";
}

static void outcome(op_dicom_result *r, op_dicom_outcome o, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void outcome(op_dicom_result *r, op_dicom_outcome o, const char *fmt, ...)
{
	va_list ap;

	r->outcome = o;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

/* --- the stored file --------------------------------------------------------- */

/* A VR with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2). */
static bool long_vr(const unsigned char *vr)
{
	static const char *const vrs[] = { "OB", "OD", "OF", "OL", "OV", "OW", "SQ",
					   "SV", "UC", "UN", "UR", "UT", "UV" };
	for (const char *v : vrs)
		if (vr[0] == v[0] && vr[1] == v[1])
			return true;
	return false;
}

/*
 * Where the dataset starts in a file: after the preamble, "DICM" and the
 * File Meta Information group (always explicit VR little endian), walked
 * element by element rather than trusting its group length. A file with
 * no meta header starts at 0. *ts is the meta header's transfer syntax ("" if
 * none).
 */
static int dataset_offset(int fd, uint64_t size, uint64_t *off, std::string *ts, char *err,
			  size_t errlen)
{
	unsigned char h[12];
	uint64_t pos = 0;
	int rc = 0;

	ts->clear();
	if (size >= 132 && pread(fd, h, 4, 128) == 4 && memcmp(h, "DICM", 4) == 0)
		pos = 132;
	for (;;) {
		if (pos + 8 > size || pread(fd, h, 8, (off_t)pos) != 8)
			break;
		uint16_t group = (uint16_t)(h[0] | h[1] << 8), elem = (uint16_t)(h[2] | h[3] << 8);
		uint64_t len, hdr = 8;
		if (group != 0x0002)
			break;
		if (long_vr(h + 4)) {
			if (pos + 12 > size || pread(fd, h + 8, 4, (off_t)pos + 8) != 4) {
				rc = -EINVAL;
				break;
			}
			len = (uint64_t)h[8] | (uint64_t)h[9] << 8 | (uint64_t)h[10] << 16 |
			      (uint64_t)h[11] << 24;
			hdr = 12;
		} else {
			len = (uint64_t)(h[6] | h[7] << 8);
		}
		if (len == 0xffffffffu || pos + hdr + len > size) {
			rc = -EINVAL;
			break;
		}
		if (elem == 0x0010 && len < 80) {
			char v[80];
			if (pread(fd, v, len, (off_t)(pos + hdr)) != (ssize_t)len) {
				rc = -EIO;
				break;
			}
			ts->assign(v, len);
			while (!ts->empty() && (ts->back() == '\0' || ts->back() == ' '))
				ts->pop_back();
		}
		pos += hdr + len;
	}
	if (rc == 0 && pos >= size)
		rc = -EINVAL;
	if (rc)
		op_dicom__say(err, errlen,
			      "the file's meta header is damaged or no dataset follows it");
	*off = pos;
	return rc;
}

/* --- one association ------------------------------------------------------- */

namespace
{

struct Context {
	std::string sop_class, ts;
	T_ASC_PresentationContextID id;
	bool accepted;
	T_ASC_P_ResultReason reason;
};

struct Sender {
	const op_dicom_peer *peer;
	int (*progress)(void *ctx, uint64_t bytes);
	void *ctx;
	int timeout_s;
	T_ASC_Association *assoc;
	std::vector<Context> contexts;
	bool proposed;      /* the contexts are ours (else the requester's, C-GET) */
	bool canceled;      /* progress said stop: the association was aborted */
	std::string broken; /* why the association is no longer usable */
	DIC_US message_id;
};

} /* namespace */

static int find_context(const Sender &s, const char *sop_class, const char *ts)
{
	for (size_t i = 0; i < s.contexts.size(); i++)
		if (s.contexts[i].sop_class == sop_class && s.contexts[i].ts == ts)
			return (int)i;
	return -1;
}

static OFCondition write_pdv(Sender &s, T_ASC_PresentationContextID pid, void *data,
			     unsigned long len, bool command, bool last)
{
	DUL_PDV pdv;
	DUL_PDVLIST list;

	memset(&list, 0, sizeof(list));
	pdv.fragmentLength = len;
	pdv.presentationContextID = pid;
	pdv.pdvType = command ? DUL_COMMANDPDV : DUL_DATASETPDV;
	pdv.lastPDV = last ? OFTrue : OFFalse;
	pdv.data = data;
	list.count = 1;
	list.pdv = &pdv;
	return DUL_WritePDVs(&s.assoc->DULassociation, &list);
}

/* Asks the caller before bytes go out; false (and the association
 * aborted) when it says stop. */
static bool may_send(Sender &s, uint64_t bytes)
{
	if (!s.progress || s.progress(s.ctx, bytes) == 0)
		return true;
	s.canceled = true;
	s.broken = "stopped by the caller (association aborted)";
	ASC_abortAssociation(s.assoc);
	return false;
}

/* The C-STORE-RQ command set, implicit VR little endian (PS3.7 9.3.1.1,
 * annex E), with its group length. */
static std::vector<unsigned char> store_command(DIC_US id, const char *sop_class,
						const char *sop_instance)
{
	std::vector<unsigned char> body, out;
	auto element = [&body](uint16_t elem, const void *v, uint32_t len) {
		const unsigned char h[8] = { 0,
					     0,
					     (unsigned char)(elem & 0xff),
					     (unsigned char)(elem >> 8),
					     (unsigned char)(len & 0xff),
					     (unsigned char)(len >> 8 & 0xff),
					     (unsigned char)(len >> 16 & 0xff),
					     (unsigned char)(len >> 24) };
		body.insert(body.end(), h, h + 8);
		body.insert(body.end(), (const unsigned char *)v, (const unsigned char *)v + len);
	};
	auto uid = [&element](uint16_t elem, const char *u) {
		std::string v(u);
		if (v.size() % 2)
			v.push_back('\0'); /* UI pads with NUL (PS3.5 9.1) */
		element(elem, v.data(), (uint32_t)v.size());
	};
	auto us = [&element](uint16_t elem, uint16_t v) {
		const unsigned char b[2] = { (unsigned char)(v & 0xff), (unsigned char)(v >> 8) };
		element(elem, b, 2);
	};
	uid(0x0002, sop_class);    /* Affected SOP Class UID */
	us(0x0100, 0x0001);        /* Command Field: C-STORE-RQ */
	us(0x0110, id);            /* Message ID */
	us(0x0700, 0x0000);        /* Priority: medium */
	us(0x0800, 0x0000);        /* Command Data Set Type: a dataset follows */
	uid(0x1000, sop_instance); /* Affected SOP Instance UID */
	uint32_t n = (uint32_t)body.size();
	const unsigned char gl[12] = { 0,
				       0,
				       0,
				       0,
				       4,
				       0,
				       0,
				       0,
				       (unsigned char)(n & 0xff),
				       (unsigned char)(n >> 8 & 0xff),
				       (unsigned char)(n >> 16 & 0xff),
				       (unsigned char)(n >> 24) };
	out.assign(gl, gl + 12);
	out.insert(out.end(), body.begin(), body.end());
	return out;
}

/* The largest PDV payload this association takes, even. */
static unsigned long pdv_max(const Sender &s)
{
	return s.assoc->sendPDVLength & ~1ul;
}

/* Sends the file's dataset bytes, unchanged. */
static int send_raw(Sender &s, T_ASC_PresentationContextID pid, int fd, uint64_t off, uint64_t size,
		    op_dicom_result *r)
{
	unsigned char *buf = s.assoc->sendPDVBuffer;
	unsigned long max = pdv_max(s);
	uint64_t left = size - off;

	while (left > 0) {
		unsigned long n = left < max ? (unsigned long)left : max;
		ssize_t got = pread(fd, buf, n, (off_t)off);
		if (got != (ssize_t)n) {
			/* The file shrank or failed mid-send: the dataset cannot be
			 * completed, so the association cannot carry on. */
			s.broken = "reading the file failed mid-send";
			ASC_abortAssociation(s.assoc);
			outcome(r, OP_DICOM_RETRY, "reading %s failed while sending it: %s",
				"the file", got < 0 ? strerror(errno) : "short read");
			return -EIO;
		}
		bool last = left == n;
		off += n;
		left -= n;
		/* PDV fragments are even (PS3.8 E.2): an odd dataset (a deflated
		 * stream, PS3.5 A.5) ends with the NUL pad byte the standard
		 * prescribes. max is even, so the pad fits the buffer. */
		if (n & 1)
			buf[n++] = 0;
		if (!may_send(s, n))
			return -ECANCELED;
		OFCondition c = write_pdv(s, pid, buf, n, false, last);
		if (c.bad()) {
			s.broken = std::string("the association broke while sending: ") + c.text();
			return -ECONNABORTED;
		}
	}
	return 0;
}

/* Sends ds encoded in xfer, as DCMTK's sendDcmDataset does (dimse.cc). */
static int send_encoded(Sender &s, T_ASC_PresentationContextID pid, DcmDataset *ds,
			E_TransferSyntax xfer, op_dicom_result *r)
{
	DcmOutputBufferStream out(s.assoc->sendPDVBuffer, pdv_max(s));
	DcmWriteCache cache;
	bool written = false, last = false;
	int rc = 0;

	ds->transferInit();
	while (!last && rc == 0) {
		if (!written) {
			OFCondition c = ds->write(out, xfer, EET_ExplicitLength, &cache,
						  EGL_recalcGL, EPD_withoutPadding);
			if (c.good())
				written = true;
			else if (c != EC_StreamNotifyClient) {
				/* Nothing of this dataset may follow what was sent. */
				s.broken = std::string("encoding the dataset failed: ") + c.text();
				ASC_abortAssociation(s.assoc);
				outcome(r, OP_DICOM_QUARANTINE, "encoding the dataset failed: %s",
					c.text());
				rc = -EINVAL;
				break;
			}
		}
		if (written)
			out.flush();
		void *data = NULL;
		offile_off_t len = 0;
		out.flushBuffer(data, len);
		last = written && out.isFlushed();
		if (len <= 0)
			continue;
		if (len & 1) /* a deflated stream's last block: pad it, as DCMTK does */
			((unsigned char *)data)[len++] = 0;
		if (!may_send(s, (uint64_t)len)) {
			rc = -ECANCELED;
			break;
		}
		OFCondition c = write_pdv(s, pid, data, (unsigned long)len, false, last);
		if (c.bad()) {
			s.broken = std::string("the association broke while sending: ") + c.text();
			rc = -ECONNABORTED;
		}
	}
	ds->transferEnd();
	return rc;
}

/* What a C-STORE-RSP status means for the instance (PS3.4 B.2.3, PS3.7 C). */
static void judge(op_dicom_result *r, uint16_t status, const char *comment)
{
	char detail[160] = "";

	r->status = status;
	if (comment && *comment)
		snprintf(detail, sizeof(detail), " (comment: %s)", comment);
	if (status == 0x0000) {
		outcome(r, OP_DICOM_SENT, "%s", "");
	} else if (status == 0x0001 || (status & 0xf000) == 0xb000) {
		outcome(r, OP_DICOM_SENT, "stored with a warning: status 0x%04X%s", status, detail);
	} else if ((status & 0xff00) == 0xa700 || (status & 0xff00) == 0xa900) {
		outcome(r, OP_DICOM_RETRY, "C-STORE refused: status 0x%04X%s", status, detail);
	} else {
		outcome(r, OP_DICOM_QUARANTINE, "C-STORE failed: status 0x%04X%s", status, detail);
	}
}

/* Reads the C-STORE-RSP to message id. */
static void read_response(Sender &s, DIC_US id, op_dicom_result *r)
{
	T_DIMSE_Message rsp;
	T_ASC_PresentationContextID pid = 0;
	DcmDataset *detail = NULL;
	const char *comment = NULL;

	memset(&rsp, 0, sizeof(rsp));
	OFCondition c =
		DIMSE_receiveCommand(s.assoc, DIMSE_NONBLOCKING, s.timeout_s, &pid, &rsp, &detail);
	if (c == DIMSE_NODATAAVAILABLE) {
		s.broken = "no C-STORE response in time";
		ASC_abortAssociation(s.assoc);
		outcome(r, OP_DICOM_RETRY, "no C-STORE response within %d s", s.timeout_s);
	} else if (c.bad() || c == DUL_PEERREQUESTEDRELEASE) {
		s.broken = std::string("the association broke awaiting the response: ") + c.text();
		outcome(r, OP_DICOM_RETRY, "no C-STORE response: %s", c.text());
	} else if (rsp.CommandField != DIMSE_C_STORE_RSP ||
		   rsp.msg.CStoreRSP.MessageIDBeingRespondedTo != id) {
		s.broken = "the peer answered with an unexpected message";
		ASC_abortAssociation(s.assoc);
		outcome(r, OP_DICOM_RETRY, "the peer answered the C-STORE with another message");
	} else {
		if (detail)
			detail->findAndGetString(DCM_ErrorComment, comment);
		judge(r, rsp.msg.CStoreRSP.DimseStatus, comment);
	}
	delete detail;
}

/* The transfer syntaxes proposed for an item, for the reason it failed. */
static std::string offered(const op_dicom_item &it)
{
	std::string list = it.transfer_syntax;
	for (const char *f : FALLBACKS)
		if (strcmp(f, it.transfer_syntax) != 0)
			list += std::string(", ") + f;
	return list;
}

static void send_one(Sender &s, const op_dicom_item &it, op_dicom_result *r)
{
	int own = find_context(s, it.sop_class_uid, it.transfer_syntax), use = -1;
	bool sop_refused = true;
	int fd = -1;
	struct stat sb;
	uint64_t off = 0;
	std::string file_ts;
	char why[160] = "";

	for (const char *ts : { it.transfer_syntax, FALLBACKS[0], FALLBACKS[1] }) {
		int i = find_context(s, it.sop_class_uid, ts);
		if (i < 0)
			continue;
		if (s.contexts[i].reason != ASC_P_ABSTRACTSYNTAXNOTSUPPORTED)
			sop_refused = false;
		if (use < 0 && s.contexts[i].accepted)
			use = i;
	}
	if (own >= 0 && it.own_syntax_only && !s.contexts[own].accepted &&
	    s.contexts[own].reason != ASC_P_ABSTRACTSYNTAXNOTSUPPORTED) {
		/* An encoded copy: the original goes instead, never a copy
		 * decoded again for a fallback. */
		r->syntax_refused = 1;
		outcome(r, OP_DICOM_RETRY, "the peer does not accept transfer syntax %s",
			it.transfer_syntax);
		goto out;
	}
	if (own < 0 && s.proposed) {
		outcome(r, OP_DICOM_RETRY,
			"not sent: more than %d presentation contexts in one batch (send fewer)",
			MAX_CONTEXTS / 2);
		goto out;
	}
	if (use < 0) {
		if (sop_refused)
			outcome(r, OP_DICOM_QUARANTINE, "the peer does not accept SOP class %s",
				it.sop_class_uid);
		else
			outcome(r, OP_DICOM_QUARANTINE,
				"the peer accepted none of the offered transfer syntaxes (%s)",
				offered(it).c_str());
		goto out;
	}
	fd = open(it.path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		outcome(r, OP_DICOM_QUARANTINE, "cannot read the file: %s", strerror(errno));
		goto out;
	}
	if (dataset_offset(fd, (uint64_t)sb.st_size, &off, &file_ts, why, sizeof(why)) != 0) {
		outcome(r, OP_DICOM_QUARANTINE, "%s", why);
		goto out;
	}
	if (!file_ts.empty() && file_ts != it.transfer_syntax) {
		outcome(r, OP_DICOM_QUARANTINE,
			"the file is in transfer syntax %s, not %s as its record says",
			file_ts.c_str(), it.transfer_syntax);
		goto out;
	}
	{
		const Context &c = s.contexts[use];
		std::vector<unsigned char> cmd =
			store_command(s.message_id, it.sop_class_uid, it.sop_instance_uid);
		DcmFileFormat ff;
		E_TransferSyntax xfer = DcmXfer(c.ts.c_str()).getXfer();
		int rc;

		if (use != own) {
			/* Only a fallback was accepted: decode and re-encode, before
			 * anything is sent, so a failure leaves the association
			 * usable. */
			OFCondition lc = ff.loadFile(it.path);
			if (lc.good())
				lc = ff.getDataset()->chooseRepresentation(xfer, NULL);
			if (lc.bad() || !ff.getDataset()->canWriteXfer(xfer)) {
				outcome(r, OP_DICOM_QUARANTINE,
					"the peer accepted only %s for it, and it cannot be "
					"converted from %s: %s",
					c.ts.c_str(), it.transfer_syntax,
					lc.bad() ? lc.text() : "no decoder for it");
				goto out;
			}
		}
		/* Asked before the command too, so that a pause or a stop falls
		 * between two instances rather than inside one. */
		if (!may_send(s, cmd.size())) {
			outcome(r, OP_DICOM_RETRY, "not sent: %s", s.broken.c_str());
			goto out;
		}
		snprintf(r->transfer_syntax, sizeof(r->transfer_syntax), "%s", c.ts.c_str());
		OFCondition wc =
			write_pdv(s, c.id, cmd.data(), (unsigned long)cmd.size(), true, true);
		if (wc.bad()) {
			s.broken = std::string("the association broke while sending: ") + wc.text();
			rc = -ECONNABORTED;
		} else if (use == own) {
			rc = send_raw(s, c.id, fd, off, (uint64_t)sb.st_size, r);
		} else {
			rc = send_encoded(s, c.id, ff.getDataset(), xfer, r);
		}
		if (rc == 0)
			read_response(s, s.message_id, r);
		else if (r->reason[0] == '\0' || rc == -ECONNABORTED || rc == -ECANCELED)
			outcome(r, OP_DICOM_RETRY, "not stored: %s", s.broken.c_str());
		s.message_id++;
	}
out:
	if (fd >= 0)
		close(fd);
}

/* --- association set-up ---------------------------------------------------- */

/* Proposes the contexts of the batch: each (SOP class, own syntax), then
 * per SOP class each fallback not proposed yet, as long as IDs last. */
static void propose(Sender &s, T_ASC_Parameters *params, const op_dicom_item *items, unsigned n)
{
	auto add = [&](const char *sop_class, const char *ts) {
		if (find_context(s, sop_class, ts) >= 0 || s.contexts.size() >= MAX_CONTEXTS)
			return;
		Context c;
		c.sop_class = sop_class;
		c.ts = ts;
		c.id = (T_ASC_PresentationContextID)(2 * s.contexts.size() + 1);
		c.accepted = false;
		c.reason = ASC_P_NOREASON;
		const char *list[1] = { ts };
		if (ASC_addPresentationContext(params, c.id, sop_class, list, 1).good())
			s.contexts.push_back(c);
	};
	for (unsigned i = 0; i < n; i++) {
		/* Keep room for this class's fallbacks before adding its own. */
		if (s.contexts.size() + 3 > MAX_CONTEXTS &&
		    find_context(s, items[i].sop_class_uid, items[i].transfer_syntax) < 0)
			continue;
		add(items[i].sop_class_uid, items[i].transfer_syntax);
		for (const char *f : FALLBACKS)
			add(items[i].sop_class_uid, f);
	}
}

/* Reads what the peer answered for each proposed context. */
static void read_acceptance(Sender &s, T_ASC_Parameters *params)
{
	int count = ASC_countPresentationContexts(params);

	for (int i = 0; i < count; i++) {
		T_ASC_PresentationContext pc;
		if (ASC_getPresentationContext(params, i, &pc).bad())
			continue;
		for (Context &c : s.contexts) {
			if (c.id != pc.presentationContextID)
				continue;
			c.reason = pc.resultReason;
			/* Accepted only with the one syntax proposed: a peer that
			 * answers another would get bytes it did not choose. */
			c.accepted = pc.resultReason == ASC_P_ACCEPTANCE &&
				     c.ts == pc.acceptedTransferSyntax;
		}
	}
}

static int request_error(OFCondition c, T_ASC_Parameters *params, int timeout_s, char *err,
			 size_t errlen)
{
	std::string text = c.text();

	if (c == DUL_ASSOCIATIONREJECTED) {
		T_ASC_RejectParameters rej;
		OFString why;
		ASC_getRejectParameters(params, &rej);
		ASC_printRejectParameters(why, &rej);
		for (char &ch : why)
			if (ch == '\n')
				ch = ' ';
		op_dicom__say(err, errlen, "association rejected: %s", why.c_str());
		return -EACCES;
	}
	op_dicom__say(err, errlen, "association failed: %s", text.c_str());
	if (text.find("refused") != std::string::npos)
		return -ECONNREFUSED;
	if (c == DUL_READTIMEOUT || text.find("imed out") != std::string::npos ||
	    text.find("imeout") != std::string::npos) {
		op_dicom__say(err, errlen, "association failed: no answer within %d s (%s)",
			      timeout_s, text.c_str());
		return -ETIMEDOUT;
	}
	if (c.code() == DULC_UNKNOWNHOST || text.find("nreachable") != std::string::npos)
		return -EHOSTUNREACH;
	return -EPROTO;
}

/* DcmTransportConnection's socket is protected: a derived class may name
 * it as a member pointer (never instantiated). */
struct SocketOf : public DcmTransportConnection {
	static DcmNativeSocketType get(DcmTransportConnection *c)
	{
		return (c->*(&SocketOf::getSocket))();
	}
};

/* Per-connection socket options, which DCMTK sets only from globals or the
 * environment: no Nagle delay on the small command PDVs, and every read
 * and write (the release included) bounded by the peer's timeout. */
static void tune_socket(T_ASC_Association *assoc, int timeout_s)
{
	DcmTransportConnection *tc = DUL_getTransportConnection(assoc->DULassociation);
	struct timeval tv = { timeout_s, 0 };
	int one = 1;

	if (!tc)
		return;
	int fd = SocketOf::get(tc);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Sends each item in turn, as long as the association lasts and done does
 * not say stop. */
static void send_items(Sender &s, const op_dicom_item *items, unsigned n, op_dicom_result *res,
		       int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx)
{
	bool stop = false;

	for (unsigned i = 0; i < n; i++) {
		if (stop) {
			outcome(&res[i], OP_DICOM_RETRY, "not sent: stopped");
			continue;
		}
		if (!s.broken.empty()) {
			outcome(&res[i], OP_DICOM_RETRY, "not sent: %s", s.broken.c_str());
			continue;
		}
		res[i].reason[0] = '\0';
		send_one(s, items[i], &res[i]);
		if (done && done(ctx, i, &res[i]) != 0)
			stop = true;
	}
}

static int send_batch(const op_dicom_peer *peer, const op_dicom_item *items, unsigned n,
		      op_dicom_result *res, int (*progress)(void *ctx, uint64_t bytes),
		      int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx,
		      char *err, size_t errlen)
{
	T_ASC_Network *net = NULL;
	T_ASC_Parameters *params = NULL;
	Sender s;
	char local[256] = "localhost", address[300];
	int rc = 0;
	unsigned i;

	op_dicom__say(err, errlen, "%s", "");
	for (i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		res[i].status = -1;
		outcome(&res[i], OP_DICOM_RETRY, "not sent");
	}
	if (!peer || !items || n == 0 || n > OP_DICOM_SEND_MAX || peer->port <= 0 ||
	    peer->port > 65535 || !peer->host[0] || !peer->called_ae[0] || !peer->calling_ae[0]) {
		op_dicom__say(err, errlen, "invalid destination or batch");
		rc = -EINVAL;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (!items[i].path || !items[i].sop_class_uid || !items[i].sop_instance_uid ||
		    !items[i].transfer_syntax || !*items[i].sop_class_uid ||
		    !*items[i].transfer_syntax) {
			op_dicom__say(err, errlen,
				      "item %u lacks its path, UIDs or transfer syntax", i);
			rc = -EINVAL;
			goto out;
		}
	}
	s.peer = peer;
	s.progress = progress;
	s.ctx = ctx;
	s.timeout_s = peer->timeout_ms > 0 ? (peer->timeout_ms + 999) / 1000 : 30;
	s.assoc = NULL;
	s.proposed = true;
	s.canceled = false;
	s.message_id = 1;
	/* Once per process, shared with jpls.cc (DCMTK keeps one list). */
	op_jpls__register_codecs();

	/* Process-wide in DCMTK 3.6.7 (send.h). */
	dcmConnectionTimeout.set(s.timeout_s);
	{
		OFCondition c = ASC_initializeNetwork(NET_REQUESTOR, 0, s.timeout_s, &net);
		if (c.good())
			c = ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
		if (c.good())
			c = ASC_setAPTitles(params, peer->calling_ae, peer->called_ae, NULL);
		gethostname(local, sizeof(local) - 1);
		snprintf(address, sizeof(address), "%s:%d", peer->host, peer->port);
		if (c.good())
			c = ASC_setPresentationAddresses(params, local, address);
		if (c.bad()) {
			op_dicom__say(err, errlen, "setting up the association failed: %s",
				      c.text());
			rc = -ENOMEM;
			goto out;
		}
		propose(s, params, items, n);
		c = ASC_requestAssociation(net, params, &s.assoc, NULL, NULL, DUL_NOBLOCK,
					   s.timeout_s);
		if (c.bad()) {
			rc = request_error(c, params, s.timeout_s, err, errlen);
			for (i = 0; i < n; i++)
				outcome(&res[i], OP_DICOM_RETRY, "not sent: %s", err);
			if (s.assoc) {
				ASC_destroyAssociation(&s.assoc);
				params = NULL; /* freed with the association */
			}
			goto out;
		}
	}
	params = NULL; /* owned by the association now */
	tune_socket(s.assoc, s.timeout_s);
	read_acceptance(s, s.assoc->params);

	send_items(s, items, n, res, done, ctx);
	if (s.canceled) {
		rc = -ECANCELED;
		op_dicom__say(err, errlen, "stopped by the caller");
	} else if (s.broken.empty()) {
		/* A release the peer does not answer is cut short by the socket
		 * timeout, then aborted: the instances are stored either way. */
		if (ASC_releaseAssociation(s.assoc).bad())
			ASC_abortAssociation(s.assoc);
	}
	ASC_destroyAssociation(&s.assoc);
out:
	if (params)
		ASC_destroyAssociationParameters(&params);
	if (net)
		ASC_dropNetwork(&net);
	return rc;
}

int op_dicom_send(const op_dicom_peer *peer, const op_dicom_item *items, unsigned n,
		  op_dicom_result *res, int (*progress)(void *ctx, uint64_t bytes), void *ctx,
		  char *err, size_t errlen)
{
	return send_batch(peer, items, n, res, progress, NULL, ctx, err, errlen);
}

int op_dicom__send_each(const op_dicom_peer *peer, const op_dicom_item *items, unsigned n,
			op_dicom_result *res,
			int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx,
			char *err, size_t errlen)
{
	return send_batch(peer, items, n, res, NULL, done, ctx, err, errlen);
}

int op_dicom__send_on(T_ASC_Association *assoc, int timeout_s, const op_dicom_item *items,
		      unsigned n, op_dicom_result *res,
		      int (*done)(void *ctx, unsigned i, const op_dicom_result *r), void *ctx)
{
	Sender s;
	int count = ASC_countPresentationContexts(assoc->params);

	for (unsigned i = 0; i < n; i++) {
		memset(&res[i], 0, sizeof(res[i]));
		res[i].status = -1;
		outcome(&res[i], OP_DICOM_RETRY, "not sent");
	}
	s.peer = NULL;
	s.progress = NULL;
	s.ctx = NULL;
	s.timeout_s = timeout_s > 0 ? timeout_s : 30;
	s.assoc = assoc;
	s.proposed = false;
	s.canceled = false;
	s.message_id = 1;
	op_jpls__register_codecs();
	/* The contexts on which the requester takes the SCP role: the storage
	 * SOP classes it proposed for the C-GET's sub-operations. */
	for (int i = 0; i < count; i++) {
		T_ASC_PresentationContext pc;
		if (ASC_getPresentationContext(assoc->params, i, &pc).bad() ||
		    pc.resultReason != ASC_P_ACCEPTANCE ||
		    (pc.acceptedRole != ASC_SC_ROLE_SCP && pc.acceptedRole != ASC_SC_ROLE_SCUSCP))
			continue;
		Context c;
		c.sop_class = pc.abstractSyntax;
		c.ts = pc.acceptedTransferSyntax;
		c.id = pc.presentationContextID;
		c.accepted = true;
		c.reason = pc.resultReason;
		s.contexts.push_back(c);
	}
	send_items(s, items, n, res, done, ctx);
	return s.broken.empty() ? 0 : -ECONNABORTED;
}
