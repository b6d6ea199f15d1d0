"""The link's headline (services/console/headline.c) and what goes with it,
against the real services: outpost-receiver, outpost-uplink (TZ=UTC, so the
expected clock times are plain) and the test cloud (Orthanc behind nginx).

- idle once drained; an operator's pause says since when it was paused (not
  since the link came up), also after the uplink restarts; Resume undoes it;
- /metrics: outpost_link_up is the link alone (1 while paused);
  outpost_paused{by} says who holds the uploads;
- a schedule window of rate 0 is "held by schedule until HH:MM UTC"; the
  operator's rate 0 under a window that sends says the window wins;
- [console] backlog_alarm: the oldest queued instance older than it while
  the link is up or paused raises the backlog alarm, with the last upload
  and whether it clears;
- the last errors name the study and the instance refused.
"""
import datetime
import re
import time

import pydicom
from prometheus_client.parser import text_string_to_metric_families

import dicomgen
from console import Api, password_hash
from outpost import wait_for

PASSWORD = "headline 5e1c"


def start(pipelines, **sections):  # noqa: F811
    """A pipeline whose uplink runs in UTC with a console password; returns
    it and an API client on the socket."""
    sections.setdefault("console", {})["password_hash"] = password_hash(PASSWORD)
    p = pipelines(start_uplink=False, **sections)
    p.uplink.env = {"TZ": "UTC"}
    p.uplink.start()
    return p, Api(p.receiver, unix=True)


def metrics(api):
    samples = {}
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for s in family.samples:
            key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))
            samples[key] = s.value
    return samples


def paused_by(samples):
    return {by for by in ("operator", "schedule", "config")
            if samples[f"outpost_paused{{by={by}}}"] == 1}


def iso_seconds(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_pause_since_the_pause_and_the_metrics(pipelines, tmp_path):  # noqa: F811
    p, api = start(pipelines)
    p.send(dicomgen.make_ct_study(str(tmp_path / "a"), 2, rows=64, cols=64))
    p.wait_drained()
    s = api.ok("GET", "/api/status")
    assert s["link"]["headline"]["state"] == "idle", s["link"]
    assert s["link"]["headline"]["text"].startswith("idle since ")
    assert s["link"]["headline"]["text"].endswith(" UTC: nothing queued")
    assert s["link"]["last_upload_age"] is not None and s["link"]["last_upload_age"] < 60
    m = metrics(api)
    assert m["outpost_link_up"] == 1 and paused_by(m) == set()

    up_since = s["link"]["since"]
    time.sleep(1.1)
    paused_at = time.time()
    assert api.ok("POST", "/api/pause") == {"paused": True}
    s = api.ok("GET", "/api/status")
    h = s["link"]["headline"]
    hhmm = time.strftime("%H:%M", time.gmtime(iso_seconds(s["link"]["since"])))
    assert h == {"state": "paused", "paused_by": "operator",
                 "text": f"paused by the operator since {hhmm} UTC",
                 "since": s["link"]["since"], "until": None}, h
    # The pause's time, not the link's.
    assert s["link"]["since"] != up_since
    assert int(paused_at) <= iso_seconds(s["link"]["since"]) <= paused_at + 2
    m = metrics(api)
    assert m["outpost_link_up"] == 1, "a pause is not the link going down"
    assert paused_by(m) == {"operator"}

    # A restart keeps the pause and its time.
    p.uplink.stop()
    p.uplink.start()
    wait_for(lambda: api.get("/api/status").status == 200, 10, what="the restarted uplink")
    s2 = api.ok("GET", "/api/status")
    assert s2["link"]["headline"] == h
    assert s2["link"]["since"] == s["link"]["since"]

    # Resume undoes the pause.
    assert api.ok("POST", "/api/resume") == {"paused": False}
    s = api.ok("GET", "/api/status")
    assert s["link"]["headline"]["state"] in ("idle", "starting"), s["link"]["headline"]
    assert paused_by(metrics(api)) == set()


def test_held_by_schedule_until_and_which_wins(pipelines, tmp_path):  # noqa: F811
    p, api = start(pipelines)
    # A window of 0 from this hour to two hours on (across midnight when
    # it must; every day, so the weekday does not matter).
    now = time.gmtime()
    end = (now.tm_hour + 2) % 24
    window = f"Mon-Sun {now.tm_hour:02d}:00-{end:02d}:00"
    r = api.request("PUT", "/api/shaping", {"schedule": f"{window} 0"})
    assert r.status == 200, r.body
    s = api.ok("GET", "/api/status")
    h = s["link"]["headline"]
    until = datetime.datetime.fromisoformat(h["until"].replace("Z", "+00:00"))
    assert until.strftime("%H:%M") == f"{end:02d}:00"
    day = "" if until.date() == datetime.datetime.utcfromtimestamp(time.time()).date() \
        else until.strftime("%Y-%m-%d ")
    assert h["state"] == "held" and h["paused_by"] == "schedule", h
    assert h["text"] == f"held by schedule until {day}{end:02d}:00 UTC; nothing queued", h
    assert paused_by(metrics(api)) == {"schedule"}

    # The operator's rate 0 while a window sends: the window wins, and the
    # line says so.
    r = api.request("PUT", "/api/shaping", {"rate": "0", "schedule": f"{window} 2Mbit"})
    assert r.status == 200, r.body
    s = api.ok("GET", "/api/status")
    h = s["link"]["headline"]
    assert s["rate"]["current"] == 2000000
    assert h["state"] in ("idle", "starting"), h
    assert h["text"].endswith(f"at 2Mbit: the schedule's window overrides the rate 0 set in "
                              f"the console until {day}{end:02d}:00 UTC"), h
    assert paused_by(metrics(api)) == set()
    # Outside the window the operator's 0 holds: a window that ended.
    later = (now.tm_hour + 3) % 24
    r = api.request("PUT", "/api/shaping",
                    {"rate": "0", "schedule": f"Mon-Sun {end:02d}:00-{later:02d}:00 2Mbit"})
    assert r.status == 200, r.body
    h = api.ok("GET", "/api/status")["link"]["headline"]
    assert h["state"] == "held" and h["paused_by"] == "operator", h
    assert h["text"].startswith(f"held: rate 0 set in the console until {day}{end:02d}:00 UTC "
                                "(the schedule's next window overrides the rate then)"), h
    assert paused_by(metrics(api)) == {"operator"}


def test_backlog_alarm(pipelines, tmp_path):  # noqa: F811
    p, api = start(pipelines, console={"backlog_alarm": "2m"})
    p.send(dicomgen.make_ct_study(str(tmp_path / "sent"), 1, rows=64, cols=64))
    p.wait_drained()
    assert api.ok("POST", "/api/pause") == {"paused": True}
    p.send(dicomgen.make_ct_study(str(tmp_path / "held"), 3, rows=64, cols=64))
    alarms = lambda: {a["id"]: a for a in api.ok("GET", "/api/status")["alarms"]}  # noqa: E731
    # Younger than backlog_alarm: no alarm.
    assert "backlog" not in alarms()
    # Older (the spool's clock moved back by an hour, as if it waited).
    with p.receiver.db() as con:
        con.execute("UPDATE instances SET received_at = received_at - 3600000 "
                    "WHERE state = 'queued'")
    a = alarms()["backlog"]
    assert a["severity"] == "warning"
    assert re.fullmatch(r"backlog: the oldest queued instance is 60 min old \(alarm after "
                        r"2 min\); last upload \d+ s ago; nothing is being sent",
                        a["message"]), a["message"]
    q = api.ok("GET", "/api/status")["queue"]
    assert q["clears_in"] is None and q["oldest_queued_age"] >= 3600
    # Resumed, it drains, and the alarm goes with the backlog.
    assert api.ok("POST", "/api/resume") == {"paused": False}
    p.wait_drained()
    assert "backlog" not in alarms()
    assert api.ok("GET", "/api/status")["queue"]["clears_in"] == 0


def test_last_errors_name_the_study_and_instance(pipelines, tmp_path):  # noqa: F811
    p, api = start(pipelines)
    refused = dicomgen.make_ct_study(str(tmp_path / "refused"), 1, rows=64, cols=64,
                                     patient_id="REFUSE-ME")
    p.send(refused)
    wait_for(lambda: p.receiver.states().get("quarantined") == 1, 120,
             what="the refused instance quarantined")
    ds = pydicom.dcmread(refused[0], stop_before_pixels=True)
    errors = [e for e in api.ok("GET", "/api/status")["last_errors"]
              if e["event"] == "uplink.quarantine"]
    assert errors, api.ok("GET", "/api/status")["last_errors"]
    assert {(e["study_uid"], e["sop_uid"]) for e in errors} == \
        {(str(ds.StudyInstanceUID), str(ds.SOPInstanceUID))}
    # A retry refused again counts the instance once.
    assert api.ok("GET", "/api/status")["counters"]["quarantined"] == 1
    assert api.ok("POST", "/api/retry", {"all": True}) == {"requeued": 1}
    wait_for(lambda: p.receiver.states().get("quarantined") == 1, 120,
             what="the instance quarantined again")
    assert api.ok("GET", "/api/status")["counters"]["quarantined"] == 1
    assert metrics(api)["outpost_quarantined_total"] == 1
