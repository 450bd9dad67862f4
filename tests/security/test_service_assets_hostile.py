"""Rich output a notebook makes is untrusted content: served from --assets-dir
it cannot run script in the status server's origin, and the directory stays
under --assets-max-bytes however much a notebook displays."""

import json
import os

import pytest
import requests

from tests.support.fault_runtime import big_html
from tests.support.notebook import FINAL, cell, uid
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

QUOTA = 50 * 1024


def test_assets_are_sandboxed_and_the_directory_keeps_its_quota(
        faults, sync_server, doc_name, peer_factory, monitor_factory, tmp_path):
    assets = tmp_path / "assets"
    port = free_port()
    monitor_factory(sync_server.url, doc_name, extra_args=[
        "--assets-dir", str(assets), "--status-addr", "127.0.0.1:%d" % port,
        "--max-inline-bytes", "1K", "--assets-max-bytes", str(QUOTA)])
    browser = peer_factory(sync_server.url, doc_name)
    urls = []
    for rows in (1000, 1001, 1002, 1003):  # about 20 KB of HTML each, all different
        code = json.dumps({"fault": "display", "bundle": {"text/plain": "table"}, "html_rows": rows})
        browser.set_text(cell(code) + "\n")
        exec_id = "disp-" + uid()
        browser.request(exec_id, code, faults.url)
        entry = browser.wait_entry(exec_id, FINAL, timeout=30)
        assert entry["status"] == "completed"
        [item] = [d for d in entry["displayData"] if d["mimeType"] == "text/html"]
        assert item["data"] is None and item["url"].startswith("http://127.0.0.1:%d/assets/" % port)
        urls.append((item["url"], big_html(rows)))
    stored = [f for f in os.listdir(assets) if not f.startswith(".")]
    assert sum(os.path.getsize(assets / f) for f in stored) <= QUOTA
    assert len(stored) == 2  # the two newest
    old = requests.get(urls[0][0], timeout=10)
    assert old.status_code == 404 and old.headers["X-Content-Type-Options"] == "nosniff"
    url, html = urls[-1]
    new = requests.get(url, timeout=10)
    assert new.status_code == 200 and new.text == html
    assert new.headers["Content-Type"].startswith("text/html")
    assert new.headers["Content-Security-Policy"] == "sandbox"
    assert new.headers["X-Content-Type-Options"] == "nosniff"
