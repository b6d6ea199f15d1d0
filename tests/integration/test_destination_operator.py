"""What the operator sees of, and does to, each destination: /api/status'
destinations, /metrics' destination="NAME" series, and outpostctl's
--destination on status, queue, retry, pause, resume and test-link. A
pause of one destination holds only that one, survives a restart of the
uplink, and Resume undoes it.
"""
import json

from prometheus_client.parser import text_string_to_metric_families

import dicomgen
from console import Api
from integration_fixtures import DRAIN_TIMEOUT
from outpost import Storescp, storescu, wait_for
from test_outpostctl import ctl, ok


def metrics(rx):
    """The /metrics samples, read on the Unix socket (no login there),
    checked by Prometheus' own parser."""
    samples = {}
    for family in text_string_to_metric_families(Api(rx, unix=True).get("/metrics").text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return samples


def status(rx, dest=None):
    args = ["status", "--json"] + (["--destination", dest] if dest else [])
    return json.loads(ok(ctl(rx, *args)))


def sent_to(rx, dest):
    with rx.db() as con:
        row = con.execute("SELECT value FROM counters WHERE name = ?",
                          (f"{dest}:uploaded_instances",)).fetchone()
    return row[0] if row else 0


def test_one_destination_paused_the_others_go_on(tmp_path, pipelines):
    ai = Storescp(str(tmp_path / "ai"))
    try:
        p = pipelines(**{
            "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": ai.port,
                               "called_ae": "STORESCP", "retry_max_delay": 2},
            "route all": {"when": "Modality=*", "to": "cloud, ai"}})
        rx, up = p.receiver, p.uplink
        st = status(rx)
        assert [(d["name"], d["type"]) for d in st["destinations"]] == \
            [("cloud", "stow-rs"), ("ai", "dicom")]

        out = ok(ctl(rx, "pause", "--destination", "ai"))
        assert "to ai paused" in out
        files = dicomgen.make_ct_study(str(tmp_path / "s"), 3, rows=32, cols=32)
        assert storescu(rx.port, files).returncode == 0
        wait_for(lambda: sent_to(rx, "cloud") == 3, DRAIN_TIMEOUT, what="the cloud to drain")
        assert sent_to(rx, "ai") == 0
        ai_st = status(rx, "ai")
        assert ai_st["link"]["headline"]["state"] == "paused"
        assert ai_st["link"]["headline"]["text"].startswith("paused by the operator since")
        assert ai_st["queue"]["queued"]["instances"] == 3
        assert status(rx, "cloud")["link"]["headline"]["state"] != "paused"
        m = metrics(rx)
        assert m['outpost_destination_paused{destination="ai"}'] == 1
        assert m['outpost_destination_paused{destination="cloud"}'] == 0
        assert m['outpost_destination_uploaded_instances_total{destination="cloud"}'] == 3
        assert m['outpost_destination_queue_instances{destination="ai",state="queued"}'] == 3
        human = ok(ctl(rx, "status"))
        assert "Destinations" in human and "ai" in human and "paused by the operator" in human
        q = json.loads(ok(ctl(rx, "queue", "ls", "--destination", "ai", "--json")))
        assert q["destination"] == "ai" and q["studies"][0]["states"]["queued"] == 3

        # The pause is kept: a restarted uplink still holds the AI's copies.
        up.stop()
        up.start()
        assert status(rx, "ai")["link"]["paused_by_operator"] is True
        assert sent_to(rx, "ai") == 0

        out = ok(ctl(rx, "resume", "--destination", "ai"))
        assert "to ai resumed" in out
        wait_for(lambda: sent_to(rx, "ai") == 3, DRAIN_TIMEOUT, what="the AI to drain")
        assert len(ai.take()) == 3
    finally:
        ai.stop()


def test_destination_arguments(tmp_path, pipelines):
    ai = Storescp(str(tmp_path / "ai"))
    try:
        p = pipelines(**{
            "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": ai.port,
                               "called_ae": "STORESCP"}})
        rx = p.receiver
        # Unknown destination: exit 1, the API's 404.
        r = ctl(rx, "pause", "--destination", "nope")
        assert r.returncode == 1 and "no destination nope" in r.stderr
        r = ctl(rx, "status", "--destination", "nope")
        assert r.returncode == 1
        r = ctl(rx, "retry", "--all", "--destination", "nope")
        assert r.returncode == 1
        # A test of one destination (C-ECHO for a dicom one), and of all.
        one = json.loads(ok(ctl(rx, "test-link", "--json", "--destination", "ai")))
        assert one["ok"] and one["destination"] == "ai" and one["steps"][0]["step"] == "echo"
        every = json.loads(ok(ctl(rx, "test-link", "--json")))
        assert every["ok"] and [d["destination"] for d in every["destinations"]] == \
            ["cloud", "ai"]
        text = ok(ctl(rx, "test-link"))
        assert "ai:" in text and "cloud:" in text and "link test: ok" in text
        # A dead peer fails its test, and the whole.
        ai.stop()
        r = ctl(rx, "test-link", "--destination", "ai")
        assert r.returncode == 1 and "FAILED" in r.stdout
    finally:
        ai.stop()


def test_a_removed_destinations_deliveries_are_quarantined(tmp_path, receivers):
    """A destination taken out of the file: what it still had to receive is
    quarantined at the uplink's next start, with a reason that says so,
    rather than holding its objects forever unseen; the operator can then
    discard it (or retry once it is back)."""
    rx = receivers(**{
        "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": 9,
                           "called_ae": "AI", "enabled": "no"},
        "route all": {"when": "Modality=*", "to": "ai"}}).start()
    files = dicomgen.make_ct_study(str(tmp_path / "s"), 2, rows=32, cols=32)
    assert storescu(rx.port, files).returncode == 0
    assert rx.states() == {"queued": 2}
    rx.stop()
    del rx.config["destination ai"]
    del rx.config["route all"]
    rx.reconfigure()
    rx.start()
    up = rx.uplink().start()
    assert "event=spool.orphans destination=ai deliveries=2" in up.log()
    assert rx.states() == {"quarantined": 2}
    with rx.db() as con:
        reasons = {r[0] for r in con.execute("SELECT last_error FROM deliveries")}
    assert reasons == {"destination ai is no longer configured (retry once it is back)"}
    study = json.loads(ok(ctl(rx, "queue", "ls", "--state", "quarantined", "--json")))
    uid = study["studies"][0]["study_uid"]
    ok(ctl(rx, "discard", uid, "--yes"))
    assert rx.rows() == []
