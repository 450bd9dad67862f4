"""Endless cells on one runtime written under several spellings of its URL
cannot starve a third document: the monitor counts one runtime's
share of the workers by its origin, not by how a peer wrote it."""

import pytest

from tests.support.notebook import block, cell, run_cell, start_cell, uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HOLD = "import time\nprint('holding', flush=True)\ntime.sleep(600)"


def spellings(url):
    port = url.split(":")[2].split("/")[0]
    return ["http://127.0.0.1:%s/mrp/v1" % port, "http://localhost:%s/mrp/v1" % port,
            "http://LOCALHOST:%s/mrp/v1/" % port, "http://Localhost:%s/mrp/v1//" % port]


def test_one_runtime_spelt_four_ways_leaves_workers_for_a_third_document(
        sync_server, runtime, own_runtime, doc_name, peer_factory, monitor_factory):
    docs = [doc_name + "-a", doc_name + "-b", doc_name + "-c"]
    monitor_factory(sync_server.url, docs, extra_args=["--max-workers", "4", "--grace", "1"])
    held = []
    for name in docs[:2]:
        greedy = peer_factory(sync_server.url, name, name="greedy-" + name[-1])
        greedy.set_text(cell(HOLD) + "\n")
        held += [(greedy, start_cell(greedy, HOLD, url, session="hold-%d-%s" % (i, uid())))
                 for i, url in enumerate(spellings(own_runtime.url))]
    wait_until(lambda: sum((p.entry(e) or {}).get("status") == "running" for p, e in held) >= 2,
               timeout=60, message="the greedy documents' cells did not start")
    other = peer_factory(sync_server.url, docs[2], name="other")
    other.set_text(cell("print('my turn')") + "\n")
    exec_id, entry = run_cell(other, "print('my turn')", runtime.url, timeout=30)
    assert entry["status"] == "completed"
    assert block(exec_id, "my turn\n") in other.text()
    # The runtime, however spelt, got its share (two of four workers), no more.
    running = [(p.entry(e) or {}).get("status") for p, e in held].count("running")
    assert running == 2
