"""The status API (docs/API.md) against the real services: outpost-receiver
and outpost-uplink on their own config, storescu as the modality, and the
test cloud (Orthanc behind nginx) where the link matters.

Each endpoint: what it answers, that it needs credentials over TCP (401),
and that each operator action lands in the audit log (the API's and the
uplink's log line).
"""
import os
import signal
import socket
import time

import pytest

import dicomgen
from console import Api, password_hash, set_password
from integration_fixtures import flip_byte
from outpost import storescu, wait_for

PASSWORD = "correct horse 8b1f"

ENDPOINTS = [
    ("GET", "/api/status", None),
    ("GET", "/api/queue", None),
    ("POST", "/api/retry", {"all": True}),
    ("POST", "/api/pause", {}),
    ("POST", "/api/resume", {}),
    ("PUT", "/api/shaping", {"rate": "8Mbit"}),
    ("POST", "/api/test-link", {}),
    ("GET", "/api/audit", None),
    ("POST", "/api/logout", {}),
    ("GET", "/metrics", None),
    ("PUT", "/api/site", {"site.ini": "[shaping]\nrate = 1M\n"}),
]


def start(receivers, password=PASSWORD, **overrides):
    """A receiver and its uplink (no cloud: unprovisioned), with a console
    password. Returns (receiver, uplink, api over TCP, api over the socket)."""
    rx = receivers(**overrides)
    if password:
        set_password(rx, password)
    rx.start()
    up = rx.uplink().start()
    return rx, up, Api(rx, password=password), Api(rx, unix=True)


def store(rx, tmp_path, n=3, name="study", **kw):
    files = dicomgen.make_ct_study(str(tmp_path / name), n, rows=64, cols=64, **kw)
    r = storescu(rx.port, files)
    assert r.returncode == 0, r.stderr
    return files


def audit(api, action):
    return [e for e in api.ok("GET", "/api/audit") if e["action"] == action]


# --- authentication ----------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", ENDPOINTS)
def test_every_endpoint_needs_credentials_over_tcp(receivers, method, path, body):
    rx, up, api, local = start(receivers)
    anonymous = Api(rx)
    r = anonymous.request(method, path, body)
    assert r.status == 401, (r.status, r.body)
    assert r.json() == {"error": "log in"}
    # No challenge: a browser that answered one would send the password
    # with every later request, forms posted by other sites included.
    assert "WWW-Authenticate" not in r.headers
    # A wrong password is no better.
    r = Api(rx, password="not it").request(method, path, body)
    assert r.status == 401
    # Nothing was done: no action in the audit log but the failed login.
    assert {e["action"] for e in local.ok("GET", "/api/audit")} == {"login"}
    assert local.ok("GET", "/api/status")["link"]["paused_by_operator"] is False


def test_without_a_password_nothing_but_healthz_answers_over_the_network(receivers):
    rx, up, api, local = start(receivers, password=None)
    for method, path, body in ENDPOINTS:
        r = Api(rx, password="anything").request(method, path, body)
        assert r.status == 403, (path, r.status)
        assert "outpostctl passwd" in r.json()["error"]
    r = Api(rx).post("/api/login", {"password": ""}, auth=False)
    assert r.status == 403
    assert Api(rx).get("/healthz").status == 200
    # The socket needs no password.
    assert local.get("/api/status").status == 200
    assert "no [console] password_hash" in up.log()


def test_login_session_and_logout(receivers):
    rx, up, api, local = start(receivers)
    browser = Api(rx, password=PASSWORD)
    r = browser.login()
    assert r.status == 200 and r.json() == {"ok": True}
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("outpost_session=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP here
    browser.password = None  # the cookie alone from now on
    assert browser.get("/api/status").status == 200
    assert browser.post("/api/logout").status == 200
    assert browser.get("/api/status").status == 401
    # A made-up session is nobody's.
    forged = Api(rx)
    forged.cookie = "outpost_session=" + "0" * 64
    assert forged.get("/api/status").status == 401
    actions = [(e["action"], e["detail"], e["who"], e["from"])
               for e in local.ok("GET", "/api/audit")]
    assert ("login", "ok", "admin", "127.0.0.1") in actions
    assert ("logout", "", "admin", "127.0.0.1") in actions


def test_failed_logins_are_rate_limited_logged_and_audited(receivers):
    rx, up, api, local = start(receivers)
    wrong = Api(rx)
    for _ in range(5):
        assert wrong.post("/api/login", {"password": "guess"}, auth=False).status == 401
    r = wrong.post("/api/login", {"password": "guess"}, auth=False)
    assert r.status == 429 and "try again in" in r.json()["error"]
    # The right password too, from that address, for the rest of the minute.
    assert Api(rx, password=PASSWORD).post("/api/login", {"password": PASSWORD},
                                           auth=False).status == 429
    failed = [e for e in audit(local, "login") if e["detail"].startswith("failed")]
    assert len(failed) == 5 and {e["from"] for e in failed} == {"127.0.0.1"}
    assert up.log().count("event=console.login result=failed peer=127.0.0.1") == 5
    assert "guess" not in up.log()


def test_a_new_password_ends_sessions_and_only_it_works(receivers):
    rx, up, api, local = start(receivers)
    browser = Api(rx, password=PASSWORD)
    assert browser.login().status == 200
    browser.password = None
    rx.config["console"]["password_hash"] = password_hash("another one 77")
    from outpost import write_ini
    write_ini(rx.ini, rx.config)
    assert local.ok("POST", "/api/reload") == {"ok": True}
    assert browser.get("/api/status").status == 401
    assert Api(rx, password=PASSWORD).get("/api/status").status == 401
    assert Api(rx, password="another one 77").get("/api/status").status == 200
    assert audit(local, "password")[0]["who"] == "local"
    # Reload is the socket's alone.
    assert Api(rx, password="another one 77").post("/api/reload").status == 404


# --- status, queue, metrics ----------------------------------------------------------------

def test_status_reports_what_the_spool_holds(receivers, tmp_path):
    rx, up, api, local = start(receivers)
    store(rx, tmp_path, 4, "a", patient_id="P-A")
    store(rx, tmp_path, 2, "b", seed=2, patient_id="P-B")
    time.sleep(1.1)
    # Other tests write to the same disk meanwhile: the free space the API
    # saw lies between what statvfs says just before and just after.
    st = os.statvfs(rx.spool)
    s = api.ok("GET", "/api/status")
    st_after = os.statvfs(rx.spool)
    rows = rx.rows()
    assert s["version"] == open(os.path.join(os.path.dirname(__file__), "..", "..",
                                             "VERSION")).read().strip()
    assert s["link"]["state"] == "unprovisioned"
    assert s["queue"]["queued"] == {"instances": 6, "bytes": sum(r["size"] for r in rows)}
    assert s["queue"]["sent"] == {"instances": 0, "bytes": 0}
    assert s["queue"]["studies_queued"] == 2
    oldest = min(r["received_at"] for r in rows) / 1000
    assert abs(s["queue"]["oldest_queued_age"] - (time.time() - oldest)) <= 2
    assert s["counters"]["received_instances"] == 6
    assert s["counters"]["received_bytes"] == sum(r["size"] for r in rows)
    assert s["disk"]["path"] == rx.spool
    seen = sorted(v.f_bavail * v.f_frsize for v in (st, st_after))
    assert seen[0] - (64 << 20) < s["disk"]["free"] < seen[1] + (64 << 20), (seen, s["disk"])
    assert s["disk"]["spool_bytes"] == sum(r["size"] for r in rows)
    assert len(s["throughput"]["bytes"]) == 60
    assert s["rate"]["current"] is None and s["rate"]["source"] == "config"
    # Off the appliance there is no health gate's record.
    assert s["firmware"] == {"booted": None, "last_update": None, "encryption": None}


def test_status_reports_the_health_gates_firmware_record(receivers):
    """On the appliance the health gate writes /data/firmware/ (beside the
    configuration file) after each boot; the status API passes it on."""
    rx, up, api, local = start(receivers)
    d = os.path.join(os.path.dirname(rx.ini), "firmware")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "booted"), "w") as f:
        f.write("slot=a\nversion=0.2.0\ntime=2026-11-28T10:00:00Z\n")
    with open(os.path.join(d, "last-update"), "w") as f:
        f.write("result=rolled-back\nslot=b\nversion=0.3.0\n"
                "reason=health check failed: receiver FAILED refused\n")
    fw = api.ok("GET", "/api/status")["firmware"]
    assert fw["booted"] == {"slot": "a", "version": "0.2.0", "time": "2026-11-28T10:00:00Z"}
    assert fw["last_update"] == {"result": "rolled-back", "slot": "b", "version": "0.3.0",
                                 "reason": "health check failed: receiver FAILED refused"}


def test_queue_pages_filters_and_shows_attempts(receivers, tmp_path):
    rx, up, api, local = start(receivers)
    for i in range(3):
        store(rx, tmp_path, 2, f"s{i}", seed=10 + i, patient_id=f"P{i}")
    q = api.ok("GET", "/api/queue?per_page=2")
    assert q["total"] == 3 and q["page"] == 1 and len(q["studies"]) == 2
    q2 = api.ok("GET", "/api/queue?per_page=2&page=2")
    assert len(q2["studies"]) == 1
    studies = q["studies"] + q2["studies"]
    assert len({s["study_uid"] for s in studies}) == 3
    by_patient = {s["patient_id"]: s for s in studies}
    assert set(by_patient) == {"P0", "P1", "P2"}
    s = by_patient["P1"]
    assert s["instances"] == 2 and s["states"] == {"queued": 2}
    assert s["attempts"] == 0 and s["last_error"] is None and s["urgent"] is False
    assert s["modality"] == "CT"
    assert api.ok("GET", "/api/queue?state=quarantined") == \
        {"page": 1, "per_page": 50, "total": 0, "studies": []}
    assert api.ok("GET", "/api/queue?state=queued")["total"] == 3
    for bad in ("state=lost", "page=0", "per_page=501", "per_page=x"):
        r = api.get("/api/queue?" + bad)
        assert r.status == 400 and r.json()["error"], bad


def label(files, charset="ISO_IR 100", **attrs):
    """Sets what staff recognise a study by in its files (pydicom keywords),
    written in charset."""
    import pydicom

    for f in files:
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = charset
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f, write_like_original=False)


# A name no log line or metric may ever hold; and one in Latin-1.
SECRET_NAME = "Zyxwick^Quentin"
LATIN1_NAME = "Müller^Jürgen"


def labelled_studies(rx, tmp_path):
    a = store_labelled(rx, tmp_path, "a", 2, calling="CTSCAN1", patient_id="PID-4711",
                       PatientName=LATIN1_NAME, AccessionNumber="ACC-77",
                       StudyDescription="CT Schädel", StudyDate="20261127")
    b = store_labelled(rx, tmp_path, "b", 1, calling="MRI2", patient_id="X-9",
                       PatientName=SECRET_NAME, AccessionNumber="Q_1",
                       StudyDescription="MR KNEE", modality="MR")
    return a, b


def store_labelled(rx, tmp_path, name, n, calling, patient_id, modality="CT", **attrs):
    files = dicomgen.make_ct_study(str(tmp_path / name), n, rows=16, cols=16,
                                   patient_id=patient_id, modality=modality)
    label(files, **attrs)
    r = storescu(rx.port, files, calling=calling)
    assert r.returncode == 0, r.stderr
    return files


def test_queue_shows_what_staff_recognise_and_searches(receivers, tmp_path):
    rx, up, api, local = start(receivers)
    labelled_studies(rx, tmp_path)
    q = api.ok("GET", "/api/queue")
    assert q["total"] == 2
    by_pid = {s["patient_id"]: s for s in q["studies"]}
    a = by_pid["PID-4711"]
    # Latin-1 in the dataset, UTF-8 in the answer.
    assert a["patient_name"] == LATIN1_NAME
    assert a["accession_number"] == "ACC-77"
    assert a["study_date"] == "20261127"
    assert a["study_description"] == "CT Schädel"
    assert a["modalities"] == "CT" and a["calling_aet"] == "CTSCAN1"
    b = by_pid["X-9"]
    assert b["patient_name"] == SECRET_NAME and b["modalities"] == "MR"
    assert b["calling_aet"] == "MRI2" and b["accession_number"] == "Q_1"
    # The admin socket sees the same.
    assert local.ok("GET", "/api/queue")["studies"] == q["studies"]

    def found(search, client=api):
        r = client.ok("GET", "/api/queue?search=" + search)
        assert r["total"] == len(r["studies"])
        return sorted(s["patient_id"] for s in r["studies"])

    assert found("PID-47") == ["PID-4711"]             # patient ID, by prefix
    assert found("ACC-77") == ["PID-4711"]             # accession
    assert found("Q_") == ["X-9"]                      # '_' is no wildcard
    assert found("zyxwick") == ["X-9"]                 # name, any case
    assert found("quentin%20zyx*") == []               # order counts
    assert found("zyxwick+quentin") == ["X-9"]         # '+' and %20 are spaces
    assert found("zyx*%2C%20q") == ["X-9"]             # "zyx*, q"
    assert found("%20%20X-9%20") == ["X-9"]            # trimmed
    assert found("nobody") == []
    assert found("") == ["PID-4711", "X-9"]
    assert found("zyxwick", local) == ["X-9"]
    r = api.ok("GET", "/api/queue?search=zyxwick&state=quarantined")
    assert r["total"] == 0
    for bad in ("a" * 65, "%ZZ", "%0A", "%00x", "%FF", "%C3"):
        r = api.get("/api/queue?search=" + bad)
        assert r.status == 400 and "search" in r.json()["error"], bad
    assert found("a" * 64) == []


def test_patient_names_stay_out_of_logs_and_metrics(receivers, tmp_path):
    """PHI goes to an authenticated client of /api/queue only: never into a
    log line (receiver's or uplink's, searches included) nor /metrics."""
    rx, up, api, local = start(receivers)
    labelled_studies(rx, tmp_path)
    assert api.ok("GET", "/api/queue")["total"] == 2
    assert api.ok("GET", "/api/queue?search=Zyxwick")["total"] == 1
    assert api.get("/api/queue?search=Zyxwick" + "x" * 80).status == 400
    assert local.ok("GET", "/api/queue?search=Quentin")["total"] == 1
    unauthenticated = Api(rx).get("/api/queue?search=Zyxwick")
    assert unauthenticated.status == 401 and "Zyxwick" not in unauthenticated.text
    metrics = api.get("/metrics").text
    assert "PID-4711" not in metrics  # the metrics name no patient at all
    up.stop()
    rx.stop()
    for where, text in (("metrics", metrics), ("receiver.log", rx.log()),
                        ("uplink.log", up.log())):
        for secret in ("zyxwick", "quentin", "müller", "m\xfcller", "jürgen"):
            assert secret not in text.lower(), (where, secret)


def test_metrics_parse_and_match_the_spool(pipelines, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    p = pipelines(console={"password_hash": password_hash(PASSWORD)})
    files = dicomgen.make_ct_study(str(tmp_path / "m"), 5, rows=64, cols=64)
    p.send(files)
    p.wait_drained()
    api = Api(p.receiver, password=PASSWORD)
    r = api.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))
            samples[key] = s.value
    rows = p.receiver.rows()
    sent = [x for x in rows if x["state"] == "sent"]
    assert samples["outpost_received_instances_total"] == 5
    assert samples["outpost_received_bytes_total"] == sum(x["size"] for x in rows)
    assert samples["outpost_uploaded_instances_total"] == len(sent) == 5
    assert samples["outpost_uploaded_bytes_total"] == sum(x["size"] for x in sent)
    assert samples["outpost_queue_instances{state=sent}"] == 5
    assert samples["outpost_queue_instances{state=queued}"] == 0
    assert samples["outpost_queue_bytes{state=sent}"] == sum(x["size"] for x in sent)
    assert samples["outpost_oldest_queued_seconds"] == 0
    assert samples["outpost_link_up"] == 1
    assert samples["outpost_rate_limit_bits_per_second"] == float("inf")
    assert samples["outpost_retries_total"] == 0
    assert samples["outpost_quarantined_total"] == 0
    assert samples["outpost_associations_rejected_total"] == 0
    assert samples["outpost_disk_free_bytes"] > 0
    # The cloud holds them: the numbers are not the uplink's word alone.
    assert len(set(p.cloud.instances())) == 5


def test_associations_rejected_are_counted(receivers):
    rx, up, api, local = start(receivers, receiver={"allowed_calling_aets": "MODALITY1"})
    r = storescu(rx.port, [dicomgen.make_ct_study(str(rx.workdir + "/f"), 1, rows=8,
                                                 cols=8)[0]], calling="INTRUDER")
    assert r.returncode != 0
    wait_for(lambda: "outpost_associations_rejected_total 1" in api.get("/metrics").text,
             10, what="the rejection in /metrics")


# --- operator actions ----------------------------------------------------------------------

def test_retry_requeues_quarantined_instances_of_one_study_and_audits(pipelines, tmp_path):
    p = pipelines(start_uplink=False, console={"password_hash": password_hash(PASSWORD)},
                  cloud={"retry_max_delay": 1})
    files = dicomgen.make_ct_study(str(tmp_path / "q"), 3, rows=64, cols=64)
    p.send(files)
    bad = p.receiver.rows("1=1 ORDER BY id")[1]
    path = p.receiver.object_path(bad["hash"])
    flip_byte(path, bad["size"] // 2)
    p.uplink.start()
    p.wait_drained()
    api = Api(p.receiver, password=PASSWORD)
    q = api.ok("GET", "/api/queue?state=quarantined")
    assert q["total"] == 1
    study = q["studies"][0]
    assert study["states"] == {"sent": 2, "quarantined": 1}
    assert "damaged" in study["last_error"]
    s = api.ok("GET", "/api/status")
    assert [a["id"] for a in s["alarms"]] == ["quarantine"]
    assert any(e["event"] == "uplink.quarantine" for e in s["last_errors"])

    # The cause put right (the byte back), retried from the console: sent.
    flip_byte(path, bad["size"] // 2)
    # A study the spool does not hold: 404, not "0 requeued".
    r = api.post("/api/retry", {"study": "1.2.3.4.no.such.study"})
    assert r.status == 404, (r.status, r.body)
    assert r.json() == {"error": "no study 1.2.3.4.no.such.study in the spool (check the "
                                 "Study Instance UID)"}
    assert api.ok("POST", "/api/retry", {"study": study["study_uid"]}) == {"requeued": 1}
    p.wait_drained()
    assert p.receiver.states() == {"sent": 3}
    assert len(set(p.cloud.instances())) == 3
    retries = audit(Api(p.receiver, unix=True), "retry")
    assert retries[0]["detail"] == f"study={study['study_uid']} requeued=1"
    assert retries[0]["who"] == "admin" and retries[0]["from"] == "127.0.0.1"
    assert f"event=audit who=admin from=127.0.0.1 action=retry" in p.uplink.log()
    for bad_body in ({}, {"study": ""}, {"all": False}, []):
        assert api.post("/api/retry", bad_body).status == 400


def test_pause_holds_uploads_across_a_restart_and_resume_drains(pipelines, tmp_path):
    p = pipelines(console={"password_hash": password_hash(PASSWORD)})
    api = Api(p.receiver, password=PASSWORD)
    assert api.ok("POST", "/api/pause") == {"paused": True}
    s = api.ok("GET", "/api/status")
    assert s["link"]["state"] == "paused" and s["link"]["paused_by_operator"] is True
    p.send(dicomgen.make_ct_study(str(tmp_path / "p"), 4, rows=64, cols=64))
    p.uplink.stop()
    p.uplink.start()  # still paused: it is kept in the spool
    time.sleep(2)
    assert p.receiver.states() == {"queued": 4}
    assert not p.cloud.instances()
    assert api.ok("GET", "/api/status")["link"]["paused_by_operator"] is True
    assert api.ok("POST", "/api/resume") == {"paused": False}
    p.wait_drained()
    assert p.receiver.states() == {"sent": 4}
    actions = [e["action"] for e in Api(p.receiver, unix=True).ok("GET", "/api/audit")]
    assert actions[:2] == ["resume", "pause"]
    assert "event=audit who=admin from=127.0.0.1 action=pause" in p.uplink.log()


def test_shaping_is_validated_applied_persisted_and_cleared(receivers):
    rx, up, api, local = start(receivers, shaping={"rate": "20Mbit"})
    r = api.put("/api/shaping", {"rate": "2Mbit"})
    assert r.status == 200, r.body
    assert r.json()["current"] == 2_000_000 and r.json()["source"] == "console"
    sched = "Mon-Sun 00:00-24:00 3Mbit"
    r = api.put("/api/shaping", {"schedule": sched})
    assert r.json()["schedule"] == sched and r.json()["current"] == 3_000_000
    assert r.json()["configured"] == 2_000_000  # the rate kept
    up.stop()
    up.start()
    rate = api.ok("GET", "/api/status")["rate"]
    assert (rate["current"], rate["schedule"], rate["source"]) == (3_000_000, sched, "console")
    for body, words in (({"rate": "fast"}, "not a rate"),
                        ({"schedule": "Mon 25:00-26:00 1M"}, "schedule"),
                        ({"rate": 5}, "expected"), ({}, "expected")):
        r = api.put("/api/shaping", body)
        assert r.status == 400 and words in r.json()["error"], (body, r.body)
    r = api.put("/api/shaping", {"rate": None, "schedule": None})
    assert r.json()["current"] == 20_000_000 and r.json()["source"] == "config"
    details = [e["detail"] for e in audit(local, "shaping")]
    assert details == ["rate=(config) schedule=(config)", f"rate=2Mbit schedule={sched}",
                       "rate=2Mbit schedule=(config)"]


def test_test_link_reports_each_step(pipelines, receivers):
    p = pipelines(console={"password_hash": password_hash(PASSWORD)})
    api = Api(p.receiver, password=PASSWORD)
    assert api.ok("GET", "/api/status")["link"]["state"] == "starting"  # nothing sent yet
    r = api.ok("POST", "/api/test-link")
    assert r["ok"] is True, r
    assert api.ok("GET", "/api/status")["link"]["state"] == "up"
    assert [(s["step"], s["ok"]) for s in r["steps"]] == \
        [("resolve", True), ("tls", True), ("auth", True), ("qido", True)]
    assert "localhost is 127.0.0.1" in r["steps"][0]["detail"]
    assert audit(Api(p.receiver, unix=True), "test-link")[0]["detail"].startswith("ok ")

    # A CA that did not sign the cloud's certificate: TLS fails, the rest skipped.
    rx2, up2, api2, local2 = start(receivers, cloud={
        "url": p.cloud.url, "ca_file": p.cloud.pki.untrusted_ca_file})
    r = local2.ok("POST", "/api/test-link")
    assert r["ok"] is False
    assert [(s["step"], s["ok"]) for s in r["steps"]] == \
        [("resolve", True), ("tls", False), ("auth", False), ("qido", False)]
    assert "certificate" in r["steps"][1]["detail"].lower(), r["steps"][1]
    assert r["steps"][3]["detail"] == "skipped"


def test_test_link_names_refused_credentials_and_status_raises_the_alarm(pipelines,
                                                                          tmp_path):
    password = tmp_path / "cloud-password"
    password.write_text("wrong-one\n")
    p = pipelines(cloud_options={"basic_auth": ("outpost", "right-one")},
                  cloud={"auth": "basic", "username": "outpost",
                         "password_file": str(password)})
    local = Api(p.receiver, unix=True)
    r = local.ok("POST", "/api/test-link")
    assert [(s["step"], s["ok"]) for s in r["steps"]] == \
        [("resolve", True), ("tls", True), ("auth", False), ("qido", False)]
    assert "401" in r["steps"][2]["detail"]
    # An upload meets the same refusal: the status says so, as an alarm.
    p.send(dicomgen.make_ct_study(str(tmp_path / "c"), 1, rows=8, cols=8))
    alarms = wait_for(lambda: local.ok("GET", "/api/status")["alarms"], 20,
                      what="the credentials alarm")
    assert [(a["id"], a["severity"]) for a in alarms] == [("credentials", "error")]
    assert "401" in alarms[0]["message"]
    assert local.ok("GET", "/api/status")["link"]["state"] == "paused"


def test_test_link_unprovisioned(receivers):
    rx, up, api, local = start(receivers)
    r = api.ok("POST", "/api/test-link")
    assert r["ok"] is False
    assert "unprovisioned" in r["steps"][0]["detail"]


# --- health --------------------------------------------------------------------------------

def test_healthz_checks_spool_and_receiver_not_the_cloud(receivers):
    rx, up, api, local = start(receivers, password=None)
    anonymous = Api(rx)
    r = anonymous.get("/healthz")
    assert r.status == 200
    h = r.json()
    assert h["healthy"] is True
    assert h["checks"]["spool"] == {"ok": True, "detail": "quick_check: ok"}
    assert h["checks"]["receiver"]["ok"] is True
    assert h["checks"]["receiver"]["detail"].startswith("answered in")
    assert h["cloud"] == {"ok": False, "state": "unprovisioned",
                          "detail": "no [cloud] url configured"}
    rx.stop()
    # A result is answered again for 2 s (one check at a time for everyone).
    t0 = time.monotonic()
    wait_for(lambda: anonymous.get("/healthz").status == 503, timeout=10, interval=0.2,
             what="/healthz to see the receiver stopped")
    assert time.monotonic() - t0 < 5
    r = anonymous.get("/healthz")
    assert r.status == 503
    h = r.json()
    assert h["healthy"] is False and h["checks"]["receiver"]["ok"] is False
    assert "refused" in h["checks"]["receiver"]["detail"]
    assert h["checks"]["spool"]["ok"] is True


def test_healthz_counts_a_receiver_that_refuses_loopback_as_up(receivers):
    rx, up, api, local = start(receivers, password=None,
                               receiver={"allowed_hosts": "10.0.0.0/8"})
    h = Api(rx).get("/healthz").json()
    assert h["healthy"] is True and "rejected" in h["checks"]["receiver"]["detail"]


# --- the server ----------------------------------------------------------------------------

def test_console_files_are_served_and_nothing_else(receivers):
    rx, up, api, local = start(receivers)
    anonymous = Api(rx)
    r = anonymous.get("/")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    for path in ("/../VERSION", "/%2e%2e/VERSION", "/.hidden", "/no-such-file.js",
                 "/api/nothing"):
        assert anonymous.get(path).status == 404, path
    assert anonymous.request("DELETE", "/").status == 405


def test_head_is_answered_like_get_without_a_body(receivers):
    """HEAD /healthz (a load balancer's or monitor's check) and every GET
    route answer as GET does, with GET's Content-Length and no body."""
    rx, up, api, local = start(receivers)
    anonymous = Api(rx)
    for who, path in ((anonymous, "/healthz"), (anonymous, "/"), (anonymous, "/app.js"),
                      (api, "/api/status"), (api, "/api/queue"), (api, "/metrics"),
                      (local, "/healthz"), (local, "/api/status")):
        get = who.get(path)
        head = who.request("HEAD", path)
        assert get.status == 200, (path, get.status)
        assert head.status == 200, (path, head.status, head.body)
        assert head.body == b"", path
        assert head.headers["Content-Type"] == get.headers["Content-Type"], path
        assert int(head.headers["Content-Length"]) > 0, path
        if path in ("/", "/app.js"):  # the same bytes: the same length
            assert int(head.headers["Content-Length"]) == len(get.body), path
    # Still answered as GET is: HEAD needs credentials where GET does.
    assert anonymous.request("HEAD", "/api/status").status == 401
    # The listener goes on answering after a HEAD.
    assert anonymous.get("/healthz").status == 200


def raw(rx, data, read=65536):
    host, port = rx.config["console"]["listen"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(read)
            if not chunk:
                return out
            out += chunk


def test_malformed_and_oversized_requests_get_clear_errors(receivers):
    rx, up, api, local = start(receivers)
    assert raw(rx, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    big = b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    assert raw(rx, big).startswith(b"HTTP/1.1 413 ")
    long_url = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw(rx, long_url).startswith(b"HTTP/1.1 414 ")
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"\r\n"
    assert raw(rx, many).startswith(b"HTTP/1.1 431 ")
    # Two requests in one write, answered in order on one connection.
    two = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw(rx, two).count(b"HTTP/1.1 200 OK") == 2
    assert api.ok("GET", "/api/status")["version"]
    assert up.running()


def test_a_console_port_in_use_leaves_the_uplink_working(receivers):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        port = blocker.getsockname()[1]
        rx, up, api, local = start(receivers, console={"listen": f"127.0.0.1:{port}"})
        assert "event=console.listen listener=tcp" in up.log()
        assert "free the port or change [console] listen" in up.log()
        assert local.ok("GET", "/api/status")["link"]["state"] == "unprovisioned"
    finally:
        blocker.close()


def test_console_over_https_with_the_appliance_certificate(receivers, tmp_path):
    import ssl
    from cloud import TestPKI

    pki = TestPKI(tmp_path / "pki")
    rx, up, api, local = start(receivers, console={"tls_cert": pki.server.cert,
                                                    "tls_key": pki.server.key})
    assert "event=console.listen listener=tcp" in up.log() and "tls=on" in up.log()
    https = Api(rx, password=PASSWORD, ca_file=pki.ca_file)
    status = https.ok("GET", "/api/status")
    assert status["version"]
    # The fingerprint an operator compares with the browser's: SHA-256 of
    # the DER certificate, as browsers show it.
    import hashlib
    der = ssl.PEM_cert_to_DER_cert(open(pki.server.cert).read())
    want = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert status["console"] == {"tls": True, "fingerprint_sha256": want}
    # HSTS: a browser that has seen the console over TLS never tries it in clear.
    assert https.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000"
    r = https.login()
    assert r.status == 200 and "; Secure" in r.headers["Set-Cookie"]
    assert https.get("/").status == 200
    # Plain HTTP on the TLS port gets nothing useful; the console stays up.
    with pytest.raises((ConnectionError, http_client_errors(), OSError)):
        Api(rx, password=PASSWORD).get("/api/status")
    # A client that does not trust the appliance's CA refuses it.
    with pytest.raises(ssl.SSLError):
        Api(rx, password=PASSWORD, ca_file=pki.untrusted_ca_file).get("/api/status")
    assert https.ok("GET", "/healthz")["healthy"] is True


def http_client_errors():
    import http.client
    return http.client.HTTPException


def test_unreadable_console_key_leaves_the_socket_and_uploads(receivers, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    rx, up, api, local = start(receivers, console={"tls_cert": str(bad),
                                                    "tls_key": str(bad)})
    assert "event=console.listen listener=tcp error=" in up.log()
    assert "fix [console] tls_cert and tls_key" in up.log()
    assert local.ok("GET", "/api/status")["link"]["state"] == "unprovisioned"


def test_sighup_keeps_the_console(receivers):
    rx, up, api, local = start(receivers)
    up.signal(signal.SIGHUP)
    wait_for(lambda: "event=config.reload result=ok" in up.log(), 10, what="the reload")
    assert api.get("/api/status").status == 200


def test_a_site_file_upload_is_checked_and_left_for_the_appliance(receivers):
    rx, up, api, local = start(receivers)
    upload = os.path.join(rx.workdir, "upload", "site")
    site = "[cloud]\nurl = https://pacs.example.org/dicom-web\nca_file = /data/site/ca.pem\n"
    r = api.put("/api/site", {"site.ini": site, "files": {"ca.pem": "PEM\n",
                                                          "hosts": "10.1.2.3 pacs\n"}})
    assert r.status == 202 and r.json() == {"accepted": True, "path": upload}, r.body
    assert sorted(os.listdir(upload)) == ["ca.pem", "hosts", "site.ini"]
    assert open(os.path.join(upload, "site.ini")).read() == site
    assert oct(os.stat(os.path.join(upload, "ca.pem")).st_mode & 0o777) == "0o640"
    assert audit(local, "site")[0]["detail"] == "site file uploaded"
    # Refused: a bad key (nothing written), a bad name, not JSON, no login.
    for body, words in (({"site.ini": "[cloud]\nurl = http://x\n"}, "site.ini refused"),
                        ({"site.ini": site, "files": {"../evil": "x"}}, "files"),
                        ({"site.ini": site, "files": {".hidden": "x"}}, "files"),
                        ({"files": {}}, "expected")):
        r = api.put("/api/site", body)
        assert r.status == 400 and words in r.json()["error"], (body, r.body)
    assert open(os.path.join(upload, "site.ini")).read() == site
    assert os.listdir(os.path.join(rx.workdir, "upload")) == ["site"]
    assert Api(rx).put("/api/site", {"site.ini": site}).status == 401
