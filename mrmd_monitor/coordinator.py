"""One document's side of the coordination protocol.

Lives on the document's sync thread and is the only code that reads or writes
the document's ``executions`` map and ``content`` text. It turns map changes
(from browsers) and worker messages (from the pool) into writes, and never
blocks: HTTP happens on the pool.
"""

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from pycrdt import Map, Text

from . import messages as m
from . import protocol as p
from .document import (BlockContent, Edit, byte_len, byte_offset, content_edit, edit_at,
                       find_block, find_cell, place_block, rewrite_edit)
from .metrics import Metrics
from .output import RunOutput
from .workers import RunJob

log = logging.getLogger(__name__)

_RANK = {p.REQUESTED: 0, p.CLAIMED: 1, p.READY: 2, p.RUNNING: 3,
         p.COMPLETED: 4, p.ERROR: 4, p.CANCELLED: 4}

# Past the output cap only the tail moves: it is rewritten at most this often.
CAPPED_FLUSH_INTERVAL = 1.0
# One Yjs update per transaction: big inserts are split so that no message
# comes near the sync server's 1 MiB limit.
MAX_INSERT_CHARS = 128 * 1024

# Phases of a run we hold, seen from the monitor (the entry's status is the
# browsers' view of the same thing).
WAITING_BLOCK = "waiting-block"
WAITING_TURN = "waiting-turn"   # behind an earlier cell another monitor runs on the same runtime
QUEUED = "queued"
RUNNING = "running"


@dataclass
class Run:
    exec_id: str
    runtime_url: str
    session: str
    code: str
    language: str
    cell_id: Optional[str]
    block_deadline: float
    requested_at: int = 0
    turn_checked: int = -1   # entries version of the last look at other monitors' runs
    phase: str = WAITING_BLOCK
    output: RunOutput = field(default_factory=RunOutput)
    content: BlockContent = field(default_factory=BlockContent)
    pending: bool = False
    next_flush: float = 0.0
    last_flush: float = float("-inf")
    display: List[dict] = field(default_factory=list)
    awaiting_stdin: bool = False
    want: Dict[str, object] = field(default_factory=dict)
    # The claim is decided only after it has made a round trip through the
    # server (probe acknowledged) and a settle delay has passed still naming us.
    probe: Optional[int] = None
    confirm_at: Optional[float] = None
    confirmed: bool = False
    block_ready: bool = False
    started_at: Optional[float] = None
    timed_out: bool = False
    # Where the block's content starts (code points, bytes), valid while no
    # other peer has changed the text (Coordinator.text_epoch): flushes then
    # need neither a copy nor a scan of the document.
    where: Optional[tuple] = None
    where_epoch: int = -1


def wall_ms():
    return int(time.time() * 1000)


class Coordinator:
    def __init__(self, doc, *, me, pool, post, config, doc_name="", metrics=None,
                 probe=None, peer_alive=None, connected=None, monitors_present=None,
                 clock=time.monotonic, now_ms=wall_ms):
        self.doc = doc
        self.text = doc.get("content", type=Text)
        self.entries = doc.get("executions", type=Map)
        self.me = me
        self.pool = pool
        self.post = post
        self.config = config
        self.doc_name = doc_name
        self.clock = clock
        self.now_ms = now_ms
        self.metrics = metrics if metrics is not None else Metrics()
        self.runs: Dict[str, Run] = {}
        self.accepting = True
        self._seq = itertools.count()
        # The sync thread's services; without them (unit tests) a claim counts
        # as acknowledged at once and every other monitor as alive.
        self._probe = probe
        self._peer_alive = peer_alive
        self._connected = connected or (lambda: True)
        self._monitors_present = monitors_present
        self._absent_since: Dict[str, float] = {}
        self._next_sweep = 0.0
        self._first_sync = True
        self.text_epoch = 0   # bumped by the sync thread when another peer edits the text
        self._entries_version = 0
        self._foreign = (-1, {})  # (entries version, pending runs of other monitors by runtime)

    # -- inputs ------------------------------------------------------------

    def on_synced(self):
        """After (re)sync: look at every entry, as if each had just changed."""
        if self._first_sync:
            self._first_sync = False
            self._expire_stale()
        self._absent_since.clear()
        for run in self.runs.values():
            if not run.confirmed and run.confirm_at is None:
                run.probe = None  # the old connection's probe will never be answered
        self.on_entries_changed(list(self.entries.keys()))
        self._probe_unconfirmed()

    def _expire_stale(self):
        """Requests left from long ago are not run by surprise when we start."""
        limit = self.config.stale_after
        if not limit:
            return
        now = self.now_ms()
        for key in list(self.entries.keys()):
            entry = p.parse_entry(key, self.entries.get(key))
            if (entry is None or entry.status != p.REQUESTED or entry.claimed_by is not None
                    or entry.requested_at is None):
                continue
            age = (now - entry.requested_at) / 1000.0
            if age > limit:
                minutes = age / 60.0
                msg = ("requested %.0f minutes before this monitor started; not run "
                       "(older than --stale-after %.0fs). Run the cell again." % (minutes, limit))
                log.warning("expiring %s: %s", key, msg, extra={"doc": self.doc_name, "exec_id": key})
                self._write_entry(key, {"status": p.ERROR, "completedAt": now,
                                        "error": p.error_value("Expired", msg)})

    def on_entries_changed(self, keys):
        """Entries changed by a remote peer."""
        self._entries_version += 1
        to_claim = []
        for key in keys:
            value = self.entries.get(key)
            entry = p.parse_entry(key, value)
            run = self.runs.get(key)
            if run is not None:
                self._on_own_entry(run, entry)
            elif entry is None:
                if value is not None:
                    log.debug("ignoring map key %r: not an execution entry", key)
            elif entry.status == p.REQUESTED and entry.claimed_by is None and self.accepting:
                to_claim.append(entry)
        # Claim in request order: the pool runs a runtime's cells in that order.
        to_claim.sort(key=self._request_order(to_claim))
        for entry in to_claim:
            self._claim(entry)
        if to_claim:
            self._probe_unconfirmed()

    def _request_order(self, entries):
        """Sort key for requests that arrived together. Milliseconds tie when
        a browser runs several cells at once; the cells' order in the notebook
        (top to bottom, as "run all" asks them) decides then."""
        times = [e.requested_at or 0 for e in entries]
        if len(set(times)) == len(times):
            return lambda e: (e.requested_at or 0, 0, e.exec_id)
        text = str(self.text)
        where = {}
        for e in entries:
            cell = find_cell(text, e.code or "", e.language, e.cell_id)
            where[e.exec_id] = cell.start if cell is not None else len(text)
        return lambda e: (e.requested_at or 0, where[e.exec_id], e.exec_id)

    def _probe_unconfirmed(self):
        waiting = [r for r in self.runs.values()
                   if not r.confirmed and r.confirm_at is None and r.probe is None]
        if not waiting:
            return
        if self._probe is None:
            seq = 0
        else:
            seq = self._probe()
            if seq is None:
                return  # not connected: probed again after the next handshake
        for run in waiting:
            run.probe = seq
        if self._probe is None:
            self.on_probe_acked(seq)

    def on_probe_acked(self, seq):
        """The server has answered a sync step 1 sent after these claims: every
        update it had then is here now, concurrent claims included.

        A concurrent claim can only come from a monitor that synced before our
        claim reached the server; it announced itself in awareness before
        that, on the same ordered connection, so its awareness is here too.
        With no other monitor in sight there is nobody to wait for."""
        settle = self.config.claim_settle if self._other_monitors() else 0.0
        for run in self.runs.values():
            if (not run.confirmed and run.confirm_at is None and run.probe is not None
                    and run.probe <= seq):
                run.confirm_at = self.clock() + settle

    def _other_monitors(self):
        if self._monitors_present is None:
            return True   # unknown (tests without awareness): assume there may be some
        return self._monitors_present()

    def _confirm(self, run):
        entry = p.parse_entry(run.exec_id, self.entries.get(run.exec_id))
        if entry is None or entry.claimed_by != self.me or entry.final:
            log.info("claim on %s not confirmed (now %s by %s): not running it", run.exec_id,
                     entry.status if entry else "gone", entry.claimed_by if entry else None,
                     extra=self._extra(run))
            self._drop(run, interrupt=False)
            return
        run.confirmed = True
        log.debug("claim on %s confirmed", run.exec_id, extra=self._extra(run))
        if run.block_ready:
            self._arm(run, headless=False)

    def on_message(self, msg):
        run = self.runs.get(getattr(msg, "exec_id", None))
        if isinstance(msg, m.InterruptRefused):  # the run is usually over for us by then
            if run is None:
                self._append_notice(msg.exec_id, msg.line)
            else:
                self._on_output(run, "\n" + msg.line + "\n")
            return
        if run is None:
            return  # a run we gave up (cancelled, lost): its late messages are dropped
        if isinstance(msg, m.OutputReady):
            self._on_output(run, msg.buffer.take())
        elif isinstance(msg, m.RunStarted):
            self._on_started(run)
        elif isinstance(msg, m.StdinRequested):
            self._on_stdin_request(run, msg)
        elif isinstance(msg, m.DisplayItems):
            run.display.extend(msg.items)
            self._write(run, {"displayData": list(run.display)})
        elif isinstance(msg, m.RunFinished):
            self._on_finished(run, msg)
        elif isinstance(msg, m.RuntimeBusy):
            self._write(run, {"queued": True, "queueReason": msg.reason})
        elif isinstance(msg, m.InputSent):
            if not msg.accepted:
                log.warning("runtime refused the stdin answer for %s: %s", run.exec_id,
                            msg.reason or "not accepted", extra=self._extra(run))

    def tick(self):
        """Run what is due; return the seconds until the next timer, or None."""
        now = self.clock()
        nxt = None
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._sweep(now)
        nxt = _min(nxt, self._next_sweep - now)
        for run in list(self.runs.values()):
            if not run.confirmed:
                if run.confirm_at is not None:
                    if now >= run.confirm_at:
                        self._confirm(run)
                    else:
                        nxt = _min(nxt, run.confirm_at - now)
                if not run.confirmed:
                    continue
            if run.phase == WAITING_TURN and run.turn_checked != self._entries_version:
                self._try_submit(run)
            if run.phase == WAITING_BLOCK:
                if now >= run.block_deadline:
                    log.info("no browser made the output block for %s within %.1fs: creating it",
                             run.exec_id, self.config.block_wait, extra=self._extra(run))
                    self._arm(run, headless=True)
                else:
                    nxt = _min(nxt, run.block_deadline - now)
            if run.pending and run.exec_id in self.runs:
                if now >= run.next_flush:
                    self._flush(run)
                else:
                    nxt = _min(nxt, run.next_flush - now)
            limit = self.config.max_run_time
            if limit and run.phase == RUNNING and not run.timed_out and run.started_at is not None:
                if now - run.started_at >= limit:
                    log.warning("%s ran longer than --max-run-time %.0fs: stopping it", run.exec_id,
                                limit, extra=self._extra(run))
                    run.timed_out = True
                    self.pool.cancel(run.exec_id, interrupt=True)
                else:
                    nxt = _min(nxt, run.started_at + limit - now)
        return nxt

    # -- other monitors ------------------------------------------------------

    def _sweep(self, now):
        """Once a second: entries held by monitors that are gone, and finished
        entries past their retention."""
        if not self._connected():
            self._absent_since.clear()
            return
        seen = set()
        now_ms = self.now_ms()
        expired = []
        for key in list(self.entries.keys()):
            if key in self.runs:
                continue
            entry = p.parse_entry(key, self.entries.get(key))
            if entry is not None and entry.final and self.config.retention:
                done = p.as_int(entry.raw.get("completedAt"))
                if done is not None and now_ms - done > self.config.retention * 1000:
                    expired.append(key)
                continue
            if self._peer_alive is None:
                continue
            if (entry is None or entry.status not in (p.CLAIMED, p.READY, p.RUNNING)
                    or entry.claimed_by is None or entry.claimed_by == self.me):
                continue
            seen.add(key)
            if self._peer_alive(entry.claimed_by):
                self._absent_since.pop(key, None)
                continue
            since = self._absent_since.setdefault(key, now)
            if now - since >= self.config.orphan_timeout:
                del self._absent_since[key]
                self._take_over(entry)
        for key in list(self._absent_since):
            if key not in seen:
                del self._absent_since[key]
        if expired:
            # Deleting is idempotent: several monitors may do it at once.
            with self.doc.transaction():
                for key in expired:
                    del self.entries[key]
            self._entries_version += 1
            log.info("removed %d finished entr%s older than --retention %.0fs", len(expired),
                     "y" if len(expired) == 1 else "ies", self.config.retention,
                     extra={"doc": self.doc_name})

    def _take_over(self, entry):
        who = entry.claimed_by
        extra = {"doc": self.doc_name, "exec_id": entry.exec_id}
        if entry.status == p.RUNNING:
            msg = ("the monitor running this cell (client %s) was lost; the output up to that "
                   "point is kept (a runtime stream cannot be resumed). Run the cell again." % who)
            log.warning("%s: %s", entry.exec_id, msg, extra=extra)
            self._append_notice(entry.exec_id, "[mrmd-monitor: %s]" % msg)
            self._write_entry(entry.exec_id, {"status": p.ERROR, "completedAt": self.now_ms(),
                                              "stdinRequest": None,
                                              "error": p.error_value("MonitorLost", msg)})
            return
        if self.accepting:
            log.warning("monitor %s holding %s (%s) is gone: taking the run over", who,
                        entry.exec_id, entry.status, extra=extra)
            self._claim(entry)
            run = self.runs.get(entry.exec_id)
            if run is not None:
                run.block_ready = entry.output_block_ready
                self._probe_unconfirmed()

    # -- claiming and starting ----------------------------------------------

    def _claim(self, entry):
        problem = p.runnable_problem(entry)
        kind = "InvalidRequest"
        if problem is None:
            problem = p.runtime_refused(entry.runtime_url, self.config.allow_runtime)
            kind = "RuntimeNotAllowed"
        if problem:
            log.warning("cannot run %s: %s", entry.exec_id, problem,
                        extra={"doc": self.doc_name, "exec_id": entry.exec_id})
            changes = {"status": p.ERROR, "error": p.error_value(kind, problem),
                       "completedAt": self.now_ms()}
            if entry.code is not None and len(entry.code) > p.MAX_CODE_CHARS:
                # Writing the entry back whole would copy the huge code again.
                changes["code"] = entry.code[:1000] + "\n# ... (cut by mrmd-monitor)"
            self._write_entry(entry.exec_id, changes)
            return
        run = Run(exec_id=entry.exec_id, runtime_url=entry.runtime_url.rstrip("/"),
                  session=entry.session, code=entry.code, language=entry.language,
                  cell_id=entry.cell_id, block_deadline=self.clock() + self.config.block_wait,
                  requested_at=entry.requested_at or 0,
                  output=RunOutput(self.config.max_output_bytes))
        self.runs[run.exec_id] = run
        self.metrics.inc("mrmd_monitor_claims_total")
        self.metrics.inc("mrmd_monitor_queued_runs")
        self._write(run, {"status": p.CLAIMED, "claimedBy": self.me, "claimedAt": self.now_ms()})
        self.pool.reserve(run.exec_id, (run.runtime_url, run.session),
                          (entry.requested_at or 0, next(self._seq)))
        log.info("claimed %s (runtime %s, session %s)", run.exec_id, run.runtime_url,
                 run.session, extra=self._extra(run))

    def _on_own_entry(self, run, entry):
        if entry is None:
            log.info("entry %s was removed: dropping the run", run.exec_id, extra=self._extra(run))
            self._drop(run, interrupt=True)
            return
        if entry.claimed_by is None and entry.status == p.REQUESTED:
            self._reconcile(run, entry)  # a concurrent write from a stale copy won: claim again
            return
        if entry.claimed_by != self.me:
            log.warning("lost the claim on %s to client %s: not running it", run.exec_id,
                        entry.claimed_by, extra=self._extra(run))
            self._drop(run, interrupt=True)
            return
        if entry.status == p.CANCELLED:
            log.info("%s was cancelled by a browser", run.exec_id, extra=self._extra(run))
            self._drop(run, interrupt=True, status=p.CANCELLED)
            return
        if entry.status in (p.COMPLETED, p.ERROR):
            if run.want.get("status") != entry.status:
                log.warning("%s was finished by another peer: dropping the run", run.exec_id,
                            extra=self._extra(run))
                self._drop(run, interrupt=True)
            return
        if run.phase == WAITING_BLOCK and (entry.status == p.READY or entry.output_block_ready):
            run.block_ready = True
            if run.confirmed:
                self._arm(run, headless=False)
        if run.awaiting_stdin and entry.stdin_response_text is not None:
            self._forward_stdin(run, entry.stdin_response_text)
        self._reconcile(run, entry)

    def _reconcile(self, run, entry):
        """Put back what we wrote if a concurrent write by another peer won.

        Browsers' client ids are larger than ours, so in a conflict on an
        entry their copy wins (a cancel is never lost); we then re-apply our
        fields on top of theirs.
        """
        want = dict(run.want)
        status = want.pop("status", None)
        changes = {k: v for k, v in want.items() if p.clean(entry.raw.get(k)) != p.clean(v)}
        if status is not None and _RANK[entry.status] < _RANK[status]:
            changes["status"] = status
        if changes:
            log.debug("re-applying %s to %s after a concurrent write", sorted(changes),
                      run.exec_id, extra=self._extra(run))
            self._write(run, changes)

    def _arm(self, run, *, headless):
        text = str(self.text)
        block = find_block(text, run.exec_id)
        if block is None:
            self._create_block(run, text)
        elif block.content_end > block.content_start:
            # A re-run in a reused block: the old output goes when the new run starts.
            self._apply(rewrite_edit(text, block, ""))
        run.content.reset()
        run.where = None
        if headless:
            self._write(run, {"status": p.READY, "outputBlockReady": True})
        run.phase = WAITING_TURN
        self._try_submit(run)

    def _try_submit(self, run):
        """Hand the run to the pool, unless an earlier cell of the same runtime
        and session is still pending with another monitor: cells depend on
        each other, whichever monitor runs them."""
        run.turn_checked = self._entries_version
        before = self._foreign_ahead(run)
        if before:
            if not run.want.get("queued"):
                log.info("%s waits for %s, run by another monitor on %s", run.exec_id,
                         before[0], run.runtime_url, extra=self._extra(run))
                self._write(run, {"queued": True, "queuePosition": len(before)})
            return
        ahead = self.pool.submit(run.exec_id, self._job(run))
        run.phase = QUEUED
        if ahead:
            log.info("%s queued behind %d run(s) on %s", run.exec_id, ahead, run.runtime_url,
                     extra=self._extra(run))
            self._write(run, {"queued": True, "queuePosition": ahead})

    def _foreign_ahead(self, run):
        """Ids of other monitors' unfinished runs on this runtime and session
        that were requested before ``run``."""
        version, index = self._foreign
        if version != self._entries_version:
            index = {}
            for key in list(self.entries.keys()):
                e = p.parse_entry(key, self.entries.get(key))
                if (e is None or e.status not in (p.CLAIMED, p.READY, p.RUNNING)
                        or e.claimed_by in (None, self.me) or not e.runtime_url):
                    continue
                index.setdefault((e.runtime_url.rstrip("/"), e.session), []).append(
                    ((e.requested_at or 0, key), key))
            self._foreign = (self._entries_version, index)
        mine = (run.requested_at, run.exec_id)
        return [key for order, key in sorted(index.get((run.runtime_url, run.session), ()))
                if order < mine]

    def _job(self, run):
        return RunJob(exec_id=run.exec_id, runtime_url=run.runtime_url, session=run.session,
                      code=run.code, post=self.post, max_run_time=self.config.max_run_time)

    def _create_block(self, run, text):
        cell = find_cell(text, run.code, run.language, run.cell_id)
        if cell is None:
            log.warning("no cell with the code of %s in the document: output block goes at the end",
                        run.exec_id, extra=self._extra(run))
        edit, _ = place_block(text, run.exec_id, cell)
        self._apply(edit)

    def _on_started(self, run):
        self.metrics.inc("mrmd_monitor_queued_runs", -1)
        self.metrics.inc("mrmd_monitor_active_runs")
        run.phase = RUNNING
        run.started_at = self.clock()
        log.info("%s running", run.exec_id, extra=self._extra(run))
        changes = {"status": p.RUNNING, "startedAt": self.now_ms(),
                   "queued": False, "queuePosition": None}
        if run.want.get("queueReason"):
            changes["queueReason"] = None
        self._write(run, changes)

    # -- output ------------------------------------------------------------

    def _on_output(self, run, text):
        if not text:
            return
        run.output.feed(text)
        if not run.pending:
            # Output after a quiet spell shows at once (the sync loop calls
            # tick() right after draining its mailbox); a burst is written at
            # most once per flush interval, whatever arrived in between.
            run.pending = True
            # Past the output cap only the tail moves: rewriting it once a
            # second is plenty, and keeps the bytes sent bounded.
            interval = max(self.config.flush_interval, CAPPED_FLUSH_INTERVAL) \
                if run.output.capped else self.config.flush_interval
            run.next_flush = max(self.clock(), run.last_flush + interval)

    def _flush(self, run):
        run.pending = False
        change = run.output.take_changes()
        if change is None:
            return
        run.last_flush = self.clock()
        first, lines = change
        if run.where is not None and run.where_epoch == self.text_epoch:
            self._apply(edit_at(run.where[1], run.where[0], run.content.apply(first, lines)))
            return
        text = str(self.text)
        block = find_block(text, run.exec_id)
        if block is None:
            log.warning("output block of %s is gone: recreating it", run.exec_id,
                        extra=self._extra(run))
            self._create_block(run, text)
            text = str(self.text)
            block = find_block(text, run.exec_id)
            run.content.reset()
            run.where = None
            if block is None:
                return
        old = run.content.text
        diff = run.content.apply(first, lines)
        edit = content_edit(text, block, old, diff)
        if edit is None:
            log.debug("block of %s was edited by someone else: rewriting it", run.exec_id,
                      extra=self._extra(run))
            edit = rewrite_edit(text, block, run.content.text)
        run.where = (block.content_start, byte_offset(text, block.content_start))
        run.where_epoch = self.text_epoch
        self._apply(edit)

    def _apply(self, edit: Edit):
        if not edit.delete and not edit.insert:
            return
        at, insert = edit.at, edit.insert
        with self.doc.transaction():
            if edit.delete:
                del self.text[at:at + edit.delete]
            if insert:
                piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
                self.text.insert(at, piece)
                at += byte_len(piece)
        while insert:
            piece, insert = insert[:MAX_INSERT_CHARS], insert[MAX_INSERT_CHARS:]
            with self.doc.transaction():
                self.text.insert(at, piece)
            at += byte_len(piece)
        inserted = byte_len(edit.insert)
        if inserted:
            self.metrics.inc("mrmd_monitor_output_bytes_total", inserted)
        # Blocks after the edit move with it.
        for run in self.runs.values():
            if run.where is not None and run.where[1] > edit.at:
                run.where = (run.where[0] + len(edit.insert) - edit.delete_chars,
                             run.where[1] + inserted - edit.delete)

    def flush_all(self):
        for run in list(self.runs.values()):
            if run.pending:
                self._flush(run)

    # -- stdin -------------------------------------------------------------

    def _on_stdin_request(self, run, msg):
        run.awaiting_stdin = True
        self._flush(run)
        self._write(run, {"stdinRequest": {"prompt": msg.prompt, "password": bool(msg.password),
                                           "requestedAt": self.now_ms()},
                          "stdinResponse": None})
        log.info("%s waits for input", run.exec_id, extra=self._extra(run))

    def _forward_stdin(self, run, text):
        run.awaiting_stdin = False
        # The answer itself is never logged: it may be a password.
        self.pool.send_input(run.exec_id, run.runtime_url, text, self.post)
        self._write(run, {"stdinRequest": None, "stdinResponse": None})
        log.info("forwarded the stdin answer for %s", run.exec_id, extra=self._extra(run))

    # -- the end -------------------------------------------------------------

    def _on_finished(self, run, msg):
        if msg.output is not None and not msg.cancelled:
            rest = msg.output.take()
            if rest:
                self._on_output(run, rest)
        err = msg.error
        if msg.cancelled:
            if not run.timed_out:
                self._forget(run)
                return
            err = p.error_value("MaxRunTime", "the run took longer than --max-run-time (%.0fs) "
                                "and was stopped" % self.config.max_run_time)
        if err is not None:
            self._show_error(run, err)
        self._flush(run)
        if not self._ours(run):
            self._forget(run)
            return
        changes = {"completedAt": self.now_ms(), "stdinRequest": None, "queued": False,
                   "queuePosition": None}
        if err is None:
            changes.update({"status": p.COMPLETED, "result": p.slim_result(msg.result)})
        else:
            changes.update({"status": p.ERROR, "error": err})
        self._write(run, changes)
        log.info("%s %s", run.exec_id, changes["status"], extra=self._extra(run))
        self._forget(run, changes["status"])

    def _show_error(self, run, err):
        """The person reading the block must see why the run failed. The
        runtime usually printed the traceback already; add it only if not."""
        rendered = run.output.text()
        headline = "%s: %s" % (err.get("type"), err.get("message"))
        if err.get("message") and headline in rendered:
            return
        lines = [t.rstrip("\n") for t in err.get("traceback") or [] if isinstance(t, str)]
        body = "\n".join(lines) if lines else headline
        if headline not in body:
            body += "\n" + headline
        sep = "" if rendered.endswith("\n") or not rendered else "\n"
        run.output.feed(sep + body + "\n")
        run.pending = True

    def _drop(self, run, *, interrupt, status=None):
        """Stop a run and write nothing more for it."""
        self.pool.cancel(run.exec_id, interrupt=interrupt)
        self._forget(run, status)

    def _forget(self, run, status=None):
        """The run is over for us; ``status`` is how it ended, when we know."""
        if self.runs.pop(run.exec_id, None) is None:
            return
        if run.phase == RUNNING:
            self.metrics.inc("mrmd_monitor_active_runs", -1)
        else:
            self.metrics.inc("mrmd_monitor_queued_runs", -1)
        if status is not None:
            self.metrics.inc("mrmd_monitor_executions_total", status=status)

    # -- shutdown ------------------------------------------------------------

    def stop_claiming(self):
        self.accepting = False

    def active(self):
        return len(self.runs)

    def release_unstarted(self, reason):
        """Runs that have not started go back to ``requested``, unclaimed, so
        the next monitor can take them."""
        for run in list(self.runs.values()):
            if run.phase == RUNNING:
                continue
            self.pool.cancel(run.exec_id, interrupt=True)
            if self._ours(run):
                self._write(run, {"status": p.REQUESTED, "claimedBy": None, "claimedAt": None,
                                  "queued": False, "queuePosition": None})
            log.info("%s handed back (requested): %s", run.exec_id, reason, extra=self._extra(run))
            self._forget(run)

    def settle(self, reason):
        """Leave no entry of ours claimed or running: running ones end in
        ``error`` saying why, with their output so far kept and a last line
        in the block that says what happened."""
        self.release_unstarted(reason)
        for run in list(self.runs.values()):
            self.pool.cancel(run.exec_id, interrupt=True)
            shown = run.output.text()
            sep = "" if not shown or shown.endswith("\n") else "\n"
            run.output.feed("%s[mrmd-monitor: %s; the output above is kept]\n" % (sep, reason))
            self._flush(run)
            if self._ours(run):
                self._write(run, {"status": p.ERROR, "completedAt": self.now_ms(),
                                  "error": p.error_value("MonitorStopped", reason),
                                  "stdinRequest": None})
            log.info("%s marked error: %s", run.exec_id, reason, extra=self._extra(run))
            self._forget(run, p.ERROR)

    def _ours(self, run):
        current = p.parse_entry(run.exec_id, self.entries.get(run.exec_id))
        return current is not None and not current.final and current.claimed_by == self.me

    # -- helpers -------------------------------------------------------------

    def _write(self, run, changes):
        if self._write_entry(run.exec_id, changes):
            # stdinResponse is the browser's field: never put it back ourselves.
            run.want.update({k: v for k, v in p.clean(changes).items() if k != "stdinResponse"})

    def _write_entry(self, exec_id, changes):
        """Write the whole entry with ``changes`` on top, if the move is legal."""
        raw = self.entries.get(exec_id)
        if not isinstance(raw, dict):
            return False
        current = raw.get("status")
        new = changes.get("status")
        if new is not None and new != current:
            try:
                p.check_transition(current, new)
            except p.IllegalTransition as exc:
                log.debug("not writing %s for %s: %s", new, exec_id, exc,
                          extra={"doc": self.doc_name, "exec_id": exec_id})
                return False
        self.entries[exec_id] = p.updated(raw, changes)
        self._entries_version += 1
        return True

    def _append_notice(self, exec_id, line):
        """A last line in a block that is not ours to stream into (an orphan)."""
        text = str(self.text)
        block = find_block(text, exec_id)
        if block is None:
            return
        content = text[block.content_start:block.content_end]
        sep = "" if not content or content.endswith("\n") else "\n"
        self._apply(Edit(byte_offset(text, block.content_end), 0, sep + line + "\n",
                         block.content_end, 0))

    def _extra(self, run):
        return {"doc": self.doc_name, "exec_id": run.exec_id}


def _min(a, b):
    return b if a is None else min(a, b)
