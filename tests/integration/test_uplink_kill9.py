"""kill -9 of outpost-uplink, ten times during the drain of a 500-instance
study, restarting it each time: the cloud ends up with exactly the
instances received (none missing, none extra, each byte-identical), every
row 'sent', none left 'sending'.

The moments are random (seeded) and tied to the drain's progress rather
than to the clock alone, so that the ten kills spread over the drain on a
fast machine as on a slow one: each round draws a number of instances
that must be 'sent' before it (increasing from round to round, all below
the study's size), waits for it and for a batch on the wire (a row
'sending'), then a random 0-150 ms more. Batches of 10 instances (5 MB)
make that land anywhere: mid-body, while the cloud stores, while the
answer is settled, between two batches. After each kill the spool (sqlite, durable) tells
which rows were in flight when the process died: those still 'sending'.
The next start must put exactly those back in the queue and say so
(uplink.recover requeued=N); a start after a kill that found nothing in
flight says nothing.
"""
import random
import time

from outpost import wait_for
from integration_fixtures import assert_all_sent, log_lines, uid_of

KILLS = 10
BATCH = 10


def runs(log):
    """The uplink's log cut into one piece per start (the first piece is
    what came before the first start: nothing)."""
    return log.split("event=uplink.start ")


def test_kill9_during_drain_loses_and_duplicates_nothing(pipelines, ct_study):
    rng = random.Random(20261128)
    p = pipelines(start_uplink=False, cloud={"batch_max_instances": BATCH})
    cloud, rx, up = p
    p.send(ct_study)
    uids = {uid_of(f) for f in ct_study}
    assert rx.states() == {"queued": len(uids)}
    # How many instances are 'sent' before each kill: seeded, increasing,
    # leaving most of a batch-sized margin below the end of the drain.
    targets = sorted(rng.sample(range(0, len(uids) * 7 // 10), KILLS))

    def sent():
        return len(rx.rows("state = 'sent'"))

    in_flight = []  # rows 'sending' when the uplink died, one count per kill
    for i, target in enumerate(targets):
        up.start()
        try:
            wait_for(lambda: sent() >= target and rx.rows("state = 'sending'"), 60,
                     interval=0.005, what=f"{target} sent and a batch on the wire")
        except TimeoutError:
            raise AssertionError(f"kill {i + 1}: not {target} sent with a batch on the wire: "
                                 f"states {rx.states()}") from None
        time.sleep(rng.uniform(0.0, 0.15))
        up.kill9()
        in_flight.append(len(rx.rows("state = 'sending'")))
        # Nothing lost or doubled in the spool by the kill.
        assert len(rx.rows()) == len(uids)
    # Most kills must have found requests in flight, or the test missed its point.
    assert sum(1 for n in in_flight if n) >= KILLS // 2, in_flight

    up.start()
    p.wait_drained()
    assert_all_sent(rx, len(uids))  # nothing 'sending', 'queued' or quarantined
    assert {r["sop_instance_uid"] for r in rx.rows()} == uids
    p.assert_cloud_holds(uids)      # exactly the set received, every byte

    # Each start after a kill requeued exactly the rows that were in flight.
    pieces = runs(up.log())
    assert len(pieces) == KILLS + 2, "one log piece per start expected"
    for i, n in enumerate(in_flight):
        recover = [line for line in pieces[i + 2].splitlines()
                   if "event=uplink.recover " in line]
        if n:
            assert len(recover) == 1 and f" requeued={n} " in recover[0] + " ", \
                f"start {i + 2}, after a kill with {n} rows in flight: {recover}"
        else:
            assert not recover, f"start {i + 2}, after a kill with nothing in flight: {recover}"
    assert len(log_lines(up, "uplink.recover")) == sum(1 for n in in_flight if n)
