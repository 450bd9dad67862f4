"""An entry deleted while the monitor was away is forgotten when it comes back.

After a reconnect the monitor receives everything it missed in one sync
step and looks at the whole map again. It used to look only at the entries
still there: a run of ours whose entry a peer deleted meanwhile stayed
"running" for good, holding its worker and its (runtime, session) queue,
and every such reconnect under load kept the runs and entries in flight
(memory stepped up at each sync server restart). The user sees
the next cell of that session run."""

import pytest

from tests.support.notebook import cell, start_cell, uid
from tests.support.sync_proxy import SyncProxy
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HOLD = "import time\nprint('holding', flush=True)\ntime.sleep(600)"
NEXT = "print('next cell')"


def test_a_run_whose_entry_was_deleted_while_away_frees_its_session(
        sync_server, own_runtime, doc_name, peer_factory, monitor_factory):
    with SyncProxy(sync_server.port) as proxy:
        monitor = monitor_factory(proxy.url, [doc_name],
                                  extra_args=["--reconnect-max", "0.5", "--grace", "1"])
        peer = peer_factory(sync_server.url, doc_name)   # straight to the server
        peer.set_text(cell(HOLD) + "\n\n" + cell(NEXT) + "\n")
        session = "s-" + uid()
        held = start_cell(peer, HOLD, own_runtime.url, session=session)
        peer.wait_entry(held, "running", timeout=30)
        wait_until(lambda: "holding" in peer.text(), timeout=30)
        # The monitor's connection drops and stays away while the cell is deleted.
        proxy.blocked.add(doc_name)
        proxy.cut()
        monitor.wait_for_line("lost connection to", timeout=10)
        peer.delete_entry(held)
        synced_before = sum("synced %s" % doc_name in line for line in monitor.lines("stderr"))
        proxy.blocked.clear()
        wait_until(lambda: sum("synced %s" % doc_name in line
                               for line in monitor.lines("stderr")) > synced_before,
                   timeout=20, message="the monitor did not come back")
        following = start_cell(peer, NEXT, own_runtime.url, session=session)
        entry = peer.wait_entry(following, "completed", timeout=30)
        assert entry["status"] == "completed"
        assert "next cell" in peer.text()
        monitor.wait_for_line("entry %s was removed: dropping the run" % held, timeout=10)
