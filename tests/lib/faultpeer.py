"""A DICOM Storage SCP that misbehaves on demand, for the C-STORE sender's
tests (test_dicom_send.py): no real program answers a chosen status or
goes silent when asked. It speaks raw PDUs (PS3.8 9.3, built with dul.py's
helpers) on a loopback port, on a thread of the test process.

    with FaultPeer(status=0xC000, comment="bad pixel data") as peer:
        ... send to 127.0.0.1:peer.port ...
        peer.received      # [(sop_class, sop_instance, dataset bytes)]

Modes:
  "answer"       A-ASSOCIATE-AC, then each C-STORE is read whole and
                 answered with `status` (and `comment` as Error Comment)
  "silent"       accepts the TCP connection, reads, never answers anything
  "no-response"  associates, reads each C-STORE, never answers it
accept: the transfer syntaxes it takes, per presentation context (the
first proposed one that is in the list); None takes the first proposed
one; () takes none ("transfer syntaxes not supported").
refuse_classes: SOP classes it refuses ("abstract syntax not supported").
events: what happened ("associate", "store", "release", "abort", "closed").
"""
import socket
import struct
import threading

import dul
from outpost import free_port

A_ASSOCIATE_AC = 0x02


def associate_ac(rq_body, accept, refuse_classes=()):
    """The A-ASSOCIATE-AC answering an A-ASSOCIATE-RQ body, and
    {context id: transfer syntax} of what it accepted."""
    called, calling = rq_body[4:20], rq_body[20:36]
    items = dul.item(0x10, dul.APPLICATION_CONTEXT.encode())
    taken = {}
    for item_type, value in dul._items(rq_body, 68):
        if item_type != 0x20:
            continue
        pc_id = value[0]
        syntaxes = [dul._text(v) for t, v in dul._items(value, 4) if t == 0x40]
        abstract = [dul._text(v) for t, v in dul._items(value, 4) if t == 0x30][0]
        choice = next((ts for ts in syntaxes if accept is None or ts in accept), None)
        if abstract in refuse_classes:
            # Result 3: abstract syntax not supported.
            body = struct.pack(">BBBB", pc_id, 0, 3, 0) + dul.item(
                0x40, dul.IMPLICIT_LE.encode())
        elif choice:
            taken[pc_id] = choice
            body = struct.pack(">BBBB", pc_id, 0, 0, 0) + dul.item(0x40, choice.encode())
        else:
            # Result 4: transfer syntaxes not supported (PS3.8 9.3.3.2).
            body = struct.pack(">BBBB", pc_id, 0, 4, 0) + dul.item(
                0x40, dul.IMPLICIT_LE.encode())
        items += dul.item(0x21, body)
    user = dul.item(0x51, struct.pack(">I", 16384))
    user += dul.item(0x52, dul.IMPLEMENTATION_CLASS_UID.encode())
    items += dul.item(0x50, user)
    header = struct.pack(">HH", 1, 0) + called + calling + bytes(32)
    return dul.pdu(A_ASSOCIATE_AC, header + items), taken


def c_store_rsp(message_id, sop_class, sop_instance, status, comment=""):
    us = lambda v: struct.pack("<H", v)  # noqa: E731
    elements = [
        (0x0002, dul._uid(sop_class)),
        (0x0100, us(dul.C_STORE_RSP)),
        (0x0120, us(message_id)),
        (0x0800, us(dul.NO_DATASET)),
        (0x0900, us(status)),
    ]
    if comment:
        text = comment.encode("ascii")
        elements.append((0x0902, text + b" " if len(text) % 2 else text))
    elements.append((0x1000, dul._uid(sop_instance)))
    return dul.command_set(elements)


class FaultPeer:
    def __init__(self, mode="answer", status=0x0000, comment="", accept=None,
                 refuse_classes=()):
        self.mode, self.status, self.comment, self.accept = mode, status, comment, accept
        self.refuse_classes = refuse_classes
        self.port = free_port()
        self.received, self.events = [], []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(8)
        self.stopping = False
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping = True
        # shutdown() wakes the threads blocked in accept() or recv();
        # close() alone does not on Linux.
        for s in [self.listener] + self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the fault peer's thread did not end"


    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _recv(self, conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise dul.PeerClosed("closed")
            buf += chunk
        return buf

    def _pdu(self, conn):
        pdu_type, _, length = struct.unpack(">BBI", self._recv(conn, 6))
        return pdu_type, self._recv(conn, length)

    def _serve(self, conn):
        try:
            if self.mode == "silent":
                while conn.recv(65536):
                    pass
                return
            pdu_type, body = self._pdu(conn)
            if pdu_type != dul.A_ASSOCIATE_RQ:
                return
            ac, _ = associate_ac(body, self.accept, self.refuse_classes)
            conn.sendall(ac)
            self.events.append("associate")
            command, data = b"", b""
            while True:
                pdu_type, body = self._pdu(conn)
                if pdu_type == dul.A_RELEASE_RQ:
                    self.events.append("release")
                    conn.sendall(dul.pdu(dul.A_RELEASE_RP, bytes(4)))
                    return
                if pdu_type == dul.A_ABORT:
                    self.events.append("abort")
                    return
                pos = 0
                while pos < len(body):
                    length, pc_id, control = struct.unpack_from(">IBB", body, pos)
                    value = body[pos + 6:pos + 4 + length]
                    pos += 4 + length
                    if control & dul.PDV_COMMAND:
                        command += value
                        continue
                    data += value
                    if not (control & dul.PDV_LAST):
                        continue
                    rq = dul.parse_command(command)
                    sop_class = dul._text(rq[0x0002])
                    sop_instance = dul._text(rq[0x1000])
                    self.received.append((sop_class, sop_instance, data))
                    self.events.append("store")
                    if self.mode == "answer":
                        rsp = c_store_rsp(dul._us(rq[0x0110]), sop_class, sop_instance,
                                          self.status, self.comment)
                        conn.sendall(dul.p_data_tf(dul.pdv(pc_id, rsp, command=True)))
                    command, data = b"", b""
        except (dul.PeerClosed, OSError):
            self.events.append("closed")
        finally:
            conn.close()
