"""Endless cells cannot take every worker by spelling one runtime many ways.

The pool gives one document, and one runtime, at most --worker-share of the
workers. A peer that writes the same runtime as ``HTTP://LOCALHOST:9``,
``http://127.0.0.1:9/mrp/v1/``, ``http://localhost.:9/x`` ... used to get a
share per spelling, and two such documents held every worker: a third
document's run never started. Shares are keyed by the runtime's canonical
origin, and the last free worker is kept for a document that holds none.
"""

from mrmd_monitor.http import runtime_origin
from tests.unit.test_pool import world  # noqa: F401 - the scripted client and pool
from tests.support.waiting import wait_until

SPELLINGS = ["http://127.0.0.1:9/mrp/v1", "http://localhost:9/mrp/v1", "HTTP://LOCALHOST:9/mrp/v1",
             "http://LocalHost:9/mrp/v1/", "http://127.0.0.1:9/mrp/v1//", "http://localhost.:9/mrp/v1",
             "http://127.0.0.1:9", "http://127.0.0.1:9/", "http://127.0.0.2:9/other",
             "http://[::1]:9/mrp/v1", "http://0.0.0.0:9/mrp/v1", "http://[::ffff:127.0.0.1]:9/a"]


def test_every_spelling_of_one_runtime_has_one_origin():
    assert len(SPELLINGS) == 12
    assert {runtime_origin(url) for url in SPELLINGS} == {"localhost:9"}
    assert runtime_origin("https://Example.COM./mrp/v1") == "example.com:443"
    assert runtime_origin("http://127.0.0.1:10/mrp/v1") != runtime_origin("http://127.0.0.1:9")
    assert runtime_origin("http://10.0.0.1:9") != runtime_origin("http://10.0.0.2:9")


def third_document_runs(world, runtimes, held):
    """Documents a and b each ask for an endless run on every runtime of
    ``runtimes`` (each on its own session); ``held`` workers start (decided
    under the pool's lock, at submit); then document c's one run must start."""
    client, make, job, posted = world
    pool = make(max_workers=8, share=0.5)
    for doc in "ab":
        for i, url in enumerate(runtimes):
            exec_id = "%s%d" % (doc, i)
            pool.submit(exec_id, job(exec_id, doc=doc, runtime=url, session=exec_id))
    assert pool.active() == held
    pool.submit("c0", job("c0", doc="c", runtime="http://127.0.0.1:8/mrp/v1", session="c"))
    wait_until(lambda: "c0" in client.running(), timeout=5,
               message="the third document's run never started")
    return pool


def test_twelve_spellings_leave_workers_for_a_third_document(world):  # noqa: F811
    # One runtime, however spelt, holds its share (4 of 8) and no more.
    assert third_document_runs(world, SPELLINGS, held=4).active() == 5


def test_the_last_worker_waits_for_a_document_that_holds_none(world):  # noqa: F811
    # Twelve genuinely different runtimes: the runtime share does not bind,
    # each document holds its share, and the eighth worker waits for c.
    runtimes = ["http://127.0.0.1:%d" % (100 + i) for i in range(12)]
    assert third_document_runs(world, runtimes, held=7).active() == 8


def test_one_spelt_two_ways_still_runs_one_at_a_time(world):  # noqa: F811
    client, make, job, posted = world
    pool = make(max_workers=8)
    pool.submit("e1", job("e1", runtime="http://127.0.0.1:9/mrp/v1"))
    assert pool.submit("e2", job("e2", runtime="http://LOCALHOST:9/mrp/v1/")) == 1
    wait_until(lambda: client.running() == ["e1"], timeout=5)
    client.release("e1")
    wait_until(lambda: client.running() == ["e1", "e2"], timeout=5)
