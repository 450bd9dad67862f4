"""Commands that worker threads post to the sync thread that owns a document.

They are small frozen values: a pool thread never touches a pycrdt object, it
describes what happened and the sync thread decides what to write.
"""

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class RunStarted:
    """The runtime accepted the request; the stream is open."""
    exec_id: str


@dataclass(frozen=True)
class OutputChunk:
    """Raw terminal text from the runtime (``stream`` is stdout or stderr)."""
    exec_id: str
    stream: str
    text: str


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
