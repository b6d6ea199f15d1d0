/*
 * commit: storage commitment reports (PS3.4 J.3.3), the N-EVENT-REPORT
 * that tells a modality which instances Outpost commits to keep: its
 * dataset, and its sending on a new association to the requester (the
 * receiver's reporter thread; the same association's report is sent by
 * dicom.cc). See dicom.h.
 */
#include "dicom/dicom.h"
#include "dicom/shim.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/scu.h>

#include <cerrno>
#include <cstring>

DcmDataset *op_dicom__commit_dataset(const op_commitment_txn *t, Uint16 *event_type)
{
	DcmDataset *ds = new DcmDataset();
	bool failed = false;

	ds->putAndInsertString(DCM_TransactionUID, t->transaction_uid);
	for (unsigned i = 0; i < t->n; i++) {
		const op_commit_item &it = t->items[i];
		bool ok = it.result == OP_COMMIT_OK;
		DcmItem *item = NULL;

		failed |= !ok;
		if (ds->findOrCreateSequenceItem(ok ? DCM_ReferencedSOPSequence
						    : DCM_FailedSOPSequence,
						 item, -2 /* a new item at the end */)
			    .bad())
			continue;
		item->putAndInsertString(DCM_ReferencedSOPClassUID, it.sop_class_uid);
		item->putAndInsertString(DCM_ReferencedSOPInstanceUID, it.sop_instance_uid);
		if (!ok)
			item->putAndInsertUint16(DCM_FailureReason, it.result);
	}
	/* 1: every instance committed; 2: some failed (PS3.4 J.3.3). */
	*event_type = failed ? 2 : 1;
	return ds;
}

int op_dicom_commit_report(const op_dicom_peer *peer, const op_commitment_txn *t, char *err,
			   size_t errlen)
{
	DcmSCU scu;
	OFList<OFString> syntaxes;
	Uint16 event_type = 0, status = 0;
	int timeout_s = peer->timeout_ms > 0 ? (peer->timeout_ms + 999) / 1000 : 30;
	int rc = 0;

	syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
	syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
	scu.setAETitle(peer->calling_ae);
	scu.setPeerAETitle(peer->called_ae);
	scu.setPeerHostName(peer->host);
	scu.setPeerPort((Uint16)peer->port);
	scu.setConnectionTimeout(timeout_s);
	scu.setACSETimeout((Uint32)timeout_s);
	scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
	scu.setDIMSETimeout((Uint32)timeout_s);
	/* The report comes from the SCP of the SOP class, here the
	 * association's requester: it proposes the SCP role (PS3.4 J.3.3). */
	scu.addPresentationContext(UID_StorageCommitmentPushModelSOPClass, syntaxes,
				   ASC_SC_ROLE_SCP);
	OFCondition c = scu.initNetwork();
	if (c.good())
		c = scu.negotiateAssociation();
	if (c.bad()) {
		op_dicom__say(err, errlen, "association failed: %s", c.text());
		return strstr(c.text(), "refused") ? -ECONNREFUSED : -EPROTO;
	}
	/* Any role: some SCUs (Orthanc 1.10) accept the context but answer
	 * no role selection, and take the report all the same. */
	T_ASC_PresentationContextID pid =
		scu.findAnyPresentationContextID(UID_StorageCommitmentPushModelSOPClass, "");
	if (pid == 0) {
		op_dicom__say(err, errlen, "%s", "the peer accepted no Storage Commitment context");
		scu.releaseAssociation();
		return -EPROTO;
	}
	DcmDataset *ds = op_dicom__commit_dataset(t, &event_type);
	c = scu.sendEVENTREPORTRequest(pid, UID_StorageCommitmentPushModelSOPInstance, event_type,
				       ds, status);
	delete ds;
	if (c.bad()) {
		op_dicom__say(err, errlen, "N-EVENT-REPORT failed: %s", c.text());
		rc = -EPROTO;
	} else if (status != 0) {
		op_dicom__say(err, errlen,
			      "the peer answered the N-EVENT-REPORT with status 0x%04X", status);
		rc = -EPROTO;
	}
	if (c.good())
		scu.releaseAssociation();
	else
		scu.abortAssociation();
	return rc;
}
