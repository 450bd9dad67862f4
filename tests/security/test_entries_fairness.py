"""One document full of endless cells cannot starve another document: each
document, and each runtime, holds at most its share of --max-workers."""

import pytest

from tests.support.notebook import block, cell, run_cell, start_cell, uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_endless_cells_of_one_document_leave_workers_for_another(
        sync_server, runtime, own_runtime, doc_name, peer_factory, monitor_factory):
    greedy_doc, other_doc = doc_name + "-greedy", doc_name + "-other"
    monitor_factory(sync_server.url, [greedy_doc, other_doc],
                    extra_args=["--max-workers", "2", "--grace", "1"])
    greedy = peer_factory(sync_server.url, greedy_doc, name="greedy")
    code = "import time\nprint('holding', flush=True)\ntime.sleep(600)"
    greedy.set_text(cell(code) + "\n")
    held = [start_cell(greedy, code, own_runtime.url, session="hold-%d-%s" % (i, uid()))
            for i in range(3)]
    # Which of the three goes first is not specified (same cell, same millisecond): any one.
    wait_until(lambda: any((greedy.entry(e) or {}).get("status") == "running" for e in held),
               timeout=30, message="none of the greedy document's cells started")
    wait_until(lambda: "holding" in greedy.text(), timeout=30)
    other = peer_factory(sync_server.url, other_doc, name="other")
    other.set_text(cell("print('my turn')") + "\n")
    exec_id, entry = run_cell(other, "print('my turn')", runtime.url, timeout=30)
    assert entry["status"] == "completed"
    assert block(exec_id, "my turn\n") in other.text()
    # The greedy document got its share (one of two workers), no more.
    statuses = [greedy.entry(e)["status"] for e in held]
    assert statuses.count("running") == 1, statuses
