"""Membership is proved, not claimed: 63 peers announcing
themselves as monitors in the control document took every document away
from a real monitor with --replicas 1. With --cluster-secret, monitors that
do not prove the secret count for nothing, and two real monitors holding it
still share the documents between them. Real npm y-websocket server (its
relay re-encodes every awareness state), real monitors, mrmd-python."""

import pytest

from mrmd_monitor import cluster
from tests.security.test_scale_awareness_flood import (Flood, run_a_cell_in_each,
                                                       start_sharded_monitors, status_of)
from tests.support.notebook import uid
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FORGED = cluster.MAX_MEMBERS - 1     # a full cluster's worth: not a flood, believed without a secret
SECRET = "cluster s3cret ü"


def test_forged_monitors_take_nothing_from_monitors_that_hold_the_secret(
        proxy, sync_server, runtime, peer_factory, monitor_factory):
    docs = ["s-%d-%s.md" % (i, uid()[:4]) for i in range(4)]
    proxy.documents = docs
    hostile = Flood("%s/mrmd-monitors" % sync_server.url, count=FORGED)
    try:
        hostile.renew()
        ports = start_sharded_monitors(monitor_factory, proxy,
                                       env={"MRMD_MONITOR_CLUSTER_SECRET": SECRET})

        def followed():
            hostile.renew()
            return [{d["name"] for d in status_of(p)["documents"] if d["synced"]} for p in ports]

        # Each document by exactly one of the two real monitors, and they see
        # only each other.
        wait_until(lambda: (lambda f: f[0] | f[1] == set(docs) and not f[0] & f[1])(followed()),
                   timeout=30, message="the two monitors do not share the documents")
        for p in ports:
            assert len(status_of(p)["cluster"]) == 2
        run_a_cell_in_each(docs, hostile, sync_server, runtime, peer_factory)
    finally:
        hostile.close()
