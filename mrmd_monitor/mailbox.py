"""A queue that a select() loop can wait on.

Worker threads post small messages; the owning sync thread waits on the
read end of a pipe together with its websocket, so a single select() wakes
it for either. Drained a bounded number of messages per wake-up so a chatty
worker cannot starve the socket.
"""

import os
import queue


class Mailbox:
    def __init__(self):
        self._queue = queue.SimpleQueue()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        os.set_blocking(self._wfd, False)
        self._closed = False

    def fileno(self):
        return self._rfd

    def post(self, message):
        """Thread-safe; never blocks."""
        self._queue.put(message)
        self._wake()

    def _wake(self):
        try:
            os.write(self._wfd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the reader will drain
        except OSError:
            pass  # closed during shutdown; the message stays in the queue

    def drain(self, max_n=1000):
        """Return up to ``max_n`` queued messages without blocking."""
        try:
            while os.read(self._rfd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        out = []
        while len(out) < max_n:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
        # More left than we took: keep the pipe readable so select() returns again.
        self._wake()
        return out

    def empty(self):
        return self._queue.empty()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
