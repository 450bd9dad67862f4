"""A run this monitor holds: one record, one enum of phases, one checked
transition, and the timers the sync loop waits for.

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
    RUNNING = p.PHASE_RUNNING
    DONE = p.PHASE_DONE


# Rich output kept inline in one entry, in all (the output engineer's per-run
# budget replaces this when there is one). Past it, items stay as references
# without their data: every write of the entry stays far below the sync
# server's 1 MiB message limit.

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
    # Claim confirmation: the probe that carries the claim, then a settle delay.
    probe: Optional[int] = None
    confirm_at: Optional[float] = None
    # The worker waits for this gate before it sends the run (messages.Dispatching):
    # set once the probe sent after the dispatch mark is answered.
    dispatch_gate: Optional[Any] = None
    dispatch_probe: Optional[int] = None
    dispatched: bool = False   # marked as sent: it may reach the runtime any moment
    block_ready: bool = False            # a browser made the output block
    block_deadline: float = float("inf")  # past it, the monitor makes the block itself
    # Output
    output: RunOutput = field(default_factory=RunOutput)
    content: BlockContent = field(default_factory=BlockContent)
    pending: bool = False
    pending_since: Optional[float] = None   # for the flush latency histogram
    # Past the cap, the worker's buffer whose output waits for the next flush.
    waiting: Optional[object] = None
    next_flush: float = 0.0
    last_flush: float = float("-inf")
    display: List[dict] = field(default_factory=list)
    display_dirty: bool = False
    awaiting_stdin: bool = False
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

    @property
    def started(self):
        return self.phase in (Phase.RUNNING, Phase.DONE)

    def next_deadline(self) -> Optional[float]:
        """When this run's next timer is due (monotonic), or None."""
        due = []
        if self.phase is Phase.CLAIMED and self.confirm_at is not None:
            due.append(self.confirm_at)
        if self.phase is Phase.WAITING_BLOCK:
            due.append(self.block_deadline)
        if self.pending:
            due.append(self.next_flush)
        return min(due) if due else None


def transition(run: Run, to: Phase, now: float, why: str = "") -> None:
    """Move ``run`` to ``to``: the one place a phase changes, checked against
    protocol.RUN_MOVES and logged once."""
    if to.value not in p.RUN_MOVES[run.phase.value]:
        raise IllegalMove("%s: %s -> %s" % (run.exec_id, run.phase.value, to.value))
    # This module's logger, as before (run.log is the coordinator's), with the run's context.
    context(log, doc=run.doc, exec_id=run.exec_id).debug(
        "%s: %s -> %s%s", run.exec_id, run.phase.value, to.value, " (%s)" % why if why else "")
    run.phase = to
    run.since = now


def next_deadline(runs: Iterable[Run], now: float) -> Optional[float]:
    """Seconds until the earliest timer of ``runs`` (0 if one is due), or None."""
    due = [d for d in (r.next_deadline() for r in runs) if d is not None]
    return max(0.0, min(due) - now) if due else None


def add_display(run: Run, items) -> None:
    """Rich output items, already within the run's budget (display.DisplayBudget,
    kept by the worker), reach the entry with the next flush: a burst of
    displays is one write, not one each."""
    run.display.extend(item for item in items if isinstance(item, dict))
    run.display_dirty = True
