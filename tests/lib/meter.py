"""A metering TCP relay for shaping tests: listens on a free loopback port,
forwards every connection to a target (nginx, HTTPS: the bytes relayed are
the TLS records the uplink writes) and records, for the client-to-server
direction, when each piece arrived. The uplink is pointed at the relay
with the cloud's own host name, so TLS is untouched.

    relay = MeteringRelay(("127.0.0.1", cloud.https_port)).start()
    url = f"https://localhost:{relay.port}/dicom-web"
    ...
    relay.bins(0.1)            # bytes per 100 ms bin, from the first byte
    relay.connections          # TCP connections accepted so far
    relay.stop()
"""
import selectors
import socket
import threading
import time

from outpost import free_port


class MeteringRelay:
    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.samples = []      # (monotonic time, bytes) upstream
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = set()

    def start(self):
        self._listen = socket.create_server(("127.0.0.1", self.port))
        self._listen.settimeout(0.2)
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(10)
        with self._lock:
            for s in self._socks:
                s.close()
        self._listen.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self._listen.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._socks |= {client, upstream}
            t = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, client, upstream):
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        while not self._stop.is_set():
            for key, _ in sel.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    sel.close()
                    for s in (client, upstream):
                        s.close()
                    return
                if key.fileobj is client:
                    with self._lock:
                        self.samples.append((time.monotonic(), len(data)))
                try:
                    key.data.sendall(data)
                except OSError:
                    sel.close()
                    for s in (client, upstream):
                        s.close()
                    return

    def total(self, since=None, until=None):
        with self._lock:
            return sum(n for t, n in self.samples
                       if (since is None or t >= since) and (until is None or t < until))

    def bins(self, width=0.1, since=None, until=None):
        """Bytes per bin of `width` seconds, from `since` (default: the first
        byte) to `until` (default: the last byte)."""
        with self._lock:
            samples = list(self.samples)
        if not samples:
            return []
        start = samples[0][0] if since is None else since
        end = samples[-1][0] if until is None else until
        out = [0] * (int((end - start) / width) + 1)
        for t, n in samples:
            if start <= t <= end:
                out[min(int((t - start) / width), len(out) - 1)] += n
        return out
