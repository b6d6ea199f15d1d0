"""The console's listener under a LAN attacker (issue 15, points 4 and 5):
what a client may hold of the uplink (memory, connections, time, the
thread pool) is bounded, and outpostctl on the Unix socket always gets in,
only as root or the uplink's own user.

Real uplink and receiver; the attackers are raw sockets from this process.
"""
import os
import socket
import struct
import subprocess
import threading
import time

import dicomgen
from console import Api
from integration_fixtures import uid_of
from outpost import BUILD, wait_for

CTL = os.path.join(BUILD, "outpostctl")


def start(receivers, **overrides):
    """A receiver and its uplink, no cloud, no password (the tests here
    need none: /healthz and the socket)."""
    rx = receivers(**overrides).start()
    up = rx.uplink().start()
    return rx, up


def vm_rss_kb(service):
    with open(f"/proc/{service.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def ctl_health(rx):
    env = {k: v for k, v in os.environ.items() if k != "OUTPOST_CONFIG"}
    return subprocess.run([CTL, "--config", rx.ini, "health"], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL)


def connect(port, source="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return s


def closed_by_server(s, timeout=3.0):
    """Does the server close s (EOF or reset) within timeout?"""
    end = time.monotonic() + timeout
    try:
        while True:
            s.settimeout(max(0.01, end - time.monotonic()))
            data = s.recv(4096)
            if data == b"":
                return True
            assert not data.startswith(b"HTTP/"), data  # closed without an answer
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def console_port(rx):
    return int(rx.config["console"]["listen"].rsplit(":", 1)[1])


def test_a_client_that_pipelines_and_never_reads_holds_little_memory(receivers):
    rx, up = start(receivers)
    port = console_port(rx)
    before = vm_rss_kb(up)
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # The cheapest request there is: answered at once (404), no job.
    request = b"GET /api/nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"
    burst = request * 1000
    sent = 0
    s.settimeout(2)
    try:
        for _ in range(100):  # 100 000 requests, as fast as the uplink takes them
            s.sendall(burst)
            sent += 1000
    except socket.timeout:
        pass  # the uplink stopped reading: the client waits, not memory
    # Whatever the uplink took in, it has answered (or holds) by now.
    cpu = [-1]

    def settled():
        with open(f"/proc/{up.proc.pid}/stat") as f:
            now = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
        done, cpu[0] = now == cpu[0], now
        return done
    wait_for(settled, timeout=60, interval=0.5, what="the uplink to be idle")
    rss = vm_rss_kb(up)
    assert rss < 32 * 1024, f"uplink VmRSS {rss} kB (was {before} kB) after {sent} requests"
    # Others are still served, over TCP and the socket.
    assert Api(rx).get("/healthz").status == 200
    assert Api(rx, unix=True).get("/api/status").status == 200
    s.close()


def test_slowloris_is_capped_per_address_and_the_socket_stays_open(receivers):
    rx, up = start(receivers)
    port = console_port(rx)
    t0 = time.monotonic()
    slow = []
    for _ in range(64):
        s = connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
        slow.append(s)
    # Eight connections from one address; the others are closed at once.
    refused = [s for s in slow[8:] if closed_by_server(s, 2)]
    assert len(refused) == 56
    assert "event=console.refused peer=127.0.0.1 reason=\"too many connections from this " \
           "address\"" in up.log()
    # The Unix socket has its own limit: outpostctl health works meanwhile.
    r = ctl_health(rx)
    assert r.returncode == 0 and r.stdout.startswith("healthy"), r
    # Another address is not held back by this one's.
    other = connect(port, source="127.0.0.2")
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    other.settimeout(10)
    assert other.recv(12) == b"HTTP/1.1 200"
    other.close()
    # A byte every second does not keep a connection: headers complete
    # in 10 s or it is closed.
    for _ in range(8):
        for s in slow[:8]:
            try:
                s.sendall(b"a")
            except OSError:
                pass
        time.sleep(1)
    assert all(closed_by_server(s, max(0.1, t0 + 13 - time.monotonic())) for s in slow[:8])
    assert time.monotonic() - t0 < 15
    # Then the address is served again.
    assert Api(rx).get("/healthz").status == 200
    for s in slow:
        s.close()


def test_console_allowed_hosts_are_checked_at_accept(receivers):
    rx, up = start(receivers, console={"allowed_hosts": "10.0.0.0/8, 127.0.0.2"})
    port = console_port(rx)
    s = connect(port)
    assert closed_by_server(s)
    s.close()
    assert 'event=console.refused peer=127.0.0.1 reason="not in [console] allowed_hosts"' \
        in up.log()
    s = connect(port, source="127.0.0.2")
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(10)
    assert s.recv(12) == b"HTTP/1.1 200"
    s.close()
    # The socket is not a network address.
    assert Api(rx, unix=True).get("/api/status").status == 200


def test_the_admin_socket_takes_root_or_the_uplinks_user_only(receivers, tmp_path):
    # A socket another user can reach (its file mode would stop them
    # first on the appliance), so that only SO_PEERCRED decides.
    d = f"/tmp/op-peercred-{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    path = os.path.join(d, "outpost.sock")
    try:
        rx, up = start(receivers, console={"socket": path})
        os.chmod(path, 0o666)
        pid = os.fork()
        if pid == 0:  # nobody
            code = 3
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                c = socket.socket(socket.AF_UNIX)
                c.settimeout(5)
                c.connect(path)
                c.sendall(b"POST /api/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                code = 0 if c.recv(100) == b"" else 1
            except (ConnectionResetError, BrokenPipeError):
                code = 0  # refused after connecting: SO_PEERCRED, not the file mode
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0, "uid 65534 got an answer on the admin socket"
        assert "event=console.refused peer=local reason=\"uid 65534 is not root or the " \
               "uplink's user\"" in up.log()
        local = Api(rx, unix=True)
        assert local.ok("GET", "/api/status")["link"]["paused_by_operator"] is False
        assert ctl_health(rx).returncode == 0
    finally:
        subprocess.run(["rm", "-rf", d])


def test_healthz_flood_with_resets_does_not_slow_uploads(pipeline, tmp_path):
    """Anyone may ask /healthz: a flood of them, each client gone at once
    (RST), runs a bounded number of checks and the upload finishes."""
    cloud, rx, up = pipeline
    port = console_port(rx)
    stop = threading.Event()
    asked = [0]

    def flood():
        linger = struct.pack("ii", 1, 0)
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.close()  # RST: the client has gone
                asked[0] += 1
            except OSError:
                pass

    files = dicomgen.make_ct_study(str(tmp_path / "study"), 60, rows=128, cols=128)
    threads = [threading.Thread(target=flood) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        pipeline.send(files)
        pipeline.wait_drained(timeout=60)
        # However fast the upload was, the flood goes on until it has
        # asked 200 times (a console that stops answering fails here).
        wait_for(lambda: asked[0] >= 200, 30, what="200 health checks asked")
    finally:
        stop.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - t0
    pipeline.assert_cloud_holds({uid_of(f) for f in files}, compare=[])
    metrics = Api(rx, unix=True).get("/metrics").text
    checks = int(next(line.split()[1] for line in metrics.splitlines()
                      if line.startswith("outpost_console_health_checks_total ")))
    # One check at a time, a result answered again for 2 s.
    assert checks <= elapsed / 2 + 2, (checks, asked[0], elapsed)


def test_plain_http_off_loopback_is_a_configuration_error(tmp_path):
    ini = tmp_path / "outpost.ini"
    ini.write_text("[console]\nsocket = x.sock\n\nlisten = 0.0.0.0:8080\n")
    r = subprocess.run([os.path.join(BUILD, "outpost-uplink"), "--config", str(ini),
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{ini}:4: listen: plain HTTP is served on loopback only"), \
        r.stderr
    ini.write_text("[console]\nlisten = 0.0.0.0:8443\ntls_cert = c.pem\ntls_key = k.pem\n"
                   "allowed_hosts = 10.1.0.0/16\n")
    r = subprocess.run([os.path.join(BUILD, "outpost-uplink"), "--config", str(ini),
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "allowed_hosts = 10.1.0.0/16" in r.stdout
