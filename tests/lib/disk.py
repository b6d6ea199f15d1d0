"""The appliance image under test and its GPT."""
import os
import struct
import zlib

from outpost import ROOT

VERSION = open(os.path.join(ROOT, "VERSION")).read().strip()
# out/qemu-x86_64/outpost-<version>-qemu-x86_64.img (make image), or $OUTPOST_IMAGE
IMAGE = os.environ.get("OUTPOST_IMAGE") or os.path.join(
    ROOT, "out", "qemu-x86_64", f"outpost-{VERSION}-qemu-x86_64.img")

SECTOR = 512


def gpt(path):
    """{name: (offset, size)} of a disk's GPT, after checking its CRCs (what
    sgdisk -v checks)."""
    with open(path, "rb") as f:
        f.seek(SECTOR)
        header = bytearray(f.read(92))
        assert header[:8] == b"EFI PART", f"{path}: no GPT header at LBA 1"
        size, crc = struct.unpack_from("<II", header, 12)
        struct.pack_into("<I", header, 16, 0)
        assert zlib.crc32(header[:size]) == crc, f"{path}: GPT header CRC wrong"
        lba, count, esize, ecrc = struct.unpack_from("<QIII", header, 72)
        f.seek(lba * SECTOR)
        table = f.read(count * esize)
    assert zlib.crc32(table) == ecrc, f"{path}: GPT partition entries CRC wrong"
    parts = {}
    for i in range(count):
        e = table[i * esize:(i + 1) * esize]
        if e[:16] != bytes(16):
            first, last = struct.unpack_from("<QQ", e, 32)
            parts[e[56:128].decode("utf-16-le").rstrip("\0")] = (first * SECTOR,
                                                                 (last - first + 1) * SECTOR)
    return parts


def rename_partition(path, old, new):
    """Gives the partition named old the name new in the primary GPT (its
    two CRCs made again; the backup is left as it was, and the primary is
    what firmware and kernel read)."""
    with open(path, "r+b") as f:
        f.seek(SECTOR)
        header = bytearray(f.read(92))
        size = struct.unpack_from("<I", header, 12)[0]
        lba, count, esize = struct.unpack_from("<QII", header, 72)
        f.seek(lba * SECTOR)
        table = bytearray(f.read(count * esize))
        for i in range(count):
            at = i * esize + 56
            if table[at:at + 72].decode("utf-16-le").rstrip("\0") == old:
                table[at:at + 72] = new.encode("utf-16-le").ljust(72, b"\0")
                break
        else:
            raise AssertionError(f"{path}: no partition named {old}")
        struct.pack_into("<I", header, 88, zlib.crc32(table))
        struct.pack_into("<I", header, 16, 0)
        struct.pack_into("<I", header, 16, zlib.crc32(header[:size]))
        f.seek(lba * SECTOR)
        f.write(table)
        f.seek(SECTOR)
        f.write(header)
