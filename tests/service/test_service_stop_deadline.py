"""The daemon's loop without network: events dispatched to handle_<name>, and
one stop deadline that bounds the whole stop however stuck the parts are."""

import signal
import time

import pytest

from mrmd_monitor import daemon as daemon_module
from mrmd_monitor import messages as m
from mrmd_monitor.config import load_config
from mrmd_monitor.daemon import STOP_MARGIN, Daemon

pytestmark = pytest.mark.usefixtures("restore_logging")


class StuckSync:
    """A sync thread that never ends, whatever it is told."""

    doc_name = "stuck.md"
    leaving = False
    crashed = False

    def __init__(self):
        self.posted = []
        self.joins = []

    def post(self, message):
        self.posted.append(message)

    def is_alive(self):
        return True

    def join(self, timeout=None):
        self.joins.append(timeout)


class StuckPool:
    def __init__(self):
        self.timeouts = []

    def stop_starting(self):
        pass

    def shutdown(self, timeout):
        self.timeouts.append(timeout)
        time.sleep(timeout)  # a worker that does not stop uses all it is given


def test_a_stuck_stop_ends_within_grace_plus_the_margin():
    daemon = Daemon(load_config(["ws://127.0.0.1:1", "--grace", "0.5"], env={}))
    sync, pool = StuckSync(), StuckPool()
    daemon.fleet.syncs, daemon.pool = [sync], pool
    daemon._events.put(("term", signal.SIGTERM))
    started = time.monotonic()
    daemon._serve()
    took = time.monotonic() - started
    assert took <= 0.5 + STOP_MARGIN + 0.5, took
    assert isinstance(sync.posted[0], m.Stop)
    assert 0 < pool.timeouts[0] <= daemon_module._JOIN_RESERVE + 0.1


def test_a_second_signal_shortens_the_deadline():
    daemon = Daemon(load_config(["ws://127.0.0.1:1", "--grace", "60"], env={}))
    daemon.fleet.syncs, daemon.pool = [StuckSync()], StuckPool()
    daemon._events.put(("term", signal.SIGTERM))
    daemon._events.put(("int", signal.SIGINT))
    started = time.monotonic()
    daemon._serve()
    assert time.monotonic() - started <= STOP_MARGIN + 0.5


def test_events_are_dispatched_to_handle_methods(monkeypatch):
    daemon = Daemon(load_config(["ws://127.0.0.1:1"], env={}))
    seen = []
    monkeypatch.setattr(daemon, "_reload", lambda: seen.append("reload"))
    daemon._on_signal(signal.SIGHUP, None)  # what the handler does: enqueue, nothing else
    assert seen == []
    kind, value = daemon._events.get_nowait()
    assert (kind, value) == ("hup", signal.SIGHUP)
    getattr(daemon, "handle_" + kind)(value)
    assert seen == ["reload"]
    for event in ("tick", "synced", "docs", "no_docs", "exited", "term", "int", "hup", "stop"):
        assert callable(getattr(daemon, "handle_" + event))
