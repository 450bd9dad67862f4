"""mrmd-sync 0.3.5 in earnest (issue 11 item 4, and the 1 MiB wedge of its
introduction): documents persisted as markdown files, a restart from the same
directory, discovery through its real ``/stats``, and its message limit
(mrmd-sync closes any websocket message over 1 MiB)."""

import pytest

from tests.support.notebook import FINAL, block, block_content, cell, run_cell, start_cell, uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def _read(path):
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def test_persisted_markdown_survives_a_restart(mrmd_sync_factory, runtime, doc_name,
                                               peer_factory, monitor_factory):
    server = mrmd_sync_factory(persist=True)
    monitor = monitor_factory(server.url, doc_name, extra_args=["--reconnect-max", "1"])
    b = peer_factory(server.url, doc_name)
    head = "# Persisted ✓ é 中文 😀\n\n"
    code = "for i in range(3):\n    print('saved', i)"
    b.set_text(head + cell(code) + "\n\nTail.\n")
    exec_id, entry = run_cell(b, code, runtime.url)
    assert entry["status"] == "completed"
    expected = (head + cell(code) + "\n\n" + block(exec_id, "saved 0\nsaved 1\nsaved 2\n")
                + "\n\nTail.\n")
    assert b.text() == expected
    # The markdown file holds the cell and its complete output (written after a debounce).
    md = server.directory / (doc_name + ".md")
    wait_until(lambda: _read(md) == expected, timeout=20,
               message="%s does not hold the document with its output" % md)
    b.close()

    server.restart(down_for=0.5)
    monitor.wait_for_line("lost connection", timeout=30)
    wait_until(lambda: monitor.log_text().count("synced %s" % doc_name) >= 2, timeout=30,
               message="the monitor did not sync again after the restart")
    # The restarted server serves the document back from its directory, once (not doubled).
    late = peer_factory(server.url, doc_name, name="late")
    assert late.wait_text(lambda t: t == expected, timeout=20)
    # The monitor goes on: a new run on the restarted server.
    code2 = "print('after the restart')"
    late.set_text(expected + "\n" + cell(code2) + "\n")
    second, entry = run_cell(late, code2, runtime.url)
    assert entry["status"] == "completed"
    final = expected + "\n" + cell(code2) + "\n\n" + block(second, "after the restart\n") + "\n"
    assert late.wait_text(lambda t: t == final, timeout=20)
    wait_until(lambda: _read(md) == final, timeout=20,
               message="%s does not hold the second run" % md)
    assert monitor.alive


def test_discovery_on_the_real_stats(mrmd_sync_factory, runtime, peer_factory, monitor_factory):
    server = mrmd_sync_factory()
    first, later = "team/first-%s" % uid(), "team/later-%s" % uid()
    a = peer_factory(server.url, first, name="a")
    wait_until(lambda: first in [d["name"] for d in server.stats()["documents"]], timeout=10)
    monitor = monitor_factory(server.url, [], extra_args=["--discover-interval", "0.5"],
                              wait_ready=False)
    monitor.wait_for_line("synced %s" % first, timeout=30)
    code = "print('found by /stats')"
    a.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(a, code, runtime.url)
    assert entry["status"] == "completed"
    assert a.text() == cell(code) + "\n\n" + block(exec_id, "found by /stats\n") + "\n"
    # A document opened later is joined too.
    b = peer_factory(server.url, later, name="b")
    monitor.wait_for_line("synced %s" % later, timeout=30)
    code = "print('opened later')"
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, runtime.url)
    assert entry["status"] == "completed"
    assert b.text() == cell(code) + "\n\n" + block(exec_id, "opened later\n") + "\n"


def test_twenty_large_displays_do_not_wedge_the_document(module_mrmd_sync, runtime, doc_name,
                                                         peer_factory, monitor_factory):
    """The wedge of issue 11: twenty 200 KB displays in one run. An update over
    1 MiB would make mrmd-sync close the monitor's connection, and the entry
    would stay ``running`` for every browser."""
    monitor = monitor_factory(module_mrmd_sync.url, doc_name)
    b = peer_factory(module_mrmd_sync.url, doc_name)
    code = ("from IPython.display import display\n"
            "for i in range(20):\n"
            "    display({'text/plain': ('%02d ' % i) + 'y' * 200000}, raw=True)\n"
            "print('after the displays')")
    after = "print('next run')"
    b.set_text(cell(code) + "\n\n" + cell(after) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="big")
    entry = b.wait_entry(exec_id, FINAL, timeout=45)    # the run itself takes a few seconds
    assert entry["status"] == "completed"
    assert "after the displays\n" in block_content(b.text(), exec_id)
    # A browser joining now sees the same final state: nothing was cut off.
    late = peer_factory(module_mrmd_sync.url, doc_name, name="late")
    assert late.entry(exec_id)["status"] == "completed"
    second, entry = run_cell(late, after, runtime.url)
    assert entry["status"] == "completed"
    assert block_content(late.wait_text(lambda t: "next run\n" in t), second) == "next run\n"
    assert "lost connection" not in monitor.log_text()
