"""`make deb`: the Debian package the appliance image installs. Its
metadata and files, its systemd units checked by systemd itself
(systemd-analyze verify, and the hardening the issue asks for), and its
programs run from the unpacked package on its own default configuration.
"""
import os
import re
import subprocess

import pytest

from outpost import BUILD, ROOT


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run([os.path.join(ROOT, "scripts", "make-deb"), BUILD, str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    root = out / "root"
    subprocess.run(["dpkg-deb", "-x", path, str(root)], check=True)
    return path, root


def field(path, name):
    return subprocess.run(["dpkg-deb", "-f", path, name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_package_metadata_and_files(deb):
    path, root = deb
    version = open(os.path.join(ROOT, "VERSION")).read().strip()
    assert os.path.basename(path).startswith(f"outpost_{version}_")
    assert field(path, "Package") == "outpost" and field(path, "Version") == version
    depends = field(path, "Depends")
    # From dpkg-shlibdeps: the run-time libraries, not the -dev packages.
    for lib in ("libdcmtk17", "libsqlite3-0", "libuv1", "libmbedtls14", "libsodium23",
                "libsystemd0", "libcjson1", "libhttp-parser2.9", "libinih1"):
        assert re.search(rf"\b{re.escape(lib)}\b", depends), (lib, depends)
    assert "-dev" not in depends
    listing = subprocess.run(["dpkg-deb", "-c", path], capture_output=True, text=True,
                             check=True).stdout
    for f in ("./usr/bin/outpost-receiver", "./usr/bin/outpost-uplink", "./usr/bin/outpostctl",
              "./usr/share/outpost/console/index.html",
              "./usr/lib/systemd/system/outpost-receiver.service",
              "./usr/lib/systemd/system/outpost-uplink.service",
              "./usr/lib/sysusers.d/outpost.conf", "./usr/lib/tmpfiles.d/outpost.conf",
              "./usr/share/outpost/outpost.ini", "./usr/lib/outpost/spool-owners"):
        assert f in listing, f
    assert "root/root" in listing and "build/" not in listing
    # Stripped: no debug sections in what the image carries.
    sections = subprocess.run(["readelf", "-S", str(root / "usr/bin/outpost-uplink")],
                              capture_output=True, text=True, check=True).stdout
    assert ".debug_info" not in sections


def test_programs_run_from_the_package_on_its_configuration(deb):
    path, root = deb
    ini = root / "usr/share/outpost/outpost.ini"
    for prog in ("outpost-receiver", "outpost-uplink"):
        r = subprocess.run([str(root / "usr/bin" / prog), "--config", str(ini),
                            "--check-config"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "port = 104" in r.stdout and "dir = /data/spool" in r.stdout
        assert "socket = /run/outpost/outpost.sock" in r.stdout
        assert "web_root = /usr/share/outpost/console" in r.stdout
    r = subprocess.run([str(root / "usr/bin/outpostctl"), "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("outpostctl ")


@pytest.mark.parametrize("unit", ["outpost-receiver.service", "outpost-uplink.service"])
def test_units_verify_and_are_hardened(deb, unit):
    path, root = deb
    unit_path = root / "usr/lib/systemd/system" / unit
    text = unit_path.read_text()
    # The receiver writes only the spool and cannot reach the cloud's
    # secrets, what root acts on, or the admin socket.
    fence = {"outpost-receiver.service": (
                 "ReadWritePaths=/data/spool",
                 "InaccessiblePaths=-/data/site -/data/upload -/data/console -/data/firmware"
                 " -/run/outpost"),
             "outpost-uplink.service": ("ReadWritePaths=/data",)}[unit]
    # Two users: only the spool's group in common (test_two_users.py).
    user = {"outpost-receiver.service": ("User=outpost-dicom", "Group=outpost-spool",
                                         "UMask=0007"),
            "outpost-uplink.service": ("User=outpost", "UMask=0007")}[unit]
    for line in ("Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "Restart=always", "WatchdogSec=30") + fence + user:
        assert line in text.splitlines(), line
    assert any(l.startswith("MemoryMax=") for l in text.splitlines())
    assert any(l.startswith("TasksMax=") for l in text.splitlines())
    # systemd checks the unit (a copy whose programs are the package's,
    # unpacked here: the host's systemd has the targets it refers to).
    copy = root.parent / "verify" / unit
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text.replace("/usr/bin/outpost-", f"{root}/usr/bin/outpost-")
                    .replace("/usr/lib/outpost/", f"{root}/usr/lib/outpost/"))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    # systemd's own exposure score: 0 (locked down) to 10 (unsafe).
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}",
                        "--no-pager", unit], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 3.0, r.stdout[-3000:]


def test_sysusers_and_tmpfiles_parse(deb, tmp_path):
    path, root = deb
    r = subprocess.run(["systemd-sysusers", f"--root={root}", "--dry-run",
                        str(root / "usr/lib/sysusers.d/outpost.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for name in ("outpost", "outpost-dicom", "outpost-spool"):
        assert f"'{name}'" in out, out
