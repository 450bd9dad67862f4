"""daemon.py without threads: the Daemon built, not started, its events
handled one at a time as its loop would, with stand-ins for the sync threads.
The ready line is what launchers and operators wait for; the loop, signals
and the stop deadline are in tests/service/."""

import logging

import pytest

from mrmd_monitor.cluster import Member
from mrmd_monitor.config import load_config
from mrmd_monitor.daemon import Daemon

URL = "ws://127.0.0.1:1"


class FakeSync:
    """A sync thread as the daemon sees it from its main thread."""

    def __init__(self, doc_name, leaving=False, members=()):
        self.doc_name = doc_name
        self.leaving = leaving
        self.crashed = False
        self.members = members
        self.joined = False

    def join(self, timeout=None):
        self.joined = True

    def is_alive(self):
        return not self.joined


def daemon_with(*syncs, args=()):
    daemon = Daemon(load_config([URL, *args], env={}))
    daemon.fleet.syncs = list(syncs)
    return daemon


def ready_lines(caplog):
    return [r.getMessage() for r in caplog.records if "monitor ready" in r.getMessage().lower()]


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO, logger="mrmd_monitor")


def test_ready_is_said_once_every_document_has_synced(caplog):
    daemon = daemon_with(FakeSync("a.md"), FakeSync("b.md"))
    daemon.handle_synced("a.md")
    assert ready_lines(caplog) == []
    daemon.handle_synced("b.md")
    assert len(ready_lines(caplog)) == 1 and "2 document(s)" in ready_lines(caplog)[0]
    daemon.handle_synced("a.md")   # a reconnect syncs again: said once all the same
    assert len(ready_lines(caplog)) == 1


def test_a_document_that_leaves_before_it_syncs_is_not_waited_for(caplog):
    leaving = FakeSync("gone.md", leaving=True)
    daemon = daemon_with(FakeSync("a.md"), leaving)
    daemon.handle_synced("a.md")
    assert len(ready_lines(caplog)) == 1   # a document being left is not waited for
    daemon.handle_exited(leaving)
    assert leaving.joined and [s.doc_name for s in daemon.fleet.syncs] == ["a.md"]
    assert daemon.metrics.get("mrmd_monitor_documents_attached") == 1


def test_ready_waits_for_the_control_document_when_one_is_joined(caplog):
    daemon = daemon_with(FakeSync("a.md"))
    members = (Member("mon-1", capacity=8), Member("mon-2", capacity=8))
    daemon.fleet.control = FakeSync("mrmd-monitors", members=members)
    daemon.handle_synced("a.md")
    assert ready_lines(caplog) == []   # the loads come from the control document
    daemon.handle_members(None)        # it synced
    assert len(ready_lines(caplog)) == 1


def test_the_cluster_s_members_are_counted_and_logged_when_they_change(caplog):
    daemon = daemon_with(FakeSync("a.md"))
    two = (Member("mon-1", capacity=8), Member("mon-2", capacity=4, busy=1))
    daemon.handle_members(two)
    daemon.handle_members(two)
    daemon.handle_members(two[:1])
    assert daemon.metrics.get("mrmd_monitor_cluster_members") == 1
    lines = [r.getMessage() for r in caplog.records if "monitors in the cluster" in r.getMessage()]
    assert lines == ["monitors in the cluster: 2 (mon-1, mon-2)",
                     "monitors in the cluster: 1 (mon-1)"]


def test_each_monitor_process_has_its_own_member_id_from_its_name():
    first = Daemon(load_config([URL, "--name", "lab"], env={}))
    second = Daemon(load_config([URL, "--name", "lab"], env={}))
    assert first.member_id != second.member_id
    assert first.member_id.startswith("lab") and second.member_id.startswith("lab")


def test_a_flood_of_fake_monitors_is_trusted_by_nobody_and_said_so(caplog):
    daemon = daemon_with(FakeSync("a.md"))
    daemon.fleet.control = FakeSync("mrmd-monitors", members=None)   # more than cluster.MAX_MEMBERS
    daemon.handle_members((Member("mon-1"),))
    daemon.handle_members(None)
    warning = [r for r in caplog.records if "trusting none of them" in r.getMessage()]
    assert len(warning) == 1 and warning[0].levelno == logging.WARNING
    assert "mrmd-monitors" in warning[0].getMessage()
    assert daemon.metrics.get("mrmd_monitor_cluster_members") == 0
