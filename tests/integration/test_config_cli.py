"""outpost-receiver's configuration file and command line: --check-config,
the FILE:LINE: error for each kind of mistake, and refusing to start when
the port or the spool cannot be had."""
import os
import socket
import subprocess

import pytest

from outpost import BUILD, ROOT, Receiver

RECEIVER = os.path.join(BUILD, "outpost-receiver")

# A header of comments and valid keys, so that errors are not on line 1.
PREAMBLE = """\
# Outpost test site
; a comment of the other kind

[receiver]
ae_title = SITE_A
"""
PREAMBLE_LINES = PREAMBLE.count("\n")


def run(*args, timeout=15):
    return subprocess.run([RECEIVER, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def parse_printout(text):
    """--check-config's output as {section: {key: value}}."""
    out, section = {}, None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition(" = ")
        assert sep or line.endswith(" ="), f"not 'key = value': {line!r}"
        section[key.strip()] = value.strip()
    return out


def test_check_config_prints_the_effective_values(tmp_path):
    spool = tmp_path / "spool"
    ini = tmp_path / "outpost.ini"
    ini.write_text(PREAMBLE + f"""\
bind = 127.0.0.1
port = 11999
allowed_calling_aets = CT1, MR_2 ,US3, CT SCANNER 4
allowed_hosts = 10.1.2.3/24 127.0.0.1
max_associations = 4
max_pdu = 65536
dimse_timeout = 120

[spool]
dir = {spool}
max_bytes = 2G
min_free_bytes = 512k
keep_sent_bytes = 1T

[cloud]
url = https://pacs.example.org:8443/dicom-web/
auth = bearer
token_file = /etc/outpost/token
connections = 4

[log]
level = debug
""")
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert parse_printout(r.stdout) == {
        "receiver": {
            "ae_title": "SITE_A", "bind": "127.0.0.1", "port": "11999",
            "allowed_calling_aets": "CT1, MR_2, US3, CT SCANNER 4",
            "allowed_hosts": "10.1.2.0/24, 127.0.0.1/32",
            "max_associations": "4", "max_pending_per_host": "4", "max_pdu": "65536",
            "acse_timeout": "30",  # not in the file: the default
            "dimse_timeout": "120",
            "allow_query": "on", "commitment": "cloud", "commitment_timeout": "1d",
        },
        "spool": {"dir": str(spool), "max_bytes": str(2 << 30),
                  "min_free_bytes": str(512 << 10), "keep_sent_bytes": str(1 << 40),
                  "keep_sent_days": "0"},
        "cloud": {
            "url": "https://pacs.example.org:8443/dicom-web/", "ca_file": "",
            "pin_sha256": "", "client_cert": "", "client_key": "", "auth": "bearer",
            "username": "", "password_file": "", "token_file": "/etc/outpost/token",
            "connections": "4", "batch_max_instances": "50",
            "batch_max_bytes": str(64 << 20), "timeout": "60", "retry_max_delay": "300",
            "rate": "unlimited", "enabled": "on", "transfer_syntax": "original",
        },
        "uplink": {"encode_threads": "0"},
        "shaping": {"rate": "unlimited", "burst": "0", "schedule": "", "scavenger": "off"},
        "priority": {"urgent_calling_aets": "", "trust_priority_from": "", "urgent_match": ""},
        "console": {"listen": "127.0.0.1:8080",
                    # The default socket, as the services use it: the working
                    # directory's (the printout read again means the same).
                    "socket": os.path.join(os.getcwd(), "var/outpost.sock"), "tls_cert": "",
                    "tls_key": "", "password_hash": "",
                    "web_root": os.path.join(ROOT, "services", "console", "web"),
                    "session_ttl": "28800", "backlog_alarm": "1h",
                    "allowed_hosts": ""},
        "security": {"allow_unencrypted": "off"},
        "log": {"level": "debug"},
        "routing": {"default": "cloud"},
    }
    # Checking touches nothing.
    assert not spool.exists()

    # The printout is itself a valid file with the same meaning.
    again = tmp_path / "printed.ini"
    again.write_text(r.stdout)
    r2 = run("--config", str(again), "--check-config")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == r.stdout


# (id, text after PREAMBLE, line of the error counted in that text (or the
# lines that are each acceptable), words expected)
ERRORS = [
    ("unknown-key", "port = 11112\nmax_assocations = 4\n", 2,
     ["unknown key", "max_assocations", "[receiver]"]),
    # The section's line or its first key's line (inih reports sections
    # only through their keys).
    ("unknown-section", "port = 11112\n\n[reciever]\nport = 11113\n", (3, 4),
     ["unknown section", "[reciever]"]),
    ("unknown-empty-section", "port = 11112\n[spooll]\n\n[log]\nlevel = info\n", 2,
     ["unknown section", "[spooll]"]),
    ("unterminated-section-header", "port = 11112\n[spool\ndir = /tmp/x\n", 2, []),
    ("bad-size-suffix", "[spool]\nmax_bytes = 10X\n", 2, ["max_bytes", "10X"]),
    ("bad-size-fraction", "[spool]\nmin_free_bytes = 1.5G\n", 2, ["min_free_bytes", "1.5G"]),
    ("bad-size-overflow", "[spool]\nkeep_sent_bytes = 99999999999T\n", 2, ["keep_sent_bytes"]),
    ("bad-size-negative", "[spool]\nmax_bytes = -1\n", 2, ["max_bytes"]),
    ("port-too-big", "port = 70000\n", 1, ["port", "70000"]),
    ("port-zero", "port = 0\n", 1, ["port"]),
    ("port-not-a-number", "bind = 127.0.0.1\nport = 11112x\n", 2, ["port", "11112x"]),
    ("ae-title-too-long", "ae_title = SEVENTEEN_CHARS_AE\n", 1,
     ["ae_title", "SEVENTEEN_CHARS_AE"]),
    ("ae-title-backslash", "ae_title = SITE\\A\n", 1, ["ae_title"]),
    ("ae-title-in-list", "allowed_calling_aets = CT1, SEVENTEEN_CHARS_AE\n", 1,
     ["allowed_calling_aets", "SEVENTEEN_CHARS_AE"]),
    ("cidr-prefix-too-long", "allowed_hosts = 10.0.0.0/33\n", 1,
     ["allowed_hosts", "10.0.0.0/33"]),
    ("cidr-short-address", "allowed_hosts = 127.0.0.1, 10.0.0/8\n", 1,
     ["allowed_hosts", "10.0.0/8"]),
    ("cidr-empty-prefix", "allowed_hosts = 10.0.0.0/\n", 1, ["allowed_hosts"]),
    ("cidr-ipv6", "allowed_hosts = ::1\n", 1, ["allowed_hosts", "::1"]),
    ("bind-hostname", "bind = localhost\n", 1, ["bind", "localhost"]),
    ("max-pdu-too-small", "max_pdu = 1024\n", 1, ["max_pdu", "1024"]),
    ("log-level", "[log]\nlevel = verbose\n", 2, ["level", "verbose"]),
    ("cloud-url-http", "[cloud]\nurl = http://pacs.example.org/dicom-web\n", 2,
     ["url", "https://"]),
    ("cloud-url-port", "[cloud]\nurl = https://pacs:99999/x\n", 2, ["url", "port"]),
    ("cloud-url-query", "[cloud]\nurl = https://pacs/x?y=1\n", 2, ["url", "query"]),
    ("cloud-auth", "[cloud]\nauth = digest\n", 2, ["auth", "digest"]),
    ("cloud-basic-alone", "[cloud]\nurl = https://pacs/x\nauth = basic\nusername = u\n", 3,
     ["basic", "password_file"]),
    ("cloud-bearer-alone", "[cloud]\nauth = bearer\n", 2, ["bearer", "token_file"]),
    ("cloud-cert-alone", "[cloud]\nclient_cert = /etc/c.pem\n", 2,
     ["client_cert", "client_key"]),
    ("cloud-pin", "[cloud]\npin_sha256 = abc\n", 2, ["pin_sha256", "base64"]),
    ("cloud-connections", "[cloud]\nconnections = 0\n", 2, ["connections"]),
    ("shaping-rate", "[shaping]\nrate = 8MB\n", 2, ["rate", "8MB"]),
    ("shaping-schedule", "[shaping]\nschedule = Mon-Fri 07:00-19:00 2Mbit; Sun 25:00-01:00 1M\n",
     2, ["schedule", "window 2"]),
    ("destination-unknown-in-to", "[route ct]\nwhen = Modality=CT\nto = pacs\n"
     "[destination pac]\ntype = dicom\nhost = h\nport = 104\ncalled_ae = PACS\n", 3,
     ["to", "no destination named 'pacs'"]),
    ("destination-key-of-other-type", "[destination pacs]\ntype = dicom\nhost = h\n"
     "url = https://pacs/x\n", 4, ["url", "type dicom"]),
    ("routing-default-unknown", "[routing]\ndefault = pacs\n", 2, ["default", "'pacs'"]),
    ("peer-needs-port", "[peer ws]\nae_title = WS\nhost = h\n", 1, ["[peer ws]", "port"]),
    ("peer-twice", "[peer ws]\nae_title = WS\nhost = h\nport = 104\n[peer ws]\n", 5,
     ["[peer ws] again"]),
    ("peer-ae-title-twice", "[peer a]\nae_title = WS\nhost = h\nport = 104\n"
     "[peer b]\nae_title = WS\nhost = h\nport = 105\n", 6, ["ae_title", "'WS'", "[peer a]"]),
    ("peer-port", "[peer ws]\nport = 0\n", 2, ["port", "'0'"]),
    ("peer-unknown-key", "[peer ws]\ncalled_ae = WS\n", 2, ["unknown key", "[peer ws]"]),
    ("commitment", "commitment = remote\n", 1, ["commitment", "remote"]),
    ("commitment-timeout", "commitment_timeout = 59s\n", 1, ["commitment_timeout", "59s"]),
    ("keep-sent-days", "[spool]\nkeep_sent_days = 3651\n", 2, ["keep_sent_days", "3651"]),
]


def test_check_config_prints_destinations_peers_and_routes(tmp_path):
    ini = tmp_path / "outpost.ini"
    ini.write_text(PREAMBLE + """\
[destination ai-vendor]
type = stow-rs
url = https://ai.example/dicom-web
rate = 5Mbit

[destination mammo-ws]
type = dicom
host = 10.1.2.30
port = 104
called_ae = MAMMO_WS

[peer reading-ws]
ae_title = READ WS
host = 10.1.2.40
port = 4006

[route head-ct]
when = calling_aet=CT_ER, Modality=CT, BodyPartExamined=HEAD
to = ai-vendor, cloud
urgent = yes

[routing]
default = mammo-ws
""")
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 0, r.stderr
    out = parse_printout(r.stdout)
    assert out["destination ai-vendor"]["url"] == "https://ai.example/dicom-web"
    assert out["destination ai-vendor"]["rate"] == "5Mbit"
    assert out["destination ai-vendor"]["connections"] == "2"
    assert out["destination mammo-ws"] == {
        "type": "dicom", "host": "10.1.2.30", "port": "104", "called_ae": "MAMMO_WS",
        "calling_ae": "SITE_A", "connections": "1", "timeout": "60",
        "retry_max_delay": "300", "rate": "unlimited", "enabled": "on",
        "transfer_syntax": "original",
    }
    assert out["peer reading-ws"] == {"ae_title": "READ WS", "host": "10.1.2.40",
                                      "port": "4006"}
    assert out["route head-ct"] == {
        "when": "calling_aet=CT_ER, Modality=CT, BodyPartExamined=HEAD",
        "to": "ai-vendor, cloud", "urgent": "yes",
    }
    assert out["routing"] == {"default": "mammo-ws"}
    again = tmp_path / "printed.ini"
    again.write_text(r.stdout)
    r2 = run("--config", str(again), "--check-config")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == r.stdout


@pytest.mark.parametrize("text,line,words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_config_error_names_file_and_line(tmp_path, text, line, words):
    ini = tmp_path / "outpost.ini"
    ini.write_text(PREAMBLE + text)
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    lines = line if isinstance(line, tuple) else (line,)
    assert any(r.stderr.startswith(f"{ini}:{PREAMBLE_LINES + n}: ") for n in lines), \
        f"expected line {' or '.join(str(PREAMBLE_LINES + n) for n in lines)}: {r.stderr}"
    for w in words:
        assert w in r.stderr, r.stderr


def test_key_outside_any_section(tmp_path):
    ini = tmp_path / "outpost.ini"
    ini.write_text("# keys before any [section]\n\nport = 11112\n[receiver]\nae_title = A\n")
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{ini}:3: "), r.stderr
    assert "port" in r.stderr and "section" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_missing_file(tmp_path):
    ini = tmp_path / "nowhere.ini"
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 2
    assert r.stderr.startswith(f"{ini}:"), r.stderr
    assert "No such file or directory" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_unreadable_file_a_directory(tmp_path):
    # As root, permissions do not stop a read; a directory does.
    r = run("--config", str(tmp_path), "--check-config")
    assert r.returncode == 2, f"a directory was accepted as a config file:\n{r.stdout}"
    assert r.stderr.startswith(f"{tmp_path}:"), r.stderr
    assert len(r.stderr.splitlines()) == 1

def refused_start(rx):
    """Starts rx expecting it to exit 1 before listening; returns its one error line."""
    try:
        with pytest.raises(RuntimeError):
            rx.start()
        assert rx.proc.returncode == 1
    finally:
        rx.kill9()
    log = rx.log()
    assert "event=receiver.ready" not in log
    errors = [line for line in log.splitlines() if "level=error" in line]
    assert len(errors) == 1, log
    return errors[0]



def test_bad_file_stops_a_real_start_too(tmp_path):
    """Without --check-config the same error, and nothing is started."""
    ini = tmp_path / "outpost.ini"
    spool = tmp_path / "spool"
    ini.write_text(PREAMBLE + f"port = 11112\n[spool]\ndir = {spool}\nmax_bytes = lots\n")
    r = run("--config", str(ini))
    assert r.returncode == 2
    assert r.stderr.startswith(f"{ini}:{PREAMBLE_LINES + 4}: "), r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert not spool.exists()


@pytest.mark.parametrize("other_bind", ["127.0.0.1", "0.0.0.0"])
def test_refuses_to_start_when_the_port_is_taken(tmp_path, other_bind):
    with socket.socket() as other:
        other.bind((other_bind, 0))
        other.listen(1)
        port = other.getsockname()[1]
        error = refused_start(Receiver(str(tmp_path / "rx"), receiver={"port": port}))
        assert "event=receiver.listen" in error
        assert f"port={port}" in error
        assert "Address already in use" in error
        # The other listener is untouched.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_refuses_to_start_when_the_spool_cannot_be_created(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file\n")
    spool = blocker / "spool"
    error = refused_start(Receiver(str(tmp_path / "rx"), spool={"dir": str(spool)}))
    assert "event=spool.open" in error
    assert str(spool) in error
    assert "Not a directory" in error
    assert blocker.read_text() == "a regular file\n"


def test_urgent_match_keywords_are_checked_against_the_dictionary(tmp_path):
    # Only DCMTK's dictionary knows the keywords: the receiver checks them
    # (the file's syntax is fine, so there is no line to name).
    ini = tmp_path / "outpost.ini"
    ini.write_text("[priority]\nurgent_match = RequestedProcedurePriority=STAT, Modalty=XA\n")
    r = run("--config", str(ini), "--check-config")
    assert r.returncode == 2
    assert f"{ini}: urgent_match: 'Modalty' is not a DICOM attribute keyword" in r.stderr
    ini.write_text("[priority]\nurgent_match = RequestedProcedurePriority=STAT, Modality=XA\n")
    assert run("--config", str(ini), "--check-config").returncode == 0
