"""The web console (services/console/web/) in a real browser: Debian's
Chromium, headless, driven by playwright-core (tests/browser/console_check.mjs,
run by Node in a subprocess), against the real outpost-uplink serving the
page and the status API (docs/API.md) on its [console] listener.

- the page logs in through its form and shows what GET /api/status says
  for the same state (held still: the uplink paused through the API, so
  nothing moves while the browser reads), and the studies of GET /api/queue;
- the pause button pauses and resumes the uplink (checked through the API,
  and in the audit log);
- a wrong password shows an error and no status; with no password set,
  the page shows the server's 403 error;
- the firmware form uploads a bundle (PUT /api/firmware) and says what the
  server answered; the firmware section shows the health gate's records;
- a screenshot of a realistic state (some sent, some quarantined by the
  cloud, some queued) goes to the test's directory, or to docs/console.png
  (the README's picture) with OUTPOST_UPDATE_SCREENSHOT=1.

Nothing is skipped: without playwright-core in tests/browser/node_modules
(installed by `make deps`) the tests fail and say so.
"""
import datetime
import hashlib
import json
import os
import shutil
import struct
import subprocess
import time
import zoneinfo

import pytest

import console
import dicomgen
from outpost import Storescp, ROOT, storescu, wait_for
from test_storage_commitment import ask_and_leave

BROWSER_DIR = os.path.join(ROOT, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "console_check.mjs")
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
SCREENSHOT = os.path.join(ROOT, "docs", "console.png")
# One run of the script: Chromium's start, the login, a few API round trips.
RUN_TIMEOUT = 45


def _browser_missing():
    """Why the browser tests cannot run here, or None."""
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return "playwright-core is not installed in tests/browser/node_modules"
    if not shutil.which("node"):
        return "node is not installed"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is not installed"
    return None


def require_browser():
    """Fails (never skips) the calling test when the browser is missing:
    called first in each test, so that it is a failure, not a set-up error."""
    missing = _browser_missing()
    if missing:
        pytest.fail(f"{missing}: run `make deps` (it installs chromium, nodejs and "
                    f"tests/browser's locked playwright-core)", pytrace=False)


def run_console(rx, out_dir, name, action="read", password=PASSWORD, screenshot=None,
                viewport="1280x900", file=None, search=None):
    """Runs console_check.mjs against rx's uplink; returns its JSON result.
    The password travels in the environment, not on the command line."""
    out = os.path.join(str(out_dir), f"{name}.json")
    cmd = [shutil.which("node"), SCRIPT, "--url", f"http://{rx.config['console']['listen']}",
           "--out", out, "--action", action, "--viewport", viewport,
           "--timeout", str((RUN_TIMEOUT - 10) * 1000)]
    if screenshot:
        cmd += ["--screenshot", screenshot]
    if file:
        cmd += ["--file", file]
    if search is not None:
        cmd += ["--search", search]
    env = dict(os.environ)
    env.pop("OUTPOST_CONSOLE_PASSWORD", None)
    if password is not None:
        env["OUTPOST_CONSOLE_PASSWORD"] = password
    proc = subprocess.Popen(cmd, cwd=BROWSER_DIR, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM first: playwright closes its Chromium on it; SIGKILL would
        # leave the browser (its own process group) behind.
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        raise AssertionError(f"console_check.mjs ran over {RUN_TIMEOUT}s:\n{stderr[-3000:]}")
    assert proc.returncode == 0, \
        f"console_check.mjs exited {proc.returncode}:\n{stderr[-3000:]}{stdout[-1000:]}"
    with open(out) as f:
        result = json.load(f)
    # The page loads nothing from elsewhere and throws nothing.
    assert result["external_requests"] == [], result["external_requests"]
    assert result["page_errors"] == [], result["page_errors"]
    return result


# The box's time zone in these tests: not the browser's (UTC here), so a
# page that showed the browser's own zone would be caught.
BOX_TZ = "Europe/Berlin"


def start_console(pipelines, password=PASSWORD, **kw):  # noqa: F811
    """A pipeline (cloud, receiver, uplink) whose uplink serves the console
    with `password` set; returns it and an API client."""
    p = pipelines(start_uplink=False, **kw)
    return p, _start_uplink(p.receiver, p.uplink, password)


def start_unprovisioned(receivers, password=PASSWORD):
    """A receiver and its uplink without a cloud (the quick set-up for what
    needs no upload), the uplink serving the console with `password` set
    (None: no password); returns the receiver and an API client."""
    rx = receivers().start()
    return rx, _start_uplink(rx, rx.uplink(), password)


def _start_uplink(rx, uplink, password):
    if password is not None:
        console.set_password(rx, password)
    uplink.env = dict(uplink.env or {}, TZ=BOX_TZ)
    uplink.start()
    api = console.Api(rx, password=password)
    wait_for(lambda: _healthz(api), 10, what="the console listener")
    return api


def _healthz(api):
    try:
        return api.get("/healthz", auth=False).status in (200, 503)
    except OSError:
        return False


def dicomgen_study_uid(path):
    import pydicom
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def dicomgen_sop_uid(path):
    import pydicom
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def text(result, testid):
    return result["values"][testid]["text"]


def value(result, testid):
    return result["values"][testid]["value"]


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# The study table's columns (index.html).
COL_PATIENT, COL_DATE, COL_MODALITIES, COL_FROM, COL_UID, COL_STATES, COL_RECEIVED = \
    0, 3, 5, 6, 7, 9, 13


def short_uid(uid):
    """The study UID as the table shows it."""
    return f"{uid[:8]}…{uid[-8:]}" if len(uid) > 20 else uid


def test_console_shows_what_the_status_api_says(pipelines, tmp_path):  # noqa: F811
    require_browser()
    p, api = start_console(pipelines)

    # A realistic state: a study sent, one refused by the cloud
    # (quarantined), then the uplink paused and a third study queued.
    sent = dicomgen.make_ct_study(str(tmp_path / "sent"), 6, seed=11, rows=128, cols=128,
                                  patient_id="CONSOLE01")
    refused = dicomgen.make_ct_study(str(tmp_path / "refused"), 2, seed=12, rows=128,
                                     cols=128, patient_id="REFUSE-ME")
    queued = dicomgen.make_ct_study(str(tmp_path / "queued"), 9, seed=13, rows=256, cols=256,
                                    patient_id="CONSOLE02")
    p.send(sent)
    p.send(refused)
    p.wait_drained()
    assert p.receiver.states() == {"sent": len(sent), "quarantined": len(refused)}
    link_up_since = api.ok("GET", "/api/status")["link"]["since"]
    time.sleep(1.1)  # the pause's second is not the link's
    paused_at = int(time.time())
    assert api.ok("POST", "/api/pause") == {"paused": True}
    p.send(queued)

    def settled():
        s = api.ok("GET", "/api/status")
        q = s["queue"]
        return s if (s["link"]["paused_by_operator"] and s["link"]["state"] == "paused"
                     and q["queued"]["instances"] == len(queued)
                     and q["sent"]["instances"] == len(sent)
                     and q["quarantined"]["instances"] == len(refused)) else None
    before = wait_for(settled, 15, interval=0.2, what="the status API to show the state")
    # A storage commitment request whose report has nowhere to go (no
    # [peer] has its AE title): pending, as the operator should see.
    ask_and_leave(p.receiver.port, [dicomgen_sop_uid(sent[0])], calling="NOPEER")
    wait_for(lambda: api.ok("GET", "/api/status")["commitments"]["pending"] == 1, 10,
             what="the commitment to show as pending")

    update = os.environ.get("OUTPOST_UPDATE_SCREENSHOT") == "1"
    shot = SCREENSHOT if update else str(tmp_path / "console.png")
    page = run_console(p.receiver, tmp_path, "status", screenshot=shot)
    after = api.ok("GET", "/api/status")
    queue = api.ok("GET", "/api/queue?per_page=50")

    assert page["logged_in"] and page["status_visible"], page
    assert page["login_error"] is None and page["banner"] is None, page
    # The state held still while the browser read it.
    for key in ("queued", "sending", "sent", "quarantined"):
        assert before["queue"][key] == after["queue"][key], key
    assert before["link"]["state"] == after["link"]["state"]

    s = after
    assert text(page, "version") == s["version"]
    assert text(page, "link-state") == s["link"]["state"] == "paused"
    # The headline leads: the operator's pause since the pause (not since
    # the link came up), in the box's zone, with Resume beside it.
    since = datetime.datetime.fromisoformat(s["link"]["since"].replace("Z", "+00:00"))
    assert since.timestamp() >= paused_at, (s["link"]["since"], paused_at, link_up_since)
    local = since.astimezone(zoneinfo.ZoneInfo(BOX_TZ))
    assert text(page, "link-headline") == s["link"]["headline"]["text"] == \
        f"paused by the operator since {local:%H:%M} {local.tzname()}"
    assert page["headline_state"] == "paused"
    # Every time shown carries the box's zone; the header names it.
    zone = local.tzname()
    assert text(page, "timezone").startswith(f"{zone}, UTC+0"), text(page, "timezone")
    assert BOX_TZ in text(page, "timezone")
    assert text(page, "link-since") == f"{local:%Y-%m-%d %H:%M:%S} {zone}"
    assert text(page, "updated").endswith(f" {zone}")
    for row in page["studies"]:
        assert row["cells"][COL_RECEIVED].endswith(f" {zone}"), row
    # The last errors name the study and the instance refused.
    refused_study = dicomgen_study_uid(refused[0])
    assert [e for e in page["errors"] if e["study"] == refused_study and e["sop"]], page["errors"]
    assert {e["sop"] for e in page["errors"] if e["study"] == refused_study} <= \
        {dicomgen_sop_uid(f) for f in refused}
    # Totals, not "since start": they outlive restarts.
    assert text(page, "counters-heading") == "Total (kept across restarts)"
    # The queue card's waiting studies are the table's queued or sending ones.
    waiting = [r for r in page["studies"]
               if "queued" in r["cells"][COL_STATES] or "sending" in r["cells"][COL_STATES]]
    assert value(page, "studies-queued") == str(len(waiting)) == "1"
    assert text(page, "queue-page") == "page 1 of 1 (3 studies)"
    assert text(page, "last-upload").endswith(" ago"), text(page, "last-upload")
    assert text(page, "clears-in") == "not at the current rate: nothing is being sent"
    assert not page["retry_all_disabled"]  # something is quarantined
    for key in ("queued", "sending", "sent", "quarantined"):
        assert text(page, f"queue-{key}-instances") == str(s["queue"][key]["instances"]), key
        assert value(page, f"queue-{key}-instances") == str(s["queue"][key]["instances"]), key
        assert value(page, f"queue-{key}-bytes") == str(s["queue"][key]["bytes"]), key
    assert s["queue"]["queued"]["bytes"] > len(queued) * 256 * 256 * 2
    assert value(page, "studies-queued") == str(s["queue"]["studies_queued"])
    # Ages and free space move on their own: close, not equal.
    assert abs(int(value(page, "oldest-queued")) - s["queue"]["oldest_queued_age"]) <= 5
    assert abs(int(value(page, "disk-free")) - s["disk"]["free"]) <= max(s["disk"]["free"] // 20,
                                                                          1 << 20)
    assert value(page, "disk-spool") == str(s["disk"]["spool_bytes"])
    for key in ("current", "configured"):
        want = s["rate"][key]
        assert value(page, f"rate-{key}") == ("" if want is None else str(want)), key
    assert value(page, "counter-uploaded") == str(s["counters"]["uploaded_instances"])
    assert value(page, "commitments-pending") == "1" == str(s["commitments"]["pending"])
    assert text(page, "commitments-pending").startswith("1, the oldest "), \
        text(page, "commitments-pending")
    assert page["pause_button"] == "Resume uploads"

    # The alarms shown are the status's (a quarantine at least).
    assert [a["id"] for a in page["alarms"]] == [a["id"] for a in s["alarms"]]
    assert "quarantine" in [a["id"] for a in page["alarms"]], s["alarms"]
    # The study table: /api/queue's studies in its order, patient IDs
    # shown, a Retry button only where something is quarantined.
    assert [r["study_uid"] for r in page["studies"]] == \
        [st["study_uid"] for st in queue["studies"]]
    assert len(page["studies"]) == 3
    for row, st in zip(page["studies"], queue["studies"]):
        assert st["patient_id"] in row["cells"]
        assert row["cells"][COL_PATIENT] == "Test, Synthetic"  # DICOM's "Test^Synthetic"
        assert row["cells"][COL_DATE] == "2026-11-28"
        assert row["cells"][COL_MODALITIES] == "CT"
        assert row["cells"][COL_FROM] == "STORESCU"
        assert row["retry_button"] == bool(st["states"].get("quarantined"))

    assert png_size(shot)[0] == 1280


def test_pause_and_resume_from_the_button(pipelines, tmp_path):  # noqa: F811
    require_browser()
    p, api = start_console(pipelines)
    assert api.ok("GET", "/api/status")["link"]["paused_by_operator"] is False

    page = run_console(p.receiver, tmp_path, "pause", action="pause-click")
    assert page["pause"] == [{"before": "Pause uploads", "after": "Resume uploads"}]
    s = api.ok("GET", "/api/status")
    assert s["link"]["paused_by_operator"] is True
    assert s["link"]["state"] == "paused"
    assert text(page, "link-state") == "paused"
    assert page["headline_state"] == "paused"
    assert text(page, "link-headline").startswith("paused by the operator since ")

    # One Resume button undoes the pause; the headline says what moves.
    page = run_console(p.receiver, tmp_path, "resume", action="pause-click")
    assert page["pause"] == [{"before": "Resume uploads", "after": "Pause uploads"}]
    assert api.ok("GET", "/api/status")["link"]["paused_by_operator"] is False
    assert page["headline_state"] in ("idle", "starting", "sending"), page["headline_state"]
    assert not text(page, "link-headline").startswith("paused")

    # Both clicks are in the audit log, newest first, from the browser.
    audit = api.ok("GET", "/api/audit?limit=20")
    actions = [e["action"] for e in audit]
    assert "pause" in actions and "resume" in actions, audit
    assert actions.index("resume") < actions.index("pause"), audit
    for e in audit:
        if e["action"] in ("pause", "resume"):
            assert e["from"].startswith("127.0.0.1"), e


def test_each_destination_has_its_headline_and_its_pause(pipelines, tmp_path):  # noqa: F811
    """With a DICOM destination beside the cloud: one line each, and that
    destination's own Pause and Resume hold and release it alone."""
    require_browser()
    ai = Storescp(str(tmp_path / "ai"))
    try:
        p, api = start_console(pipelines, **{
            "destination ai": {"type": "dicom", "host": "127.0.0.1", "port": ai.port,
                               "called_ae": "STORESCP"}})
        page = run_console(p.receiver, tmp_path, "dest-pause", action="dest-pause:ai")
        assert page["pause"] == [{"before": "Pause ai", "after": "Resume ai"}]
        dests = {d["name"]: d for d in api.ok("GET", "/api/status")["destinations"]}
        assert dests["ai"]["link"]["paused_by_operator"] is True
        assert dests["cloud"]["link"]["paused_by_operator"] is False
        assert text(page, "dest-headline-ai").startswith("paused by the operator since ")
        assert not text(page, "dest-headline-cloud").startswith("paused")
        page = run_console(p.receiver, tmp_path, "dest-resume", action="dest-pause:ai")
        assert page["pause"] == [{"before": "Resume ai", "after": "Pause ai"}]
        assert not text(page, "dest-headline-ai").startswith("paused")
        assert {d["name"]: d for d in api.ok("GET", "/api/status")["destinations"]}[
            "ai"]["link"]["paused_by_operator"] is False
    finally:
        ai.stop()


def test_wrong_password_shows_an_error_and_no_status(receivers, tmp_path):
    require_browser()
    rx, api = start_unprovisioned(receivers)
    page = run_console(rx, tmp_path, "wrong", password="not the password")
    assert not page["logged_in"]
    assert not page["status_visible"]
    assert page["login_error"], page
    # Nothing of the status reached the page.
    assert text(page, "link-state") == ""
    assert text(page, "queue-queued-instances") == ""
    # The failure is audited (docs/API.md: login success and failure).
    audit = api.ok("GET", "/api/audit?limit=20")
    assert [e for e in audit if e["action"] == "login" and "fail" in e["detail"]], audit


def test_no_password_set_shows_the_servers_error(receivers, tmp_path):
    require_browser()
    rx, api = start_unprovisioned(receivers, password=None)
    r = api.get("/api/status", headers={"X-Requested-With": "outpost-console"})
    assert r.status == 403
    page = run_console(rx, tmp_path, "nopassword", password=None)
    assert not page["status_visible"]
    assert page["banner"] == r.json()["error"]


# A phone's page with many studies: a few screens at most (issue 16: 50
# studies made it 18 000 px tall).
PHONE_HEIGHT_MAX = 9000
# The UID on a phone: its shortened form whole (issue 16: it was cut to 10).
PHONE_UID_CHARS_MIN = 17


def test_the_console_fits_a_phone(receivers, tmp_path):
    require_browser()
    rx, api = start_unprovisioned(receivers)
    files = []
    for i in range(60):
        files += dicomgen.make_ct_study(str(tmp_path / f"phone{i}"), 1, rows=8, cols=8, seed=i)
    assert storescu(rx.port, files).returncode == 0
    page = run_console(rx, tmp_path, "phone", viewport="390x844",
                       screenshot=str(tmp_path / "phone.png"))
    assert page["logged_in"], page
    layout = page["layout"]
    assert layout["window_width"] == 390
    assert layout["scroll_width"] <= 390, layout
    assert text(page, "queue-queued-instances") == "60"
    # A reasonable height: a page of studies, not all 60.
    assert layout["scroll_height"] <= PHONE_HEIGHT_MAX, layout["scroll_height"]
    assert text(page, "queue-page") == "page 1 of 6 (60 studies)"
    assert len(page["studies"]) == 10
    # Each UID is shown shortened (issue 18), not cut further; its copy
    # button holds the whole.
    shorts = {short_uid(r["study_uid"]) for r in page["studies"]}
    assert len(layout["uid_cells"]) == 10
    for cell in layout["uid_cells"]:
        assert cell["text"] in shorts, cell
        assert not cell["clipped"], cell
        assert cell["chars"] >= PHONE_UID_CHARS_MIN, cell
    # Nothing quarantined: nothing to retry.
    assert page["retry_all_disabled"]


def test_the_study_list_searches_copies_and_the_alarm_leads_to_quarantine(
        pipelines, tmp_path):  # noqa: F811
    """Issue 18: the search box filters the list (by name here), each
    row's copy button copies the whole study UID, and the quarantine alarm
    links to the list filtered to quarantined studies."""
    require_browser()
    p, api = start_console(pipelines)
    named = dicomgen.make_ct_study(str(tmp_path / "named"), 1, rows=8, cols=8, seed=21,
                                   patient_id="NAMED-1", patient_name="Zyxwick^Quentin",
                                   accession="ACC-21", description="CT HEAD")
    other = dicomgen.make_ct_study(str(tmp_path / "other"), 1, rows=8, cols=8, seed=22,
                                   patient_id="OTHER-2")
    refused = dicomgen.make_ct_study(str(tmp_path / "refused"), 1, rows=8, cols=8, seed=23,
                                     patient_id="REFUSE-ME")
    for files in (named, other, refused):
        p.send(files)
    p.wait_drained()
    assert p.receiver.states() == {"sent": 2, "quarantined": 1}
    named_uid, refused_uid = dicomgen_study_uid(named[0]), dicomgen_study_uid(refused[0])

    page = run_console(p.receiver, tmp_path, "studies", action="studies", search="zyxwick")
    assert page["logged_in"], page
    searched = page["searched"]
    assert [s["study_uid"] for s in searched["studies"]] == [named_uid], searched
    row = searched["studies"][0]
    assert row["patient"] == "Zyxwick, Quentin" and row["accession"] == "ACC-21"
    assert row["modalities"] == "CT" and row["calling_aet"] == "STORESCU"
    assert row["uid_shown"] == short_uid(named_uid) != named_uid
    assert row["copy_uid"] == named_uid
    assert page["copy"] == {"uid": named_uid, "copied": "true", "clipboard": named_uid}, \
        page["copy"]
    link = page["alarm_link"]
    assert link["state_filter"] == "quarantined" and link["search_box"] == "", link
    assert [s["study_uid"] for s in link["studies"]] == [refused_uid], link
    assert link["in_view"], link
    # The search went to the server, bounded and encoded, not filtered here.
    assert any("/api/queue?" in r and "search=zyxwick" in r for r in page["requests"]), \
        page["requests"]


def test_one_study_is_one_study(receivers, tmp_path):
    """Singular and plural: \"1 study\", not \"1 studies\"."""
    require_browser()
    rx, api = start_unprovisioned(receivers)
    files = dicomgen.make_ct_study(str(tmp_path / "one"), 1, rows=8, cols=8)
    assert storescu(rx.port, files).returncode == 0
    page = run_console(rx, tmp_path, "one")
    assert text(page, "queue-page") == "page 1 of 1 (1 study)"
    assert "1 studies" not in json.dumps(page["values"])


def test_the_shaping_form_shows_only_the_latest_outcome(receivers, tmp_path):
    require_browser()
    rx, api = start_unprovisioned(receivers)
    page = run_console(rx, tmp_path, "shaping", action="shaping")
    first, empty, again = page["shaping"]
    assert first["error"] is None and first["ok"].startswith("Applied: now 2 Mbit/s"), first
    # The page's own refusal hides the earlier success.
    assert empty == {"ok": None, "error": "Enter a rate, a schedule or both."}, empty
    # And a success hides that error.
    assert again["error"] is None and again["ok"].startswith("Applied: now 3 Mbit/s"), again
    assert api.ok("GET", "/api/status")["rate"]["configured"] == 3000000


def test_the_firmware_form_uploads_a_bundle_and_shows_the_records(receivers, tmp_path):
    require_browser()
    rx, api = start_unprovisioned(receivers)
    records = os.path.join(os.path.dirname(rx.ini), "firmware")
    os.makedirs(records)
    with open(os.path.join(records, "booted"), "w") as f:
        f.write("slot=b\nversion=0.2.0\ntime=2026-11-28T10:00:00Z\n")
    with open(os.path.join(records, "last-update"), "w") as f:
        f.write("result=installing\nversion=0.3.0\nfrom=console\n"
                "progress=40% Copying image to rootfs.0\n")
    with open(os.path.join(records, "encryption"), "w") as f:  # (outpost-grow-data's)
        f.write("encrypted=no\ntpm=no\nreceiving=no\nreason=no TPM 2.0 on this box\n")
    bundle = tmp_path / "outpost-0.3.0.raucb"
    data = os.urandom(3 << 20)
    bundle.write_bytes(data)

    page = run_console(rx, tmp_path, "firmware", action="firmware", file=str(bundle))
    assert page["firmware"]["ok"], page["firmware"]
    assert hashlib.sha256(data).hexdigest() in page["firmware"]["text"]
    with open(os.path.join(os.path.dirname(rx.ini), "upload", "update.raucb"), "rb") as f:
        assert f.read() == data
    assert text(page, "firmware-version") == "0.2.0" and text(page, "firmware-slot") == "b"
    assert text(page, "firmware-last").startswith(
        "installing 0.3.0: 40% Copying image to rootfs.0")
    assert text(page, "firmware-encryption") == (
        "NOT encrypted: no TPM 2.0 on this box; not receiving until the site file allows it "
        "([security] allow_unencrypted)")
    # The server's refusal is what the page says.
    page = run_console(rx, tmp_path, "again", action="firmware", file=str(bundle))
    assert not page["firmware"]["ok"]
    assert "an update is being installed" in page["firmware"]["text"]
