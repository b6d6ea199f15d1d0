"""outpost-flash (firmware/flash) against a file standing in for the disk,
and its refusals.

The image is out/qemu-x86_64/outpost-<version>-qemu-x86_64.img with its
.bmap (make image), or $OUTPOST_IMAGE; the tests work on a copy. Nothing
here writes a block device: block devices (the host's disk, a loop device
over a file of the test's own) are only given with --dry-run or where a
refusal comes before any write. What the tool wrote is checked with other
tools than its own: hashes of the bmap's ranges, the GPT's CRCs, debugfs,
e2fsck.
"""
import hashlib
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from disk import IMAGE, VERSION, gpt  # noqa: E402
from outpost import ROOT  # noqa: E402

FLASH = os.path.join(ROOT, "firmware", "flash")
MIB = 1 << 20

SITE = {
    "site.ini": "[cloud]\nurl = https://pacs.example.org/dicom-web\nca_file = /data/site/ca.pem\n"
                "auth = bearer\ntoken_file = /data/site/token\n\n[receiver]\nae_title = CT_SITE_7\n",
    "ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
    "token": "s3cr3t-t0ken\n",
}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A copy of the image and its .bmap: make image may rewrite out/ meanwhile."""
    for path in (IMAGE, IMAGE + ".bmap"):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: run make image")
    d = tmp_path_factory.mktemp("image")
    for path in (IMAGE, IMAGE + ".bmap"):
        subprocess.run(["cp", "--sparse=always", path, str(d)], check=True)
    return str(d / os.path.basename(IMAGE))


def flash(*args):
    """outpost-flash with no terminal on stdin: it cannot ask anything."""
    return subprocess.run([FLASH, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def bmap(image):
    """(image size, block size, [(first, last, sha256)]) from the .bmap."""
    root = ET.parse(image + ".bmap").getroot()
    ranges = []
    for r in root.iter("Range"):
        first, _, last = r.text.strip().partition("-")
        ranges.append((int(first), int(last or first), r.get("chksum")))
    return int(root.findtext("ImageSize")), int(root.findtext("BlockSize")), ranges


def range_hashes(path, block, ranges):
    out = []
    with open(path, "rb") as f:
        for first, last, _ in ranges:
            f.seek(first * block)
            out.append(hashlib.sha256(f.read((last - first + 1) * block)).hexdigest())
    return out


def file_hash(path):
    """The sha256 of a sparse file's data extents and where they are: the
    holes read as zeros, and reading 2 GB of them takes seconds."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        pos, end = 0, os.fstat(f.fileno()).st_size
        while pos < end:
            try:
                data = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole up to the end
                break
            pos = os.lseek(f.fileno(), data, os.SEEK_HOLE)
            h.update(f"{data}-{pos}:".encode())
            f.seek(data)
            for _ in range(data, pos, 4 * MIB):
                h.update(f.read(min(4 * MIB, pos - f.tell())))
    return h.hexdigest()


def blank_disk(tmp_path, size="2G", name="disk.img"):
    """A sparse file standing in for a disk, with a few bytes that a write
    would change."""
    path = str(tmp_path / name)
    subprocess.run(["truncate", "-s", size, path], check=True)
    if size != "0":
        with open(path, "r+b") as f:
            f.write(b"old disk " * 100)
    return path


def site_dir(tmp_path, files=SITE):
    d = tmp_path / "outpost"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return str(d)


def debugfs(disk, offset, command):
    r = subprocess.run(["debugfs", "-R", command, f"{disk}?offset={offset}"],
                       capture_output=True)
    return r.stdout


def fsck_ok(disk, offset):
    r = subprocess.run(["e2fsck", "-fn", f"{disk}?offset={offset}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def state(path):
    """What a write would change: size, mtime, content."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, file_hash(path))


def untouched(path, before):
    """The target as it was, or (BEFORE None) never made."""
    return state(path) == before if before is not None else not os.path.exists(path)


def refused(r, code, pattern):
    assert r.returncode == code, f"exit {r.returncode}, not {code}:\n{r.stdout}{r.stderr}"
    assert re.search(pattern, r.stderr), r.stderr
    assert "outpost-flash: writing" not in r.stderr and "bmaptool:" not in r.stderr, r.stderr


# --- writing ---------------------------------------------------------------

@pytest.mark.parametrize("size", ["2G", "0"], ids=["larger-than-image", "empty"])
def test_flash_writes_every_mapped_range_and_keeps_a_larger_file_size(image, tmp_path, size):
    disk = blank_disk(tmp_path, size)
    r = flash(image, disk)
    assert r.returncode == 0, r.stderr
    assert "regular file" in r.stderr
    assert re.search(r"verifying (\d+) of \1 MiB", r.stderr), r.stderr
    assert f"done: {disk} holds outpost {VERSION}" in r.stderr
    image_size, block, ranges = bmap(image)
    # Every mapped range is the image's, but the data partition's: the
    # tool wrote the console's certificate into it after verifying.
    start, length = gpt(image)["data"]
    outside = [x for x in ranges if (x[1] + 1) * block <= start or x[0] * block >= start + length]
    assert len(outside) < len(ranges)
    assert range_hashes(disk, block, outside) == [c for _, _, c in outside]
    assert os.path.getsize(disk) == max(image_size, 2 << 30 if size == "2G" else 0)
    assert gpt(disk) == gpt(image)
    fsck_ok(disk, start)
    assert b"BEGIN CERTIFICATE" in debugfs(disk, start, "cat /console/cert.pem")


def test_flash_with_site_puts_it_on_the_data_partition(image, tmp_path):
    disk = blank_disk(tmp_path)
    site = site_dir(tmp_path)
    keys = tmp_path / "keys"
    subprocess.run([os.path.join(ROOT, "scripts", "make-keys"), str(keys)], check=True,
                   capture_output=True)
    r = flash("--site", site, "--keys", keys, image, disk)
    assert r.returncode == 0, r.stderr
    assert "site file: 4 files read back intact" in r.stderr
    parts = gpt(disk)
    data = parts["data"][0]
    for name, text in SITE.items():
        assert debugfs(disk, data, f"cat /upload/site/{name}").decode() == text
    # The site file signed with the site key (what a provisioned box's
    # stick needs): over "sha256  name" of each file, as the box checks it.
    sig = debugfs(disk, data, "cat /upload/site/site.sig")
    assert sig == open(os.path.join(site, "site.sig"), "rb").read()
    manifest = tmp_path / "manifest"
    manifest.write_text("".join(f"{hashlib.sha256(SITE[n].encode()).hexdigest()}  {n}\n"
                                for n in sorted(SITE)))
    cert = str(keys / "site.cert.pem")
    v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                        os.path.join(site, "site.sig"), "-content", str(manifest), "-certfile",
                        cert, "-nointern", "-CAfile", cert, "-purpose", "any", "-out",
                        os.devnull], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    # The console's key and certificate, with the fingerprint it printed.
    (tmp_path / "cert.pem").write_bytes(debugfs(disk, data, "cat /console/cert.pem"))
    fp = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-noout",
                         "-fingerprint", "-sha256"], capture_output=True, text=True, check=True)
    assert f"sha256 fingerprint {fp.stdout.strip().split('=')[1]}" in r.stdout
    assert b"PRIVATE KEY" in debugfs(disk, data, "cat /console/key.pem")
    assert "/100600/0/0/key.pem/" in debugfs(disk, data, "ls -p /console").decode()
    # ls -p: /inode/mode/uid/gid/name/size/
    listing = debugfs(disk, data, "ls -p /upload/site").decode().split("\n")
    files = {f.split("/")[5]: f.split("/")[2:5] for f in listing if f.count("/") >= 6}
    assert {n: m for n, m in files.items() if n not in (".", "..")} == {
        n: ["100600", "0", "0"] for n in [*SITE, "site.sig"]}
    assert files["."] == ["040700", "0", "0"]
    assert "/040700/0/0/upload/" in debugfs(disk, data, "ls -p /").decode()
    fsck_ok(disk, data)
    # Outside the data partition the disk is the image.
    size, block, ranges = bmap(image)
    start, length = parts["data"]
    outside = [x for x in ranges if (x[1] + 1) * block <= start or x[0] * block >= start + length]
    assert range_hashes(disk, block, outside) == [c for _, _, c in outside]
    # And --verify-only agrees, the data partition (the box's) left out.
    r = flash("--verify-only", "--site", site, image, disk)
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stderr


def test_dry_run_writes_nothing_and_says_what_it_would_do(image, tmp_path):
    disk = blank_disk(tmp_path)
    before = state(disk)
    r = flash("--dry-run", "--site", site_dir(tmp_path), image, disk)
    assert r.returncode == 0, r.stderr
    assert untouched(disk, before)
    _, block, ranges = bmap(image)
    mapped = sum(last - first + 1 for first, last, _ in ranges) * block
    assert f"{disk}: a regular file standing in for a disk (2048 MiB)" in r.stdout
    assert f"outpost {VERSION} (qemu-x86_64)" in r.stdout
    assert f"{mapped / MIB:.0f} MiB mapped" in r.stdout
    assert re.search(r"ca\.pem, site\.ini, token -> data partition .*/upload/site/", r.stdout)
    assert "console: a new TLS key and self-signed certificate" in r.stdout
    assert "dry run: nothing written" in r.stderr


# --- verification -------------------------------------------------------------

def test_readback_catches_a_corrupted_range(image, tmp_path):
    disk = blank_disk(tmp_path)
    assert flash(image, disk).returncode == 0
    _, block, ranges = bmap(image)
    start = gpt(image)["rootfs-a"][0]
    first, last, _ = next(x for x in ranges if x[0] * block <= start + 4096 <= x[1] * block)
    with open(disk, "r+b") as f:  # one byte the disk did not keep
        f.seek(start + 4096)
        byte = f.read(1)
        f.seek(start + 4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    r = flash("--verify-only", image, disk)
    assert r.returncode == 1, r.stderr
    assert f"verify: blocks {first}-{last} " in r.stderr
    assert "partition rootfs-a" in r.stderr


def test_damaged_image_fails_the_write(image, tmp_path):
    """A range's checksum in the .bmap that the image does not match:
    bmaptool stops the write, and the tool says the disk is not usable."""
    bad = tmp_path / "bad"
    bad.mkdir()
    copy = str(bad / os.path.basename(image))
    subprocess.run(["cp", "--sparse=always", image, copy], check=True)
    text = open(image + ".bmap").read()
    _, _, ranges = bmap(image)
    first, last, chksum = ranges[len(ranges) // 2]
    text = text.replace(f'chksum="{chksum}"', f'chksum="{"0" * 64}"')
    # The bmap's own checksum, taken with its field zeroed, as bmaptool does.
    own = re.search(r"<BmapFileChecksum> (\w+) </BmapFileChecksum>", text).group(1)
    zeroed = text.replace(own, "0" * 64)
    with open(copy + ".bmap", "w") as f:
        f.write(text.replace(own, hashlib.sha256(zeroed.encode()).hexdigest()))
    r = flash(copy, blank_disk(tmp_path))
    assert r.returncode == 1, r.stderr
    assert f"checksum mismatch for blocks range {first}-{last}" in r.stderr
    assert "outpost-flash: bmaptool failed" in r.stderr and "not usable" in r.stderr


# --- refusals of files and arguments ------------------------------------------

def test_refuses_a_missing_device(image, tmp_path):
    disk = str(tmp_path / "sdx")
    refused(flash(image, disk), 3, r"No such file or directory: check the disk's name with lsblk")
    assert untouched(disk, None)


@pytest.mark.parametrize("device", ["/dev/null", "directory"])
def test_refuses_what_is_neither_a_disk_nor_a_file(image, tmp_path, device):
    device = str(tmp_path) if device == "directory" else device
    refused(flash("--dry-run", image, device), 3, "neither a block device nor a regular file")


def test_refuses_the_image_itself(image, tmp_path):
    before = state(image)
    refused(flash(image, image), 3, "is the image itself")
    assert untouched(image, before)


def test_refuses_an_image_without_bmap(image, tmp_path):
    lone = str(tmp_path / os.path.basename(image))
    subprocess.run(["cp", "--sparse=always", image, lone], check=True)
    disk = blank_disk(tmp_path)
    before = state(disk)
    refused(flash(lone, disk), 2, r"\.img\.bmap is missing: copy the \.bmap")
    assert untouched(disk, before)


@pytest.mark.parametrize("files, pattern", [
    ({"ca.pem": "x"}, "no site.ini in it"),
    ({"site.ini": "", ".hidden": "x"}, "'.hidden': names must be"),
    ({"site.ini": "", "my token": "x"}, "'my token': names must be"),
    ({"site.ini": "", "sub/": None}, "'sub' is not a regular file"),
], ids=["no-site-ini", "dot-name", "space", "subdirectory"])
def test_refuses_a_bad_site_dir(image, tmp_path, files, pattern):
    site = tmp_path / "outpost"
    site.mkdir()
    for name, text in files.items():
        if text is None:
            (site / name).mkdir()
        else:
            (site / name).write_text(text)
    disk = blank_disk(tmp_path)
    before = state(disk)
    refused(flash("--site", site, image, disk), 2, pattern)
    assert untouched(disk, before)


# --- refusals of block devices (only with --dry-run) -----------------------------

def disks_of(source):
    """The whole disks under a block device, by lsblk (its inverse tree)."""
    r = subprocess.run(["lsblk", "-nrso", "NAME,TYPE", source], capture_output=True, text=True)
    return {line.split()[0] for line in r.stdout.splitlines() if line.split()[1:] == ["disk"]}


def host_disks():
    disks = set()
    for point in ("/", "/usr", "/boot", "/boot/efi"):
        r = subprocess.run(["findmnt", "-nro", "SOURCE", "--mountpoint", point],
                           capture_output=True, text=True)
        source = r.stdout.strip().split("[")[0]  # btrfs: /dev/sda2[/@]
        if source.startswith("/dev/"):
            disks |= disks_of(source)
    return disks


def test_refuses_the_disk_the_host_runs_from(image):
    disks = host_disks()
    if not disks:
        pytest.skip("/ is on no block device here (a container): no host disk to protect")
    for disk in sorted(disks):
        refused(flash("--dry-run", "--yes", image, f"/dev/{disk}"), 3,
                f"/dev/{disk} is the disk this computer runs from")


def test_refuses_a_mounted_disk(image):
    r = subprocess.run(["findmnt", "-nro", "SOURCE"], capture_output=True, text=True)
    mounted = set()
    for source in r.stdout.split():
        source = source.split("[")[0]
        if source.startswith("/dev/") and os.path.exists(source):
            mounted |= disks_of(source)
    others = sorted(mounted - host_disks())
    if not others:
        pytest.skip("no block device is mounted here but the host's own disk")
    refused(flash("--dry-run", "--yes", image, f"/dev/{others[0]}"), 3,
            f"/dev/{others[0]} is in use: .* is mounted on")


@pytest.fixture
def loop(image, tmp_path):
    """loop(size, read_only): a loop device over a copy of the image grown
    to SIZE (its partitions added when the kernel did not read the GPT);
    only ever given to outpost-flash with --dry-run."""
    made = []

    def attach(size="2G", read_only=False):
        backing = str(tmp_path / f"loop{len(made)}.img")
        subprocess.run(["cp", "--sparse=always", image, backing], check=True)
        subprocess.run(["truncate", "-s", size, backing], check=True)
        r = subprocess.run(["losetup", "--find", "--show", "--partscan", backing]
                           + (["--read-only"] if read_only else []), capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"no loop device here: {r.stderr.strip()}")
        dev = r.stdout.strip()
        made.append(dev)
        if not os.path.exists(f"/sys/class/block/{os.path.basename(dev)}p1"):
            subprocess.run(["partx", "-a", dev], capture_output=True)
        return dev, backing
    yield attach
    for dev in made:
        subprocess.run(["partx", "-d", dev], capture_output=True)
        subprocess.run(["losetup", "-d", dev], check=True)


def test_dry_run_on_a_block_device_describes_it(image, loop):
    dev, backing = loop()
    before = state(backing)
    r = flash("--dry-run", "--yes", image, dev)
    assert r.returncode == 0, r.stderr
    assert f"{dev}: block device, 2.1 GB (2048 MiB), model" in r.stdout
    assert untouched(backing, before)


def test_refuses_a_block_device_without_yes_or_terminal(image, loop):
    dev, backing = loop()
    before = state(backing)
    refused(flash("--dry-run", image, dev), 4, f"no terminal to confirm writing {dev} on: add --yes")
    assert untouched(backing, before)


def test_refuses_a_partition(image, loop):
    dev, backing = loop()
    if not os.path.exists(f"{dev}p1"):
        pytest.skip(f"the kernel made no partitions of {dev}")
    before = state(backing)
    refused(flash("--dry-run", "--yes", image, f"{dev}p1"), 3,
            f"{dev}p1 is a partition: give the whole disk, e.g. {dev}")
    assert untouched(backing, before)


def test_refuses_a_disk_smaller_than_the_image(image, loop):
    dev, backing = loop(size="64M")
    before = state(backing)
    refused(flash("--dry-run", "--yes", image, dev), 3, r"holds 64 MiB, the image needs \d+ MiB")
    assert untouched(backing, before)


def test_refuses_a_read_only_disk(image, loop):
    dev, backing = loop(read_only=True)
    before = state(backing)
    refused(flash("--dry-run", "--yes", image, dev), 3, "is read-only")
    assert untouched(backing, before)


def test_refuses_a_file_that_backs_a_loop_device(image, loop):
    dev, backing = loop()
    before = state(backing)
    refused(flash("--dry-run", image, backing), 3, f"in use as {dev}: detach it first")
    assert untouched(backing, before)
