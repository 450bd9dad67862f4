"""Claims: who may run an entry, and when a claim of ours is decided.

A claim is written into the entry (``claimedBy``), then confirmed only after
it has made a round trip through the server (a probe: a sync step 1 sent
after it, answered) and, when other monitors are present, a settle delay,
with the entry still naming us. The settle delay follows the round trips
measured lately (:func:`settle_window`): a concurrent claim can take about
one round trip of the other monitor to reach us, and under load those grow
past --claim-settle. Only a monitor present in awareness holds a
lease: its claimed or running entries are its own until it is gone for
``--orphan-timeout``; then a waiting run is taken over and a running one is
marked lost. Requests left from long before we started expire instead of
running by surprise.

With several monitors, one is preferred for each request (cluster.py,
through ``port.claim_delay``): it claims at once, the others wait their
backup delay, and then claim only on the server's view, after a probe (a
late claim decided on a stale view can win over a claim already confirmed
and running: it ran runs twice under load). A request first seen late, when
a backup may be claiming it, is also claimed only after a probe.

Claims owns the bookkeeping of each claim of ours until it is confirmed
(its probe, then when the settle ends) and of each dispatch gate (the
worker sends the run only once the server has our ``dispatchedAt`` mark).
Pure decisions over a small port to the document (``DocPort``, implemented
by the sync thread) and a clock passed in; the coordinator does the writes
(entries.py).
"""

import collections
import logging
import threading
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple

from . import protocol as p
from .cluster import CLAIM_STEP
from .logs import context

log = logging.getLogger(__name__)

# A request first seen this much after its requestedAt is claimed only after a
# probe when other monitors are present (the backups' delay starts at 0.5 s,
# cluster.CLAIM_STEP).
STALE_SIGHT_MS = 400

# What Claims.defer says about a claimable request.
WAIT, CLAIM, BACKUP = "wait", "claim", "backup"

# The settle delay is at least this many of the slowest recent probe round
# trips (a concurrent claim needs about one round trip of its monitor to reach
# us; two leave room for that monitor being slower than we are), over the
# last RTT_SAMPLES probes, and at most SETTLE_CAP seconds.
RTT_FACTOR = 2.0
RTT_SAMPLES = 16
SETTLE_CAP = 5.0
# No one delay counts for more than this: the settle reaches its cap, and a
# backup's delay stays within RTT_FACTOR * SAMPLE_CAP / CLAIM_STEP of its own.
SAMPLE_CAP = SETTLE_CAP / RTT_FACTOR
# A live monitor's waiting claim that is first in line and does not move for
# this many --orphan-timeout is taken over (Claims.orphans).
STALLED = 3


class Latencies:
    """Recent delays, each capped at SAMPLE_CAP. The probe round trips of one
    monitor process are shared by its documents (each sync thread adds; a
    lock, as Metrics has): a document with few runs of its own has measured
    little, and a slow link shows in every document. How late other
    monitors' claims arrive is kept per document: entries are any peer's."""

    def __init__(self, samples: int = RTT_SAMPLES):
        self._lock = threading.Lock()
        self._recent = collections.deque(maxlen=samples)

    def add(self, seconds: float):
        with self._lock:
            self._recent.append(min(SAMPLE_CAP, max(0.0, float(seconds))))

    def snapshot(self) -> Tuple[float, ...]:
        with self._lock:
            return tuple(self._recent)


def settle_window(base: float, rtts: Sequence[float], factor: float = RTT_FACTOR,
                  cap: float = SETTLE_CAP) -> float:
    """Seconds a confirmed round trip of our claim waits for a concurrent one:
    ``base`` (--claim-settle), or ``factor`` times the slowest recent round
    trip when that is longer, never more than ``cap`` (nor less than ``base``).
    A ``base`` of 0 is an operator turning the wait off: it stays off."""
    if base <= 0:
        return 0.0
    slowest = max(rtts, default=0.0)
    return max(base, min(cap, factor * slowest))


def backup_delay(delay: float, rtts: Sequence[float], factor: float = RTT_FACTOR,
                 step: float = CLAIM_STEP) -> float:
    """A backup's delay (``step`` per monitor ranked before it), stretched so
    that each step is at least ``factor`` slowest recent round trips: the
    preferred monitor's claim takes about one round trip to be seen (more when
    it saw the request late and probed first), and a backup claiming before
    that races it."""
    slowest = max(rtts, default=0.0)
    return delay * max(1.0, factor * slowest / step) if delay > 0 else 0.0


class DocPort(Protocol):
    """What claims need from the document's connection (SyncThread)."""

    def probe(self) -> Optional[int]:
        """Send a sync step 1 after every update sent so far; its sequence
        number, or None when not connected."""

    def is_monitor(self, client_id: int) -> bool:
        """Is ``client_id`` us, or a monitor present in awareness?"""

    def other_monitors_present(self) -> bool:
        """Does awareness show any other monitor on this document?"""

    def is_connected(self) -> bool:
        """Synced with the server now?"""

    def claim_delay(self, entry: p.Entry) -> float:
        """Seconds this monitor lets the monitor preferred for ``entry`` claim
        it first (cluster.py); 0 when we are preferred."""

    def catch_up(self) -> None:
        """Apply every frame already waiting on the socket."""


class _Deferred:
    """A request we let another monitor claim first."""

    __slots__ = ("first", "entry", "probe", "checked", "backup")

    def __init__(self, first, entry):
        self.first = first        # when we first saw it (clock)
        self.entry = entry
        self.probe = None         # the probe sent once the delay passed
        self.checked = False      # that probe is answered: decide on what came back
        self.backup = False       # another monitor was preferred at some look


class _Check:
    """A claim of ours not confirmed yet."""

    __slots__ = ("probe", "confirm_at")

    def __init__(self):
        self.probe: Optional[int] = None         # the probe that carries the claim
        self.confirm_at: Optional[float] = None  # its answer came: confirmed then


class _Gate:
    """A run whose worker waits to send it until the server has our mark."""

    __slots__ = ("gate", "mark", "probe")

    def __init__(self, gate, mark):
        self.gate = gate     # threading.Event the worker waits on
        self.mark = mark     # our dispatchedAt
        self.probe = None


class Claims:
    def __init__(self, me: int, port: DocPort, config, doc_name: str = "",
                 latencies: Optional[Latencies] = None):
        self.me = me
        # This module's logger with the document's name (a request's adds its exec_id).
        self.log = context(log, doc=doc_name)
        self.port = port
        self.config = config
        # key -> (the entry as last seen, since when it is a candidate orphan)
        self._absent_since: Dict[str, Tuple[p.Entry, float]] = {}
        self._deferred: Dict[str, _Deferred] = {}
        self._sent: Dict[int, float] = {}    # probe seq -> when sent (clock)
        self._checks: Dict[str, _Check] = {}
        self._gates: Dict[str, _Gate] = {}
        # Our probes' round trips (the process's), and how late other
        # monitors' claims reach us here (this document's).
        self.rtts = latencies if latencies is not None else Latencies()
        self.late = Latencies()

    # -- leases --------------------------------------------------------------

    def lease_holder(self, client_id) -> bool:
        """A claim by anything but a live monitor (a browser, a forged id) is
        no lease: it neither blocks a runtime nor keeps a run from being taken."""
        if client_id is None:
            return False
        return client_id == self.me or bool(self.port.is_monitor(client_id))

    def may_claim(self, entry: p.Entry) -> bool:
        return entry.status == p.REQUESTED and entry.claimed_by is None

    def claim_delay(self, entry: p.Entry) -> float:
        """Seconds to wait before claiming this request (0: at once). The one
        place where spreading claims across monitors plugs in (a backup
        monitor waits; the request is looked at again when the delay ends),
        stretched while round trips are slow (:func:`backup_delay`)."""
        return backup_delay(self.port.claim_delay(entry), self._samples())

    # -- several monitors: the preferred one first -----------------------------

    def defer(self, entry: p.Entry, now: float, now_ms: int) -> str:
        """WAIT while another monitor is preferred for this claimable request
        and our delay, counted from when we first saw it, has not passed; and
        then until a probe has shown the server's view. CLAIM or BACKUP (a
        claim after waiting) once it may be claimed."""
        wait = self._deferred.get(entry.exec_id)
        delay = self.claim_delay(entry)
        if wait is None:
            wait = self._deferred[entry.exec_id] = _Deferred(now, entry)
            if delay > 0:
                self.log.bind(exec_id=entry.exec_id).debug(
                    "another monitor is preferred for %s: claiming it only as a backup, "
                    "in %.1fs", entry.exec_id, delay)
        wait.entry = entry
        # A monitor preferred all along that only looked at the server first
        # (it saw the request late) claims as itself, not as a backup.
        wait.backup = wait.backup or delay > 0
        # Once its probe is answered the delay has passed: a delay stretched
        # since (a slow round trip) does not send it back to waiting.
        if not wait.checked and now < wait.first + delay:
            return WAIT
        late = now > wait.first
        # Seen long after it was made (this thread was slow): a backup that saw
        # it in time may be claiming it now. Look first.
        seen_late = now_ms - (entry.requested_at or now_ms) > STALE_SIGHT_MS
        if (late or seen_late) and not wait.checked and self._backups_possible():
            return WAIT
        del self._deferred[entry.exec_id]
        return BACKUP if wait.backup else CLAIM

    def _backups_possible(self) -> bool:
        """Another monitor here may claim as a backup: a late claim looks at
        the server first."""
        return self.port.other_monitors_present()

    def deferring(self) -> bool:
        return bool(self._deferred)

    def forget_deferred(self, keys: Optional[Iterable[str]] = None):
        """Requests no longer ours to claim later (None: all of them)."""
        if keys is None:
            self._deferred.clear()
        for key in keys or ():
            self._deferred.pop(key, None)

    def deferred_due(self, now: float) -> Tuple[List[str], Optional[float]]:
        """``(ids to look at again now, seconds until the next is due)``.
        A request whose delay has passed gets a probe first (one for all);
        it is due once that probe is answered (``acked``)."""
        nxt, due, unprobed = None, [], []
        look = self._backups_possible()
        for key, wait in self._deferred.items():
            if wait.checked:
                due.append(key)
                continue
            at = wait.first + self.claim_delay(wait.entry)
            if now < at:
                nxt = at - now if nxt is None else min(nxt, at - now)
            elif not look:
                due.append(key)
            elif wait.probe is None:
                unprobed.append(wait)
        if unprobed:
            seq = self._probe(now)
            if seq is None:  # not connected: asked again after the next handshake
                nxt = 0.5 if nxt is None else min(nxt, 0.5)
            for wait in unprobed:
                wait.probe = seq
        return due, nxt

    # -- confirming our claims -------------------------------------------------

    def _probe(self, now: Optional[float]) -> Optional[int]:
        seq = self.port.probe()
        if seq is not None and now is not None:
            self._sent[seq] = now
        return seq

    def settle(self) -> float:
        """The settle delay now (see :func:`settle_window`)."""
        return settle_window(self.config.claim_settle, self._samples())

    def _samples(self) -> Tuple[float, ...]:
        return self.rtts.snapshot() + self.late.snapshot()

    def observe(self, entry: p.Entry, now_ms: int):
        """Another monitor's claim has just reached us: how late it is (its
        ``claimedAt`` to now, wall clocks) is a measure of the slowest link
        our settle must cover: a concurrent claim takes that long to arrive.
        Any peer writes entries: only a claim by a monitor counts (a proved
        one, when a cluster secret is set), in this document only, capped."""
        if (entry.status != p.CLAIMED or entry.claimed_by in (None, self.me)
                or not self.port.is_monitor(entry.claimed_by)):
            return
        at = p.as_int(entry.raw.get("claimedAt"))
        if at is not None and 0 <= now_ms - at <= 60_000:
            self.late.add((now_ms - at) / 1000.0)

    def begin(self, exec_id: str):
        """Our claim of ``exec_id`` is written: confirmed after a probe."""
        self._checks[exec_id] = _Check()

    def forget(self, exec_id: str):
        """The run is over for us; a gate still closed stays closed (the
        worker sees its run stopped)."""
        self._checks.pop(exec_id, None)
        self._gates.pop(exec_id, None)

    def dispatching(self, exec_id: str, gate, mark: int, now: Optional[float] = None):
        """Our ``dispatchedAt`` ``mark`` is written: ``gate`` opens once the
        server has it (a probe sent after it is answered), and only if the
        entry is then still ours with that mark (:meth:`acked`)."""
        self._gates[exec_id] = _Gate(gate, mark)
        self.probe(now)

    def reset(self):
        """A new connection: probes sent on the old one will never be answered."""
        self._absent_since.clear()
        self._sent.clear()
        for check in self._checks.values():
            if check.confirm_at is None:
                check.probe = None
        for gate in self._gates.values():
            gate.probe = None
        for wait in self._deferred.values():
            wait.probe = None

    def probe(self, now: Optional[float] = None):
        """Give every unconfirmed claim and closed gate a probe, one sync step
        1 for all (``now`` given: its round trip is measured)."""
        waiting = [c for c in self._checks.values() if c.confirm_at is None and c.probe is None]
        waiting += [g for g in self._gates.values() if g.probe is None]
        if not waiting:
            return
        seq = self._probe(now)
        if seq is None:
            return  # not connected: probed again after the next handshake
        for item in waiting:
            item.probe = seq

    def acked(self, seq: int, now: float, entry_now: Callable[[str], Optional[p.Entry]]):
        """The server has answered a sync step 1 sent after these claims: every
        update it had then is here now, concurrent claims included.
        ``entry_now(exec_id)`` reads an entry as the map holds it now.

        A concurrent claim can only come from a monitor that synced before our
        claim reached the server; it announced itself in awareness before
        that, on the same ordered connection, so its awareness is here too.
        With no other monitor in sight there is nobody to wait for."""
        for sent in [k for k in self._sent if k <= seq]:
            self.rtts.add(now - self._sent.pop(sent))
        settle = self.settle() if self.port.other_monitors_present() else 0.0
        for wait in self._deferred.values():  # backups may claim now (next tick)
            if wait.probe is not None and wait.probe <= seq:
                wait.checked = True
        for check in self._checks.values():
            if check.confirm_at is None and check.probe is not None and check.probe <= seq:
                check.confirm_at = now + settle
        for exec_id, gate in list(self._gates.items()):
            if gate.probe is None or gate.probe > seq:
                continue
            self._open(exec_id, gate, entry_now(exec_id))

    def _open(self, exec_id, gate, entry):
        """The answer to the dispatch probe is here: the run may go only if the
        entry still names us and carries our mark (a takeover written at the
        same moment arrives in that same answer)."""
        if self.still_ours(entry) and entry.dispatched_at == gate.mark:
            self.log.bind(exec_id=exec_id).debug("%s: the server has its dispatch mark", exec_id)
            del self._gates[exec_id]
            gate.gate.set()
        elif self.still_ours(entry):
            gate.probe = None    # our mark was overwritten: it is written again, then probed
        else:
            self.log.bind(exec_id=exec_id).warning(
                "%s: the entry is no longer ours at dispatch: not sending it", exec_id)
            del self._gates[exec_id]

    def due(self, exec_id: str, now: float) -> bool:
        check = self._checks.get(exec_id)
        return check is not None and check.confirm_at is not None and now >= check.confirm_at

    def confirmed(self, exec_id: str):
        """The claim is decided (won or lost): no more bookkeeping for it."""
        self._checks.pop(exec_id, None)

    def probe_of(self, exec_id: str) -> Optional[int]:
        check = self._checks.get(exec_id)
        return check.probe if check is not None else None

    def next_deadline(self, now: float) -> Optional[float]:
        due = [c.confirm_at for c in self._checks.values() if c.confirm_at is not None]
        return max(0.0, min(due) - now) if due else None

    def still_ours(self, entry: Optional[p.Entry]) -> bool:
        return entry is not None and entry.claimed_by == self.me and not entry.final

    # -- other monitors' entries ---------------------------------------------

    def orphans(self, entries: Dict[str, p.Entry], runs, now: float,
                first_in_line: Callable[[p.Entry], bool] = lambda entry: False
                ) -> List[p.Entry]:
        """Entries to take over (waiting) or mark lost (running): held by a
        client that has not been a live monitor for ``--orphan-timeout``; held
        in our name by a run we do not have (a peer's forgery); or a waiting
        claim, never sent, first in line on its runtime and session, that has
        not moved for STALLED times that long (without a cluster secret any
        peer can say it is a monitor: its lease blocks a runtime at most that
        long; taking a run over that was never sent runs it once still)."""
        if not self.port.is_connected():
            self._absent_since.clear()
            return []
        seen, found = set(), []
        for key, entry in entries.items():
            if (key in runs or entry.status not in (p.CLAIMED, p.READY, p.RUNNING)
                    or entry.claimed_by is None):
                continue
            limit = self.config.orphan_timeout
            if entry.claimed_by != self.me and self.lease_holder(entry.claimed_by):
                if (entry.status == p.RUNNING or entry.dispatched_at is not None
                        or not first_in_line(entry)):
                    continue
                limit *= STALLED
            seen.add(key)
            was, since = self._absent_since.get(key, (entry, now))
            if was is not entry and limit > self.config.orphan_timeout:
                since = now   # it moved: its holder is at work
            self._absent_since[key] = (entry, since)
            if now - since >= limit:
                del self._absent_since[key]
                found.append(entry)
        for key in list(self._absent_since):
            if key not in seen:
                del self._absent_since[key]
        return found

    def lost_message(self, entry: p.Entry) -> Optional[str]:
        """For an orphan: why it cannot be taken over (it may have run), or
        None when it never reached its runtime and may be run by us."""
        who = entry.claimed_by
        if who == self.me and (entry.status == p.RUNNING or entry.dispatched_at is not None):
            # No run of ours has it: a peer wrote our name.
            return ("this cell is marked as run by this monitor (client %s), which does not "
                    "hold it; not run. Run the cell again." % who)
        if entry.status == p.RUNNING:
            # A client that is no monitor (a browser's forged claim) ends here too.
            return ("the monitor running this cell (client %s) was lost; the output up to "
                    "that point is kept (a runtime stream cannot be resumed). Run the cell "
                    "again." % who)
        if entry.dispatched_at is not None:   # sent, not seen to start: it may have run
            return ("the monitor that sent this cell to its runtime (client %s) was lost "
                    "before the runtime answered; the cell may have run. Run it again if it "
                    "did not." % who)
        return None

    def sweep_interval(self, entries: Dict[str, p.Entry], runs,
                       orphans: float, retention: float) -> Optional[float]:
        """How soon ``orphans()`` / ``retired()`` must look again: ``orphans``
        seconds while another client holds an entry we do not run, ``retention``
        while finished entries wait for --retention, None when nothing can come
        due until an entry changes."""
        waiting = False
        for key, entry in entries.items():
            if key in runs:
                continue
            if entry.status in (p.CLAIMED, p.READY, p.RUNNING) and entry.claimed_by is not None:
                return orphans
            waiting = waiting or entry.final
        return retention if waiting and self.config.retention else None

    def stale(self, entries: Dict[str, p.Entry], now_ms: int) -> List[Tuple[str, str]]:
        """Requests older than ``--stale-after``, with the message to write."""
        limit = self.config.stale_after
        if not limit:
            return []
        out = []
        for key, entry in entries.items():
            if (entry.status != p.REQUESTED or entry.claimed_by is not None
                    or entry.requested_at is None):
                continue
            age = (now_ms - entry.requested_at) / 1000.0
            if age > limit:
                out.append((key, "requested %.0f minutes before this monitor started; not run "
                                 "(older than --stale-after %.0fs). Run the cell again."
                            % (age / 60.0, limit)))
        return out
