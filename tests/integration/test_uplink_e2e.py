"""End to end: storescu -> outpost-receiver -> outpost-uplink -> nginx ->
Orthanc, with real programs on loopback. What the cloud holds is read from
Orthanc's REST API: the set of SOP Instance UIDs, and each stored file's
dataset bytes against the spool object the receiver acknowledged.

The pydicom samples are the ones tests/integration/test_samples.py sends
(valid storage instances, each with the storescu flag of its own transfer
syntax; its module docstring lists what is left out and why), sent in the
same runs (_batches: one storescu run per flag, no SOP Instance UID twice
in a run).

Several samples share a SOP Instance UID with other bytes (among them the
MR_small variants, one per transfer syntax). The receiver keeps the newest version
and queues it again (DESIGN.md), so "arrives" means: the cloud ends up
holding the version the receiver holds last. Orthanc keeps the *first*
version of a UID unless "OverwriteInstances" is on, and its STOW-RS answer
does not say which version it kept (docs/notes-orthanc.md item 6), so that
test uses a cloud with overwrite_instances=True: a cloud that keeps what it
was sent last. It also uses one connection, so that versions reach the
cloud in the order received: the uplink does not hold a newer version back
while a request carrying an older one is still on the wire, so with two
connections the older one could be stored last (a narrow window with
Orthanc, which stores the parts of a request as they stream in; a wide
one behind a proxy that buffers whole requests).
"""
import collections
import io
import os
import signal

import pydicom

import dicomgen
from outpost import dataset_bytes, wait_for
from test_samples import SENDABLE, _batches
from integration_fixtures import assert_all_sent, log_lines, uid_of


def test_pydicom_samples_arrive_as_the_receiver_stored_them(pipelines):
    p = pipelines(cloud_options={"overwrite_instances": True}, cloud={"connections": 1})
    last_sent = {}  # SOP Instance UID -> the sample storescu sent last under it
    for flags, batch in _batches(SENDABLE):
        p.send([s.path for s in batch], flags)
        for s in batch:
            last_sent[s.sop_instance] = s
    p.wait_drained()

    # One row per SOP Instance UID, all of them confirmed by the cloud.
    assert {r["sop_instance_uid"] for r in p.receiver.rows()} == set(last_sent)
    assert_all_sent(p.receiver, len(last_sent))
    # Exactly those UIDs at the cloud, each with the spool's dataset bytes.
    p.assert_cloud_holds(set(last_sent))

    # The UIDs received again with other bytes (the MR_small variants): the
    # cloud holds the newest version, in the transfer syntax it was sent in.
    replaced = {line.split(" sop=")[1].split()[0].strip('"')
                for line in log_lines(p.receiver, "store.ok") if "result=replaced" in line}
    assert replaced, "no sample replaced another version: the test lost its point"
    for uid in replaced:
        stored = p.cloud.instance_file(uid)
        meta = pydicom.dcmread(io.BytesIO(stored), stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == last_sent[uid].ts, \
            f"{uid}: the cloud holds a {meta.TransferSyntaxUID} version, " \
            f"the last one sent was {last_sent[uid].rel} ({last_sent[uid].ts})"


def test_ct_study_arrives_byte_identical(pipeline, ct_study):
    pipeline.send(ct_study)
    pipeline.wait_drained()
    uids = {uid_of(f) for f in ct_study}
    assert {r["sop_instance_uid"] for r in pipeline.receiver.rows()} == uids
    assert_all_sent(pipeline.receiver, len(ct_study))
    pipeline.assert_cloud_holds(uids)
    # A healthy link: every request answered 200, nothing retried or quarantined.
    posts = pipeline.cloud.requests("POST")
    assert posts and {r["status"] for r in posts} == {200}
    assert not log_lines(pipeline.uplink, "uplink.retry")
    assert not log_lines(pipeline.uplink, "uplink.quarantine")


def test_sent_objects_are_evicted_unsent_never(pipelines, ct_study, tmp_path):
    """keep_sent_bytes small: sent objects go (row and file, the oldest
    first), while queued and quarantined ones stay, however far the spool is
    above the limit."""
    keep = 1 << 20  # 1 MiB: one 525 KB CT image, not two
    p = pipelines(spool={"keep_sent_bytes": "1M"}, cloud={"batch_max_instances": 5})
    cloud, rx, up = p

    # A: refused by the cloud (REFUSE-ME), quarantined after 5 unconfirmed
    # answers. 3 x 525 KB: alone above keep_sent_bytes. B: 40 that go through,
    # in batches of 5, so eviction runs while most of B is still queued.
    refused = dicomgen.make_ct_study(str(tmp_path / "refused"), 3, seed=2,
                                     patient_id="REFUSE-ME")
    good = ct_study[:40]
    p.send(refused)
    p.send(good)
    p.wait_drained()
    refused_uids = {uid_of(f) for f in refused}
    good_uids = {uid_of(f) for f in good}

    assert set(cloud.instances()) == good_uids
    rows = {r["sop_instance_uid"]: r for r in rx.rows()}
    sent = [r for r in rows.values() if r["state"] == "sent"]
    assert sum(r["size"] for r in sent) <= keep
    assert len(sent) < len(good), "nothing was evicted"
    assert {u for u, r in rows.items() if r["state"] == "quarantined"} == refused_uids
    # The files are exactly those of the rows left: the evicted ones are gone.
    assert rx.stored_files() == sorted(rx.object_path(r["hash"]) for r in rows.values())
    assert log_lines(up, "spool.evict")
    # What was evicted had reached the cloud intact (the source files went
    # over the wire unchanged: test_ct_study_arrives_byte_identical).
    for path in good[:3] + good[-3:]:
        assert dataset_bytes(cloud.instance_file(uid_of(path))) == dataset_bytes(path)

    # C: arrives while the cloud is unreachable; then keep_sent_bytes = 0
    # (SIGHUP): every sent object must go, no queued or quarantined one.
    cloud.stop_nginx()
    later = dicomgen.make_ct_study(str(tmp_path / "later"), 10, seed=3)
    later_uids = {uid_of(f) for f in later}
    p.send(later)
    rx.reconfigure(spool={"keep_sent_bytes": 0})
    reloads = len(log_lines(up, "config.reload"))
    up.signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(up, "config.reload")) > reloads, 10, what="the reload")
    assert "result=ok" in log_lines(up, "config.reload")[-1]
    # The uplink evicts after settling a batch; while the link is down, its
    # probes settle (requeue) every second or two: the rows are read between
    # two probes, none of them "sending".
    rows = []

    def evicted():
        rows[:] = rx.rows()
        return not {"sent", "sending"} & {r["state"] for r in rows}
    wait_for(evicted, 30, interval=0.2, what="the sent objects to be evicted")
    assert collections.Counter(r["state"] for r in rows) == \
        {"queued": len(later), "quarantined": len(refused)}
    assert {r["sop_instance_uid"] for r in rows} == later_uids | refused_uids
    assert rx.stored_files() == sorted(rx.object_path(r["hash"]) for r in rows)
    assert all(os.path.getsize(rx.object_path(r["hash"])) == r["size"] for r in rows)

    # The cloud back: C is sent, then evicted in turn; A stays quarantined.
    cloud.start_nginx()
    p.wait_drained()
    wait_for(lambda: "sent" not in rx.states(), 30, interval=0.2,
             what="the last sent objects to be evicted")
    assert set(cloud.instances()) == good_uids | later_uids
    rows = rx.rows()
    assert {r["sop_instance_uid"] for r in rows} == refused_uids
    assert {r["state"] for r in rows} == {"quarantined"}
    assert rx.stored_files() == sorted(rx.object_path(r["hash"]) for r in rows)
