"""What the cloud refuses: the uplink's credentials, and single instances.

Credentials refused (nginx answers 401 to Basic with a wrong password or
Bearer with a wrong token) are nobody's instance's fault: the uplink pauses
with an alarm instead of burning retries (no attempt counted, a few
requests over several seconds), and resumes by itself when the credentials
are put right: the token file rewritten (Bearer), or the password file
fixed and SIGHUP (Basic).

An instance refused for good is quarantined with its reason while the rest
of its batch is sent. With Orthanc 1.10.1 + DICOMweb 1.7 the real refusal
is the Lua filter of tests/lib/cloud.py for PatientID REFUSE-ME: listed in
neither sequence of a 200 answer, and Orthanc drops the parts after it in
the same request too (docs/notes-orthanc.md), so the uplink retries, sends
repeat offenders alone, and quarantines after 5 unconfirmed answers. A
spool file damaged after it was received is quarantined ("damaged") and
never reaches the cloud, while its batch-mates do.

The instances' fate is read from Orthanc's REST API; the requests from
nginx's access log.
"""
import os
import signal
import time

import pydicom
import pytest

from cloud import REFUSE_PATIENT_ID
from faultproxy import drain
from integration_fixtures import spooled
from outpost import wait_for

WINDOW = 4  # seconds the paused uplink is watched


@pytest.fixture
def cloud(shared_cloud):
    """The module's cloud, without authentication again after each test."""
    yield shared_cloud
    if shared_cloud.basic_auth or shared_cloud.bearer_token:
        shared_cloud.restart_with(basic_auth=None, bearer_token=None)


def write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def watch_paused(rx, up, cloud, uids, posts_before):
    """The uplink paused on refused credentials: an alarm, nothing counted
    against the instances, few requests. Returns the requests it made."""
    wait_for(lambda: "event=uplink.alarm" in up.log(), 20, what="the credentials alarm")
    time.sleep(WINDOW)
    alarms = [line for line in up.log().splitlines() if "event=uplink.alarm" in line]
    assert alarms and all("credentials" in line and "401" in line for line in alarms), alarms
    rows = settled_rows(rx)
    assert [(r["state"], r["attempts"]) for r in rows] == [("queued", 0)] * len(rows)
    assert "event=uplink.retry" not in up.log()
    assert not uids & set(cloud.instances())
    posts = cloud.requests()[posts_before:]
    assert posts and {p["status"] for p in posts} == {401}
    # Paused, not hammering: the first request, then one probe each time
    # retry_max_delay (2 s) passes.
    assert len(posts) <= 2 + WINDOW // 2 + 1, posts
    assert up.running()
    return posts


def settled_rows(rx):
    """The rows once no request is in flight (a probe may be at the moment
    of looking: its rows are 'sending' for a few milliseconds)."""
    return wait_for(lambda: (lambda rows: rows if all(r["state"] != "sending" for r in rows)
                             else None)(rx.rows()), 10, what="no request in flight")


def delivered(rx, cloud, up, uids):
    drain(rx, cloud, up)
    assert {r["state"] for r in rx.rows()} == {"sent"}
    held = set(cloud.instances())
    assert uids <= held, uids - held


# --- credentials ---------------------------------------------------------------------

def test_basic_wrong_password_pauses_then_password_and_sighup_resume(
        receivers, tmp_path, cloud, pki):
    cloud.restart_with(basic_auth=("outpost", "pw-right-5b8e"))
    password = str(tmp_path / "password")
    write(password, "pw-wrong-91c2")
    rx, rows = spooled(receivers, tmp_path, {
        "url": cloud.url, "ca_file": pki.ca_file, "auth": "basic", "username": "outpost",
        "password_file": password})
    uids = {r["sop_instance_uid"] for r in rows}
    posts_before = len(cloud.requests())
    up = rx.uplink().start()
    watch_paused(rx, up, cloud, uids, posts_before)
    assert "pw-wrong-91c2" not in up.log()

    write(password, "pw-right-5b8e")
    up.signal(signal.SIGHUP)
    delivered(rx, cloud, up, uids)
    ok = [p for p in cloud.requests()[posts_before:] if p["status"] == 200]
    assert ok and {p["remote_user"] for p in ok} == {"outpost"}
    assert "pw-right-5b8e" not in up.log()
    assert all(r["attempts"] == 1 for r in rx.rows())


def test_bearer_wrong_token_pauses_then_new_token_file_resumes_by_itself(
        receivers, tmp_path, cloud, pki):
    cloud.restart_with(bearer_token="tok-right-4f7a")
    token = str(tmp_path / "token")
    write(token, "tok-wrong-0d3e")
    rx, rows = spooled(receivers, tmp_path, {
        "url": cloud.url, "ca_file": pki.ca_file, "auth": "bearer", "token_file": token})
    uids = {r["sop_instance_uid"] for r in rows}
    posts_before = len(cloud.requests())
    up = rx.uplink().start()
    watch_paused(rx, up, cloud, uids, posts_before)
    assert "tok-wrong-0d3e" not in up.log()

    write(token, "tok-right-4f7a")  # no signal: the uplink watches the file
    delivered(rx, cloud, up, uids)
    assert "event=config.reload" not in up.log()
    assert "tok-right" not in up.log()
    assert all(r["attempts"] == 1 for r in rx.rows())


# --- instances refused for good ---------------------------------------------------------

def test_instance_refused_by_the_cloud_is_quarantined_the_rest_sent(
        receivers, tmp_path, cloud, pki):
    def refuse_third(paths):
        ds = pydicom.dcmread(paths[2])
        ds.PatientID = REFUSE_PATIENT_ID
        ds.save_as(paths[2], write_like_original=True)

    # One batch of 6 with the refused instance third: Orthanc stores the two
    # before it and drops the three after it without a word.
    rx, rows = spooled(receivers, tmp_path, {"url": cloud.url, "ca_file": pki.ca_file,
                                             "retry_max_delay": 1}, n=6, edit=refuse_third)
    refused = rows[2]["sop_instance_uid"]
    others = {r["sop_instance_uid"] for r in rows} - {refused}
    up = rx.uplink().start()
    drain(rx, cloud, up, timeout=60)

    held = set(cloud.instances())
    assert others <= held, others - held
    assert refused not in held
    by_uid = {r["sop_instance_uid"]: r for r in rx.rows()}
    q = by_uid[refused]
    assert q["state"] == "quarantined"
    assert "never confirmed" in q["last_error"], q["last_error"]
    assert q["attempts"] == 5
    assert {u: r["state"] for u, r in by_uid.items() if u != refused} == \
        {u: "sent" for u in others}
    quarantines = [line for line in up.log().splitlines() if "event=uplink.quarantine" in line]
    assert len(quarantines) == 1 and refused in quarantines[0]
    # Orthanc's own reason, so the refusal was the cloud's filter.
    assert "refused by the Outpost test cloud" in cloud.orthanc_log_text()
    # The repeat offender went alone: one request per later attempt, and
    # the instances dropped behind it did not wait for it to be quarantined.
    assert up.log().count(f'sop="{refused}" attempts=') == 4  # 4 retries, then quarantine


@pytest.mark.parametrize("damage", ["flipped", "missing"])
def test_damaged_spool_file_is_quarantined_and_never_sent(receivers, tmp_path, cloud, pki,
                                                          damage):
    rx, rows = spooled(receivers, tmp_path, {"url": cloud.url, "ca_file": pki.ca_file}, n=5)
    bad = rows[2]
    path = rx.object_path(bad["hash"])
    if damage == "flipped":
        with open(path, "r+b") as f:
            f.seek(bad["size"] // 2)
            byte = f.read(1)
            f.seek(bad["size"] // 2)
            f.write(bytes([byte[0] ^ 0x01]))
    else:
        os.unlink(path)
    others = {r["sop_instance_uid"] for r in rows} - {bad["sop_instance_uid"]}
    up = rx.uplink().start()
    drain(rx, cloud, up, timeout=60)

    held = set(cloud.instances())
    assert others <= held, others - held
    assert bad["sop_instance_uid"] not in held
    by_uid = {r["sop_instance_uid"]: r for r in rx.rows()}
    q = by_uid[bad["sop_instance_uid"]]
    assert q["state"] == "quarantined"
    assert ("damaged" if damage == "flipped" else "missing") in q["last_error"], q["last_error"]
    # Its batch-mates were sent (requeued once, no attempt counted for it).
    assert all(by_uid[u]["state"] == "sent" and by_uid[u]["attempts"] == 1 for u in others)
    assert up.log().count("event=uplink.quarantine") == 1
