"""A pycrdt PanicException is a BaseException (NOTES.md): one on a sync thread
must stay with its document. The thread logs it with the document's name, the
daemon gives the document a new thread, and the other documents and the
daemon go on."""

import logging
import queue
import time

from pycrdt import StickyIndex, Text

from mrmd_monitor import messages as m
from mrmd_monitor.config import Config
from mrmd_monitor.daemon import Daemon
from tests.support.waiting import wait_until
from tests.unit.test_sync import NoPool


def _panic(sync):
    """What pycrdt does with a browser's position whose numbers are floats."""
    StickyIndex.from_json({"tname": "content", "item": {"client": 1.0, "clock": 2.0},
                           "assoc": 0}, sync.doc.get("content", type=Text))


def _next_exit(daemon, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        kind, value = daemon._events.get(timeout=max(0.01, deadline - time.monotonic()))
        if kind == "exited":
            return value


def test_a_panic_on_one_document_restarts_its_thread_and_nothing_else(caplog):
    cfg = Config(sync_url="ws://127.0.0.1:9", docs=("a", "b"), reconnect_max=0.2, grace=0.0)
    daemon = Daemon(cfg)
    daemon.pool = NoPool()
    first, other = daemon.fleet.attach("a"), daemon.fleet.attach("b")
    try:
        with caplog.at_level(logging.INFO):
            first.post(m.Call(_panic))
            crashed = _next_exit(daemon)
            assert crashed is first and first.crashed
            daemon.handle_exited(crashed)
        assert "PanicException" in caplog.text
        assert any(r.levelno == logging.ERROR and "sync thread for a crashed" in r.getMessage()
                   and getattr(r, "doc", None) == "a" for r in caplog.records)
        assert "restarting" in caplog.text
        assert not daemon._stopping
        docs = {s.doc_name: s for s in daemon.fleet.syncs}
        assert sorted(docs) == ["a", "b"] and docs["b"] is other and other.is_alive()
        again = docs["a"]
        assert again is not first and again.client_id != first.client_id
        wait_until(again.is_alive, timeout=5)
        # A document that keeps panicking waits longer before each new thread.
        again.post(m.Call(_panic))
        daemon.handle_exited(_next_exit(daemon))
        third = {s.doc_name: s for s in daemon.fleet.syncs}["a"]
        assert third.conn.next_connect - time.monotonic() > 1.0
    finally:
        for sync in daemon.fleet.syncs:
            sync.post(m.Stop(deadline=time.monotonic()))
        for sync in list(daemon.fleet.syncs) + [first]:
            sync.join(10)
            assert not sync.is_alive()
        try:
            while True:
                daemon._events.get_nowait()
        except queue.Empty:
            pass
