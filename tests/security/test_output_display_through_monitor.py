"""Twenty 200 KB displays in one run, end to end: a scripted runtime sends
them as MRP 0.3.0 ``display`` events, a real monitor process writes the run's
entry, a yjs browser reads it. The unbounded entry was 4 MB, rewritten whole
per display, one update over mrmd-sync's 1 MiB message limit (which wedges
the document there); now the entry's inline rich output stays within
--max-display-bytes, no frame the monitor sends comes near the limit, and the
browser sees what was left out.
"""

import json

import pytest

from tests.support.fault_runtime import display_html
from tests.support.notebook import FINAL, block_content, cell, start_cell

pytestmark = pytest.mark.e2e

DISPLAYS = 20
SIZE = 200 * 1000


def test_twenty_large_displays_keep_the_entry_and_every_frame_small(
        faults, proxy, sync_server, doc_name, peer_factory, monitor_factory):
    monitor_factory(proxy.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "displays", "count": DISPLAYS, "size": SIZE})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="displays")
    e = b.wait_entry(exec_id, FINAL, timeout=60)
    assert e["status"] == "completed", e.get("error")
    items = b.wait_entry(exec_id, lambda x: x and len(x.get("displayData") or []) == DISPLAYS,
                         timeout=30)["displayData"]
    # The first ones whole, within the run's budget; the rest said to be left out.
    assert [i["data"] for i in items[:2]] == [display_html(0, SIZE), display_html(1, SIZE)]
    assert sum(len(i["data"]) for i in items[:2]) <= 512 * 1024
    for item in items[2:]:
        assert item["data"] is None and item["size"] == SIZE
        assert item["omitted"].startswith("over --max-display-bytes (524288 bytes")
    assert len(json.dumps(b.entry(exec_id))) < 700_000
    assert block_content(b.text(), exec_id) == "shown\n"
    assert proxy.max_frame() < 600 * 1024
