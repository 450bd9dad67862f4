"""A sync server whose /stats turns hostile after start, or lists more
documents than a monitor should follow: the monitor stays up, keeps what it
follows, and says what happened once."""

import pytest

from tests.support.notebook import FINAL, cell, uid
from tests.support.sync_proxy import SyncProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stats_proxy(sync_server):
    p = SyncProxy(sync_server.port, documents=[]).start()
    try:
        yield p
    finally:
        p.stop()


def run_ok(peer, faults, text):
    exec_id = "run-" + uid()
    code = '{"fault": "ok", "text": "%s\\r\\n"}' % text
    peer.set_text(cell(code) + "\n")
    peer.request(exec_id, code, faults.url)
    entry = peer.wait_entry(exec_id, FINAL, timeout=30)
    return entry


def test_a_stats_404_after_start_keeps_the_monitor_and_its_documents(
        stats_proxy, sync_server, faults, peer_factory, monitor_factory):
    first, later = "first-%s.md" % uid(), "later-%s.md" % uid()
    stats_proxy.documents = [first]
    monitor = monitor_factory(stats_proxy.url, [], extra_args=["--discover-interval", "0.2"],
                              wait_ready=False)
    monitor.wait_for_line("synced %s" % first, timeout=30)
    stats_proxy.documents = None  # /stats now answers 404
    monitor.wait_for_line("keeping the 1 document(s) already followed", timeout=20)
    browser = peer_factory(sync_server.url, first)
    assert run_ok(browser, faults, "still served")["status"] == "completed"
    assert monitor.alive
    assert "closed %s" % first not in monitor.log_text()
    stats_proxy.documents = [first, later]
    monitor.wait_for_line("answers again", timeout=20)
    monitor.wait_for_line("synced %s" % later, timeout=20)
    assert monitor.log_text().count("keeping the 1 document(s) already followed") == 1


def test_max_docs_limits_what_discovery_attaches(stats_proxy, monitor_factory):
    docs = ["many-%d-%s.md" % (i, uid()) for i in range(4)]
    stats_proxy.documents = docs
    monitor = monitor_factory(stats_proxy.url, [], wait_ready=False,
                              extra_args=["--discover-interval", "0.2", "--max-docs", "2"])
    monitor.wait_for_line("--max-docs 2 reached", timeout=30)
    wait_until(lambda: all("synced %s" % d in monitor.log_text() for d in docs[:2]), timeout=30)
    # three more polls later: still two, and the limit was reported once
    polls = lambda: sum(1 for head in list(stats_proxy.heads) if " /stats" in head)  # noqa: E731
    seen = polls()
    wait_until(lambda: polls() >= seen + 3, timeout=15)
    assert monitor.log_text().count("synced many-") == 2
    for d in docs[2:]:
        assert "synced %s" % d not in monitor.log_text()
    assert monitor.log_text().count("--max-docs 2 reached") == 1
