"""The claim is on the wire before the probe that confirms it: the server
answers a sync step 1 after every update it received before it, so the
exactly-once argument in the README needs the claim update first."""

from pycrdt import Map

from mrmd_monitor.config import Config
from mrmd_monitor.sync import SyncThread


class Wire:
    def __init__(self):
        self.sent = []
        self.sock = None

    def send_binary(self, data):
        self.sent.append(bytes(data))


def test_claim_update_goes_before_its_probe():
    sync = SyncThread(config=Config(sync_url="ws://127.0.0.1:1", claim_settle=0.0),
                      doc_name="d", pool=None)
    wire = Wire()
    sync.conn.ws = wire
    sync.session.online = sync.session.synced = True
    sync.doc.get("executions", type=Map)["e1"] = {"status": "claimed", "claimedBy": 7}
    assert sync.session.outbox                  # the claim waits in the outbox ...
    assert sync.probe() == 1
    kinds = [(d[0], d[1]) for d in wire.sent]
    # ... and leaves before the probe: (sync, update) then (sync, step 1).
    assert kinds == [(0, 2), (0, 0)]
