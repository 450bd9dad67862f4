"""The worker pool: one blocking MRP stream per execution, on pool threads.

The pool runs, cancels and stops; it does not decide a notebook's order
(order.py does, on each document's sync thread, and hands a run over when
its turn has come). It still never runs two runs of the same (runtime,
session) at once, in the order they were handed over: two documents may
share a runtime and session, and mrmd-python would run them in parallel.
Workers are shared fairly: one document, or one runtime, holds at most
``--worker-share`` of them, and the last free worker is kept for a document
that holds none. A runtime is known by its canonical origin
(:func:`.http.runtime_origin`), so spelling its URL another way (host case,
``127.0.0.1`` or ``localhost``, another path) gets no new share and no new
queue.

Workers never touch a document: everything they learn is posted to the
owning sync thread as a message.
"""

import itertools
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

from . import messages as m
from .messages import RunJob
from .display import DisplayConverter
from .http import runtime_origin
from .mrp import CancelToken, MrpClient
from .protocol import error_value
from .runner import Runner, job_log

log = logging.getLogger(__name__)


class _Slot:
    __slots__ = ("exec_id", "key", "order", "job", "token", "started")

    def __init__(self, exec_id, key, order):
        self.exec_id = exec_id
        self.key = key
        self.order = order
        self.job: Optional[RunJob] = None
        self.token = CancelToken()
        self.started = False


def share_limit(max_workers, share):
    """Workers one document, or one runtime, may hold at once."""
    return max(1, min(max_workers, int(max_workers * share)))


class WorkerPool:
    """Every decision below is made under one lock: which run starts, and
    whether a cancelled one had started (a cancel must never race a start)."""

    def __init__(self, client: MrpClient, max_workers: int = 8, control_workers: int = 2,
                 display: Optional[DisplayConverter] = None, share: float = 0.5):
        self.client = client
        self.display = display or DisplayConverter(256 * 1024)
        self.max_workers = max_workers
        # One document or one runtime never takes every worker: a notebook of
        # endless cells, or one slow runtime, leaves room for the others.
        self.limit = share_limit(max_workers, share)
        self.runner = Runner(client, self.display)
        self._lock = threading.Lock()
        self._slots: Dict[str, _Slot] = {}
        self._queues: Dict[Tuple[str, str], List[_Slot]] = {}
        self._running = 0
        self._by_doc: Counter = Counter()
        self._by_runtime: Counter = Counter()
        self._threads = set()   # pool threads inside a run, joined at shutdown
        self._arrivals = itertools.count()
        self._streams = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mrp")
        # Input and interrupt calls must not wait behind the streams they serve.
        self._control = ThreadPoolExecutor(max_workers=control_workers, thread_name_prefix="mrp-ctl")
        self._closed = False
        self._draining = False

    # -- ordering --------------------------------------------------------------

    def submit(self, exec_id, job: RunJob) -> int:
        """Queue a run at the back of its (runtime, session), in arrival order.
        Returns how many runs are ahead of it."""
        with self._lock:
            slot = self._slots.get(exec_id)
            if slot is None:
                slot = _Slot(exec_id, (runtime_origin(job.runtime_url), job.session),
                             next(self._arrivals))
                self._slots[exec_id] = slot
                self._queues.setdefault(slot.key, []).append(slot)
            slot.job = job
            ahead = self._queues[slot.key].index(slot)
            self._start_ready()
            return 0 if slot.started else ahead

    def _start_ready(self):
        """Start every queue head that may run now, oldest request first,
        within --max-workers and the share of its document and runtime.
        Called with the lock held."""
        while not (self._closed or self._draining) and self._start_next():
            pass

    def _start_next(self):
        """Start one run; True when the queues should be looked at again."""
        heads = sorted((q[0] for q in self._queues.values()
                        if q and not q[0].started and q[0].job is not None),
                       key=lambda s: s.order)
        for head in heads:
            if self._running >= self.max_workers:
                return False
            doc, runtime = head.job.doc, head.key[0]
            if self._by_doc[doc] >= self.limit or self._by_runtime[runtime] >= self.limit:
                continue
            if self._by_doc[doc] and self._running + 1 >= self.max_workers > self.limit:
                continue   # the last worker waits for a document that holds none
            head.started = True
            self._running += 1
            self._by_doc[doc] += 1
            self._by_runtime[runtime] += 1
            try:
                self._streams.submit(self._run, head)
            except Exception as exc:  # noqa: BLE001 - e.g. no thread can be started
                # This may run in a worker's finally, where an exception would
                # vanish into a Future nobody reads: the run ends in error, and
                # the run behind it in its queue gets its chance.
                job_log(head.job, log).error("cannot start %s: %s", head.exec_id, exc)
                self._remove(head)
                head.job.post(m.RunFinished(head.exec_id, error=error_value(
                    "MonitorError", "mrmd-monitor could not start the run (see its log)")))
            return True
        return False

    def _remove(self, slot):
        """Forget a slot (lock held); a started one gives its worker back."""
        if self._slots.get(slot.exec_id) is slot:
            del self._slots[slot.exec_id]
        queue = self._queues.get(slot.key)
        if queue and slot in queue:
            queue.remove(slot)
        if not queue:
            self._queues.pop(slot.key, None)
        if slot.started:
            slot.started = False
            self._running -= 1
            # Counters of documents and runtimes no longer running go: a
            # peer's many spellings must not pile up here.
            for counter, key in ((self._by_doc, slot.job.doc), (self._by_runtime, slot.key[0])):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def _finish(self, slot):
        with self._lock:
            self._remove(slot)
            self._start_ready()

    def release(self, exec_id):
        """Give up a run that has not started (cancel while queued)."""
        with self._lock:
            slot = self._slots.get(exec_id)
            if slot is not None and not slot.started:
                self._remove(slot)
                self._start_ready()

    def cancel(self, exec_id, interrupt=True):
        """Stop a run wherever it is. Never blocks: closing a stream is a
        socket shutdown, the interrupt call goes to a control thread."""
        with self._lock:
            slot = self._slots.get(exec_id)
            if slot is None:
                return
            if not slot.started:
                self._remove(slot)
                self._start_ready()
                return
            slot.token.cancel()
            job = slot.job if interrupt and not self._closed else None
        if job is not None:
            try:
                self._control.submit(self._interrupt, job)
            except RuntimeError:   # shut down meanwhile: nothing left to interrupt
                pass

    def active(self):
        with self._lock:
            return self._running

    # -- pool threads --------------------------------------------------------

    def _run(self, slot):
        job = slot.job
        me = threading.current_thread()
        with self._lock:
            self._threads.add(me)
        try:
            job.post(self._stream(job, slot.token))
        except BaseException:  # noqa: B902 - a worker must never die silently
            job_log(job, log).exception("worker crashed running %s", job.exec_id)
            job.post(m.RunFinished(job.exec_id, error=error_value(
                "MonitorError", "internal error in mrmd-monitor (see its log)")))
        finally:
            with self._lock:
                self._threads.discard(me)
            self._finish(slot)

    # The run itself lives in runner.py; these keep the pool's interface.

    def _stream(self, job, token) -> m.RunFinished:
        return self.runner.stream(job, token)

    def send_input(self, exec_id, runtime_url, text, post):
        with self._lock:   # the run's document, for the log lines (the caller need not say)
            slot = self._slots.get(exec_id)
            doc = slot.job.doc if slot is not None and slot.job is not None else None
        if not self._closed:
            self._control.submit(self.runner.send_input, exec_id, runtime_url, text, post,
                                 doc or None)

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
        deadline = time.monotonic() + timeout
        with self._lock:
            busy = list(self._threads)
        for t in busy:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("thread %s did not stop within the shutdown deadline", t.name)
        self.client.close()
