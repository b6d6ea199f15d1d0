"""The services speak systemd's notify protocol (Type=notify, WatchdogSec=):
READY=1 once they serve, WATCHDOG=1 keep-alives at half the watchdog
interval while they run, STOPPING=1 on SIGTERM. The test plays systemd:
a datagram socket in NOTIFY_SOCKET, the interval in WATCHDOG_USEC."""
import os
import socket
import struct
import time

import pytest

from outpost import wait_for

WATCHDOG_S = 0.6
# Linux (asm-generic/socket.h); Python's socket module does not name it.
SO_TIMESTAMPNS = 35


class NotifySocket:
    """Each message is timed by the kernel as it arrives (SO_TIMESTAMPNS),
    not when the test gets round to reading it: on a loaded machine (tests
    side by side) the test's own delays would otherwise count as the
    service's."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages = []  # (arrival time, CLOCK_REALTIME seconds; {key: value})

    def poll(self):
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return self.messages
            [(level, kind, stamp)] = ancillary
            assert (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS)
            sec, nsec = struct.unpack("qq", stamp)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((sec + nsec / 1e9, fields))

    def times(self, key):
        return [t for t, m in self.poll() if key in m]

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = NotifySocket(str(tmp_path / "notify.sock"))
    yield n
    n.close()


@pytest.mark.parametrize("service", ["receiver", "uplink"])
def test_ready_watchdog_and_stopping(receivers, notify, service):
    rx = receivers()
    target = rx if service == "receiver" else rx.uplink()
    if service == "uplink":
        rx.start()
    target.env = {"NOTIFY_SOCKET": notify.path,
                  "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
    target.start()
    ready = wait_for(lambda: [m for _, m in notify.poll() if m.get("READY") == "1"], 10,
                     what="READY=1")
    assert ready[0].get("STATUS"), ready
    end = time.monotonic() + 3 * WATCHDOG_S
    while time.monotonic() < end:  # drained as it goes: a datagram queue is short
        notify.poll()
        time.sleep(0.01)
    pings = notify.times("WATCHDOG")
    assert len(pings) >= 4, pings
    # Never more than the interval apart: systemd would not have fired.
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WATCHDOG_S, gaps
    target.stop()
    assert [m for _, m in notify.poll() if m.get("STOPPING") == "1"]


def test_without_systemd_nothing_is_sent(receivers, notify):
    rx = receivers()
    rx.env = {"NOTIFY_SOCKET": ""}
    rx.start()
    time.sleep(0.5)
    assert notify.poll() == []
    assert os.path.exists(notify.path)
