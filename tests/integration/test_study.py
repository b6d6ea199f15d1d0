"""outpost-receiver with a whole CT study over parallel associations, and the
max_associations limit."""
import os
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pydicom.filereader

from outpost import Storescp, blake2b, dataset_bytes, storescu, wait_for

PARALLEL = 4


def _sop_uid(path):
    return str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)


def test_ct_files_survive_storescu_unchanged(ct_study, tmp_path):
    """The assumption test_ct_study_over_parallel_associations rests on: for
    these synthetic files the bytes storescu sends are the file's dataset."""
    scp = Storescp(str(tmp_path))
    try:
        files = ct_study[:2]
        r = storescu(scp.port, files)
        assert r.returncode == 0, r.stderr
        got = scp.take()
    finally:
        scp.stop()
    assert sorted(got) == sorted(_sop_uid(f) for f in files)
    for f in files:
        assert dataset_bytes(got[_sop_uid(f)]) == dataset_bytes(f)


def test_ct_study_over_parallel_associations(receiver, ct_study, record_property, capsys):
    sources = {_sop_uid(f): f for f in ct_study}
    assert len(sources) == 500
    shares = [ct_study[k::PARALLEL] for k in range(PARALLEL)]  # round-robin
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(pool.map(lambda k: storescu(receiver.port, shares[k], calling=f"CT{k}"),
                             range(PARALLEL)))
    for k, r in enumerate(runs):
        assert r.returncode == 0, f"storescu CT{k}: {r.stderr}"

    rows = receiver.rows()
    assert len(rows) == 500
    assert {row["sop_instance_uid"] for row in rows} == set(sources)
    # Each instance is credited to the association that carried it.
    for k, share in enumerate(shares):
        assert {row["sop_instance_uid"] for row in rows if row["calling_aet"] == f"CT{k}"} == \
            {_sop_uid(f) for f in share}

    stored = receiver.stored_files()
    assert len(stored) == 500
    assert set(stored) == {receiver.object_path(row["hash"]) for row in rows}
    for row in rows:
        path = receiver.object_path(row["hash"])
        assert blake2b(path) == row["hash"]
        assert os.path.getsize(path) == row["size"]
        with open(path, "rb") as f:
            assert dataset_bytes(f.read()) == dataset_bytes(sources[row["sop_instance_uid"]]), \
                row["sop_instance_uid"]
    assert receiver.tmp_files() == []
    assert receiver.log().count("result=stored") == 500

    rss = receiver.rss_peak_kb()
    record_property("receiver_peak_rss_kb", rss)
    with capsys.disabled():
        print(f"\n  receiver peak RSS (VmHWM) after 500 x 530 KB over {PARALLEL} "
              f"associations: {rss} kB")


class HoldingRelay:
    """A TCP relay between one SCU and the receiver. Once the receiver has
    answered the A-ASSOCIATE-RQ, the SCU's further bytes are held until
    release(): the association stays open on the receiver, without the SCU
    getting anywhere, for exactly as long as the test wants."""

    ASSOCIATE_AC = 0x02

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.answer = None  # the receiver's first PDU type
        self.answered = threading.Event()
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.listener.close()

    def _run(self):
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        self.listener.close()
        server = socket.create_connection(("127.0.0.1", self.target_port))
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = threading.Thread(target=self._pump, args=(client, server, True), daemon=True)
        up.start()
        self._pump(server, client, False)
        up.join()
        client.close()
        server.close()

    def _pump(self, src, dst, from_scu):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_scu and self.answered.is_set():
                    self.released.wait()
                if not from_scu and self.answer is None:
                    # Set before the SCU can see the answer, so everything it
                    # sends in the association is held.
                    self.answer = data[0]
                    self.answered.set()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def test_max_associations_rejects_the_third_transiently(receivers, ct_study):
    """Two storescu associations are held open by relays (not by timing), so
    the third and fourth association requests meet a full receiver."""
    rx = receivers(receiver={"max_associations": 2}).start()
    held_files = {"HELD1": ct_study[0:50], "HELD2": ct_study[50:100]}
    over_files = {"OVER3": ct_study[100:150], "OVER4": ct_study[150:200]}
    after_files = ct_study[200:250]
    relays = {aet: HoldingRelay(rx.port) for aet in held_files}
    pool = ThreadPoolExecutor(4)
    try:
        held = {aet: pool.submit(storescu, relays[aet].port, files, calling=aet)
                for aet, files in held_files.items()}
        for aet, relay in relays.items():
            wait_for(relay.answered.is_set, 30, what=f"the receiver to answer {aet}")
            assert relay.answer == HoldingRelay.ASSOCIATE_AC, f"{aet} was not accepted"
        # Two associations are open and held: a third and a fourth are refused.
        over = {aet: pool.submit(storescu, rx.port, files, calling=aet)
                for aet, files in over_files.items()}
        for aet, fut in over.items():
            r = fut.result(timeout=60)
            assert r.returncode != 0, f"{aet} was accepted beyond max_associations"
            assert "Association Rejected" in r.stderr, r.stderr
            assert "Rejected Transient" in r.stderr, r.stderr
            assert "Local Limit Exceeded" in r.stderr, r.stderr
        assert not any(f.done() for f in held.values())
        for relay in relays.values():
            relay.release()
        for aet, fut in held.items():
            r = fut.result(timeout=120)
            assert r.returncode == 0, f"{aet}: {r.stderr}"
    finally:
        for relay in relays.values():
            relay.close()
        pool.shutdown(wait=True)

    # The slots come back once those associations end. The receiver frees a
    # slot just after its A-RELEASE-RP, so a storescu started at that instant
    # may still be refused: retry until accepted (a leaked slot never is).
    after = []
    wait_for(lambda: after.append(storescu(rx.port, after_files, calling="AFTER5"))
             or after[-1].returncode == 0, 30, what="a new association to be accepted")

    rows = rx.rows()
    assert Counter(row["calling_aet"] for row in rows) == \
        {"HELD1": 50, "HELD2": 50, "AFTER5": 50}
    assert {row["sop_instance_uid"] for row in rows} == \
        {_sop_uid(f) for f in held_files["HELD1"] + held_files["HELD2"] + after_files}
    # Each refusal is logged. Today that is assoc.end how="busy" only (no
    # assoc.rejected event, no calling AE), so only the count is checked.
    busy = [line for line in rx.log().splitlines() if 'how="busy"' in line]
    assert len(busy) == len(over_files) + len(after) - 1, busy
