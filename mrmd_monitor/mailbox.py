"""A queue that a poll() loop can wait on.

Worker threads post small messages; the owning sync thread waits on the
mailbox's descriptor together with its websocket, so a single poll() wakes
it for either. Drained a bounded number of messages per wake-up so a chatty
worker cannot starve the socket.

The wake-up is an eventfd where the system has one (one descriptor per
mailbox: a process holding a thousand documents counts them), else a pipe.
"""

import os
import queue
import threading

_HAS_EVENTFD = hasattr(os, "eventfd")


class Mailbox:
    def __init__(self, use_eventfd=_HAS_EVENTFD):
        self._queue = queue.SimpleQueue()
        self._eventfd = bool(use_eventfd)
        if self._eventfd:
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
        self._closed = False
        # A post after close must not write into a descriptor number the
        # process has since reused for something else (another document's socket).
        self._lock = threading.Lock()

    def fileno(self):
        return self._rfd

    def descriptors(self):
        """How many file descriptors this mailbox holds (1 with eventfd, 2 with a pipe)."""
        return 1 if self._eventfd else 2

    def post(self, message):
        """Thread-safe; never blocks."""
        self._queue.put(message)
        self._wake()

    def _wake(self):
        with self._lock:
            if not self._closed:
                self._write_wake()

    def _write_wake(self):
        try:
            if self._eventfd:
                os.eventfd_write(self._wfd, 1)
            else:
                os.write(self._wfd, b"\0")
        except BlockingIOError:
            pass  # the counter or pipe is full of wake-ups already: the reader will drain
        except OSError:
            pass

    def _clear(self):
        try:
            if self._eventfd:
                os.eventfd_read(self._rfd)     # resets the counter
            else:
                while os.read(self._rfd, 4096):
                    pass
        except (BlockingIOError, OSError):
            pass

    def drain(self, max_n=1000):
        """Return up to ``max_n`` queued messages without blocking."""
        self._clear()
        out = []
        while len(out) < max_n:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
        # More left than we took: keep the descriptor readable so poll() returns again.
        self._wake()
        return out

    def empty(self):
        return self._queue.empty()

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in {self._rfd, self._wfd}:
                try:
                    os.close(fd)
                except OSError:
                    pass
