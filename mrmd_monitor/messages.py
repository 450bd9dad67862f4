"""Commands that worker threads post to the sync thread that owns a document.

They are small frozen values: a pool thread never touches a pycrdt object, it
describes what happened and the sync thread decides what to write.
"""

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .output import PendingOutput


@dataclass(frozen=True)
class RunJob:
    """A run as the pool knows it: what to send where, and whom to tell."""
    exec_id: str
    runtime_url: str
    session: str
    code: str
    post: Callable[[Any], None]
    doc: str = ""   # the document the run belongs to: its share of the workers
    max_run_time: float = 0.0   # seconds from the POST; 0: no limit
    # Send the run only once its document's server has the dispatch mark
    # (Dispatching); the coordinator's jobs all do.
    confirm_dispatch: bool = False


@dataclass(frozen=True)
class Dispatching:
    """The worker is about to send the run to its runtime. The sync thread
    marks the entry (``dispatchedAt``) and sets ``gate`` once the server has
    the mark: a monitor that dies after that leaves a run others must not
    start again (it may have run), and one that dies before it, a run that
    never reached the runtime."""
    exec_id: str
    gate: threading.Event


@dataclass(frozen=True)
class RunStarted:
    """The runtime accepted the request; the stream is open."""
    exec_id: str


class OutputBuffer:
    """Output a worker has read and its sync thread has not taken yet.

    The one object two threads share, by design: text is appended by the
    worker and taken whole by the sync thread, so a burst becomes one
    message. ``put`` never waits: the worker reads the runtime at full speed,
    and past ``limit`` the buffer keeps a head and the latest tail
    (:class:`PendingOutput`), so memory stays bounded either way.
    """

    def __init__(self, limit=1 << 20):
        self._lock = threading.Lock()
        self._pending = PendingOutput(limit)
        self._notified = False
        #: What counts as a big piece: put() asks for a second OutputReady then.
        self.big = max(1, limit // 4)
        self._big_sent = False

    @property
    def limit(self):
        return self._pending.limit

    def put(self, text):
        """Append; True when the caller must post OutputReady: none is pending,
        or one is but ``big`` characters now wait (once until the next take)."""
        with self._lock:
            self._pending.add(text)
            held = self._pending.held
            if not self._notified:
                self._notified = True
                self._big_sent = False
                return True
            if held >= self.big and not self._big_sent:
                # Once more when a big piece waits: the sync thread may be
                # letting output gather (past the cap it writes once a second).
                self._big_sent = True
                return True
            behind = held > self._pending.limit // 2
        if behind:
            # The sync thread lags (it renders and writes what we only parse):
            # give it the GIL now rather than at the end of our switch interval,
            # so that it catches up before the buffer has to leave output out.
            # Never a wait for it: we run again as soon as the GIL is free.
            time.sleep(0)
        return False

    def take(self):
        with self._lock:
            self._notified = False
            return self._pending.take()

    @property
    def held(self):
        """Characters waiting (a hint: the worker may add more at any time)."""
        with self._lock:
            return self._pending.held


@dataclass(frozen=True)
class OutputReady:
    """Raw terminal text (stdout and stderr, in order) waits in ``buffer``."""
    exec_id: str
    buffer: OutputBuffer = field(compare=False)


@dataclass(frozen=True)
class StdinRequested:
    exec_id: str
    prompt: str
    password: bool


@dataclass(frozen=True)
class DisplayItems:
    """Rich outputs (MIME bundles or asset references) in the entry's shape."""
    exec_id: str
    items: tuple


@dataclass(frozen=True)
class RunFinished:
    """The run ended. ``error`` is None on success, else ``{type, message, traceback}``.

    ``cancelled`` is set when the stream was closed because of a cancel or a
    shutdown, so that nothing more is written for the run.
    """
    exec_id: str
    result: Any = None
    error: Optional[dict] = None
    cancelled: bool = False
    output: Optional[OutputBuffer] = field(default=None, compare=False)  # what is left in it


@dataclass(frozen=True)
class InputSent:
    """Outcome of forwarding a browser's stdin answer to the runtime."""
    exec_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True)
class Stop:
    """Ask the sync thread to finish: stop claiming, settle entries, close.

    ``deadline`` is a ``time.monotonic()`` value.
    """
    deadline: float = 0.0
    reason: str = "shutdown"


@dataclass(frozen=True)
class Call:
    """Run ``fn(sync_thread)`` on the sync thread (used by tests and the daemon)."""
    fn: Any = field(compare=False)


@dataclass(frozen=True)
class RuntimeBusy:
    """The runtime is busy with an execution that is not ours: the run waits
    for it. ``reason`` is shown in the entry (``queueReason``)."""
    exec_id: str
    reason: str


@dataclass(frozen=True)
class InterruptRefused:
    """A stopped run's code may still be running on the runtime (it answered
    ``interrupted: false``, or the call failed). ``line`` goes into the run's block."""
    exec_id: str
    line: str
