"""Routing ([route NAME], [routing] default): which destinations each
instance gets a delivery for, decided by the receiver as it commits the
instance (the spool's deliveries table says what was decided). Every kind
of condition, several routes matching, none (the default), `urgent = yes`,
and a reload that applies to what is received afterwards only.

No uplink runs here: what the destinations then receive is
test_destinations.py's.
"""
import os
import signal

import dicomgen
from integration_fixtures import log_lines
from outpost import storescu, wait_for

# Destinations that exist in the configuration; nothing listens there (no
# uplink runs in these tests).
DESTINATIONS = {
    "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": 9, "called_ae": "AI"},
    "destination pacs": {"type": "dicom", "host": "127.0.0.1", "port": 9, "called_ae": "PACS"},
}

ROUTES = {
    # every condition of a kind, all of which must hold
    "route stroke": {"when": "calling_aet=CT_ER, Modality=CT, BodyPartExamined=HEAD*",
                     "to": "ai", "urgent": "yes"},
    "route mammo": {"when": "Modality=MG", "to": "pacs"},
    "route lab": {"when": "called_aet=OUTPOST_LAB, source=127.0.0.0/8", "to": "pacs, ai"},
    "route er_copy": {"when": "calling_aet=CT_E?", "to": "cloud"},
}


def deliveries(rx):
    """{SOP Instance UID: sorted destinations}."""
    out = {}
    with rx.db() as con:
        for uid, dest in con.execute(
                "SELECT i.sop_instance_uid, d.destination FROM instances i"
                " LEFT JOIN deliveries d ON d.instance_id = i.id"):
            out.setdefault(uid, [])
            if dest:
                out[uid].append(dest)
    return {k: sorted(v) for k, v in out.items()}


def send_one(tmp_path, rx, name, calling="STORESCU", aet="OUTPOST", **attrs):
    files = dicomgen.make_ct_study(str(tmp_path / name), 1, rows=16, cols=16, **attrs)
    r = storescu(rx.port, files, calling=calling, aet=aet)
    assert r.returncode == 0, r.stderr
    return dicomgen_uid(files[0])


def dicomgen_uid(path):
    import pydicom
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_each_condition_kind_and_the_default(tmp_path, receivers):
    rx = receivers(**DESTINATIONS, **ROUTES).start()
    # calling_aet (with ?), Modality and a BodyPartExamined wildcard: two
    # routes match; one is urgent.
    stroke = send_one(tmp_path, rx, "stroke", calling="CT_ER", body_part="HEAD_NECK")
    # CT_ER without a head: only the wildcard calling_aet route.
    er_chest = send_one(tmp_path, rx, "er_chest", calling="CT_ER", body_part="CHEST")
    mammo = send_one(tmp_path, rx, "mammo", modality="MG")
    # called_aet and source together.
    lab = send_one(tmp_path, rx, "lab", aet="OUTPOST_LAB")
    # Nothing matches: the default, the cloud.
    other = send_one(tmp_path, rx, "other", calling="CT_WARD", body_part="HEAD")
    got = deliveries(rx)
    assert got[stroke] == ["ai", "cloud"]
    assert got[er_chest] == ["cloud"]
    assert got[mammo] == ["pacs"]
    assert got[lab] == ["ai", "pacs"]
    assert got[other] == ["cloud"]
    prio = {r["sop_instance_uid"]: r["priority"] for r in rx.rows()}
    assert prio[stroke] == 2  # urgent = yes
    assert prio[er_chest] == 1 and prio[mammo] == 1


def test_default_none_keeps_unmatched_locally(tmp_path, receivers):
    rx = receivers(**DESTINATIONS, **{"route mammo": ROUTES["route mammo"]},
                   routing={"default": "none"}).start()
    kept = send_one(tmp_path, rx, "ct")
    sent = send_one(tmp_path, rx, "mg", modality="MG")
    assert deliveries(rx) == {kept: [], sent: ["pacs"]}
    # Kept like the sent cache: nothing to send, never 'queued'.
    state = {r["sop_instance_uid"]: r["state"] for r in rx.rows()}
    assert state == {kept: "sent", sent: "queued"}


def test_reload_applies_to_what_comes_next(tmp_path, receivers):
    rx = receivers(**DESTINATIONS, **{"route mammo": ROUTES["route mammo"]}).start()
    before = send_one(tmp_path, rx, "before", modality="MG")
    rx.reconfigure(**{"route mammo": {"when": "Modality=MG", "to": "ai"}})
    reloads = len(log_lines(rx, "receiver.routes"))
    rx.signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(rx, "receiver.routes")) > reloads, 10,
             what="the receiver to say the new routes apply")
    line = log_lines(rx, "receiver.routes")[-1]
    assert "reason=reload" in line and "instances received from now on" in line
    after = send_one(tmp_path, rx, "after", modality="MG")
    got = deliveries(rx)
    assert got[before] == ["pacs"]
    assert got[after] == ["ai"]


def test_a_route_to_an_unknown_keyword_is_named(tmp_path, receivers):
    """--check-config names it with FILE:LINE (the config module cannot:
    only DCMTK's dictionary knows the keywords)."""
    import subprocess
    from outpost import BUILD
    rx = receivers(**DESTINATIONS, **{"route bad": {"when": "Modalty=CT", "to": "ai"}})
    r = subprocess.run([os.path.join(BUILD, "outpost-receiver"), "--config", rx.ini,
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert f"{rx.ini}:" in r.stderr and "Modalty" in r.stderr and "[route bad]" in r.stderr
