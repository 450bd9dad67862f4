"""A stream run on its own thread, for tests of the MRP client."""

import threading
import time

from mrmd_monitor.http import CancelToken
from tests.support.notebook import uid as new_id


class StreamRunner:
    """Runs execute_stream on its own thread and records what happened."""

    def __init__(self, client, runtime_url, code, cancel=None, exec_id=None, on_event=None):
        self.events = []
        self.error = None
        self.finished = threading.Event()
        self.finished_at = None
        self.cancel = cancel or CancelToken()
        self.exec_id = exec_id or new_id()
        self._extra = on_event
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=self._run, args=(client, runtime_url, code), name=f"test-stream-{self.exec_id}")
        self.thread.start()

    def _on_event(self, event):
        with self._lock:
            self.events.append(event)
        if self._extra:
            self._extra(event)

    def _run(self, client, runtime_url, code):
        try:
            client.execute_stream(runtime_url, code=code, session="default", exec_id=self.exec_id,
                                  on_event=self._on_event, cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test to assert on
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self.finished.set()

    def kinds(self):
        with self._lock:
            return [e.kind for e in self.events]

    def output(self, stream="stdout"):
        with self._lock:
            return "".join(e.data["content"] for e in self.events if e.kind == stream)

    def join(self, timeout):
        assert self.finished.wait(timeout), "execute_stream did not return in time"
        self.thread.join(timeout)
        return self
