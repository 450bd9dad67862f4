"""mrmd-sync with an auth hook (issue 11 item 4): mrmd-sync used as a library
(``createServer({auth, ...})``, tests/js/mrmd_sync_auth.mjs) with a token
check: a monitor with the token runs a cell through it. The refused and
read-only cases (one log line, exit status 3, the token never logged) are in
tests/security/test_sync_auth.py, on the same server script."""

import os

import pytest

from tests.support.notebook import block, cell, run_cell, uid
from tests.support.procs import JS_DIR

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
