"""outpost-receiver admission: allowed_calling_aets, allowed_hosts, and both
changed at run time by SIGHUP."""
import os
import signal

import pydicom.filereader

from outpost import PYDICOM_FILES, echoscu, storescu, wait_for

# Small instances with distinct SOP Instance UIDs, so each send is traceable.
CT = os.path.join(PYDICOM_FILES, "CT_small.dcm")
MR = os.path.join(PYDICOM_FILES, "MR_small.dcm")
SR = os.path.join(PYDICOM_FILES, "test-SR.dcm")
RT = os.path.join(PYDICOM_FILES, "rtplan.dcm")

# What storescu/echoscu print for A-ASSOCIATE-RJ permanent, service user,
# "calling AE title not recognised".
REJECTED_AE = ["Association Rejected", "Rejected Permanent", "Source: Service User",
               "Calling AE Title Not Recognized"]


def uid(path):
    return str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)


def stored_uids(rx):
    return {row["sop_instance_uid"] for row in rx.rows()}


def assert_rejected(r):
    assert r.returncode != 0, "association was accepted"
    for words in REJECTED_AE:
        assert words in r.stderr, r.stderr


def rejected_lines(rx, calling):
    return [line for line in rx.log().splitlines()
            if "event=assoc.rejected" in line and f'calling="{calling}"' in line]


def reload(rx, expect):
    """Sends SIGHUP and waits for the receiver's verdict on the file."""
    before = rx.log().count("event=config.reload result=")
    rx.signal(signal.SIGHUP)
    wait_for(lambda: rx.log().count("event=config.reload result=") > before, 10,
             what="the config.reload verdict")
    verdict = [line for line in rx.log().splitlines() if "event=config.reload result=" in line][-1]
    assert f"result={expect}" in verdict, verdict
    return verdict


def test_allowed_calling_aets_admit_only_those_listed(receivers):
    rx = receivers(receiver={"allowed_calling_aets": "MODALITY1, CT_2"}).start()

    r = storescu(rx.port, [CT], calling="MODALITY1")
    assert r.returncode == 0, r.stderr
    assert echoscu(rx.port, calling="CT_2").returncode == 0  # the second entry

    for intruder, path in (("INTRUDER", MR), ("MODALITY", SR), ("MODALITY12", RT)):
        assert_rejected(storescu(rx.port, [path], calling=intruder))
        lines = rejected_lines(rx, intruder)
        assert len(lines) == 1, rx.log()
        assert 'reason="calling AE title not in allowed_calling_aets"' in lines[0]
    assert_rejected(echoscu(rx.port, calling="INTRUDER"))

    # Nothing from the rejected associations reached the spool.
    rows = rx.rows()
    assert [(row["sop_instance_uid"], row["calling_aet"]) for row in rows] == \
        [(uid(CT), "MODALITY1")]
    assert len(rx.stored_files()) == 1
    assert rx.log().count("event=store.ok") == 1


def test_allowed_hosts_loopback_network_admits_localhost(receivers):
    rx = receivers(receiver={"allowed_hosts": "127.0.0.0/8"}).start()
    r = storescu(rx.port, [CT])
    assert r.returncode == 0, r.stderr
    assert stored_uids(rx) == {uid(CT)}
    assert "event=assoc.rejected" not in rx.log()


def test_allowed_hosts_any_entry_of_the_list_admits(receivers):
    rx = receivers(receiver={"allowed_hosts": "10.0.0.0/8, 192.168.1.0/24 127.0.0.1"}).start()
    r = storescu(rx.port, [CT])
    assert r.returncode == 0, r.stderr
    assert stored_uids(rx) == {uid(CT)}


def test_allowed_hosts_elsewhere_rejects_localhost(receivers):
    # The calling AE is allowed: the host alone is the reason.
    rx = receivers(receiver={"allowed_hosts": "10.0.0.0/8",
                             "allowed_calling_aets": "STORESCU, ECHOSCU"}).start()
    assert_rejected(storescu(rx.port, [CT]))
    assert_rejected(echoscu(rx.port))
    lines = rejected_lines(rx, "STORESCU")
    assert len(lines) == 1, rx.log()
    assert "peer=127.0.0.1" in lines[0]
    assert 'reason="host not in allowed_hosts"' in lines[0]
    assert rx.rows() == []
    assert rx.stored_files() == []


def test_sighup_applies_new_admission_lists_without_restart(receivers):
    rx = receivers(receiver={"allowed_calling_aets": "MODALITY1"}).start()
    assert_rejected(storescu(rx.port, [MR], calling="NEWMOD"))

    rx.reconfigure(receiver={"allowed_calling_aets": "MODALITY1, NEWMOD"})
    reload(rx, "ok")
    r = storescu(rx.port, [MR], calling="NEWMOD")
    assert r.returncode == 0, r.stderr
    r = storescu(rx.port, [CT], calling="MODALITY1")
    assert r.returncode == 0, r.stderr

    # Taking an AE title out applies at once too.
    rx.reconfigure(receiver={"allowed_calling_aets": "NEWMOD"})
    reload(rx, "ok")
    assert_rejected(storescu(rx.port, [SR], calling="MODALITY1"))

    assert rx.proc.poll() is None
    assert rx.log().count("event=receiver.ready") == 1
    assert stored_uids(rx) == {uid(MR), uid(CT)}


def test_sighup_with_a_bad_file_keeps_the_old_rules(receivers):
    rx = receivers(receiver={"allowed_calling_aets": "MODALITY1"}).start()
    good_ini = open(rx.ini).read()

    # NEWMOD comes before the error: nothing of the bad file may apply.
    with open(rx.ini, "w") as f:
        f.write("[receiver]\n"
                f"port = {rx.port}\n"
                "allowed_calling_aets = MODALITY1, NEWMOD\n"
                "max_assocations = 4\n")
    verdict = reload(rx, "refused")
    assert f"{rx.ini}:4:" in verdict
    assert "max_assocations" in verdict

    assert_rejected(storescu(rx.port, [MR], calling="NEWMOD"))
    r = storescu(rx.port, [CT], calling="MODALITY1")
    assert r.returncode == 0, r.stderr
    assert stored_uids(rx) == {uid(CT)}

    # Once the file is fixed, the next SIGHUP applies it.
    with open(rx.ini, "w") as f:
        f.write(good_ini.replace("allowed_calling_aets = MODALITY1",
                                 "allowed_calling_aets = MODALITY1, NEWMOD"))
    reload(rx, "ok")
    r = storescu(rx.port, [MR], calling="NEWMOD")
    assert r.returncode == 0, r.stderr
    assert stored_uids(rx) == {uid(CT), uid(MR)}


def test_sighup_applies_new_allowed_hosts(receivers):
    rx = receivers(receiver={"allowed_hosts": "10.0.0.0/8"}).start()
    assert_rejected(storescu(rx.port, [CT]))
    rx.reconfigure(receiver={"allowed_hosts": "10.0.0.0/8, 127.0.0.0/8"})
    reload(rx, "ok")
    r = storescu(rx.port, [CT])
    assert r.returncode == 0, r.stderr
    assert stored_uids(rx) == {uid(CT)}


def test_ae_title_with_inner_space_can_be_listed(receivers):
    # DICOM AE titles may contain spaces: the list is split on commas only.
    rx = receivers(receiver={"allowed_calling_aets": "CT SCANNER, MR1"}).start()
    r = storescu(rx.port, [CT], calling="CT SCANNER")
    assert r.returncode == 0, r.stderr
    assert_rejected(storescu(rx.port, [MR], calling="CT"))
    assert stored_uids(rx) == {uid(CT)}
