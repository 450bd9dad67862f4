"""The hostile outputs of the renderer tests, end to end: a real mrmd-python
prints them, a real monitor process renders them into a document a yjs
browser reads. What the browser sees is what the renderer tests promise, and
the monitor's memory stays within a stated bound."""

import pytest

from tests.support.notebook import FINAL, block_content, cell, start_cell

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
# RSS of the whole monitor process (interpreter, pycrdt, the document, the
# block's mirror): the unbounded renderer held ~150 MB for the first case alone.
RSS_BOUND_KIB = 160 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_cell(browser, runtime, code, prefix):
    browser.set_text(cell(code) + "\n\nAfter.\n")
    exec_id = start_cell(browser, code, runtime.url, prefix=prefix)
    entry = browser.wait_entry(exec_id, FINAL, timeout=120)
    assert entry["status"] == "completed"
    return exec_id


def test_far_right_cursor_prints_empty_lines(sync_server, runtime, doc_name, peer_factory,
                                             monitor_factory):
    monitor = monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    exec_id = run_cell(b, runtime, 'print("\\x1b[99999Cx\\n" * 1500)', "far")
    # Each x lands past the last column: the 1500 lines are empty, and empty
    # lines at the end of a run are trimmed, as the editor's own run does.
    text = b.wait_text(lambda t: block_content(t, exec_id) == "", timeout=60)
    assert text.endswith("```\n\nAfter.\n")
    assert rss_kib(monitor.pid) < RSS_BOUND_KIB


def test_wide_lines_are_capped_by_what_they_draw(sync_server, runtime, doc_name, peer_factory,
                                                 monitor_factory):
    monitor = monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    # 15 KB of output drawing 6 MB: over the 2 MiB cap, though the bytes sent are not.
    exec_id = run_cell(b, runtime, 'print("\\x1b[4000Cx\\n" * 1500, end="END\\n")', "wide")
    text = b.wait_text(lambda t: "left out here" in t and "END\n```" in t, timeout=60)
    content = block_content(text, exec_id)
    assert len(content.encode()) <= 2 * MiB + 1024
    lines = content.split("\n")
    [notice] = [i for i, line in enumerate(lines) if line.startswith("[mrmd-monitor:")]
    wide = " " * 4000 + "x"
    assert set(lines[:notice]) == {wide}
    assert set(lines[notice + 1:-2]) == {wide} and lines[-2:] == ["END", ""]
    assert text.endswith("```\n\nAfter.\n")
    assert rss_kib(monitor.pid) < RSS_BOUND_KIB
