"""The coordination protocol in Y.Map('executions'): states, transitions, and
validation of the untrusted entries that any peer may write.

Pure: no threads, sockets or clocks. Timestamps are passed in.
"""

import logging
from dataclasses import dataclass
from typing import Any, Optional

from .errors import EntryRefused, IllegalTransition  # noqa: F401 - callers use p.<name>
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

# The monitor's own phases of a run it holds (runs.Phase); the entry's status
# is the browsers' view of the same run. Every move goes through
# runs.transition, checked against this table.
PHASE_CLAIMED = "claimed"              # claim written, not yet confirmed (probe, settle)
PHASE_WAITING_BLOCK = "waiting-block"  # confirmed; a browser may still make the block
PHASE_WAITING_TURN = "waiting-turn"    # block ready; an earlier cell of its runtime/session runs
PHASE_QUEUED = "queued"                # handed to the pool
PHASE_DISPATCHED = "dispatched"        # marked as sent (dispatchedAt): it may be running
PHASE_RUNNING = "running"              # the runtime accepted it
PHASE_DONE = "done"
RUN_MOVES = {
    PHASE_CLAIMED: {PHASE_WAITING_BLOCK, PHASE_WAITING_TURN, PHASE_DONE},
    PHASE_WAITING_BLOCK: {PHASE_WAITING_TURN, PHASE_DONE},
    PHASE_WAITING_TURN: {PHASE_QUEUED, PHASE_DONE},
    PHASE_QUEUED: {PHASE_DISPATCHED, PHASE_RUNNING, PHASE_DONE},
    PHASE_DISPATCHED: {PHASE_RUNNING, PHASE_DONE},
    PHASE_RUNNING: {PHASE_DONE},
    PHASE_DONE: set(),
}

# Entries are written whole: a cell this large would make every write of its
# entry a Yjs update near the sync server's 1 MiB message limit. Counted in
# UTF-8 bytes, which is what goes on the wire.
MAX_CODE_BYTES = 256 * 1024
# Any peer writes entries. Past these limits an entry is refused before any
# code walks it recursively (Yjs and JSON.parse accept nesting thousands of
# levels deep; Python's recursion stops at about 1,000).
MAX_DEPTH = 32
# The sync server closes a connection that sends a message over 1 MiB, and an
# entry is written whole: what the monitor sends for one entry stays under
# MAX_WRITE_BYTES (measured on what is about to be sent, not on what the peer
# sent), an entry past MAX_ENTRY_BYTES is refused, and a request is run only
# under MAX_REQUEST_BYTES, leaving room for the fields and displays the
# monitor adds (displays are cut to fit, never the entry's own fields).
MAX_WRITE_BYTES = 928 * 1024
MAX_ENTRY_BYTES = 896 * 1024
MAX_REQUEST_BYTES = 384 * 1024
# What a refused entry keeps of its fields, in all.
_REFUSED_BYTES = 256 * 1024
# What a refused entry keeps of a field that broke a limit, when written back.
_CUT_CHARS = 1000


def measure(value: Any, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_ENTRY_BYTES):
    """``(problem, size)`` of an untrusted value, without recursion.

    ``size`` approximates its JSON encoding in bytes; ``problem`` says which
    limit it breaks, or is None. The walk stops at the first broken limit, so
    its cost is bounded by the limits, not by the value.
    """
    size = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            size += len(item.encode("utf-8", "surrogatepass")) + 2
        elif isinstance(item, dict):
            if depth > max_depth:
                return "nested deeper than %d levels" % max_depth, size
            size += 2
            for key, val in item.items():
                key_size = len(key.encode("utf-8", "surrogatepass")) if isinstance(key, str) else 8
                size += key_size + 3
                stack.append((val, depth + 1))
        elif isinstance(item, (list, tuple)):
            if depth > max_depth:
                return "nested deeper than %d levels" % max_depth, size
            size += 2 + len(item)
            stack.extend((val, depth + 1) for val in item)
        else:
            size += 8
        if size > max_bytes:
            return "larger than %d bytes" % max_bytes, size
    return None, size


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
    # When the claimant sent the run to its runtime (ms; the mark reached the
    # server before the request did): from then on the run may have started.
    dispatched_at: Optional[int]
    # The cell's place in the notebook when it was claimed (its claimant wrote
    # it): with requestedAt and the id, the one order of runs every monitor uses.
    # None until a claim wrote it.
    notebook_order: Optional[int]
    output_block_ready: bool
    stdin_response_text: Optional[str]
    size: int = 0     # bytes, about as much as its JSON
    # Set when the entry breaks a limit (depth, size): such an entry is never
    # run nor walked, only refused (``refused_entry``).
    problem: Optional[str] = None

    @property
    def final(self):
        return self.status in FINAL


def parse_entry(exec_id, value) -> Optional[Entry]:
    """Read an entry written by an untrusted peer. None if it is not an entry at all."""
    if not isinstance(exec_id, str) or not isinstance(value, dict):
        return None
    status = value.get("status")
    if not isinstance(status, str) or status not in STATUSES:
        return None
    problem, size = measure(value)
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
        dispatched_at=as_int(value.get("dispatchedAt")),
        notebook_order=as_int(value.get("notebookOrder")),
        output_block_ready=value.get("outputBlockReady") is True,
        stdin_response_text=text if isinstance(text, str) else None,
        size=size,
        problem=("the entry is %s" % problem) if problem else None,
    )


def runnable_problem(entry: Entry) -> Optional[str]:
    """Why a requested entry cannot be run, or None if it can."""
    if entry.problem is not None:
        return entry.problem
    if entry.code is None:
        return "the request has no code"
    if code_too_large(entry.code):
        return "the code is larger than %d bytes (UTF-8)" % MAX_CODE_BYTES
    if entry.size > MAX_REQUEST_BYTES:
        return "the request is larger than %d bytes" % MAX_REQUEST_BYTES
    if not entry.runtime_url:
        return "the request has no runtimeUrl"
    if not entry.runtime_url.startswith(("http://", "https://")):
        return "runtimeUrl must be an http:// or https:// URL"
    if "\n" in entry.exec_id or "`" in entry.exec_id or not entry.exec_id.strip():
        return "the execution id cannot be used as an output block marker"
    return None


def refusal(entry: Entry, allow, now_ms: int):
    """``(problem, changes)`` for a request this monitor will not run (the
    changes end it in ``error`` saying why), or None if it may run it."""
    problem, kind = runnable_problem(entry), "InvalidRequest"
    if problem is None:
        problem, kind = runtime_refused(entry.runtime_url, allow), "RuntimeNotAllowed"
    if not problem:
        return None
    changes = {"status": ERROR, "error": error_value(kind, problem), "completedAt": now_ms}
    if entry.code is not None and code_too_large(entry.code):
        # Writing the entry back whole would copy the huge code again.
        changes["code"] = entry.code[:_CUT_CHARS] + "\n# ... (cut by mrmd-monitor)"
    return problem, changes


def code_too_large(code: str) -> bool:
    # Four bytes per character at most: most code is decided without encoding it.
    if len(code) * 4 <= MAX_CODE_BYTES:
        return False
    return len(code.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES


def clean(value: Any, _depth: int = 0) -> Any:
    """Turn floats that hold whole numbers back into ints, recursively.

    Browsers write integers; pycrdt hands them back as floats. Writing them
    back as floats would change the entry under the browser's feet. Values
    are measured before they get here; the depth guard is the last line.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    if isinstance(value, (dict, list, tuple)) and _depth > MAX_DEPTH:
        raise EntryRefused("nested deeper than %d levels" % MAX_DEPTH)
    if isinstance(value, dict):
        return {k: clean(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v, _depth + 1) for v in value]
    return value


_RANK = {REQUESTED: 0, CLAIMED: 1, READY: 2, RUNNING: 3, COMPLETED: 4, ERROR: 4, CANCELLED: 4}


def lost_changes(want: dict, entry: "Entry") -> dict:
    """What of ``want`` (the fields we wrote) a concurrent write by another
    peer has undone in ``entry``: to be written again. A status is only put
    back when the entry's is behind ours."""
    want = dict(want)
    status = want.pop("status", None)
    changes = {k: v for k, v in want.items() if clean(entry.raw.get(k)) != clean(v)}
    if status is not None and _RANK[entry.status] < _RANK[status]:
        changes["status"] = status
    return changes


def updated(raw: dict, changes: dict) -> dict:
    """The whole object to write back: browsers expect complete entries.
    Raises EntryRefused when ``raw`` breaks a limit."""
    problem, _ = measure(raw)
    if problem:
        raise EntryRefused("the entry is %s" % problem)
    new = clean(dict(raw))
    new.update(clean(changes))
    return new


def refused_entry(raw: dict, problem: str, now_ms: int) -> dict:
    """The entry to write back for one that broke a limit: every field that
    fits is kept as it was, the others are cut (code) or emptied, and the
    entry ends in ``error`` saying why."""
    out = {}
    budget = _REFUSED_BYTES
    for key, value in list(raw.items())[:256]:
        if not isinstance(key, str) or len(key) > 256:
            continue
        if key == "code" and isinstance(value, str) and code_too_large(value):
            value = value[:_CUT_CHARS] + "\n# ... (cut by mrmd-monitor)"
        bad, size = measure(value, MAX_DEPTH - 1, budget)
        if bad:
            out[key] = None
            continue
        out[key] = clean(value)
        budget -= size
    out.update({"status": ERROR, "completedAt": now_ms, "stdinRequest": None,
                "error": error_value("InvalidRequest", "%s; not run" % problem)})
    return out


def fitted(value: dict) -> Optional[dict]:
    """``value`` as it may be sent: within MAX_WRITE_BYTES, its displays cut
    (the last item says so) when they make it too large; None when it cannot
    be made to fit that way (the entry is then refused)."""
    problem, size = measure(value, max_bytes=MAX_WRITE_BYTES)
    if problem is None:
        return value
    display = value.get("displayData")
    if not isinstance(display, list) or not display:
        return None
    rest = dict(value, displayData=[])
    bad, room = measure(rest, max_bytes=MAX_WRITE_BYTES)
    if bad:
        return None
    room = MAX_WRITE_BYTES - room - 1024
    kept = []
    for item in display:
        bad, used = measure(item, MAX_DEPTH - 2, room)
        if bad:
            break
        kept.append(item)
        room -= used
    kept.append({"mimeType": "text/plain", "assetId": None,
                 "data": "[mrmd-monitor: %d rich output(s) left out: the entry would pass the "
                         "sync server's message limit]" % (len(display) - len(kept))})
    return dict(value, displayData=kept)


def error_value(type_, message, traceback=()):
    return {"type": str(type_), "message": str(message), "traceback": [str(t) for t in traceback]}


# What a runtime's result summary and error may take in an entry.
MAX_RESULT_DEPTH = 16
MAX_RESULT_BYTES = 64 * 1024


def slim_result(result: Any) -> Any:
    """The result to keep in the entry: the runtime's summary without the output,
    which is already in the text and would double the document's size. A
    summary past the limits (a runtime is untrusted too) is replaced by a note."""
    if isinstance(result, dict):
        drop = ("stdout", "stderr", "displayData", "assets", "accumulated")
        result = {k: v for k, v in result.items() if k not in drop}
    problem, _ = measure(result, MAX_RESULT_DEPTH, MAX_RESULT_BYTES)
    if problem:
        success = result.get("success") if isinstance(result, dict) else None
        return {"success": success if isinstance(success, bool) else None,
                "omitted": "the runtime's result was %s" % problem}
    return result


def bounded_error(err: Any) -> dict:
    """A runtime's error as the entry keeps it: ``{type, message, traceback}``
    of strings, within the limits (the traceback keeps its last lines)."""
    if not isinstance(err, dict):
        return error_value("Error", str(err)[:2000])
    traceback = err.get("traceback")
    lines = [str(t)[:4000] for t in traceback[-200:]] if isinstance(traceback, list) else []
    value = error_value(str(err.get("type"))[:200], str(err.get("message"))[:8000], lines)
    while lines and measure(value, MAX_RESULT_DEPTH, MAX_RESULT_BYTES)[0]:
        lines = lines[len(lines) // 2 + 1:]
        value["traceback"] = lines
    return value


def runtime_refused(url, patterns):
    """Why the monitor must not call ``url``, or None if a pattern allows it
    (see http.parse_url and http.refused_by_allowlist)."""
    return url_refused(url, patterns)
