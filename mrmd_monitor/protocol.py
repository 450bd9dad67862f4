"""The coordination protocol in Y.Map('executions'): states, transitions, and
validation of the untrusted entries that any peer may write.

Pure: no threads, sockets or clocks. Timestamps are passed in.
"""

import logging
from dataclasses import dataclass
from typing import Any, Optional

from .http import url_refused

log = logging.getLogger(__name__)

REQUESTED = "requested"
CLAIMED = "claimed"
READY = "ready"
RUNNING = "running"
COMPLETED = "completed"
ERROR = "error"
CANCELLED = "cancelled"

STATUSES = (REQUESTED, CLAIMED, READY, RUNNING, COMPLETED, ERROR, CANCELLED)
FINAL = frozenset((COMPLETED, ERROR, CANCELLED))

# Moves the monitor itself may make. Browsers make the others (ready, cancelled).
_MONITOR_MOVES = {
    REQUESTED: {CLAIMED, ERROR},
    CLAIMED: {CLAIMED, READY, RUNNING, ERROR, REQUESTED},  # CLAIMED again: a takeover
    READY: {CLAIMED, RUNNING, ERROR, COMPLETED, REQUESTED},
    RUNNING: {COMPLETED, ERROR},
}

# Entries are written whole: a cell this large would make every write of its
# entry a Yjs update near the sync server's 1 MiB message limit.
MAX_CODE_CHARS = 256 * 1024


class IllegalTransition(ValueError):
    pass


def check_transition(old, new):
    """Raise IllegalTransition unless the monitor may move an entry from old to new."""
    if new not in _MONITOR_MOVES.get(old, ()):
        raise IllegalTransition("%s -> %s" % (old, new))


def as_int(value) -> Optional[int]:
    """Numbers read back from the map are floats (1 -> 1.0); ids and ms need ints."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value)


@dataclass(frozen=True)
class Entry:
    """A validated view of one map entry. ``raw`` is the dict as read."""

    exec_id: str
    status: str
    raw: dict
    code: Optional[str]
    runtime_url: Optional[str]
    session: str
    language: str
    cell_id: Optional[str]
    requested_at: Optional[int]
    requested_by: Optional[int]
    claimed_by: Optional[int]
    output_block_ready: bool
    stdin_response_text: Optional[str]

    @property
    def final(self):
        return self.status in FINAL


def parse_entry(exec_id, value) -> Optional[Entry]:
    """Read an entry written by an untrusted peer. None if it is not an entry at all."""
    if not isinstance(exec_id, str) or not isinstance(value, dict):
        return None
    status = value.get("status")
    if status not in STATUSES:
        return None
    code = value.get("code")
    url = value.get("runtimeUrl")
    session = value.get("session")
    language = value.get("language")
    cell_id = value.get("cellId")
    response = value.get("stdinResponse")
    text = response.get("text") if isinstance(response, dict) else None
    return Entry(
        exec_id=exec_id,
        status=status,
        raw=value,
        code=code if isinstance(code, str) else None,
        runtime_url=url if isinstance(url, str) else None,
        session=session if isinstance(session, str) and session else "default",
        language=language if isinstance(language, str) and language else "python",
        cell_id=cell_id if isinstance(cell_id, str) and cell_id else None,
        requested_at=as_int(value.get("requestedAt")),
        requested_by=as_int(value.get("requestedBy")),
        claimed_by=as_int(value.get("claimedBy")),
        output_block_ready=value.get("outputBlockReady") is True,
        stdin_response_text=text if isinstance(text, str) else None,
    )


def runnable_problem(entry: Entry) -> Optional[str]:
    """Why a requested entry cannot be run, or None if it can."""
    if entry.code is None:
        return "the request has no code"
    if len(entry.code) > MAX_CODE_CHARS:
        return "the code is larger than %d characters" % MAX_CODE_CHARS
    if not entry.runtime_url:
        return "the request has no runtimeUrl"
    if not entry.runtime_url.startswith(("http://", "https://")):
        return "runtimeUrl must be an http:// or https:// URL"
    if "\n" in entry.exec_id or "`" in entry.exec_id or not entry.exec_id.strip():
        return "the execution id cannot be used as an output block marker"
    return None


def clean(value: Any) -> Any:
    """Turn floats that hold whole numbers back into ints, recursively.

    Browsers write integers; pycrdt hands them back as floats. Writing them
    back as floats would change the entry under the browser's feet.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def updated(raw: dict, changes: dict) -> dict:
    """The whole object to write back: browsers expect complete entries."""
    new = clean(dict(raw))
    new.update(clean(changes))
    return new


def error_value(type_, message, traceback=()):
    return {"type": str(type_), "message": str(message), "traceback": [str(t) for t in traceback]}


def slim_result(result: Any) -> Any:
    """The result to keep in the entry: the runtime's summary without the output,
    which is already in the text and would double the document's size."""
    if not isinstance(result, dict):
        return result
    drop = ("stdout", "stderr", "displayData", "assets", "accumulated")
    return {k: v for k, v in result.items() if k not in drop}


def runtime_refused(url, patterns):
    """Why the monitor must not call ``url``, or None if a pattern allows it
    (see http.parse_url and http.refused_by_allowlist)."""
    return url_refused(url, patterns)
