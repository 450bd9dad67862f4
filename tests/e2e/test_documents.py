"""Every document on the server, rich output, large output (issue 5), against
real peers. The npm y-websocket server has no /stats: a proxy in front of it
(tests/support/sync_proxy.py) stands in for mrmd-sync's, and also measures
the websocket frames the monitor sends."""

import json

import pytest
import requests

from tests.support.fault_runtime import big_html
from tests.support.notebook import FINAL, block, block_content, cell, start_cell, uid
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_follows_every_document_of_the_server(proxy, sync_server, runtime, peer_factory,
                                              monitor_factory):
    docs = ["team/nb-%02d-%s.md" % (i, uid()[:4]) for i in range(10)]
    proxy.documents = docs
    monitor = monitor_factory(proxy.url, [], extra_args=["--discover-interval", "0.5"],
                              wait_ready=False)
    wait_until(lambda: all(("synced %s" % d) in monitor.log_text() for d in docs), timeout=30,
               message="the monitor did not attach to every listed document")
    peers, ids = [], []
    for i, d in enumerate(docs):
        p = peer_factory(sync_server.url, d, name="b%d" % i)
        code = "import time\nfor k in range(5):\n    print('%s', k, flush=True)\n    time.sleep(0.1)" % d
        p.set_text(cell(code) + "\n")
        peers.append((p, code))
    for p, code in peers:
        exec_id = "run-" + uid()
        # One session: mrmd-python runs different sessions in one process at
        # once and mixes their output; the monitor runs a session's cells in turn.
        p.request(exec_id, code, runtime.url)
        ids.append(exec_id)
    for (p, code), exec_id in zip(peers, ids):
        e = p.wait_entry(exec_id, FINAL, timeout=60)
        assert e["status"] == "completed", p.doc
        out = "".join("%s %d\n" % (p.doc, k) for k in range(5))
        assert p.text() == cell(code) + "\n\n" + block(exec_id, out) + "\n"
    # A document that closes on the server is left; a new one is joined.
    new = "late-%s.md" % uid()
    proxy.documents = docs[1:] + [new]
    monitor.wait_for_line("synced %s" % new, timeout=20)
    monitor.wait_for_line("closed %s" % docs[0], timeout=20)


def test_plain_server_without_stats_needs_doc(sync_server, monitor_factory):
    monitor = monitor_factory(sync_server.url, [], wait_ready=False)
    assert monitor.wait(timeout=30) == 2
    assert "give them with --doc" in monitor.log_text()


def test_repeated_doc_option(sync_server, runtime, peer_factory, monitor_factory):
    a_doc, b_doc = "a-%s" % uid(), "b-%s" % uid()
    monitor_factory(sync_server.url, [a_doc, b_doc])
    for d in (a_doc, b_doc):
        p = peer_factory(sync_server.url, d)
        p.set_text(cell("print(%r)" % d) + "\n")
        exec_id = "e-" + uid()
        p.request(exec_id, "print(%r)" % d, runtime.url)
        assert p.wait_entry(exec_id, FINAL, timeout=30)["status"] == "completed"
        assert block_content(p.text(), exec_id) == d + "\n"


def test_matplotlib_figure_reaches_display_data(sync_server, runtime, doc_name, peer_factory,
                                                monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "plt.figure()\nplt.plot([1, 3, 2])\nplt.show()\nprint('plotted')")
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="fig")
    e = b.wait_entry(exec_id, FINAL, timeout=90)
    assert e["status"] == "completed"
    pngs = [d for d in e["displayData"] if d["mimeType"] == "image/png"]
    assert pngs, e["displayData"]
    assert pngs[0]["data"] is None and pngs[0]["url"].startswith("http://127.0.0.1:")
    got = requests.get(pngs[0]["url"], timeout=10)
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert "plotted\n" in block_content(b.text(), exec_id)
    # Shown as the editor shows a plot; without --project-root, by the runtime's URL.
    assert pngs[0]["url"] == "%s/assets/%s_0001.png" % (runtime.url, exec_id)
    assert b.text().endswith("```\n\n![plot-1](%s)\n" % pngs[0]["url"])


def test_large_html_kept_as_asset(faults, proxy, sync_server, doc_name, peer_factory,
                                  monitor_factory, tmp_path):
    port = free_port()
    monitor_factory(proxy.url, doc_name, extra_args=[
        "--assets-dir", str(tmp_path / "assets"), "--status-addr", "127.0.0.1:%d" % port])
    b = peer_factory(sync_server.url, doc_name)
    html = big_html(40000)
    small = "<b>small</b>"
    code = json.dumps({"fault": "display", "html_rows": 40000, "bundle": {"text/plain": "<table>"}})
    code2 = json.dumps({"fault": "display", "bundle": {"text/html": small, "text/plain": "small"}})
    b.set_text(cell(code) + "\n\n" + cell(code2) + "\n")
    big_id, small_id = "big-" + uid(), "small-" + uid()
    b.request(big_id, code, faults.url)
    b.request(small_id, code2, faults.url)
    e = b.wait_entry(big_id, FINAL, timeout=30)
    assert e["status"] == "completed"
    [item] = [d for d in e["displayData"] if d["mimeType"] == "text/html"]
    assert item["data"] is None and item["size"] == len(html)
    assert requests.get(item["url"], timeout=10).text == html
    assert {"mimeType": "text/plain", "data": "<table>", "assetId": None} in e["displayData"]
    e2 = b.wait_entry(small_id, FINAL, timeout=30)
    assert {"mimeType": "text/html", "data": small, "assetId": None} in e2["displayData"]
    assert proxy.max_frame() < 300 * 1024


def test_ten_megabytes_of_output(faults, proxy, sync_server, doc_name, peer_factory,
                                 monitor_factory):
    monitor = monitor_factory(proxy.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "flood", "bytes": 10 * MiB})
    b.set_text(cell(code) + "\n\nAfter.\n")
    exec_id = start_cell(b, code, faults.url, prefix="flood")
    e = b.wait_entry(exec_id, FINAL, timeout=180)
    assert e["status"] == "completed"
    text = b.wait_text(lambda t: "left out here" in t and t.endswith("```\n\nAfter.\n"))
    content = block_content(text, exec_id)
    assert len(content.encode()) <= 2 * MiB + 1024
    assert content.startswith("flood line 000000000 ")
    last = content.rstrip("\n").rsplit("\n", 1)[-1]
    assert int(last.split()[2]) == faults.last_line
    assert proxy.max_frame() < 300 * 1024
    assert rss_kib(monitor.pid) < 200 * 1024


def test_endless_output_stays_bounded(faults, proxy, sync_server, doc_name, peer_factory,
                                      monitor_factory):
    monitor = monitor_factory(proxy.url, doc_name, extra_args=["--max-output-bytes", "256K"])
    b = peer_factory(sync_server.url, doc_name)
    code = json.dumps({"fault": "flood", "bytes": 0})
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, faults.url, prefix="forever")
    b.wait_entry(exec_id, "running", timeout=30)
    # Let ~30 MB go by, watching the monitor's memory and the document.
    samples = []

    def far_enough():
        samples.append(rss_kib(monitor.pid))
        t = b.text()
        if "left out here" not in t:
            return False
        content = block_content(t, exec_id)
        return int(content.rstrip("\n").rsplit("\n", 1)[-1].split()[2]) > 30 * MiB // 63
    wait_until(far_enough, timeout=120, interval=0.5)
    content = block_content(b.text(), exec_id)
    assert len(content.encode()) <= 256 * 1024 + 1024
    assert max(samples) < 200 * 1024
    assert max(samples) - min(samples) < 60 * 1024
    assert proxy.max_frame() < 300 * 1024
    assert b.cancel(exec_id)
    assert b.wait_entry(exec_id, FINAL)["status"] == "cancelled"
