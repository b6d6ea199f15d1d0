"""outpostctl, the field engineer's tool (docs/outpostctl.md), against the
real outpost-uplink on its Unix socket, and against one that is not
running.

The uplinks here are unprovisioned (no [cloud] url): they serve the API
but send nothing, so what is stored stays queued and test-link fails at
its first step. What outpostctl shows is checked against the API itself
(tests/lib/console.py on the same socket), and the password it writes
against a login over TCP.
"""
import json
import os
import re
import subprocess

import pydicom
import pytest

import dicomgen
from console import Api
from outpost import BUILD, storescu, wait_for

CTL = os.path.join(BUILD, "outpostctl")
PASSWORD = "correct horse battery"


def ctl(rx, *args, stdin=None, config=True, timeout=90):
    """Runs outpostctl on rx's configuration file; returns CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CONFIG"}
    cmd = [CTL] + (["--config", rx.ini] if config else []) + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=None if stdin is not None else subprocess.DEVNULL)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


@pytest.fixture
def running(receivers):
    """A receiver and its (unprovisioned) uplink, both running."""
    rx = receivers().start()
    rx.up = rx.uplink().start()
    return rx


def store_study(rx, tmp_path, n=3, name="study"):
    files = dicomgen.make_ct_study(str(tmp_path / name), n, rows=64, cols=64)
    r = storescu(rx.port, files)
    assert r.returncode == 0, r.stderr
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def audit_entries(rx):
    got = Api(rx, unix=True).ok("GET", "/api/audit?limit=100")
    return got if isinstance(got, list) else got.get("entries", got.get("audit", []))


# --- against a running service ------------------------------------------------------


def test_status_table_and_json(running):
    rx = running
    out = ok(ctl(rx, "status"))
    api = Api(rx, unix=True).ok("GET", "/api/status")
    assert f"Link        {api['link']['state']}" in out
    assert api["link"]["state"] == "unprovisioned"
    for label in ("Rate", "Schedule", "Queue", "queued", "quarantined", "Disk", "Alarms",
                  "Last errors"):
        assert label in out, label
    assert f"outpost-uplink {api['version']}" in out
    assert "Encryption" not in out  # (off the appliance: no record)

    # On an appliance without a TPM (outpost-grow-data's record).
    records = os.path.join(os.path.dirname(rx.ini), "firmware")
    os.makedirs(records)
    with open(os.path.join(records, "encryption"), "w") as f:
        f.write("encrypted=no\ntpm=no\nreceiving=no\nreason=no TPM 2.0 on this box\n")
    out = ok(ctl(rx, "status"))
    assert "Encryption  NOT encrypted: no TPM 2.0 on this box\n" \
           "            not receiving until the site file allows it" in out, out

    mine = json.loads(ok(ctl(rx, "status", "--json")))
    api = Api(rx, unix=True).ok("GET", "/api/status")
    # The same document, but for what moves with the clock.
    for moving in ("uptime", "time", "throughput"):
        mine.pop(moving, None)
        api.pop(moving, None)
    for doc in (mine, api):
        doc["disk"].pop("free", None)  # other tests write to the same disk
    assert mine == api
    # Options before the command work as well.
    assert json.loads(ok(ctl(rx, "--json", "status")))["version"] == api["version"]


def test_queue_ls(running, tmp_path):
    rx = running
    study = store_study(rx, tmp_path, 3)
    wait_for(lambda: Api(rx, unix=True).ok("GET", "/api/queue")["total"] >= 1, 10,
             what="the study in the queue")

    out = ok(ctl(rx, "queue", "ls"))
    assert study in out
    assert "queued 3" in out
    assert "TEST0001" in out
    assert "page 1 of 1 (1 study)" in out

    mine = json.loads(ok(ctl(rx, "queue", "ls", "--json")))
    assert mine["total"] == 1
    assert mine["studies"][0]["study_uid"] == study
    assert mine["studies"][0]["instances"] == 3

    assert "no studies" in ok(ctl(rx, "queue", "ls", "--state", "sent"))
    assert study in ok(ctl(rx, "queue", "ls", "--state", "queued"))
    assert "no studies on page 2 (1 study on 1 page)" in ok(ctl(rx, "queue", "ls", "--page", "2"))
    r = ctl(rx, "queue", "ls", "--state", "lost")
    assert r.returncode == 2, r


def test_queue_ls_shows_and_searches_what_staff_recognise(running, tmp_path):
    rx = running
    files = dicomgen.make_ct_study(str(tmp_path / "a"), 2, rows=16, cols=16,
                                   patient_id="PID 4711/b")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller^Jürgen"
        ds.AccessionNumber = "ACC-77"
        ds.StudyDescription = "CT HEAD"
        ds.save_as(f, write_like_original=False)
    assert storescu(rx.port, files, calling="CTSCAN1").returncode == 0
    other = store_study(rx, tmp_path, 1, "b")
    wait_for(lambda: Api(rx, unix=True).ok("GET", "/api/queue")["total"] >= 2, 10,
             what="the studies in the queue")

    out = ok(ctl(rx, "queue", "ls"))
    for heading in ("PATIENT", "PATIENT ID", "ACCESSION", "DATE", "DESCRIPTION", "MOD",
                    "FROM"):
        assert heading in out
    assert re.search(r"Müller\^Jürgen +PID 4711/b +ACC-77 +2026-11-28 +CT HEAD +CT +CTSCAN1",
                     out), out
    # The search goes URL-encoded: spaces, '/', '^' and non-ASCII survive.
    # Names match by their ASCII letters, in any case; '*' stands for the
    # rest (the name is Latin-1 in the spool, the search UTF-8).
    for text in ("PID 4711/", "ACC-7", "RGEN", "m*ller^j", "m?ller j"):
        out = ok(ctl(rx, "queue", "ls", "--search", text))
        assert "page 1 of 1 (1 study)" in out and other not in out, (text, out)
    assert "no studies" in ok(ctl(rx, "queue", "ls", "--search", "nobody"))
    assert other in ok(ctl(rx, "queue", "ls", "--search", "TEST0001", "--state", "queued"))
    mine = json.loads(ok(ctl(rx, "queue", "ls", "--search", "ACC-77", "--json")))
    assert [s["patient_name"] for s in mine["studies"]] == ["Müller^Jürgen"]
    r = ctl(rx, "queue", "ls", "--search", "x" * 65)
    assert r.returncode == 1 and "search must be at most 64 bytes" in r.stderr, r


def test_health(running):
    """What the appliance's health gate runs after a boot."""
    out = ok(ctl(running, "health"))
    assert out.startswith("healthy\n"), out
    assert re.search(r"^  spool +ok +quick_check: ok$", out, re.M), out
    assert re.search(r"^  receiver +ok +answered in \d+ ms$", out, re.M), out
    assert json.loads(ok(ctl(running, "health", "--json")))["healthy"] is True
    running.stop()  # the receiver
    r = ctl(running, "health")
    assert r.returncode == 1, r
    assert r.stdout.startswith("NOT healthy\n"), r.stdout
    assert re.search(r"^  receiver +FAILED +.*refused", r.stdout, re.M), r.stdout


def test_update_is_for_the_appliance(receivers, tmp_path):
    """outpostctl update runs the appliance's updater (tests/image/ install
    bundles under qemu); elsewhere it says where updates belong."""
    assert not os.path.exists("/usr/lib/outpost/update")
    r = ctl(receivers(), "update", str(tmp_path / "outpost-9.9.9.raucb"))
    assert r.returncode == 1, r
    assert "firmware updates are installed on the appliance" in r.stderr, r.stderr
    assert ctl(receivers(), "update").returncode == 2
    # Going back is asked for here, and only for update.
    r = ctl(receivers(), "update", "--allow-downgrade", str(tmp_path / "outpost-0.0.1.raucb"))
    assert r.returncode == 1 and "installed on the appliance" in r.stderr, r.stderr
    r = ctl(receivers(), "status", "--allow-downgrade")
    assert r.returncode == 2 and "status does not take --allow-downgrade" in r.stderr, r.stderr


def test_pause_resume(running):
    rx = running
    assert "paused" in ok(ctl(rx, "pause"))
    assert Api(rx, unix=True).ok("GET", "/api/status")["link"]["paused_by_operator"] is True
    assert "paused by the operator" in ok(ctl(rx, "status"))

    assert "resumed" in ok(ctl(rx, "resume"))
    assert Api(rx, unix=True).ok("GET", "/api/status")["link"]["paused_by_operator"] is False
    assert "paused by the operator" not in ok(ctl(rx, "status"))


def test_shaping(running):
    rx = running
    out = ok(ctl(rx, "shaping", "2Mbit"))
    assert "2 Mbit/s" in out
    rate = Api(rx, unix=True).ok("GET", "/api/status")["rate"]
    assert rate["current"] == 2000000 and rate["source"] == "console"

    # A schedule, unquoted as several arguments.
    ok(ctl(rx, "shaping", "Mon-Sun", "00:00-24:00", "3Mbit"))
    rate = Api(rx, unix=True).ok("GET", "/api/status")["rate"]
    assert rate["schedule"] == "Mon-Sun 00:00-24:00 3Mbit"
    assert rate["current"] == 3000000

    # A bad rate: the service's own words, exit 1.
    r = ctl(rx, "shaping", "2Mbitt")
    assert r.returncode == 1, r
    api = Api(rx, unix=True).put("/api/shaping", {"rate": "2Mbitt"})
    assert api.status == 400
    assert api.json()["error"] in r.stderr
    r = ctl(rx, "shaping", "Mon-Fry 07:00-19:00 2Mbit")
    assert r.returncode == 1 and "outpostctl: " in r.stderr, r

    ok(ctl(rx, "shaping", "--clear"))
    rate = Api(rx, unix=True).ok("GET", "/api/status")["rate"]
    assert rate["source"] == "config"
    assert rate["current"] is None and not rate["schedule"]


def test_retry(running, tmp_path):
    rx = running
    assert "requeued 0 instances" in ok(ctl(rx, "retry", "--all"))

    study = store_study(rx, tmp_path, 2, "a")
    other = store_study(rx, tmp_path, 1, "b")
    with rx.db() as con:  # each instance's one delivery, and its summary
        con.execute("UPDATE deliveries SET state = 'quarantined', last_error = 'refused', "
                    "attempts = 3")
        con.execute("UPDATE instances SET state = 'quarantined', last_error = 'refused', "
                    "attempts = 3")
    assert rx.states() == {"quarantined": 3}

    assert "requeued 2 instances" in ok(ctl(rx, "retry", study))
    assert rx.states() == {"queued": 2, "quarantined": 1}
    assert "requeued 1 instance" in ok(ctl(rx, "retry", "--all"))
    assert rx.states() == {"queued": 3}
    assert {r["study_uid"] for r in rx.rows()} == {study, other}

    # A study the spool never had: exit 1 and a message naming it (the API
    # answers 404), not "requeued 0".
    r = ctl(rx, "retry", "1.2.3.999")
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert "no study 1.2.3.999 in the spool" in r.stderr and "HTTP 404" in r.stderr, r
    # A known study with nothing quarantined: 0, said why.
    assert "requeued 0 instances (the study has no quarantined instance)" in ok(
        ctl(rx, "retry", study))


def test_test_link_unprovisioned(running):
    rx = running
    r = ctl(rx, "test-link")
    assert r.returncode == 1, r
    assert "FAILED" in r.stdout
    assert "link test: FAILED" in r.stdout
    api = Api(rx, unix=True, timeout=60).ok("POST", "/api/test-link", {})
    for step in api["steps"]:
        assert step["step"] in r.stdout
    r = ctl(rx, "test-link", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["ok"] is False


def test_passwd_then_login(running):
    rx = running
    tcp = Api(rx, password=PASSWORD)
    assert tcp.get("/api/status").status == 403  # no password yet

    out = ok(ctl(rx, "passwd", stdin=PASSWORD + "\n"))
    assert "applies now" in out
    with open(rx.ini) as f:
        text = f.read()
    assert text.count("password_hash = $argon2id$") == 1
    # The rest of the file is as the tests wrote it.
    for section in ("[receiver]", "[spool]", "[console]"):
        assert section in text

    r = tcp.get("/api/status")
    assert r.status == 200, r.body
    assert r.json()["link"]["state"] == "unprovisioned"
    assert Api(rx, password="wrong password").get("/api/status").status == 401

    # A second change replaces the line.
    ok(ctl(rx, "passwd", stdin="another password\n"))
    with open(rx.ini) as f:
        assert f.read().count("password_hash") == 1
    assert Api(rx, password="another password").get("/api/status").status == 200

    # What the socket did is audited as the local administrator.
    ok(ctl(rx, "pause"))
    ok(ctl(rx, "resume"))
    entries = audit_entries(rx)
    local = [e for e in entries if e.get("who") == "local"]
    actions = {e.get("action") for e in local}
    assert {"pause", "resume"} <= actions, entries
    assert any("password" in (e.get("action", "") + e.get("detail", "")) for e in local), entries


def test_passwd_refusals(running):
    rx = running
    with open(rx.ini) as f:
        before = f.read()
    r = ctl(rx, "passwd", stdin="short\n")
    assert r.returncode == 2 and "too short" in r.stderr, r
    r = ctl(rx, "passwd", stdin="")
    assert r.returncode == 2, r
    with open(rx.ini) as f:
        assert f.read() == before
    assert not os.path.exists(rx.ini + ".tmp")


def test_stale_socket_after_kill9(running):
    """A service killed with -9 leaves its socket file: nobody answers."""
    rx = running
    rx.up.kill9()
    r = ctl(rx, "status")
    assert r.returncode == 3, r
    assert "is not running" in r.stderr


# --- against a stopped service ---------------------------------------------------------


COMMANDS = [
    ["status"], ["status", "--json"], ["queue", "ls"], ["retry", "--all"],
    ["retry", "1.2.3"], ["pause"], ["resume"], ["shaping", "2Mbit"], ["shaping", "--clear"],
    ["test-link"], ["health"],
]


def test_stopped_service(receivers):
    rx = receivers().start()
    sock = rx.config["console"]["socket"]
    assert not os.path.exists(sock)
    for args in COMMANDS:
        r = ctl(rx, *args)
        assert r.returncode == 3, (args, r)
        assert r.stderr.startswith(
            f"outpostctl: outpost-uplink is not running (no answer on {sock}: "), (args, r)
        assert r.stdout == ""

    # passwd writes the file all the same, and says when it applies.
    out = ok(ctl(rx, "passwd", stdin=PASSWORD + "\n"))
    assert "when it starts" in out
    with open(rx.ini) as f:
        assert "password_hash = $argon2id$" in f.read()
    rx.uplink().start()
    assert Api(rx, password=PASSWORD).get("/api/status").status == 200


def test_socket_option(running, tmp_path):
    rx = running
    sock = rx.config["console"]["socket"]
    # --socket alone, without any configuration file.
    env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CONFIG"}
    r = subprocess.run([CTL, "--socket", sock, "status", "--json"], capture_output=True,
                       text=True, timeout=60, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["link"]["state"] == "unprovisioned"
    # OUTPOST_CONFIG names the file when --config does not.
    r = subprocess.run([CTL, "status"], capture_output=True, text=True, timeout=60,
                       env=dict(env, OUTPOST_CONFIG=rx.ini), cwd=str(tmp_path))
    assert r.returncode == 0, r


# --- bad usage ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    [], ["frob"], ["status", "extra"], ["status", "--all"], ["--bogus", "status"],
    ["queue"], ["queue", "rm"], ["queue", "ls", "--page", "0"], ["queue", "ls", "--page", "x"],
    ["retry"], ["retry", "1.2.3", "--all"], ["shaping"], ["shaping", "2Mbit", "--clear"],
    ["pause", "now"], ["test-link", "--state", "sent"], ["status", "--search", "x"],
    ["queue", "ls", "--search"],
])
def test_bad_usage(receivers, args):
    rx = receivers()
    r = ctl(rx, *args)
    assert r.returncode == 2, (args, r)
    assert "outpostctl" in r.stderr


def test_bad_config_and_no_config(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[receiver]\nport = none\n")
    r = subprocess.run([CTL, "--config", str(bad), "status"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "bad.ini:2" in r.stderr, r
    r = subprocess.run([CTL, "--config", str(bad), "passwd"], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert bad.read_text() == "[receiver]\nport = none\n"

    # On the embedded defaults there is no file to write the password into.
    if os.path.exists("/etc/outpost/outpost.ini"):
        pytest.skip("/etc/outpost/outpost.ini exists here")
    env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CONFIG"}
    r = subprocess.run([CTL, "passwd"], input=PASSWORD + "\n", capture_output=True, text=True,
                       timeout=30, env=env, cwd=str(tmp_path))
    assert r.returncode == 2 and "nowhere to write" in r.stderr, r


def test_help_and_version():
    r = subprocess.run([CTL, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for word in ("status", "queue ls", "retry", "pause", "resume", "shaping", "test-link",
                 "passwd", "Exit status", "3 outpost-uplink is not running"):
        assert word in r.stdout, word
    r = subprocess.run([CTL, "--version"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("outpostctl ")


def test_relative_socket_is_beside_the_config_file(receivers, tmp_path):
    """A relative [console] socket is the configuration file's neighbour for
    the uplink and outpostctl alike, whatever their working directories
    (issue 16: outpostctl said "not running" from elsewhere)."""
    rx = receivers(console={"socket": "run/ctl.sock"})
    os.makedirs(os.path.join(os.path.dirname(rx.ini), "run"))
    rx.start()
    rx.uplink().start()
    beside = os.path.join(os.path.dirname(rx.ini), "run", "ctl.sock")
    assert os.path.exists(beside)
    assert not os.path.exists(os.path.join(os.getcwd(), "run", "ctl.sock"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (str(elsewhere), "/"):
        env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CONFIG"}
        r = subprocess.run([CTL, "--config", rx.ini, "status"], capture_output=True, text=True,
                           timeout=60, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, (cwd, r.stderr)
        assert "outpost-uplink" in r.stdout
