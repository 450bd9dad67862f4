"""mrmd-sync with an auth hook (issue 11 item 4): mrmd-sync used as a library
(``createServer({auth, ...})``, tests/js/mrmd_sync_auth.mjs) with a token
check. A refused monitor must say so once and stop, not loop; a read-only
answer must be reported, not mistaken for a working connection."""

import os
import re

import pytest

from tests.support.notebook import FINAL, block, cell, run_cell, start_cell, uid
from tests.support.procs import JS_DIR
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

AUTH_SCRIPT = JS_DIR / "mrmd_sync_auth.mjs"


@pytest.fixture
def auth_server(mrmd_sync_factory):
    tokens = {"AUTH_TOKEN": "rw-" + uid(), "AUTH_READONLY_TOKEN": "ro-" + uid()}
    server = mrmd_sync_factory(script=AUTH_SCRIPT, env=dict(os.environ, **tokens))
    server.tokens = tokens
    return server


def _rejections(server):
    return sum("auth failed" in line for line in server.lines())


def test_monitor_with_token_gets_in(auth_server, runtime, doc_name, peer_factory,
                                    monitor_factory):
    token = auth_server.tokens["AUTH_TOKEN"]
    monitor_factory(auth_server.url, doc_name, extra_args=["--token", token])
    b = peer_factory(auth_server.url, doc_name, token=token)
    code = "print('through the auth hook')"
    b.set_text(cell(code) + "\n")
    exec_id, entry = run_cell(b, code, runtime.url)
    assert entry["status"] == "completed"
    assert b.text() == cell(code) + "\n\n" + block(exec_id, "through the auth hook\n") + "\n"
    assert _rejections(auth_server) == 0


def test_monitor_without_token_says_so_once_and_exits(auth_server, doc_name, monitor_factory):
    monitor = monitor_factory(auth_server.url, doc_name, wait_ready=False)
    code = monitor.wait(timeout=30)
    assert code not in (0, None), "a refused monitor must exit with a failure status"
    assert code != 2, "exit status 2 is for bad options"
    stderr = monitor.lines("stderr")
    clear = [l for l in stderr if re.search(r" (WARNING|ERROR|CRITICAL) ", l)
             and re.search(r"unauthori[sz]ed|refused|rejected|\bauth", l, re.I)]
    assert len(clear) == 1, "\n".join(stderr[-40:])
    assert doc_name in clear[0] or auth_server.url in clear[0]
    assert "monitor ready" not in "\n".join(stderr)
    # It gave up instead of knocking again and again.
    assert _rejections(auth_server) <= 3


def test_read_only_answer_is_reported(auth_server, runtime, doc_name, peer_factory,
                                      monitor_factory, tmp_path):
    rw, ro = auth_server.tokens["AUTH_TOKEN"], auth_server.tokens["AUTH_READONLY_TOKEN"]
    monitor = monitor_factory(auth_server.url, doc_name, extra_args=["--token", ro],
                              wait_ready=False)
    b = peer_factory(auth_server.url, doc_name, token=rw)
    code = "print('written nowhere')"
    b.set_text(cell(code) + "\n")
    exec_id = start_cell(b, code, runtime.url, prefix="ro")
    line = wait_until(lambda: next((l for l in monitor.lines("stderr")
                                    if re.search(r"read[- ]only", l, re.I)), None),
                      timeout=30, message="the monitor never said the server only lets it read")
    assert doc_name in line or auth_server.url in line
    # Whatever the monitor did, the document shows no claim in its name and no
    # output: the server dropped its writes. And it does not loop reconnecting.
    entry = b.entry(exec_id)
    assert entry["status"] not in FINAL
    connects = sum("connected to" in l for l in monitor.lines("stderr"))
    assert connects <= 2, "\n".join(monitor.lines("stderr")[-40:])
