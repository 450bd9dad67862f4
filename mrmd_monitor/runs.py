"""A run this monitor holds: one record, one enum of phases, one checked
transition (which also keeps the phase gauges), and the entry changes that
end a run.

The claim's confirmation is claims.py's record, the block and flush
bookkeeping blocks.py's; this record is what the run is and where it stands.
Pure: no threads, sockets or clocks; ``now`` is passed in.
"""

import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import protocol as p
from .document import BlockContent
from .errors import IllegalMove  # noqa: F401 - raised here; runs.IllegalMove is used by callers
from .logs import context
from .output import RunOutput

log = logging.getLogger(__name__)


class Phase(str, enum.Enum):
    CLAIMED = p.PHASE_CLAIMED
    WAITING_BLOCK = p.PHASE_WAITING_BLOCK
    WAITING_TURN = p.PHASE_WAITING_TURN
    QUEUED = p.PHASE_QUEUED
    DISPATCHED = p.PHASE_DISPATCHED
    RUNNING = p.PHASE_RUNNING
    DONE = p.PHASE_DONE


# Not sent to the runtime yet: such a run may be handed back to another monitor.
UNSTARTED = frozenset((Phase.CLAIMED, Phase.WAITING_BLOCK, Phase.WAITING_TURN, Phase.QUEUED))


@dataclass
class Run:
    exec_id: str
    runtime_url: str
    session: str
    code: str
    language: str
    cell_id: Optional[str]
    requested_at: int = 0
    # Its place among the runs of its runtime and session, the same on every
    # monitor (order.run_order): (requestedAt, notebookOrder, exec_id).
    order: Tuple[int, int, str] = (0, 0, "")
    doc: str = ""
    phase: Phase = Phase.CLAIMED
    since: float = 0.0
    block_deadline: float = float("inf")  # past it, the monitor makes the block itself
    output: RunOutput = field(default_factory=RunOutput)
    content: BlockContent = field(default_factory=BlockContent)
    display: List[dict] = field(default_factory=list)
    # Fields we wrote, put back if a concurrent write by another peer wins.
    want: Dict[str, object] = field(default_factory=dict)
    turn_checked: int = -1   # order version of the last look at who is ahead
    # The run's logger (logs.ContextAdapter): every line about it carries its
    # doc and exec_id. The coordinator passes its document's, bound to the run.
    log: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.log is None:
            self.log = context(log, doc=self.doc, exec_id=self.exec_id)

    @property
    def key(self):
        return self.runtime_url, self.session

    def next_deadline(self) -> Optional[float]:
        """When this run's phase timer is due (monotonic), or None."""
        return self.block_deadline if self.phase is Phase.WAITING_BLOCK else None


def new_run(entry: p.Entry, order, now: float, config, doc: str, run_log) -> Run:
    """The run of a request we claim (already checked: protocol.refusal)."""
    return Run(exec_id=entry.exec_id, runtime_url=entry.runtime_url.rstrip("/"),
               session=entry.session, code=entry.code, language=entry.language,
               cell_id=entry.cell_id, requested_at=entry.requested_at or 0, order=order,
               doc=doc, since=now, block_deadline=now + config.block_wait, log=run_log,
               output=RunOutput(config.max_output_bytes, max_columns=config.max_columns))


def begin(run: Run, metrics) -> None:
    """A new claim of ours: counted as claimed and queued until it starts."""
    metrics.inc("mrmd_monitor_claims_total")
    metrics.inc("mrmd_monitor_queued_runs")
    metrics.inc("mrmd_monitor_queue_depth", runtime=run.runtime_url)


def transition(run: Run, to: Phase, now: float, why: str = "", metrics=None,
               status: Optional[str] = None) -> None:
    """Move ``run`` to ``to``: the one place a phase changes, checked against
    protocol.RUN_MOVES, logged once, and counted in ``metrics`` (queued and
    active runs; ``status``: how a run that is DONE ended, when known)."""
    if to.value not in p.RUN_MOVES[run.phase.value]:
        raise IllegalMove("%s: %s -> %s" % (run.exec_id, run.phase.value, to.value))
    # This module's logger, as before (run.log is the coordinator's), with the run's context.
    context(log, doc=run.doc, exec_id=run.exec_id).debug(
        "%s: %s -> %s%s", run.exec_id, run.phase.value, to.value, " (%s)" % why if why else "")
    was = run.phase
    run.phase = to
    run.since = now
    if metrics is None:
        return
    if was is Phase.RUNNING:
        metrics.inc("mrmd_monitor_active_runs", -1)
    elif to in (Phase.RUNNING, Phase.DONE):
        metrics.inc("mrmd_monitor_queued_runs", -1)
        metrics.inc("mrmd_monitor_queue_depth", -1, runtime=run.runtime_url)
    if to is Phase.RUNNING:
        metrics.inc("mrmd_monitor_active_runs")
    if to is Phase.DONE and status is not None:
        metrics.inc("mrmd_monitor_executions_total", status=status)


def next_deadline(runs: Iterable[Run], now: float) -> Optional[float]:
    """Seconds until the earliest phase timer of ``runs`` (0 if one is due), or None."""
    due = [d for d in (r.next_deadline() for r in runs) if d is not None]
    return max(0.0, min(due) - now) if due else None


# -- what the entry says when a run ends ------------------------------------------

def running_changes(want: dict, now_ms: int) -> dict:
    changes = {"status": p.RUNNING, "startedAt": now_ms, "queued": False, "queuePosition": None}
    if want.get("queueReason"):
        changes["queueReason"] = None
    return changes


def final_changes(run: Run, result, err: Optional[dict], display: bool, now_ms: int) -> dict:
    """The last write of a run that ended (the last rich outputs go with it:
    one write, not two)."""
    changes = {"completedAt": now_ms, "stdinRequest": None, "queued": False,
               "queuePosition": None}
    if display:
        changes["displayData"] = list(run.display)
    if err is None:
        changes.update({"status": p.COMPLETED, "result": p.slim_result(result)})
    else:
        changes.update({"status": p.ERROR, "error": err})
    return changes


RELEASED = {"status": p.REQUESTED, "claimedBy": None, "claimedAt": None, "queued": False,
            "queuePosition": None}


def stopped_changes(run: Run, reason: str, now_ms: int) -> dict:
    """A run we stop before it ends (shutdown): its output so far is kept, with
    a last line in the block saying what happened, and the entry says why."""
    shown = run.output.text()
    sep = "" if not shown or shown.endswith("\n") else "\n"
    run.output.note("%s[mrmd-monitor: %s; the output above is kept]\n" % (sep, reason))
    return {"status": p.ERROR, "completedAt": now_ms, "stdinRequest": None,
            "error": p.error_value("MonitorStopped", reason)}
