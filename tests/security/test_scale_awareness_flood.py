"""Hostile awareness in the control document: a peer that announces
hundreds of fake monitors must not leave documents unfollowed. Against the
real npm y-websocket server (a proxy in front of it lists the documents at
/stats), real monitors and mrmd-python."""

import json
import time
import urllib.request

import pytest
import websocket
from pycrdt import Encoder

from mrmd_monitor import cluster
from tests.support.notebook import block_content, cell, uid
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FAKES = cluster.MAX_MEMBERS * 4


def flood_message(count, clock):
    """One y-websocket awareness message announcing ``count`` fake monitors
    whose ids sort before any real one."""
    enc = Encoder()
    enc.write_var_uint(count)
    for i in range(count):
        enc.write_var_uint(10_000 + i)
        enc.write_var_uint(clock)
        enc.write_var_string(json.dumps({"name": "fake", "type": "monitor", "monitor": {
            "id": "0000-fake-%04d" % i, "capacity": 8, "busy": 0, "version": "0.1.0"}}))
    payload = enc.to_bytes()
    head = Encoder()
    head.write_var_uint(1)  # awareness
    return head.to_bytes() + _var_bytes(payload)


def _var_bytes(data):
    enc = Encoder()
    enc.write_var_uint(len(data))
    return enc.to_bytes() + data


class Flood:
    """A hostile peer on the control document that keeps its fake monitors
    alive (the server drops awareness states not renewed for 30 s)."""

    def __init__(self, url, count=FAKES):
        self.ws = websocket.create_connection(url, timeout=10)
        self.count = count
        self.clock = 0
        self.sent = 0.0

    def renew(self):
        if time.monotonic() - self.sent > 5.0:
            self.clock += 1
            self.ws.send_binary(flood_message(self.count, self.clock))
            self.sent = time.monotonic()
        return True

    def close(self):
        self.ws.close()


def start_sharded_monitors(monitor_factory, proxy, env, count=2):
    """Monitors following the proxy's /stats with --replicas 1; their status ports."""
    ports = []
    for _ in range(count):
        port = free_port()
        monitor_factory(proxy.url, [], wait_ready=False, env=env,
                        extra_args=["--replicas", "1", "--discover-interval", "0.5",
                                    "--status-addr", "127.0.0.1:%d" % port])
        ports.append(port)
    return ports


def run_a_cell_in_each(docs, hostile, sync_server, runtime, peer_factory):
    """A browser in each document runs a cell, which completes, while the
    hostile peer keeps its fakes alive."""
    for i, doc in enumerate(docs):
        hostile.renew()
        peer = peer_factory(sync_server.url, doc, name="b%d" % i)
        code = "print(%r)" % doc
        peer.set_text(cell(code) + "\n")
        exec_id = "hostile-" + uid()
        peer.request(exec_id, code, runtime.url)
        entry = peer.wait_entry(exec_id, ("completed", "error", "cancelled"), timeout=60)
        assert entry["status"] == "completed"
        assert block_content(peer.text(), exec_id) == doc + "\n"


def status_of(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status.json" % port, timeout=5) as r:
        return json.loads(r.read())


def test_a_flood_of_fake_monitors_leaves_no_document_unfollowed(proxy, sync_server, runtime,
                                                                peer_factory, monitor_factory):
    docs = ["f-%d-%s.md" % (i, uid()[:4]) for i in range(4)]
    proxy.documents = docs
    hostile = Flood("%s/mrmd-monitors" % sync_server.url)
    try:
        hostile.renew()
        ports = start_sharded_monitors(monitor_factory, proxy, env=None)
        # Every document is followed by at least one real monitor: sharding is
        # off while more peers claim to be monitors than any real cluster has.
        # (Within 20 s: the flood is renewed every 5 s and would never expire.)
        wait_until(lambda: hostile.renew() and set(docs) <= {
            d["name"] for p in ports for d in status_of(p)["documents"] if d["synced"]},
            timeout=20, message="every document followed despite the flood")
        run_a_cell_in_each(docs, hostile, sync_server, runtime, peer_factory)
        hostile.renew()
        for p in ports:
            assert status_of(p)["cluster"] == []   # no member list can be trusted now
    finally:
        hostile.close()
