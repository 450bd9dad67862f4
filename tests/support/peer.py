"""BrowserPeer: drives tests/js/peer.mjs, a node process that behaves like the mrmd editor.

The peer speaks JSON lines: commands ``{"id", "cmd", ...args}`` on its stdin,
replies ``{"id", "ok": true, ...}`` / ``{"id", "ok": false, "error"}`` and
events ``{"event": ...}`` on its stdout. See tests/js/peer.mjs for the list of
commands.
"""

import itertools
import json

from .jsonlines import JsonLinesProcess, PeerError  # noqa: F401 (PeerError: tests import it from here)
from .procs import PEER_SCRIPT, JS_DIR, node_executable, require_node_modules
from .waiting import wait_for, wait_until

FINAL_STATUSES = ("completed", "error", "cancelled")


class BrowserPeer(JsonLinesProcess):
    """A browser-like Yjs peer on ``doc`` of the y-websocket server at ``sync_url``.

    ``auto_block``: create output blocks on claim and stdin blocks on stdin
    requests like the editor does (``--no-auto-block`` when False).
    ``wait_synced``: block in the constructor until the first sync.
    """

    _names = itertools.count(1)
    ready_timeout = 15.0

    def __init__(self, sync_url, doc, auto_block=True, wait_synced=True, name=None, log_path=None,
                 sync_timeout=15.0, token=None):
        require_node_modules()
        self.sync_url = sync_url
        self.doc = doc
        self.auto_block = auto_block
        name = name or "peer-%d" % next(self._names)
        argv = [node_executable(), PEER_SCRIPT, "--url", sync_url, "--doc", doc, "--name", name]
        if not auto_block:
            argv.append("--no-auto-block")
        if token:
            argv += ["--token", token]
        super().__init__(argv, name=name, cwd=JS_DIR, log_path=log_path)
        self.client_id = None
        self.start(wait_ready=False)
        if wait_synced:
            try:
                self.wait_synced(timeout=sync_timeout)
            except BaseException:
                self.close()
                raise

    def on_event(self, event):
        if event["event"] == "synced" and event.get("clientId") is not None:
            self.client_id = event["clientId"]

    # ------------------------------------------------------------------ commands
    def info(self):
        return self.call("info")

    def wait_synced(self, timeout=15.0):
        reply = self.call("waitSynced", timeout=timeout)
        self.client_id = reply["clientId"]
        return reply

    def text(self):
        return self.call("getText")["text"]

    def set_text(self, text):
        self.call("setText", text=text)

    def insert(self, index, text):
        self.call("insert", index=index, text=text)

    def delete(self, index, length):
        self.call("delete", index=index, length=length)

    def insert_after(self, anchor, text):
        return self.call("insertAfter", anchor=anchor, text=text)["index"]

    def type_after(self, anchor, text, delay_ms=0, timeout=None):
        """Type ``text`` one character per transaction right after ``anchor``."""
        if timeout is None:
            timeout = 10.0 + len(text) * (delay_ms / 1000.0 + 0.01)
        return self.call("type", timeout=timeout, after=anchor, text=text, delayMs=delay_ms)

    def request(self, exec_id, code, runtime_url, language="python", session="default", cell_id=None):
        """Write a request entry as the editor does; return the entry."""
        return self.call("request", execId=exec_id, code=code, language=language, runtimeUrl=runtime_url,
                         session=session, cellId=cell_id)["entry"]

    def set_auto_block(self, on):
        self.call("setAutoBlock", on=bool(on))

    def cancel(self, exec_id):
        """Cancel like the editor; returns False if the entry was already final."""
        return self.call("cancel", execId=exec_id)["cancelled"]

    def answer_stdin(self, exec_id, text):
        self.call("answerStdin", execId=exec_id, text=text)

    def entry(self, exec_id):
        return self.call("getEntry", execId=exec_id)["entry"]

    def entries(self):
        return self.call("entries")["entries"]

    def set_entry(self, exec_id, value):
        self.call("setEntry", execId=exec_id, value=value)

    def delete_entry(self, exec_id):
        self.call("deleteEntry", execId=exec_id)

    def awareness(self):
        """``[(client_id, state), ...]`` of the other peers."""
        return [(int(cid), state) for cid, state in self.call("awareness")["states"]]

    def monitors(self):
        """``[(client_id, state), ...]`` of the peers the editor takes for a
        monitor (its isMonitorAvailable(): ``state.user.type == "monitor"``)."""
        return [(int(cid), state) for cid, state in self.call("monitors")["states"]]

    def awareness_clock(self, client_id):
        """The awareness clock this peer holds for ``client_id`` (None: none)."""
        return self.call("monitors")["clocks"].get(str(client_id))

    def set_awareness(self, state):
        self.call("setAwareness", state=state)

    def disconnect(self):
        self.call("disconnect")

    def connect(self):
        self.call("connect")

    def state_size(self):
        return self.call("stateSize")["bytes"]

    def resolve_position(self, position):
        """JS string index of a relative position (as JSON), or None if it cannot be resolved."""
        return self.call("resolvePosition", position=position)["index"]

    def watch(self, exec_id):
        self.call("watch", execId=exec_id)

    def unwatch(self, exec_id=None):
        self.call("unwatch", execId=exec_id)

    def quit(self, timeout=10.0):
        """Ask the peer to leave cleanly and wait for it to exit; return the exit code."""
        self.call("quit", timeout=timeout)
        return self.wait(timeout)

    def close(self):
        """Always ends the process (SIGTERM makes the node peer leave cleanly, then SIGKILL)."""
        self.stop(timeout=3.0)

    # ------------------------------------------------------------------ waiting
    def wait_entry(self, exec_id, predicate_or_status, timeout=10.0):
        """Wait until the entry matches; return it.

        ``predicate_or_status``: a status string, a tuple/list/set of statuses,
        or a predicate called with the entry (a dict, or None when absent).
        """
        p = predicate_or_status
        if isinstance(p, str):
            pred = lambda e: isinstance(e, dict) and e.get("status") == p  # noqa: E731
            what = "status %r" % p
        elif isinstance(p, (tuple, list, set, frozenset)):
            pred = lambda e: isinstance(e, dict) and e.get("status") in p  # noqa: E731
            what = "status in %r" % (sorted(p),)
        else:
            pred = p
            what = getattr(p, "__name__", "predicate")
        box = {}

        def check():
            box["entry"] = e = self.entry(exec_id)
            return pred(e)

        try:
            wait_until(check, timeout=timeout, interval=0.05, message="%s: entry %s never matched %s"
                       % (self.name, exec_id, what))
        except AssertionError as exc:
            raise AssertionError("%s\nlast entry: %s" % (exc, json.dumps(box.get("entry"), indent=1)[:3000])) from None
        return box["entry"]

    def wait_text(self, predicate_or_substring, timeout=10.0):
        """Wait until the text contains the substring (or the predicate on the text holds); return the text."""
        p = predicate_or_substring
        return wait_for(self.text, (lambda t: p in t) if isinstance(p, str) else p, timeout=timeout,
                        message="%s: text never matched" % self.name, show=lambda t: repr(t[-3000:]))
