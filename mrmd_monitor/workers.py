"""The worker pool: one blocking MRP stream per execution, on pool threads.

Runs for the same (runtime, session) go one at a time, in request order:
mrmd-python runs concurrent requests in parallel, which would break cells
that use an earlier cell's variables. A sync thread reserves a place in that
order when it claims an entry and arms it when its output block exists; a run
starts when it is armed and every run reserved before it on the same runtime
is done.

Workers never touch a document: everything they learn is posted to the
owning sync thread as a message.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import messages as m
from .display import DisplayConverter
from .mrp import CancelToken, MrpClient
from .protocol import error_value
from .runner import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunJob:
    exec_id: str
    runtime_url: str
    session: str
    code: str
    post: Callable[[Any], None]
    max_run_time: float = 0.0   # seconds from the POST; 0: no limit


class _Slot:
    __slots__ = ("exec_id", "key", "order", "job", "token", "started")

    def __init__(self, exec_id, key, order):
        self.exec_id = exec_id
        self.key = key
        self.order = order
        self.job: Optional[RunJob] = None
        self.token = CancelToken()
        self.started = False


class WorkerPool:
    def __init__(self, client: MrpClient, max_workers: int = 8, control_workers: int = 2,
                 display: Optional[DisplayConverter] = None):
        self.client = client
        self.display = display or DisplayConverter(256 * 1024)
        self.runner = Runner(client, self.display)
        self._lock = threading.Lock()
        self._slots: Dict[str, _Slot] = {}
        self._queues: Dict[Tuple[str, str], List[_Slot]] = {}
        self._streams = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mrp")
        # Input and interrupt calls must not wait behind the streams they serve.
        self._control = ThreadPoolExecutor(max_workers=control_workers, thread_name_prefix="mrp-ctl")
        self._closed = False
        self._draining = False

    # -- ordering --------------------------------------------------------------

    def reserve(self, exec_id, key, order):
        with self._lock:
            slot = _Slot(exec_id, key, order)
            self._slots[exec_id] = slot
            queue = self._queues.setdefault(key, [])
            queue.append(slot)
            queue.sort(key=lambda s: s.order)

    def submit(self, exec_id, job: RunJob) -> int:
        """Arm a reserved run. Returns how many runs are ahead of it."""
        with self._lock:
            slot = self._slots.get(exec_id)
            if slot is None:  # not reserved (should not happen): reserve at the back
                slot = _Slot(exec_id, (job.runtime_url, job.session), (float("inf"), 0))
                self._slots[exec_id] = slot
                self._queues.setdefault(slot.key, []).append(slot)
            slot.job = job
            queue = self._queues[slot.key]
            ahead = queue.index(slot)
            self._start_ready(slot.key)
            return 0 if slot.started else ahead

    def _start_ready(self, key):
        queue = self._queues.get(key)
        if not queue or self._closed or self._draining:
            return
        head = queue[0]
        if head.started or head.job is None:
            return
        head.started = True
        self._streams.submit(self._run, head)

    def _finish(self, slot):
        with self._lock:
            self._slots.pop(slot.exec_id, None)
            queue = self._queues.get(slot.key)
            if queue and slot in queue:
                queue.remove(slot)
            if not queue:
                self._queues.pop(slot.key, None)
            else:
                self._start_ready(slot.key)

    def release(self, exec_id):
        """Give up a run that has not started (cancel while queued)."""
        with self._lock:
            slot = self._slots.get(exec_id)
        if slot is not None and not slot.started:
            self._finish(slot)

    def cancel(self, exec_id, interrupt=True):
        """Stop a run wherever it is. Never blocks: closing a stream is a
        socket shutdown, the interrupt call goes to a control thread."""
        with self._lock:
            slot = self._slots.get(exec_id)
        if slot is None:
            return
        if not slot.started:
            self._finish(slot)
            return
        slot.token.cancel()
        if interrupt and slot.job is not None and not self._closed:
            job = slot.job
            self._control.submit(self._interrupt, job)

    def active(self):
        with self._lock:
            return sum(1 for s in self._slots.values() if s.started)

    # -- pool threads --------------------------------------------------------

    def _run(self, slot):
        job = slot.job
        try:
            job.post(self._stream(job, slot.token))
        except BaseException:  # noqa: B902 - a worker must never die silently
            log.exception("worker crashed running %s", job.exec_id, extra={"exec_id": job.exec_id})
            job.post(m.RunFinished(job.exec_id, error=error_value(
                "MonitorError", "internal error in mrmd-monitor (see its log)")))
        finally:
            self._finish(slot)

    # The run itself lives in runner.py; these keep the pool's interface.

    def _stream(self, job, token) -> m.RunFinished:
        return self.runner.stream(job, token)

    def send_input(self, exec_id, runtime_url, text, post):
        if not self._closed:
            self._control.submit(self.runner.send_input, exec_id, runtime_url, text, post)

    def _interrupt(self, job):
        self.runner.interrupt(job)

    # -- lifecycle -----------------------------------------------------------

    def stop_starting(self):
        """Shutdown has begun: runs already streaming go on, queued ones stay put."""
        with self._lock:
            self._draining = True

    def shutdown(self, timeout=5.0):
        """Cancel every stream and join the threads, waiting at most ``timeout``."""
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
        for slot in slots:
            slot.token.cancel()
        self._control.shutdown(wait=False, cancel_futures=True)
        self._streams.shutdown(wait=False, cancel_futures=True)
        _join_pool_threads(self._streams, timeout)
        _join_pool_threads(self._control, 1.0)
        self.client.close()


def _join_pool_threads(executor, timeout):
    import time
    deadline = time.monotonic() + timeout
    for t in list(getattr(executor, "_threads", ())):
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.warning("thread %s did not stop within the shutdown deadline", t.name)
