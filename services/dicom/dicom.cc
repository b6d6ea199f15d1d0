/*
 * dicom: DCMTK 3.6.7 behind the C API of dicom.h.
 *
 * Why not DcmSCPPool: its listener binds every interface (DCMTK 3.6.7 has no
 * bind address) and reads each A-ASSOCIATE-RQ on the listening thread, so
 * one silent client stalls every other modality for the ACSE timeout. The
 * receiver therefore listens and accepts itself, waits on the connection's
 * own thread until the request is buffered, and hands the socket to DCMTK
 * through dcmExternalSocketHandle (DCMTK's inetd mode). That handle is a
 * process-wide global, so reading the request is serialised by a lock; as
 * the bytes are already buffered, the lock is held for microseconds.
 *
 * Each association runs in a DcmThreadSCP subclass. C-STORE datasets are
 * streamed, unparsed, into the spool object the C handler provides (after
 * a File Meta Information header built as DCMTK's storescp builds it), so
 * the stored dataset is the received bytes and memory does not grow with
 * object size.
 */
#include "dicom/dicom.h"
#include "dicom/shim.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcostrma.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrlo.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/scpthrd.h>
#include <dcmtk/oflog/oflog.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <fnmatch.h>
#include <memory>
#include <mutex>
#include <string>
#include <strings.h>
#include <utility>
#include <vector>
#include <unistd.h>

/* DCMTK's globals for inetd mode and reverse lookups (dul.h). */
extern DCMTK_DCMNET_EXPORT OFGlobal<DcmNativeSocketType> dcmExternalSocketHandle;
extern DCMTK_DCMNET_EXPORT OFGlobal<OFBool> dcmDisableGethostbyaddr;

#define PDU_ASSOCIATE_RQ 0x01
#define PEEK_MAX 65536

struct op_dicom_net {
	T_ASC_Network *net;
	DcmSharedSCPConfig cfg;
	op_dicom_handler h;
	op_dicom_options opt;
	std::mutex receive_mu; /* guards dcmExternalSocketHandle */
	std::atomic<unsigned long> next_id;
};

static void copy(char *dst, size_t size, const char *src)
{
	size_t n = src ? strnlen(src, size - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
	while (n > 0 && (dst[n - 1] == ' ' || dst[n - 1] == '\0'))
		dst[--n] = '\0';
}

/* --- accepted syntaxes ----------------------------------------------------- */

/* The Query/Retrieve SOP classes (PS3.4 C.6): FIND, MOVE, GET of both roots. */
static const char *const QR_CLASSES[] = {
	UID_FINDPatientRootQueryRetrieveInformationModel,
	UID_MOVEPatientRootQueryRetrieveInformationModel,
	UID_GETPatientRootQueryRetrieveInformationModel,
	UID_FINDStudyRootQueryRetrieveInformationModel,
	UID_MOVEStudyRootQueryRetrieveInformationModel,
	UID_GETStudyRootQueryRetrieveInformationModel,
};

static bool is_qr_class(const char *uid)
{
	for (const char *c : QR_CLASSES)
		if (strcmp(uid, c) == 0)
			return true;
	return false;
}

static bool is_patient_root(const char *uid)
{
	return strcmp(uid, UID_FINDPatientRootQueryRetrieveInformationModel) == 0 ||
	       strcmp(uid, UID_MOVEPatientRootQueryRetrieveInformationModel) == 0 ||
	       strcmp(uid, UID_GETPatientRootQueryRetrieveInformationModel) == 0;
}

int op_dicom_sop_class_accepted(const char *uid)
{
	if (strcmp(uid, UID_VerificationSOPClass) == 0)
		return 1;
	for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; i++)
		if (strcmp(uid, dcmAllStorageSOPClassUIDs[i]) == 0)
			return 1;
	return 0;
}

/* Every transfer syntax DCMTK knows, but its internal implicit big endian
 * (not a DICOM transfer syntax). */
static int xfer_accepted(E_TransferSyntax x)
{
	return x != EXS_Unknown && x != EXS_BigEndianImplicit;
}

int op_dicom_transfer_syntax_accepted(const char *uid)
{
	/* DcmXfer(const char *) also matches DCMTK's names ("Little Endian
	 * Explicit"): only the syntax's own UID is accepted. */
	DcmXfer x(uid);

	return xfer_accepted(x.getXfer()) && strcmp(x.getXferID(), uid) == 0;
}

void op_dicom_print_conformance(FILE *out)
{
	fprintf(out, "| Implementation | Value |\n| --- | --- |\n");
	fprintf(out, "| Implementation Class UID | %s |\n", OFFIS_IMPLEMENTATION_CLASS_UID);
	fprintf(out, "| Implementation Version Name (association) | %s |\n",
		OFFIS_DTK_IMPLEMENTATION_VERSION_NAME);
	fprintf(out, "| Implementation Version Name (stored File Meta Information) | %s |\n",
		OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2);
	fprintf(out, "| Maximum PDU length received | %d to %d bytes ([receiver] max_pdu) |\n\n",
		ASC_MINIMUMPDUSIZE, ASC_MAXIMUMPDUSIZE);
	fprintf(out, "| SOP class | UID |\n| --- | --- |\n");
	fprintf(out, "| %s | %s |\n", dcmFindNameOfUID(UID_VerificationSOPClass, "?"),
		UID_VerificationSOPClass);
	for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; i++) {
		const char *uid = dcmAllStorageSOPClassUIDs[i];
		fprintf(out, "| %s | %s |\n", dcmFindNameOfUID(uid, "?"), uid);
	}
	fprintf(out, "\nQuery/retrieve, as SCP ([receiver] allow_query; C-GET sends each "
		     "storage SOP class above, as SCU, on the contexts the requester proposed "
		     "with the SCP role):\n\n| SOP class | UID |\n| --- | --- |\n");
	for (const char *uid : QR_CLASSES)
		fprintf(out, "| %s | %s |\n", dcmFindNameOfUID(uid, "?"), uid);
	fprintf(out,
		"\nStorage commitment, as SCP ([receiver] commitment; the N-EVENT-REPORT "
		"on the request's association while the requester keeps it open, else on a "
		"new one to its [peer], proposing the SCP role):\n\n| SOP class | UID "
		"|\n| --- | --- |\n| %s | %s |\n",
		dcmFindNameOfUID(UID_StorageCommitmentPushModelSOPClass, "?"),
		UID_StorageCommitmentPushModelSOPClass);
	fprintf(out, "\n| Transfer syntax | UID |\n| --- | --- |\n");
	for (int x = EXS_LittleEndianImplicit; x <= EXS_PrivateGE_LEI_WithBigEndianPixelData; x++) {
		if (!xfer_accepted(E_TransferSyntax(x)))
			continue;
		DcmXfer xfer{ E_TransferSyntax(x) };
		fprintf(out, "| %s | %s |\n", xfer.getXferName(), xfer.getXferID());
	}
}

/* --- reading a stored instance --------------------------------------------- */

static int uid_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > OP_UID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '.' || (s[i] >= '0' && s[i] <= '9')))
			return 0;
	return 1;
}

struct op_dicom_match {
	enum op_dicom_match_mode mode;
	std::vector<std::pair<DcmTagKey, std::string>> conditions;
};

int op_dicom_match_compile(const char *text, enum op_dicom_match_mode mode, op_dicom_match **out,
			   char *err, size_t errlen)
{
	std::unique_ptr<op_dicom_match> m(new (std::nothrow) op_dicom_match());
	std::string all(text ? text : "");
	size_t pos = 0;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->mode = mode;
	while (pos <= all.size()) {
		size_t comma = all.find(',', pos);
		std::string item = all.substr(pos, comma == std::string::npos ? std::string::npos
									      : comma - pos);
		size_t first = item.find_first_not_of(" \t"), last = item.find_last_not_of(" \t");
		pos = comma == std::string::npos ? all.size() + 1 : comma + 1;
		if (first == std::string::npos)
			continue;
		item = item.substr(first, last - first + 1);
		size_t eq = item.find('=');
		std::string keyword = item.substr(0, eq), value = item.substr(eq + 1);
		DcmTag tag;
		if (eq == std::string::npos ||
		    DcmTag::findTagFromName(keyword.c_str(), tag).bad()) {
			snprintf(err, errlen, "'%s' is not a DICOM attribute keyword",
				 keyword.c_str());
			return -EINVAL;
		}
		m->conditions.emplace_back(tag.getXTag(), value);
	}
	if (!m->conditions.empty())
		*out = m.release();
	return 0;
}

void op_dicom_match_free(op_dicom_match *m)
{
	delete m;
}

/* Does any value of the attribute (first found, sequences searched) match
 * the pattern value (* and ?), ignoring case and padding? */
static bool has_value(DcmDataset *ds, const DcmTagKey &tag, const std::string &value)
{
	DcmElement *el = NULL;
	OFString v;

	if (ds->findAndGetElement(tag, el, OFTrue /* into sequences */).bad() || !el)
		return false;
	for (unsigned long i = 0; i < el->getVM(); i++) {
		if (el->getOFString(v, i, OFTrue /* normalized */).good() &&
		    fnmatch(value.c_str(), v.c_str(), FNM_CASEFOLD | FNM_NOESCAPE) == 0)
			return true;
	}
	return false;
}

/* Does the match list hold for ds? */
static bool holds(DcmDataset *ds, const op_dicom_match *m)
{
	if (!m)
		return false;
	for (const auto &c : m->conditions) {
		bool h = has_value(ds, c.first, c.second);

		if (h && m->mode == OP_MATCH_ANY)
			return true;
		if (!h && m->mode == OP_MATCH_ALL)
			return false;
	}
	return m->mode == OP_MATCH_ALL;
}

/* What query/retrieve finds the instance by (op_qr_attrs): every value of
 * each attribute, as the dataset holds them. */
static void read_qr_attrs(DcmDataset *ds, op_qr_attrs *q)
{
	struct {
		DcmTagKey tag;
		char *dst;
		size_t size;
	} const attrs[] = {
		{ DCM_SpecificCharacterSet, q->charset, sizeof(q->charset) },
		{ DCM_PatientName, q->patient_name, sizeof(q->patient_name) },
		{ DCM_PatientBirthDate, q->patient_birth_date, sizeof(q->patient_birth_date) },
		{ DCM_PatientSex, q->patient_sex, sizeof(q->patient_sex) },
		{ DCM_StudyDate, q->study_date, sizeof(q->study_date) },
		{ DCM_StudyTime, q->study_time, sizeof(q->study_time) },
		{ DCM_AccessionNumber, q->accession_number, sizeof(q->accession_number) },
		{ DCM_StudyID, q->study_id, sizeof(q->study_id) },
		{ DCM_StudyDescription, q->study_description, sizeof(q->study_description) },
		{ DCM_ReferringPhysicianName, q->referring_physician,
		  sizeof(q->referring_physician) },
		{ DCM_SeriesNumber, q->series_number, sizeof(q->series_number) },
		{ DCM_SeriesDescription, q->series_description, sizeof(q->series_description) },
		{ DCM_BodyPartExamined, q->body_part, sizeof(q->body_part) },
		{ DCM_InstanceNumber, q->instance_number, sizeof(q->instance_number) },
	};

	for (const auto &a : attrs) {
		OFString v;
		ds->findAndGetOFStringArray(a.tag, v);
		copy(a.dst, a.size, v.c_str());
		/* Leading spaces are not significant in these VRs either
		 * (PS3.5 6.2). */
		size_t lead = strspn(a.dst, " ");
		if (lead)
			memmove(a.dst, a.dst + lead, strlen(a.dst + lead) + 1);
	}
}

int op_dicom_read_instance(const char *path, const op_dicom_match *const *match, int n,
			   int *matched, op_instance *out, char *err, size_t errlen)
{
	DcmFileFormat ff;
	const char *v = NULL;
	struct {
		DcmTagKey tag;
		char *dst;
		size_t size;
		const char *name;
	} const uids[] = {
		{ DCM_SOPInstanceUID, out->sop_instance_uid, sizeof(out->sop_instance_uid),
		  "SOPInstanceUID" },
		{ DCM_SOPClassUID, out->sop_class_uid, sizeof(out->sop_class_uid), "SOPClassUID" },
		{ DCM_StudyInstanceUID, out->study_uid, sizeof(out->study_uid),
		  "StudyInstanceUID" },
		{ DCM_SeriesInstanceUID, out->series_uid, sizeof(out->series_uid),
		  "SeriesInstanceUID" },
	};

	/* Standard attributes encoded with VR UN (allowed in explicit VR, PS3.5
	 * 6.2.2; GDCM writes them) are read with their dictionary VR, so their
	 * UIDs are found. Only this parse is affected: the stored bytes are the
	 * received ones. Set here because recovery reads files before the
	 * network layer exists. */
	dcmEnableUnknownVRConversion.set(OFTrue);
	/* Values longer than 1 KiB (pixel data) are skipped, not read. */
	OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 1024, ERM_autoDetect);
	if (c.bad()) {
		snprintf(err, errlen, "not a readable DICOM dataset: %s", c.text());
		return -EINVAL;
	}
	DcmDataset *ds = ff.getDataset();
	for (const auto &u : uids) {
		v = NULL;
		ds->findAndGetString(u.tag, v);
		copy(u.dst, u.size, v);
		if (!v || !uid_valid(u.dst) || strlen(v) > OP_UID_MAX) {
			snprintf(err, errlen, "%s %s", u.name,
				 v && *v ? "is not a valid UID" : "is missing");
			return -EINVAL;
		}
	}
	v = NULL;
	ff.getMetaInfo()->findAndGetString(DCM_TransferSyntaxUID, v);
	if (!v)
		v = DcmXfer(ds->getOriginalXfer()).getXferID();
	copy(out->transfer_syntax, sizeof(out->transfer_syntax), v);
	v = NULL;
	ds->findAndGetString(DCM_PatientID, v);
	copy(out->patient_id, sizeof(out->patient_id), v);
	v = NULL;
	ds->findAndGetString(DCM_Modality, v);
	copy(out->modality, sizeof(out->modality), v);
	read_qr_attrs(ds, &out->qr);
	for (int i = 0; i < n; i++)
		matched[i] = holds(ds, match[i]);
	return 0;
}

/* --- streaming a dataset into the spool ------------------------------------ */

/*
 * A DcmConsumer that appends to a spool object. After a failed write (a
 * full spool) it drops the rest and says nothing: DIMSE then reads the
 * dataset to its end and the refusal is answered (error()). Failing the
 * stream instead has DIMSE_receiveDataSetInFile drop the rest itself, and
 * when the failed write was the dataset's last PDV, DCMTK 3.6.7 waits for
 * one more until its timeout while the SCU waits for the response.
 */
class SpoolConsumer : public DcmConsumer
{
public:
	explicit SpoolConsumer(op_spool_object *obj) : obj_(obj), rc_(0) {}
	OFBool good() const override { return OFTrue; }
	OFCondition status() const override { return EC_Normal; }
	OFBool isFlushed() const override { return OFTrue; }
	offile_off_t avail() const override { return 1 << 30; }
	offile_off_t write(const void *buf, offile_off_t len) override
	{
		if (rc_ == 0)
			rc_ = op_spool_object_write(obj_, buf, (uint64_t)len);
		return len;
	}
	void flush() override {}
	int error() const { return rc_; }

private:
	op_spool_object *obj_;
	int rc_;
};

class SpoolStream : public DcmOutputStream
{
public:
	explicit SpoolStream(op_spool_object *obj) : DcmOutputStream(&consumer_), consumer_(obj) {}
	int error() const { return consumer_.error(); }

private:
	SpoolConsumer consumer_;
};

/* The File Meta Information storescp writes (DIMSE_createFilestream). */
static OFCondition write_meta(DcmOutputStream &out, const T_DIMSE_C_StoreRQ &rq, const char *xfer,
			      const char *calling_aet)
{
	DcmMetaInfo meta;
	const Uint8 version[2] = { 0, 1 };
	OFCondition c = meta.putAndInsertUint32(DCM_FileMetaInformationGroupLength, 0);

	if (c.good())
		c = meta.putAndInsertUint8Array(DCM_FileMetaInformationVersion, version, 2);
	if (c.good())
		c = meta.putAndInsertString(DCM_MediaStorageSOPClassUID, rq.AffectedSOPClassUID);
	if (c.good())
		c = meta.putAndInsertString(DCM_MediaStorageSOPInstanceUID,
					    rq.AffectedSOPInstanceUID);
	if (c.good())
		c = meta.putAndInsertString(DCM_TransferSyntaxUID, xfer);
	if (c.good())
		c = meta.putAndInsertString(DCM_ImplementationClassUID,
					    OFFIS_IMPLEMENTATION_CLASS_UID);
	if (c.good())
		c = meta.putAndInsertString(DCM_ImplementationVersionName,
					    OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2);
	if (c.good() && *calling_aet)
		c = meta.putAndInsertString(DCM_SourceApplicationEntityTitle, calling_aet);
	if (c.good())
		c = meta.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange,
						      META_HEADER_DEFAULT_TRANSFERSYNTAX,
						      EET_UndefinedLength);
	if (c.good()) {
		meta.transferInit();
		c = meta.write(out, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_ExplicitLength, NULL);
		meta.transferEnd();
	}
	return c;
}

/* --- one association ------------------------------------------------------- */

class Association : public DcmThreadSCP
{
public:
	Association(op_dicom_net *net, T_ASC_Association *assoc)
	    : net_(net), assoc_(assoc), admitted_(false), how_("release")
	{
		memset(&info_, 0, sizeof(info_));
		info_.id = ++net->next_id;
		setSharedConfig(net->cfg);
	}

	void serve()
	{
		OFCondition c = run(assoc_); /* DcmThreadSCP: negotiate, then handle */
		if (c.bad())
			how_ = c.text();
		if (net_->h.assoc_end)
			net_->h.assoc_end(net_->h.ctx, &info_, how_.c_str());
	}

protected:
	void notifyAssociationRequest(const T_ASC_Parameters &params, DcmSCPActionType &) override
	{
		copy(info_.calling_aet, sizeof(info_.calling_aet), params.DULparams.callingAPTitle);
		copy(info_.called_aet, sizeof(info_.called_aet), params.DULparams.calledAPTitle);
		copy(info_.peer_ip, sizeof(info_.peer_ip),
		     params.DULparams.callingPresentationAddress);
		admitted_ = net_->h.admit(net_->h.ctx, &info_) == 0;
	}

	/* The handler judges AE title and host together; DICOM has no reject
	 * reason for hosts, so both are "calling AE title not recognised". */
	OFBool checkCallingHostAccepted(const OFString &) override { return OFTrue; }
	OFBool checkCalledAETitleAccepted(const OFString &) override { return OFTrue; }
	OFBool checkCallingAETitleAccepted(const OFString &) override { return admitted_; }

	void refuseAssociation(const DcmRefuseReasonType reason) override
	{
		how_ = reason == DCMSCP_NO_PRESENTATION_CONTEXTS ? "rejected: no acceptable "
								   "presentation context"
								 : "rejected";
		DcmThreadSCP::refuseAssociation(reason);
	}

	/*
	 * Accepts each proposed context whose abstract syntax is a storage (or
	 * verification) SOP class, with the first transfer syntax the SCU
	 * proposed that DCMTK knows: the SCU's own preference, so that it never
	 * has to convert its data for us.
	 */
	OFCondition negotiateAssociation() override
	{
		T_ASC_Parameters *params = assoc_->params;
		int n = ASC_countPresentationContexts(params);

		for (int i = 0; i < n; i++) {
			T_ASC_PresentationContext pc;
			OFCondition c = ASC_getPresentationContext(params, i, &pc);
			if (c.bad())
				return c;
			bool qr = is_qr_class(pc.abstractSyntax) && info_.may_query;
			bool commit = strcmp(pc.abstractSyntax,
					     UID_StorageCommitmentPushModelSOPClass) == 0 &&
				      net_->h.commit_request;
			if (!qr && !commit && !op_dicom_sop_class_accepted(pc.abstractSyntax)) {
				c = ASC_refusePresentationContext(params, pc.presentationContextID,
								  ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
			} else {
				const char *ts = NULL;
				for (int j = 0; j < pc.transferSyntaxCount && !ts; j++)
					if (op_dicom_transfer_syntax_accepted(
						    pc.proposedTransferSyntaxes[j]))
						ts = pc.proposedTransferSyntaxes[j];
				/* A C-GET requester proposes the SCP role for the
				 * storage classes it is to be sent: granted. */
				T_ASC_SC_ROLE role =
					pc.proposedRole == ASC_SC_ROLE_SCP ||
							pc.proposedRole == ASC_SC_ROLE_SCUSCP
						? pc.proposedRole
						: ASC_SC_ROLE_DEFAULT;
				if (ts)
					c = ASC_acceptPresentationContext(
						params, pc.presentationContextID, ts, role);
				else
					c = ASC_refusePresentationContext(
						params, pc.presentationContextID,
						ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
			}
			if (c.bad())
				return c;
		}
		return EC_Normal;
	}

	OFCondition handleIncomingCommand(T_DIMSE_Message *msg,
					  const DcmPresentationContextInfo &pc) override
	{
		switch (msg->CommandField) {
		case DIMSE_C_STORE_RQ: return handle_store(msg->msg.CStoreRQ, pc);
		case DIMSE_C_FIND_RQ: return handle_find(msg->msg.CFindRQ, pc);
		case DIMSE_C_MOVE_RQ:
			return handle_retrieve(msg->msg.CMoveRQ.MessageID,
					       msg->msg.CMoveRQ.AffectedSOPClassUID,
					       msg->msg.CMoveRQ.MoveDestination, pc);
		case DIMSE_C_GET_RQ:
			return handle_retrieve(msg->msg.CGetRQ.MessageID,
					       msg->msg.CGetRQ.AffectedSOPClassUID, NULL, pc);
		case DIMSE_N_ACTION_RQ: return handle_commit(msg->msg.NActionRQ, pc);
		/* A C-CANCEL that crossed the final response on the wire: the
		 * operation is over, nothing to cancel (PS3.7 9.3.2.3). */
		case DIMSE_C_CANCEL_RQ: return EC_Normal;
		default: return DcmThreadSCP::handleIncomingCommand(msg, pc);
		}
	}

	void notifyAbortRequest() override { how_ = "abort"; }
	void notifyDIMSEError(const OFCondition &c) override { how_ = c.text(); }

private:
	OFCondition respond(T_ASC_PresentationContextID pid, const T_DIMSE_C_StoreRQ &rq,
			    uint16_t status, const char *comment)
	{
		DcmDataset *detail = NULL;

		if (*comment) {
			DcmLongString el(DCM_ErrorComment);
			el.putString(OFString(comment, strnlen(comment, 64)).c_str());
			addStatusDetail(&detail, &el);
		}
		OFCondition c = sendSTOREResponse(pid, rq.MessageID, rq.AffectedSOPClassUID,
						  rq.AffectedSOPInstanceUID, status, detail);
		delete detail;
		return c;
	}

	OFCondition handle_store(T_DIMSE_C_StoreRQ &rq, const DcmPresentationContextInfo &pc)
	{
		const op_dicom_handler &h = net_->h;
		T_ASC_PresentationContextID pid = pc.presentationContextID;
		T_DIMSE_BlockingMode mode = DIMSE_NONBLOCKING;
		int timeout = net_->opt.dimse_timeout;
		op_store_req r;
		uint16_t status = OP_STATUS_PROCESSING_FAILURE;
		char comment[128] = "";
		int recv_rc = 0;

		memset(&r, 0, sizeof(r));
		copy(r.sop_class_uid, sizeof(r.sop_class_uid), rq.AffectedSOPClassUID);
		copy(r.sop_instance_uid, sizeof(r.sop_instance_uid), rq.AffectedSOPInstanceUID);
		copy(r.transfer_syntax, sizeof(r.transfer_syntax),
		     pc.acceptedTransferSyntax.c_str());
		r.priority = rq.Priority == DIMSE_PRIORITY_HIGH  ? OP_PRIORITY_HIGH
			     : rq.Priority == DIMSE_PRIORITY_LOW ? OP_PRIORITY_LOW
								 : OP_PRIORITY_MEDIUM;
		r.message_id = rq.MessageID;

		op_spool_object *obj = h.store_begin(h.ctx, &info_, &r, &status);
		if (!obj) {
			DIC_UL bytes = 0, pdvs = 0;
			OFCondition c = DIMSE_ignoreDataSet(assoc_, mode, timeout, &bytes, &pdvs);
			if (c.bad())
				return c;
			return respond(pid, rq, status, "");
		}

		SpoolStream out(obj);
		OFCondition c = write_meta(out, rq, r.transfer_syntax, info_.calling_aet);
		if (c.good()) {
			c = DIMSE_receiveDataSetInFile(assoc_, mode, timeout, &pid, &out, NULL,
						       NULL);
			/* The dataset was read to its end whatever the spool said
			 * (SpoolConsumer); a failure here means the association
			 * broke. */
			recv_rc = c.bad() ? -ECONNABORTED : out.error();
		} else {
			DIC_UL bytes = 0, pdvs = 0;
			recv_rc = out.error() ? out.error() : -EIO;
			c = DIMSE_ignoreDataSet(assoc_, mode, timeout, &bytes, &pdvs);
			if (c.bad())
				recv_rc = -ECONNABORTED;
		}
		status = h.store_end(h.ctx, &info_, &r, obj, recv_rc, comment, sizeof(comment));
		if (recv_rc == -ECONNABORTED)
			return c;
		return respond(pc.presentationContextID, rq, status, comment);
	}

	/* --- query/retrieve ---------------------------------------------- */

	/* A request's identifier, as keys: every attribute at its top level
	 * but QueryRetrieveLevel, with SpecificCharacterSet added when the
	 * SCU did not ask for it (it is answered when not the default). */
	struct Identifier {
		std::vector<op_qr_key> keys;
		std::vector<std::string> values;
		std::vector<DcmElement *> asked; /* the request's elements, by key */
		bool charset_asked = false;
		std::string level;
	};

	static bool read_identifier(DcmDataset *ds, Identifier &id)
	{
		for (unsigned long i = 0; i < ds->card(); i++) {
			DcmElement *el = ds->getElement(i);
			DcmTagKey tag = el->getTag();
			OFString v;
			if (tag == DCM_QueryRetrieveLevel) {
				el->getOFStringArray(v);
				id.level = v.c_str();
				while (!id.level.empty() && id.level.back() == ' ')
					id.level.pop_back();
				continue;
			}
			if (tag.getGroup() == 0x0000 || tag.getGroup() == 0x0002)
				continue;
			if (el->ident() != EVR_SQ)
				el->getOFStringArray(v, OFTrue /* normalized */);
			if (tag == DCM_SpecificCharacterSet)
				id.charset_asked = true;
			id.values.push_back(v.c_str());
			id.asked.push_back(el);
		}
		if (!id.charset_asked) {
			id.values.push_back("");
			id.asked.push_back(NULL);
		}
		for (size_t i = 0; i < id.values.size(); i++) {
			DcmTagKey tag = id.asked[i] ? DcmTagKey(id.asked[i]->getTag())
						    : DcmTagKey(DCM_SpecificCharacterSet);
			id.keys.push_back(
				op_qr_key{ (uint32_t)tag.getGroup() << 16 | tag.getElement(),
					   id.values[i].c_str() });
		}
		return op_qr_level_parse(id.level.c_str()) >= 0;
	}

	/* The answer for one match: the identifier's attributes with the
	 * match's values. */
	DcmDataset *answer_dataset(const Identifier &id, const op_qr_key *v, unsigned n)
	{
		DcmDataset *ds = new DcmDataset();

		ds->putAndInsertString(DCM_QueryRetrieveLevel, id.level.c_str());
		for (unsigned i = 0; i < n && i < id.asked.size(); i++) {
			DcmElement *asked = id.asked[i];
			if (!asked) { /* SpecificCharacterSet, not asked for */
				if (*v[i].value)
					ds->putAndInsertString(DCM_SpecificCharacterSet,
							       v[i].value);
				continue;
			}
			if (asked->getTag() == DCM_RetrieveAETitle) {
				ds->putAndInsertString(DCM_RetrieveAETitle, net_->opt.ae_title);
				continue;
			}
			if (asked->ident() == EVR_SQ) {
				ds->insert(new DcmSequenceOfItems(asked->getTag()));
				continue;
			}
			DcmElement *el = OFstatic_cast(DcmElement *, asked->clone());
			el->putString(v[i].value);
			ds->insert(el, OFTrue /* replace */);
		}
		return ds;
	}

	struct Find {
		Association *self;
		const Identifier *id;
		T_ASC_PresentationContextID pid;
		Uint16 message_id;
		OFString sop_class;
		bool cancelled = false;
		bool broken = false;
	};

	static int on_answer(void *actx, const op_qr_key *v, unsigned n)
	{
		Find *f = (Find *)actx;
		DcmDataset *ds = f->self->answer_dataset(*f->id, v, n);
		OFCondition c = f->self->sendFINDResponse(f->pid, f->message_id, f->sop_class, ds,
							  OP_STATUS_PENDING);
		delete ds;
		if (c.bad()) {
			f->broken = true;
			f->self->how_ = c.text();
			return -1;
		}
		if (f->self->checkForCANCEL(f->pid, f->message_id).good()) {
			f->cancelled = true;
			return 1;
		}
		return 0;
	}

	/* A failure's status detail: its comment, at most 64 characters. */
	static DcmDataset *comment_detail(const char *comment)
	{
		DcmDataset *detail = NULL;

		if (*comment) {
			detail = new DcmDataset();
			detail->putAndInsertString(DCM_ErrorComment,
						   OFString(comment, strnlen(comment, 64)).c_str());
		}
		return detail;
	}

	void fill_req(op_qr_req &r, const Identifier &id, Uint16 message_id, const char *sop_class)
	{
		memset(&r, 0, sizeof(r));
		r.message_id = message_id;
		r.level = (enum op_qr_level)op_qr_level_parse(id.level.c_str());
		r.patient_root = is_patient_root(sop_class);
		r.keys = id.keys.data();
		r.n = (unsigned)id.keys.size();
	}

	OFCondition handle_find(T_DIMSE_C_FindRQ &rq, const DcmPresentationContextInfo &pc)
	{
		const op_dicom_handler &h = net_->h;
		DcmDataset *ds = NULL;
		Identifier id;
		op_qr_req r;
		char comment[128] = "";
		uint16_t status;

		OFCondition c = receiveFINDRequest(rq, pc.presentationContextID, ds);
		if (c.bad())
			return c;
		std::unique_ptr<DcmDataset> owned(ds);
		Find f;
		f.self = this;
		f.id = &id;
		f.pid = pc.presentationContextID;
		f.message_id = rq.MessageID;
		f.sop_class = rq.AffectedSOPClassUID;
		if (!ds || !read_identifier(ds, id) || !h.find) {
			op_dicom__say(comment, sizeof(comment), "%s",
				      "QueryRetrieveLevel missing or not PATIENT, STUDY, SERIES "
				      "or IMAGE");
			status = OP_STATUS_IDENTIFIER_MISMATCH;
		} else {
			fill_req(r, id, rq.MessageID, rq.AffectedSOPClassUID);
			status = h.find(h.ctx, &info_, &r, on_answer, &f, comment, sizeof(comment));
		}
		if (f.broken)
			return ASC_abortAssociation(assoc_), DIMSE_SENDFAILED;
		if (f.cancelled)
			status = OP_STATUS_CANCEL;
		std::unique_ptr<DcmDataset> detail(comment_detail(comment));
		return sendFINDResponse(f.pid, f.message_id, f.sop_class, NULL, status,
					detail.get());
	}

	/* A C-MOVE's or C-GET's sub-operations so far. */
	struct Retrieve {
		Association *self;
		T_ASC_PresentationContextID pid;
		Uint16 message_id;
		OFString sop_class;
		bool get;
		unsigned total = 0, done = 0, completed = 0, failed = 0, warning = 0;
		std::string failed_uids;
		bool cancelled = false;
		bool broken = false;
		const op_qr_instance *items = NULL;
	};

	/* A C-GET-RSP; DcmSCP 3.6.7 has no sender for it. */
	OFCondition send_get_response(const Retrieve &rt, uint16_t status, DcmDataset *ds,
				      DcmDataset *detail)
	{
		T_DIMSE_Message m;

		memset(&m, 0, sizeof(m));
		m.CommandField = DIMSE_C_GET_RSP;
		T_DIMSE_C_GetRSP &g = m.msg.CGetRSP;
		g.MessageIDBeingRespondedTo = rt.message_id;
		OFStandard::strlcpy(g.AffectedSOPClassUID, rt.sop_class.c_str(),
				    sizeof(g.AffectedSOPClassUID));
		g.DimseStatus = status;
		g.DataSetType = ds ? DIMSE_DATASET_PRESENT : DIMSE_DATASET_NULL;
		g.NumberOfRemainingSubOperations = (DIC_US)(rt.total - rt.done);
		g.NumberOfCompletedSubOperations = (DIC_US)rt.completed;
		g.NumberOfFailedSubOperations = (DIC_US)rt.failed;
		g.NumberOfWarningSubOperations = (DIC_US)rt.warning;
		g.opts = O_GET_AFFECTEDSOPCLASSUID | O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS |
			 O_GET_NUMBEROFFAILEDSUBOPERATIONS | O_GET_NUMBEROFWARNINGSUBOPERATIONS;
		if (status == OP_STATUS_PENDING || status == OP_STATUS_CANCEL)
			g.opts |= O_GET_NUMBEROFREMAININGSUBOPERATIONS;
		return sendDIMSEMessage(rt.pid, &m, ds, detail);
	}

	OFCondition send_retrieve_response(const Retrieve &rt, uint16_t status, DcmDataset *ds,
					   DcmDataset *detail)
	{
		if (rt.get)
			return send_get_response(rt, status, ds, detail);
		return sendMOVEResponse(
			rt.pid, rt.message_id, rt.sop_class, ds, status, detail,
			(Uint16)(status == OP_STATUS_PENDING || status == OP_STATUS_CANCEL
					 ? rt.total - rt.done
					 : 0),
			(Uint16)rt.completed, (Uint16)rt.failed, (Uint16)rt.warning);
	}

	/* After each sub-operation: count it, say so (pending), look for a
	 * C-CANCEL. */
	static int on_sent(void *ctx, unsigned i, const op_dicom_result *res)
	{
		Retrieve *rt = (Retrieve *)ctx;

		rt->done++;
		if (res->outcome != OP_DICOM_SENT) {
			rt->failed++;
			if (!rt->failed_uids.empty())
				rt->failed_uids += "\\";
			rt->failed_uids += rt->items[i].sop_instance_uid;
		} else if (res->status != 0) {
			rt->warning++;
		} else {
			rt->completed++;
		}
		if (rt->done < rt->total) {
			OFCondition c = rt->self->send_retrieve_response(*rt, OP_STATUS_PENDING,
									 NULL, NULL);
			if (c.bad()) {
				rt->broken = true;
				return 1;
			}
		}
		if (rt->self->checkForCANCEL(rt->pid, rt->message_id).good()) {
			rt->cancelled = true;
			return 1;
		}
		return 0;
	}

	OFCondition handle_retrieve(Uint16 message_id, const char *sop_class, const char *move_dest,
				    const DcmPresentationContextInfo &pc)
	{
		const op_dicom_handler &h = net_->h;
		T_ASC_PresentationContextID pid = pc.presentationContextID;
		DcmDataset *ds = NULL;
		Identifier id;
		op_qr_req r;
		op_dicom_peer dest;
		op_qr_instance *items = NULL;
		unsigned n = 0;
		char comment[128] = "";
		uint16_t status = OP_STATUS_IDENTIFIER_MISMATCH;
		Retrieve rt;

		OFCondition c = receiveDIMSEDataset(&pid, &ds);
		if (c.bad())
			return c;
		std::unique_ptr<DcmDataset> owned(ds);
		rt.self = this;
		rt.pid = pc.presentationContextID;
		rt.message_id = message_id;
		rt.sop_class = sop_class;
		rt.get = move_dest == NULL;
		memset(&dest, 0, sizeof(dest));
		if (!ds || !read_identifier(ds, id) || !h.retrieve) {
			op_dicom__say(comment, sizeof(comment), "%s",
				      "QueryRetrieveLevel missing or not PATIENT, STUDY, SERIES "
				      "or IMAGE");
		} else {
			fill_req(r, id, message_id, sop_class);
			if (move_dest)
				copy(r.move_destination, sizeof(r.move_destination), move_dest);
			status = h.retrieve(h.ctx, &info_, &r, move_dest ? &dest : NULL, &items, &n,
					    comment, sizeof(comment));
		}
		if (status != OP_STATUS_SUCCESS || n == 0) {
			free(items);
			std::unique_ptr<DcmDataset> detail(comment_detail(comment));
			return send_retrieve_response(rt, status, NULL, detail.get());
		}
		rt.total = n;
		rt.items = items;
		std::vector<std::string> paths(n);
		unsigned total = n;
		n = 0;
		for (unsigned i = 0; i < total; i++) {
			char path[OP_DIR_MAX + 128];
			/* A file that no longer matches its hash is not sent:
			 * a failed sub-operation, as the uplink would. */
			if (h.object_file(h.ctx, &items[i], path, sizeof(path)) < 0) {
				rt.done++;
				rt.failed++;
				if (!rt.failed_uids.empty())
					rt.failed_uids += "\\";
				rt.failed_uids += items[i].sop_instance_uid;
				continue;
			}
			items[n] = items[i];
			paths[n++] = path;
		}
		std::vector<op_dicom_item> send(n);
		std::vector<op_dicom_result> res(n);
		for (unsigned i = 0; i < n; i++) {
			send[i].path = paths[i].c_str();
			send[i].sop_class_uid = items[i].sop_class_uid;
			send[i].sop_instance_uid = items[i].sop_instance_uid;
			send[i].transfer_syntax = items[i].transfer_syntax;
			send[i].own_syntax_only = 0;
		}
		if (rt.get) {
			if (op_dicom__send_on(assoc_, net_->opt.dimse_timeout, send.data(), n,
					      res.data(), on_sent, &rt) < 0)
				rt.broken = true;
		} else {
			/* One association to the destination per OP_DICOM_SEND_MAX. */
			for (unsigned at = 0; at < n && !rt.cancelled && !rt.broken;) {
				unsigned k =
					n - at < OP_DICOM_SEND_MAX ? n - at : OP_DICOM_SEND_MAX;
				char err[256] = "";
				int rc = op_dicom__send_each(&dest, send.data() + at, k,
							     res.data() + at, on_sent, &rt, err,
							     sizeof(err));
				if (rc < 0 && rc != -ECANCELED) {
					/* No association: these all failed. */
					for (unsigned i = at; i < at + k; i++) {
						on_sent(&rt, i, &res[i]);
						if (rt.cancelled || rt.broken)
							break;
					}
					op_dicom__say(comment, sizeof(comment), "%s", err);
				}
				at += k;
			}
		}
		free(items);
		rt.items = NULL;
		if (rt.broken) {
			how_ = "the association broke during a retrieve";
			if (h.retrieve_end)
				h.retrieve_end(h.ctx, &info_, &r, rt.completed, rt.failed,
					       rt.warning, OP_STATUS_PROCESSING_FAILURE);
			return ASC_abortAssociation(assoc_), DIMSE_SENDFAILED;
		}
		/* The instances not tried count as failed (PS3.4 C.4.2.3.1),
		 * but after a cancel, where they are the remaining ones. */
		if (!rt.cancelled)
			rt.failed += rt.total - rt.done, rt.done = rt.total;
		status = rt.cancelled                        ? OP_STATUS_CANCEL
			 : rt.failed == 0 && rt.warning == 0 ? OP_STATUS_SUCCESS
			 : rt.completed + rt.warning == 0    ? OP_STATUS_SUBOPS_OUT_OF_RESOURCES
							     : OP_STATUS_SUBOPS_FAILED;
		std::unique_ptr<DcmDataset> failed;
		if (!rt.failed_uids.empty() && status != OP_STATUS_SUCCESS) {
			failed.reset(new DcmDataset());
			failed->putAndInsertString(DCM_FailedSOPInstanceUIDList,
						   rt.failed_uids.c_str());
		}
		std::unique_ptr<DcmDataset> detail(
			status == OP_STATUS_SUCCESS ? NULL : comment_detail(comment));
		if (h.retrieve_end)
			h.retrieve_end(h.ctx, &info_, &r, rt.completed, rt.failed, rt.warning,
				       status);
		return send_retrieve_response(rt, status, failed.get(), detail.get());
	}

	/* --- storage commitment ------------------------------------------ */

	/* A request's Transaction UID and Referenced SOP Sequence; false,
	 * with why in comment, when one is missing or malformed. */
	static bool read_commit_request(DcmDataset *ds, OFString &txn,
					std::vector<op_commit_item> &items, char *comment,
					size_t size)
	{
		DcmSequenceOfItems *seq = NULL;

		if (ds->findAndGetOFString(DCM_TransactionUID, txn).bad() || txn.empty() ||
		    txn.length() > OP_UID_MAX) {
			op_dicom__say(comment, size, "%s", "Transaction UID missing or invalid");
			return false;
		}
		if (ds->findAndGetSequence(DCM_ReferencedSOPSequence, seq).bad() || !seq ||
		    seq->card() == 0 || seq->card() > OP_COMMIT_MAX_ITEMS) {
			op_dicom__say(comment, size, "%s",
				      "Referenced SOP Sequence missing, empty or too long");
			return false;
		}
		for (unsigned long i = 0; i < seq->card(); i++) {
			DcmItem *it = seq->getItem(i);
			OFString cls, inst;
			op_commit_item c;
			it->findAndGetOFString(DCM_ReferencedSOPClassUID, cls);
			it->findAndGetOFString(DCM_ReferencedSOPInstanceUID, inst);
			if (cls.empty() || inst.empty() || cls.length() > OP_UID_MAX ||
			    inst.length() > OP_UID_MAX) {
				op_dicom__say(comment, size,
					      "Referenced SOP Sequence item %lu lacks its UIDs",
					      i + 1);
				return false;
			}
			memset(&c, 0, sizeof(c));
			copy(c.sop_class_uid, sizeof(c.sop_class_uid), cls.c_str());
			copy(c.sop_instance_uid, sizeof(c.sop_instance_uid), inst.c_str());
			c.result = OP_COMMIT_WAITING;
			items.push_back(c);
		}
		return true;
	}

	/*
	 * The report on this association, while the requester keeps it open:
	 * sent once every item is decided. Anything the requester sends
	 * meanwhile (its A-RELEASE-RQ, another request) ends the wait, and
	 * the report is left to a new association.
	 */
	void report_here(int64_t id, T_ASC_PresentationContextID pid)
	{
		const op_dicom_handler &h = net_->h;
		auto deadline = std::chrono::steady_clock::now() +
				std::chrono::seconds(net_->opt.dimse_timeout);
		bool delivered = false;

		while (std::chrono::steady_clock::now() < deadline) {
			op_commitment_txn t;
			/* An SCU that releases right after the N-ACTION-RSP
			 * (Orthanc) says so within the second. */
			if (ASC_dataWaiting(assoc_, 1))
				break;
			int rc = h.commit_report(h.ctx, id, &t);
			if (rc < 0)
				break;
			if (rc > 0) {
				Uint16 event_type = 0, status = 0xFFFF;
				DcmDataset *ds = op_dicom__commit_dataset(&t, &event_type);
				OFCondition c = sendEVENTREPORTRequest(
					pid, UID_StorageCommitmentPushModelSOPInstance,
					assoc_->nextMsgID++, event_type, ds, status);
				delete ds;
				free(t.items);
				delivered = c.good() && status == 0;
				break;
			}
		}
		h.commit_done(h.ctx, &info_, id, delivered);
	}

	OFCondition handle_commit(T_DIMSE_N_ActionRQ &rq, const DcmPresentationContextInfo &pc)
	{
		const op_dicom_handler &h = net_->h;
		DcmDataset *ds = NULL;
		Uint16 action = 0;
		uint16_t status;
		int64_t id = 0;
		char comment[128] = "";
		OFString txn;
		std::vector<op_commit_item> items;

		OFCondition c = receiveACTIONRequest(rq, pc.presentationContextID, ds, action);
		if (c.bad())
			return c;
		std::unique_ptr<DcmDataset> owned(ds);
		if (strcmp(rq.RequestedSOPClassUID, UID_StorageCommitmentPushModelSOPClass) != 0 ||
		    !h.commit_request)
			status = STATUS_N_NoSuchSOPClass;
		else if (strcmp(rq.RequestedSOPInstanceUID,
				UID_StorageCommitmentPushModelSOPInstance) != 0)
			status = STATUS_N_NoSuchSOPInstance;
		else if (action != 1)
			status = STATUS_N_NoSuchAction;
		else if (!ds || !read_commit_request(ds, txn, items, comment, sizeof(comment)))
			/* Said to the handler with no items, for its log. */
			status = h.commit_request(h.ctx, &info_, txn.c_str(), NULL, 0, &id, comment,
						  sizeof(comment));
		else
			status = h.commit_request(h.ctx, &info_, txn.c_str(), items.data(),
						  (unsigned)items.size(), &id, comment,
						  sizeof(comment));
		c = sendACTIONResponse(pc.presentationContextID, rq.MessageID,
				       rq.RequestedSOPClassUID, rq.RequestedSOPInstanceUID, status);
		if (status == 0) {
			if (c.good())
				report_here(id, pc.presentationContextID);
			else
				h.commit_done(h.ctx, &info_, id, 0);
		}
		return c;
	}

	op_dicom_net *net_;
	T_ASC_Association *assoc_;
	op_assoc info_;
	bool admitted_;
	OFString how_;
};

/* --- network --------------------------------------------------------------- */

int op_dicom_pdu_ready(const unsigned char *buf, size_t len, size_t *need)
{
	size_t total;

	*need = 6;
	if (len >= 1 && buf[0] != PDU_ASSOCIATE_RQ)
		return -EPROTO;
	if (len < 6)
		return 0;
	total = 6 + ((size_t)buf[2] << 24 | (size_t)buf[3] << 16 | (size_t)buf[4] << 8 | buf[5]);
	*need = total < PEEK_MAX ? total : PEEK_MAX;
	return len >= *need;
}

int op_dicom_net_open(const op_dicom_options *opt, const op_dicom_handler *h, op_dicom_net **out)
{
	op_dicom_net *n = new (std::nothrow) op_dicom_net();
	OFCondition c;

	*out = NULL;
	if (!n)
		return -ENOMEM;
	n->h = *h;
	n->opt = *opt;
	n->next_id = 0;
	OFLog::configure(opt->verbose ? OFLogger::INFO_LOG_LEVEL : OFLogger::OFF_LOG_LEVEL);
	dcmDisableGethostbyaddr.set(OFTrue);

	DcmSCPConfig &cfg = *n->cfg;
	cfg.setAETitle(opt->ae_title);
	cfg.setRespondWithCalledAETitle(OFTrue);
	cfg.setMaxReceivePDULength(opt->max_pdu);
	cfg.setACSETimeout(opt->acse_timeout);
	cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
	cfg.setDIMSETimeout(opt->dimse_timeout);
	cfg.setHostLookupEnabled(OFFalse);

	/* An acceptor network that opens no socket of its own: with an
	 * external handle set, DCMTK skips creating its listening socket. */
	{
		std::lock_guard<std::mutex> lock(n->receive_mu);
		dcmExternalSocketHandle.set(STDERR_FILENO);
		c = ASC_initializeNetwork(NET_ACCEPTOR, 0, opt->acse_timeout, &n->net);
		dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
	}
	if (c.bad()) {
		delete n;
		return -EIO;
	}
	*out = n;
	return 0;
}

void op_dicom_net_close(op_dicom_net *n)
{
	if (!n)
		return;
	ASC_dropNetwork(&n->net);
	delete n;
}

void op_dicom_serve(op_dicom_net *n, int fd, int busy)
{
	T_ASC_Association *assoc = NULL;
	OFCondition c;

	{
		std::lock_guard<std::mutex> lock(n->receive_mu);
		dcmExternalSocketHandle.set(fd);
		c = ASC_receiveAssociation(n->net, &assoc, (long)n->opt.max_pdu);
		dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
	}
	if (c.bad() || busy) {
		op_assoc info;
		memset(&info, 0, sizeof(info));
		info.id = ++n->next_id;
		if (assoc && assoc->params) {
			copy(info.calling_aet, sizeof(info.calling_aet),
			     assoc->params->DULparams.callingAPTitle);
			copy(info.called_aet, sizeof(info.called_aet),
			     assoc->params->DULparams.calledAPTitle);
			copy(info.peer_ip, sizeof(info.peer_ip),
			     assoc->params->DULparams.callingPresentationAddress);
		}
		if (c.good()) {
			T_ASC_RejectParameters rej = {
				ASC_RESULT_REJECTEDTRANSIENT,
				ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
				ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED
			};
			ASC_rejectAssociation(assoc, &rej);
		}
		if (n->h.assoc_end)
			n->h.assoc_end(n->h.ctx, &info, c.good() ? "busy" : c.text());
		if (assoc) {
			ASC_dropAssociation(assoc);
			ASC_destroyAssociation(&assoc);
		} else {
			close(fd);
		}
		return;
	}
	Association a(n, assoc);
	a.serve(); /* the destructor drops and frees the association */
}
