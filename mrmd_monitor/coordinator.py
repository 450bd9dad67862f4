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
from .document import (BlockContent, Edit, content_edit, find_block, find_cell,
                       place_block, rewrite_edit)
from .terminal import TerminalRenderer

log = logging.getLogger(__name__)

_RANK = {p.REQUESTED: 0, p.CLAIMED: 1, p.READY: 2, p.RUNNING: 3,
         p.COMPLETED: 4, p.ERROR: 4, p.CANCELLED: 4}

# Phases of a run we hold, seen from the monitor (the entry's status is the
# browsers' view of the same thing).
WAITING_BLOCK = "waiting-block"
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
    phase: str = WAITING_BLOCK
    renderer: TerminalRenderer = field(default_factory=TerminalRenderer)
    content: BlockContent = field(default_factory=BlockContent)
    pending: bool = False
    next_flush: float = 0.0
    last_flush: float = float("-inf")
    display: List[dict] = field(default_factory=list)
    awaiting_stdin: bool = False
    want: Dict[str, object] = field(default_factory=dict)


def wall_ms():
    return int(time.time() * 1000)


class Coordinator:
    def __init__(self, doc, *, me, pool, post, config, doc_name="",
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
        self.runs: Dict[str, Run] = {}
        self.accepting = True
        self._seq = itertools.count()
        self._log_extra = {"doc": doc_name}

    # -- inputs ------------------------------------------------------------

    def on_synced(self):
        """After (re)sync: look at every entry, as if each had just changed."""
        self.on_entries_changed(list(self.entries.keys()))

    def on_entries_changed(self, keys):
        """Entries changed by a remote peer."""
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
        to_claim.sort(key=lambda e: (e.requested_at or 0, e.exec_id))
        for entry in to_claim:
            self._claim(entry)

    def on_message(self, msg):
        run = self.runs.get(getattr(msg, "exec_id", None))
        if run is None:
            return  # a run we gave up (cancelled, lost): its late messages are dropped
        if isinstance(msg, m.OutputChunk):
            self._on_output(run, msg.text)
        elif isinstance(msg, m.RunStarted):
            self._on_started(run)
        elif isinstance(msg, m.StdinRequested):
            self._on_stdin_request(run, msg)
        elif isinstance(msg, m.DisplayItems):
            run.display.extend(msg.items)
            self._write(run, {"displayData": list(run.display)})
        elif isinstance(msg, m.RunFinished):
            self._on_finished(run, msg)
        elif isinstance(msg, m.InputSent):
            if not msg.accepted:
                log.warning("runtime refused the stdin answer for %s: %s", run.exec_id,
                            msg.reason or "not accepted", extra=self._extra(run))

    def tick(self):
        """Run what is due; return the seconds until the next timer, or None."""
        now = self.clock()
        nxt = None
        for run in list(self.runs.values()):
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
        return nxt

    # -- claiming and starting ----------------------------------------------

    def _claim(self, entry):
        problem = p.runnable_problem(entry)
        if problem:
            log.warning("cannot run %s: %s", entry.exec_id, problem,
                        extra={"doc": self.doc_name, "exec_id": entry.exec_id})
            self.entries[entry.exec_id] = p.updated(entry.raw, {
                "status": p.ERROR, "error": p.error_value("InvalidRequest", problem),
                "completedAt": self.now_ms()})
            return
        run = Run(exec_id=entry.exec_id, runtime_url=entry.runtime_url.rstrip("/"),
                  session=entry.session, code=entry.code, language=entry.language,
                  cell_id=entry.cell_id, block_deadline=self.clock() + self.config.block_wait)
        self.runs[run.exec_id] = run
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
            self._drop(run, interrupt=True)
            return
        if entry.status in (p.COMPLETED, p.ERROR):
            if run.want.get("status") != entry.status:
                log.warning("%s was finished by another peer: dropping the run", run.exec_id,
                            extra=self._extra(run))
                self._drop(run, interrupt=True)
            return
        if run.phase == WAITING_BLOCK and (entry.status == p.READY or entry.output_block_ready):
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
        changes = {}
        if headless:
            changes.update({"status": p.READY, "outputBlockReady": True})
        ahead = self.pool.submit(run.exec_id, self._job(run))
        run.phase = QUEUED
        if ahead:
            changes.update({"queued": True, "queuePosition": ahead})
            log.info("%s queued behind %d run(s) on %s", run.exec_id, ahead, run.runtime_url,
                     extra=self._extra(run))
        if changes:
            self._write(run, changes)

    def _job(self, run):
        from .workers import RunJob
        return RunJob(exec_id=run.exec_id, runtime_url=run.runtime_url, session=run.session,
                      code=run.code, post=self.post)

    def _create_block(self, run, text):
        cell = find_cell(text, run.code, run.language, run.cell_id)
        if cell is None:
            log.warning("no cell with the code of %s in the document: output block goes at the end",
                        run.exec_id, extra=self._extra(run))
        edit, _ = place_block(text, run.exec_id, cell)
        self._apply(edit)

    def _on_started(self, run):
        run.phase = RUNNING
        log.info("%s running", run.exec_id, extra=self._extra(run))
        self._write(run, {"status": p.RUNNING, "startedAt": self.now_ms(),
                          "queued": False, "queuePosition": None})

    # -- output ------------------------------------------------------------

    def _on_output(self, run, text):
        run.renderer.feed(text)
        if not run.pending:
            # Output after a quiet spell shows at once (the sync loop calls
            # tick() right after draining its mailbox); a burst is written at
            # most once per flush interval, whatever arrived in between.
            run.pending = True
            run.next_flush = max(self.clock(), run.last_flush + self.config.flush_interval)

    def _flush(self, run):
        run.pending = False
        change = run.renderer.take_changes()
        if change is None:
            return
        run.last_flush = self.clock()
        first, lines = change
        text = str(self.text)
        block = find_block(text, run.exec_id)
        if block is None:
            log.warning("output block of %s is gone: recreating it", run.exec_id,
                        extra=self._extra(run))
            self._create_block(run, text)
            text = str(self.text)
            block = find_block(text, run.exec_id)
            run.content.reset()
            if block is None:
                return
        old = run.content.text
        diff = run.content.apply(first, lines)
        edit = content_edit(text, block, old, diff)
        if edit is None:
            log.debug("block of %s was edited by someone else: rewriting it", run.exec_id,
                      extra=self._extra(run))
            edit = rewrite_edit(text, block, run.content.text)
        self._apply(edit)

    def _apply(self, edit: Edit):
        if not edit.delete and not edit.insert:
            return
        with self.doc.transaction():
            if edit.delete:
                del self.text[edit.at:edit.at + edit.delete]
            if edit.insert:
                self.text.insert(edit.at, edit.insert)

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
        if msg.cancelled:
            self._forget(run)
            return
        err = msg.error
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
        self._forget(run)

    def _show_error(self, run, err):
        """The person reading the block must see why the run failed. The
        runtime usually printed the traceback already; add it only if not."""
        rendered = run.renderer.text()
        headline = "%s: %s" % (err.get("type"), err.get("message"))
        if err.get("message") and headline in rendered:
            return
        lines = [t.rstrip("\n") for t in err.get("traceback") or [] if isinstance(t, str)]
        body = "\n".join(lines) if lines else headline
        if headline not in body:
            body += "\n" + headline
        sep = "" if rendered.endswith("\n") or not rendered else "\n"
        run.renderer.feed(sep + body + "\n")
        run.pending = True

    def _drop(self, run, *, interrupt):
        """Stop a run and write nothing more for it."""
        self.pool.cancel(run.exec_id, interrupt=interrupt)
        self._forget(run)

    def _forget(self, run):
        self.runs.pop(run.exec_id, None)

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
            shown = run.renderer.text()
            sep = "" if not shown or shown.endswith("\n") else "\n"
            run.renderer.feed("%s[mrmd-monitor: %s; the output above is kept]\n" % (sep, reason))
            self._flush(run)
            if self._ours(run):
                self._write(run, {"status": p.ERROR, "completedAt": self.now_ms(),
                                  "error": p.error_value("MonitorStopped", reason),
                                  "stdinRequest": None})
            log.info("%s marked error: %s", run.exec_id, reason, extra=self._extra(run))
            self._forget(run)

    def _ours(self, run):
        current = p.parse_entry(run.exec_id, self.entries.get(run.exec_id))
        return current is not None and not current.final and current.claimed_by == self.me

    # -- helpers -------------------------------------------------------------

    def _write(self, run, changes):
        raw = self.entries.get(run.exec_id)
        if not isinstance(raw, dict):
            return
        current = raw.get("status")
        new = changes.get("status")
        if new is not None and new != current:
            try:
                p.check_transition(current, new)
            except p.IllegalTransition as exc:
                log.debug("not writing %s for %s: %s", new, run.exec_id, exc, extra=self._extra(run))
                return
        self.entries[run.exec_id] = p.updated(raw, changes)
        run.want.update(p.clean(changes))

    def _extra(self, run):
        return {"doc": self.doc_name, "exec_id": run.exec_id}


def _min(a, b):
    return b if a is None else min(a, b)
