"""A node process spoken to in JSON lines: the browser peer and the editor driver.

Commands ``{"id", "cmd", ...args}`` go to its stdin; it answers each with
``{"id", "ok": true, ...}`` or ``{"id", "ok": false, "error"}`` on stdout,
and may send events ``{"event": ...}`` at any time. Nothing else is written
to stdout (diagnostics go to stderr).
"""

import itertools
import json
import threading
import time

from .procs import ManagedProcess
from .waiting import wait_until


class PeerError(AssertionError):
    """A command failed, timed out, or the process is gone."""


class JsonLinesProcess(ManagedProcess):
    """``call(cmd, **args)`` sends one command and returns its reply."""

    def __init__(self, argv, **kwargs):
        # Replies can hold a whole document: keep only their start in the log.
        kwargs.setdefault("max_line_chars", 2000)
        super().__init__(argv, stdin=True, **kwargs)
        self._ids = itertools.count(1)
        self._replies = {}
        self._events = []
        self._write_lock = threading.Lock()
        self._stdout_closed = False

    def on_line(self, stream, line):
        if stream != "stdout":
            return
        try:
            msg = json.loads(line)
        except ValueError:
            self._record("meta", "non-JSON line on stdout: %r" % line)
            return
        with self._cond:
            if isinstance(msg, dict) and "event" in msg:
                self._events.append(msg)
                self.on_event(msg)
            elif isinstance(msg, dict) and "id" in msg:
                self._replies[msg["id"]] = msg
            self._cond.notify_all()

    def on_event(self, event):
        """Called (under the lock) for every event, after it is recorded."""

    def on_eof(self, stream):
        with self._cond:
            if stream == "stdout":
                self._stdout_closed = True
            self._cond.notify_all()

    def call(self, cmd, timeout=10.0, **args):
        """Send one command and return its reply; raise PeerError if it fails."""
        cid = next(self._ids)
        msg = dict(args, id=cid, cmd=cmd)
        data = (json.dumps(msg) + "\n").encode("utf-8")
        with self._write_lock:
            if not self.alive:
                raise PeerError("%s is not running (exit code %s); cannot send %s\n%s"
                                % (self.name, self.returncode, cmd, self.tail_text()))
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                raise PeerError("%s: writing %s failed: %r\n%s" % (self.name, cmd, exc, self.tail_text())) from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while cid not in self._replies:
                remaining = deadline - time.monotonic()
                if self._stdout_closed:
                    raise PeerError("%s exited while waiting for the reply to %s\n%s"
                                    % (self.name, cmd, self._tail_locked()))
                if remaining <= 0:
                    raise PeerError("%s: no reply to %s within %.1fs\n%s"
                                    % (self.name, cmd, timeout, self._tail_locked()))
                self._cond.wait(min(remaining, 0.5))
            reply = self._replies.pop(cid)
        if not reply.get("ok"):
            raise PeerError("%s: %s failed: %s\n%s" % (self.name, cmd, reply.get("error"), self.tail_text()))
        return reply

    def events(self, name=None):
        with self._cond:
            return [e for e in self._events if name is None or e.get("event") == name]

    def clear_events(self):
        with self._cond:
            del self._events[:]

    def wait_event(self, match, timeout=10.0):
        """Wait for an event: ``match`` is an event name or a predicate on the event dict."""
        pred = match if callable(match) else (lambda e: e.get("event") == match)
        return wait_until(lambda: next((e for e in self.events() if pred(e)), None), timeout=timeout,
                          message="%s: no matching event" % self.name)
