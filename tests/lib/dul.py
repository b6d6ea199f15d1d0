"""A minimal DICOM Upper Layer client (PS3.8) for tests.

It speaks just enough of the protocol to associate, send a C-STORE with a
dataset given as raw bytes (sent exactly as given, never re-encoded), read
the response and release; and it can send anything else a test wants to
throw at a peer: raw bytes, truncated PDUs, lying length fields. The
builders (associate_rq, p_data_tf, c_store_rq, ...) return bytes, so a test
can cut or corrupt them before sending.

    with dul.Client(port) as c:
        ac = c.associate([(sop_class, [dul.EXPLICIT_LE])])
        status, comment = c.c_store(sop_class, sop_uid, dataset_bytes)
        c.release()

PDU layouts: PS3.8 section 9.3; command set encoding: PS3.7 section 6.3
(implicit VR little endian) and annex E.
"""
import socket
import struct

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1.1"
IMPLEMENTATION_VERSION = "OUTPOST_DUL_TEST"

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

A_ASSOCIATE_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x04, 0x05, 0x06, 0x07

# Message control header of a PDV (PS3.8 annex E.2).
PDV_COMMAND, PDV_LAST = 0x01, 0x02

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
NO_DATASET = 0x0101


class PeerClosed(Exception):
    """The peer closed (or reset) the connection."""


class PeerAborted(Exception):
    """The peer sent an A-ABORT."""

    def __init__(self, source, reason):
        super().__init__(f"A-ABORT source={source} reason={reason}")
        self.source, self.reason = source, reason


class ProtocolError(Exception):
    """The peer sent a PDU this client did not expect at this point."""


# --- builders --------------------------------------------------------------


def _uid(uid):
    """A UID value, padded to even length with a NUL (PS3.5 9.1)."""
    b = uid.encode("ascii")
    return b + b"\0" if len(b) % 2 else b


def _ae(title):
    return title.encode("ascii").ljust(16)[:16]


def pdu(pdu_type, body):
    """A PDU: type, reserved byte, 32-bit big endian length, body."""
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def item(item_type, body):
    """A variable item or sub-item of an association PDU (16-bit length)."""
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_rq(contexts, called="OUTPOST", calling="DULTEST", max_pdu=16384,
                 implementation_uid=IMPLEMENTATION_CLASS_UID,
                 implementation_version=IMPLEMENTATION_VERSION):
    """A-ASSOCIATE-RQ. contexts: [(abstract syntax, [transfer syntaxes])],
    given presentation context IDs 1, 3, 5, ... in order."""
    items = item(0x10, APPLICATION_CONTEXT.encode("ascii"))
    for i, (abstract, syntaxes) in enumerate(contexts):
        body = struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + item(0x30, abstract.encode("ascii"))
        for ts in syntaxes:
            body += item(0x40, ts.encode("ascii"))
        items += item(0x20, body)
    user = item(0x51, struct.pack(">I", max_pdu))
    user += item(0x52, implementation_uid.encode("ascii"))
    user += item(0x55, implementation_version.encode("ascii"))
    items += item(0x50, user)
    header = struct.pack(">HH", 1, 0) + _ae(called) + _ae(calling) + bytes(32)
    return pdu(A_ASSOCIATE_RQ, header + items)


def pdv(pc_id, data, command=False, last=True):
    """One presentation data value item (length, context ID, control, data)."""
    control = (PDV_COMMAND if command else 0) | (PDV_LAST if last else 0)
    return struct.pack(">IBB", len(data) + 2, pc_id, control) + data


def p_data_tf(*pdvs):
    return pdu(P_DATA_TF, b"".join(pdvs))


def release_rq():
    return pdu(A_RELEASE_RQ, bytes(4))


def abort_pdu(source=0, reason=0):
    return pdu(A_ABORT, struct.pack(">BBBB", 0, 0, source, reason))


def command_set(elements):
    """A command set in implicit VR little endian, with its group length
    (0000,0000) computed. elements: [(element number, value bytes)] of
    group 0000, in ascending order."""
    body = b""
    for elem, value in elements:
        if len(value) % 2:
            raise ValueError(f"(0000,{elem:04x}) has odd length {len(value)}")
        body += struct.pack("<HHI", 0, elem, len(value)) + value
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def c_store_rq(message_id, sop_class, sop_instance, priority=0):
    us = lambda v: struct.pack("<H", v)  # noqa: E731
    return command_set([
        (0x0002, _uid(sop_class)),      # AffectedSOPClassUID
        (0x0100, us(C_STORE_RQ)),       # CommandField
        (0x0110, us(message_id)),       # MessageID
        (0x0700, us(priority)),         # Priority (0 medium, 1 high, 2 low)
        (0x0800, us(0x0000)),           # CommandDataSetType: a dataset follows
        (0x1000, _uid(sop_instance)),   # AffectedSOPInstanceUID
    ])


def parse_command(data):
    """An implicit VR little endian command set -> {element number: bytes}."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        if group != 0:
            raise ProtocolError(f"element ({group:04x},{elem:04x}) in a command set")
        out[elem] = data[pos:pos + length]
        pos += length
    return out


def _us(value):
    return struct.unpack("<H", value)[0]


def _text(value):
    return value.rstrip(b"\0 ").decode("ascii", "replace")


# --- parsing association answers --------------------------------------------


class Negotiation:
    """What the peer answered to an A-ASSOCIATE-RQ.

    kind: "accept", "reject" or "abort". For accept: contexts maps each
    presentation context ID to (result, transfer syntax), result 0 being
    acceptance, and max_pdu is the peer's maximum PDU length (0 = none).
    For reject: result, source, reason (PS3.8 9.3.4). For abort: source,
    reason."""

    def __init__(self, pdu_type, body, proposed):
        self.kind = {A_ASSOCIATE_AC: "accept", A_ASSOCIATE_RJ: "reject",
                     A_ABORT: "abort"}[pdu_type]
        self.contexts, self.max_pdu, self.proposed = {}, 0, proposed
        self.result = self.source = self.reason = None
        if pdu_type == A_ASSOCIATE_AC:
            self._parse_ac(body)
        elif pdu_type == A_ASSOCIATE_RJ:
            _, self.result, self.source, self.reason = struct.unpack_from(">BBBB", body)
        else:
            _, _, self.source, self.reason = struct.unpack_from(">BBBB", body)

    def _parse_ac(self, body):
        pos = 68  # protocol version, reserved, AE titles echoed, 32 reserved
        for item_type, value in _items(body, pos):
            if item_type == 0x21:
                pc_id, _, result, _ = struct.unpack_from(">BBBB", value)
                ts = [_text(v) for t, v in _items(value, 4) if t == 0x40]
                self.contexts[pc_id] = (result, ts[0] if ts and result == 0 else None)
            elif item_type == 0x50:
                for sub_type, sub in _items(value, 0):
                    if sub_type == 0x51:
                        self.max_pdu = struct.unpack(">I", sub)[0]

    @property
    def accepted(self):
        return self.kind == "accept"

    def context_for(self, abstract_syntax, transfer_syntax=None):
        """The ID of an accepted context for abstract_syntax (and, if given,
        with that transfer syntax), or None."""
        for i, (abstract, _) in enumerate(self.proposed):
            pc_id = 2 * i + 1
            result, ts = self.contexts.get(pc_id, (None, None))
            if abstract == abstract_syntax and result == 0 and \
                    transfer_syntax in (None, ts):
                return pc_id
        return None


def _items(data, pos):
    while pos + 4 <= len(data):
        item_type, _, length = struct.unpack_from(">BBH", data, pos)
        yield item_type, data[pos + 4:pos + 4 + length]
        pos += 4 + length


# --- the client ----------------------------------------------------------------


class Client:
    """One TCP connection to a DICOM peer."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.negotiation = None
        self.message_id = 0
        self.seen = b""  # what wait_closed() read

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    # Raw transport.

    def send(self, data):
        """Sends raw bytes. A peer that already closed may reset the
        connection; that is reported as PeerClosed."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise PeerClosed(str(e)) from e

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise PeerClosed(str(e)) from e
            if not chunk:
                raise PeerClosed(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def recv_pdu(self):
        """The next PDU as (type, body)."""
        pdu_type, _, length = struct.unpack(">BBI", self._recv_exact(6))
        return pdu_type, self._recv_exact(length)

    def wait_closed(self, timeout=30):
        """Reads and drops whatever the peer sends until it closes the
        connection. True when it did within timeout, False if it is still
        open then. PDUs seen on the way (e.g. an A-ABORT) are kept in
        self.seen."""
        self.sock.settimeout(timeout)
        self.seen = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.seen += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    # Association.

    def associate(self, contexts, called="OUTPOST", calling="DULTEST", max_pdu=16384):
        """Sends an A-ASSOCIATE-RQ and returns the peer's Negotiation."""
        self.send(associate_rq(contexts, called, calling, max_pdu))
        pdu_type, body = self.recv_pdu()
        if pdu_type not in (A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT):
            raise ProtocolError(f"PDU type {pdu_type:#04x} in answer to A-ASSOCIATE-RQ")
        self.negotiation = Negotiation(pdu_type, body, list(contexts))
        return self.negotiation

    def release(self):
        """A-RELEASE-RQ; returns once the A-RELEASE-RP arrived."""
        self.send(release_rq())
        pdu_type, _ = self.recv_pdu()
        if pdu_type != A_RELEASE_RP:
            raise ProtocolError(f"PDU type {pdu_type:#04x} in answer to A-RELEASE-RQ")

    def abort(self):
        self.send(abort_pdu())

    # DIMSE.

    def send_command(self, pc_id, command):
        self.send(p_data_tf(pdv(pc_id, command, command=True, last=True)))

    def send_dataset(self, pc_id, data, fragment=None, last=True):
        """Sends data as dataset PDVs of at most `fragment` bytes each, one
        per P-DATA-TF PDU (default: the largest the peer accepts). With
        last=False the final fragment is not marked last."""
        fragment = fragment or self.max_fragment()
        chunks = [data[i:i + fragment] for i in range(0, len(data), fragment)] or [b""]
        for i, chunk in enumerate(chunks):
            self.send(p_data_tf(pdv(pc_id, chunk, last=last and i == len(chunks) - 1)))

    def max_fragment(self):
        peer_max = self.negotiation.max_pdu if self.negotiation else 0
        return peer_max - 6 if peer_max else 16384  # PDV item header: 4 + 2

    def recv_command(self):
        """Reads P-DATA-TF PDUs until a complete command set arrived and
        returns it parsed ({element number: bytes})."""
        data = b""
        while True:
            pdu_type, body = self.recv_pdu()
            if pdu_type == A_ABORT:
                raise PeerAborted(body[2], body[3])
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"PDU type {pdu_type:#04x} while awaiting a response")
            pos = 0
            while pos < len(body):
                length, _, control = struct.unpack_from(">IBB", body, pos)
                if control & PDV_COMMAND:
                    data += body[pos + 6:pos + 4 + length]
                    if control & PDV_LAST:
                        return parse_command(data)
                pos += 4 + length

    def c_store(self, sop_class, sop_instance, dataset, pc_id=None, fragment=None,
                transfer_syntax=None, priority=0):
        """Sends a C-STORE-RQ with dataset (bytes, sent unchanged) and returns
        (status, error comment) of the C-STORE-RSP; the comment is "" when
        the response has none. pc_id defaults to an accepted context for
        sop_class (and transfer_syntax, if given). priority: the command's
        Priority (0 medium, 1 high, 2 low)."""
        if pc_id is None:
            pc_id = self.negotiation.context_for(sop_class, transfer_syntax)
            if pc_id is None:
                raise ValueError(f"no accepted presentation context for {sop_class}")
        self.message_id += 1
        self.send_command(pc_id, c_store_rq(self.message_id, sop_class, sop_instance, priority))
        self.send_dataset(pc_id, dataset, fragment)
        rsp = self.recv_command()
        if _us(rsp[0x0100]) != C_STORE_RSP or _us(rsp[0x0120]) != self.message_id:
            raise ProtocolError(f"unexpected response {rsp}")
        return _us(rsp[0x0900]), _text(rsp.get(0x0902, b""))
