"""mrmd-sync used as a library with an auth hook (``createServer({auth})``), as
mrmd deployments run it: the hook checks a token; it closes a refused
connection with 1008 'Unauthorized', and may mark one read-only, after which
the server silently drops the connection's updates.

The monitor with the right --token gets in; without a token or with a wrong
one it says so in one log line and exits with status 3 (retrying cannot
help); on a read-only connection it notices at its first write (the server
does not give its own changes back) and exits with status 3 instead of
running code whose output nobody would see. The token is never logged.
"""

import json
import os
import subprocess

import pytest

from tests.support.notebook import uid
from tests.support.ports import free_port
from tests.support.procs import JS_DIR, MrmdSyncServer, node_executable
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

WRITE_TOKEN = "w-s3cret/+&=tok"     # characters that change when URL-quoted
READ_TOKEN = "r-only-t0ken"
EXIT_SYNC_REFUSED = 3

# A browser with the write token: writes a request entry, then reports what the
# server holds for it after `wait` ms (through a second, fresh connection).
WRITER = r"""
const { createRequire } = require('node:module');
const req = createRequire(process.env.JS_DIR + '/package.json');
const Y = req('yjs');
const { WebsocketProvider } = req('y-websocket');
const WebSocket = req('ws');
const [url, doc, token, execId, runtimeUrl, wait] = process.argv.slice(1);
const open = () => {
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(url, doc, ydoc, {WebSocketPolyfill: WebSocket, disableBc: true,
                                                          params: {token}});
  return new Promise((resolve) => provider.on('sync', (s) => { if (s) resolve([ydoc, provider]); }));
};
(async () => {
  const [ydoc, provider] = await open();
  ydoc.getText('content').insert(0, '```python\nprint(1)\n```\n');
  ydoc.getMap('executions').set(execId, {id: execId, cellId: null, code: 'print(1)', language: 'python',
    runtimeUrl, session: 'default', status: 'requested', requestedBy: ydoc.clientID,
    requestedAt: Date.now(), claimedBy: null, claimedAt: null, outputBlockReady: false,
    outputPosition: null, startedAt: null, completedAt: null, stdinRequest: null, stdinResponse: null,
    result: null, error: null, displayData: []});
  await new Promise((r) => setTimeout(r, Number(wait)));
  provider.destroy();
  const [fresh, p2] = await open();
  process.stdout.write(JSON.stringify(fresh.getMap('executions').get(execId) || null) + '\n');
  p2.destroy();
  process.exit(0);
})();
"""


@pytest.fixture
def auth_sync(tmp_path):
    """mrmd-sync as a library with a token-checking auth hook (tests/js/mrmd_sync_auth.mjs)."""
    env = dict(os.environ, AUTH_TOKEN=WRITE_TOKEN, AUTH_READONLY_TOKEN=READ_TOKEN)
    server = MrmdSyncServer(tmp_path / "docs", log_path=tmp_path / "logs" / "mrmd-sync-auth.log",
                            env=env, script=JS_DIR / "mrmd_sync_auth.mjs")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _exit_code(monitor, timeout=30):
    wait_until(lambda: not monitor.alive, timeout=timeout, message="the monitor did not exit")
    return monitor.proc.returncode


def _token_env(token):
    """The token through the environment, the way the README says keeps it out of ps."""
    return {"MRMD_MONITOR_TOKEN": token}


def _assert_token_never_logged(monitor):
    log = "\n".join(monitor.lines("stderr") + monitor.lines("stdout"))
    for form in (WRITE_TOKEN, READ_TOKEN, "w-s3cret%2F%2B%26%3Dtok", "w-s3cret/%2B&=tok"):
        assert form not in log, "a token (%r) is in the monitor's log" % form


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_refused_monitor_says_so_once_and_exits_3(token, auth_sync, doc_name, monitor_factory):
    monitor = monitor_factory(auth_sync.url, doc_name, env=_token_env(token) if token else None,
                              wait_ready=False)
    assert _exit_code(monitor) == EXIT_SYNC_REFUSED
    refused = [line for line in monitor.lines("stderr") if "refused the monitor for" in line]
    assert len(refused) == 1, refused
    assert "Unauthorized" in refused[0] and "--token" in refused[0]
    assert "monitor stopped" in monitor.log_text()
    assert not any("wrong-token" in line for line in monitor.lines("stderr"))


def test_monitor_with_the_token_gets_in_and_warns_about_plain_ws(auth_sync, doc_name, monitor_factory):
    monitor = monitor_factory(auth_sync.url, doc_name, env=_token_env(WRITE_TOKEN))
    monitor.wait_for_line("synced %s" % doc_name, timeout=20)
    wait_until(lambda: any(d.get("name") == doc_name for d in auth_sync.stats().get("documents", [])),
               timeout=10, message="the server does not list the monitor's document")
    assert monitor.alive
    assert any("unencrypted ws://" in line for line in monitor.lines("stderr"))
    _assert_token_never_logged(monitor)


def test_read_only_connection_is_reported_not_run(auth_sync, doc_name, monitor_factory):
    monitor = monitor_factory(auth_sync.url, doc_name, env=_token_env(READ_TOKEN))
    monitor.wait_for_line("synced %s" % doc_name, timeout=20)
    exec_id = "ro-" + uid()
    runtime_url = "http://127.0.0.1:%d/mrp/v1" % free_port()   # nothing listens: never reached
    done = subprocess.run([node_executable(), "-e", WRITER, auth_sync.url, doc_name, WRITE_TOKEN,
                           exec_id, runtime_url, "3000"],
                          env=dict(os.environ, JS_DIR=str(JS_DIR)), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _exit_code(monitor) == EXIT_SYNC_REFUSED
    lines = [line for line in monitor.lines("stderr") if "drops its changes" in line]
    assert len(lines) == 1 and "read-only" in lines[0], monitor.tail_text()
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    assert entry["status"] == "requested" and entry["claimedBy"] is None   # the server has no claim
    assert "%s running" % exec_id not in monitor.log_text()
    _assert_token_never_logged(monitor)
