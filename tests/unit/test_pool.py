"""The worker pool's scheduling, with a scripted MRP client: which run starts,
the share of one document or runtime, cancels that race starts, and a start
that fails."""

import threading

import pytest

from mrmd_monitor import messages as m
from mrmd_monitor.errors import Cancelled
from mrmd_monitor.sse import MrpEvent
from mrmd_monitor.messages import RunJob
from mrmd_monitor.workers import WorkerPool, share_limit
from tests.support.waiting import wait_until


class Client:
    """execute_stream blocks until the test releases that run (or it is cancelled)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = []
        self.gates = {}

    def execute_stream(self, url, *, code, session, exec_id, on_event, cancel, **_limits):
        gate = self.gates.setdefault(exec_id, threading.Event())
        with self.lock:
            self.started.append(exec_id)
        on_event(MrpEvent("start", {}))
        while not gate.wait(0.01):
            if cancel.cancelled:
                raise Cancelled("cancelled")

    def release(self, exec_id):
        self.gates.setdefault(exec_id, threading.Event()).set()

    def running(self):
        with self.lock:
            return list(self.started)

    def interrupt_status(self, url, session, exec_id, **_context):
        return True, ""

    def close(self):
        pass


@pytest.fixture
def world():
    client = Client()
    posted = []
    pools = []

    def make(**kw):
        pool = WorkerPool(client, **kw)
        pools.append(pool)
        return pool

    def job(exec_id, doc="a", runtime="http://127.0.0.1:9", session="s"):
        return RunJob(exec_id=exec_id, runtime_url=runtime, session=session, code="x",
                      post=posted.append, doc=doc)

    yield client, make, job, posted
    for gate in client.gates.values():
        gate.set()
    for pool in pools:
        pool.shutdown(timeout=5)


def arm(pool, job):
    """Hand the run over; the pool runs each (runtime, session) in arrival order."""
    return pool.submit(job.exec_id, job)


def finished(posted, exec_id):
    return [msg for msg in posted if isinstance(msg, m.RunFinished) and msg.exec_id == exec_id]


def test_share_limit():
    assert share_limit(8, 0.5) == 4
    assert share_limit(1, 0.5) == 1
    assert share_limit(3, 1.0) == 3
    assert share_limit(2, 0.1) == 1


def test_one_document_cannot_take_every_worker(world):
    client, make, job, posted = world
    pool = make(max_workers=4, share=0.5)
    # Document "a" asks for six endless runs, each on its own session.
    for i in range(6):
        arm(pool, job("a%d" % i, doc="a", session="s%d" % i))
    wait_until(lambda: len(client.running()) == 2, timeout=5)
    arm(pool, job("b0", doc="b", runtime="http://127.0.0.1:8"))
    wait_until(lambda: "b0" in client.running(), timeout=5)
    assert sorted(client.running()) == ["a0", "a1", "b0"]
    assert pool.active() == 3
    client.release("b0")
    wait_until(lambda: finished(posted, "b0"), timeout=5)
    client.release("a0")
    wait_until(lambda: "a2" in client.running(), timeout=5)
    assert pool.active() == 2


def test_one_runtime_cannot_take_every_worker(world):
    client, make, job, posted = world
    pool = make(max_workers=2, share=0.5)
    for i, doc in enumerate("abc"):
        arm(pool, job("slow-" + doc, doc=doc, runtime="http://127.0.0.1:7", session=doc))
    arm(pool, job("other", doc="d", runtime="http://127.0.0.1:8", session="x"))
    wait_until(lambda: sorted(client.running()) == ["other", "slow-a"], timeout=5)


def test_same_session_runs_one_at_a_time_in_order(world):
    client, make, job, posted = world
    pool = make(max_workers=4)
    e1, e2 = job("e1"), job("e2")
    assert pool.submit("e1", e1) == 0
    assert pool.submit("e2", e2) == 1       # handed over later: waits behind e1
    wait_until(lambda: client.running() == ["e1"], timeout=5)
    client.release("e1")
    wait_until(lambda: client.running() == ["e1", "e2"], timeout=5)


def test_cancel_of_a_queued_run_never_lets_it_run(world):
    client, make, job, posted = world
    for round_ in range(30):
        pool = make(max_workers=2)
        a, b, c = job("a%d" % round_), job("b%d" % round_), job("c%d" % round_)
        arm(pool, a)
        arm(pool, b)
        arm(pool, c)
        wait_until(lambda: a.exec_id in client.running(), timeout=5)
        # Finishing a (which starts b) races the cancel of b.
        t = threading.Thread(target=client.release, args=(a.exec_id,))
        t.start()
        pool.cancel(b.exec_id)
        t.join()
        wait_until(lambda: c.exec_id in client.running(), timeout=5)
        if b.exec_id in client.running():
            # It had started: the cancel must have stopped it, before c started.
            assert finished(posted, b.exec_id) and finished(posted, b.exec_id)[0].cancelled
            assert client.running().index(b.exec_id) < client.running().index(c.exec_id)
        client.release(c.exec_id)
        wait_until(lambda: finished(posted, c.exec_id), timeout=5)
        assert pool.active() == 0


def test_a_start_that_fails_ends_the_run_in_error_and_the_queue_moves(world):
    client, make, job, posted = world
    pool = make(max_workers=2)
    arm(pool, job("first"))
    arm(pool, job("second"))
    arm(pool, job("third"))
    wait_until(lambda: client.running() == ["first"], timeout=5)
    real = pool._streams.submit
    calls = []

    def failing(fn, *args):
        calls.append(args[0].exec_id)
        if len(calls) == 1:
            raise RuntimeError("can't start new thread")
        return real(fn, *args)

    pool._streams.submit = failing
    client.release("first")     # the next start happens in that worker's finally
    wait_until(lambda: finished(posted, "second"), timeout=5)
    err = finished(posted, "second")[0].error
    assert err["type"] == "MonitorError" and "could not start" in err["message"]
    wait_until(lambda: "third" in client.running(), timeout=5)
    client.release("third")
    wait_until(lambda: pool.active() == 0, timeout=5)
