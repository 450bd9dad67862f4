"""One document's side of the coordination protocol: wiring only.

Lives on the document's sync thread and is the only code that reads or writes
the document's ``executions`` map (the ``content`` text goes through
``blocks``). Map changes (from browsers) go to ``claims`` and ``order``;
worker messages (from the pool) move runs (``runs.transition``) and fill
blocks. It never blocks: HTTP happens on the pool.

One execution id, from the map to the document: ``on_entries_changed`` parses
the entry once into ``self.entries_index``; ``_claim`` writes the claim and
makes a ``Run``; ``claims`` confirms it; ``_arm`` gets its block ready
(``blocks.prepare``); ``_try_start`` asks ``order`` who is ahead and hands it
to the pool; worker messages reach ``on_message`` and end in
``blocks.write`` and ``_write``; ``_finish`` writes the final status.
"""

import logging
import time
from typing import Dict

from pycrdt import Map, Text

from . import messages as m
from . import protocol as p
from .blocks import Blocks
from .claims import BACKUP, WAIT, Claims
from .logs import context
from .metrics import Metrics
from .order import RunOrder, request_order, run_order
from .output import RunOutput
from .runs import (UNSTARTED, Phase, Run, add_display, next_deadline,
                   transition)
from .workers import RunJob

log = logging.getLogger(__name__)

# Past the output cap only the tail moves: it is rewritten at most this often.
CAPPED_FLUSH_INTERVAL = 1.0
# Orphans are looked at this often while another monitor holds an entry of
# this document, finished entries' retention this often while some wait for it.
# Otherwise nothing can come due and an idle document does not wake at all:
# a thousand idle documents are a thousand threads asleep.
SWEEP_INTERVAL = 1.0
RETENTION_SWEEP_INTERVAL = 30.0


def wall_ms():
    return int(time.time() * 1000)


class Coordinator:
    def __init__(self, doc, *, me, pool, post, config, port, doc_name="", metrics=None,
                 clock=time.monotonic, now_ms=wall_ms, latencies=None):
        self.doc = doc
        self.entries = doc.get("executions", type=Map)
        self.me = me
        self.pool = pool
        self.post = post
        self.claims = Claims(me, port, config, doc_name=doc_name, latencies=latencies)
        self.config = config
        self.doc_name = doc_name
        # Every line about this document carries its name; a run's adds its exec_id.
        self.log = context(log, doc=doc_name)
        self.clock = clock
        self.now_ms = now_ms
        self.metrics = metrics if metrics is not None else Metrics()
        self.blocks = Blocks(doc, doc.get("content", type=Text), doc_name=doc_name,
                             on_written=lambda n: self.metrics.inc(
                                 "mrmd_monitor_output_bytes_total", n))
        self.order = RunOrder(me, self.claims.lease_holder)
        self.runs: Dict[str, Run] = {}
        # Every entry, parsed once per change (remote or ours).
        self.entries_index: Dict[str, p.Entry] = {}
        self.accepting = True
        self._next_sweep = 0.0
        self._first_sync = True

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, config):
        """A reloaded configuration (HUP) reaches every part at once."""
        self._config = config
        self.claims.config = config

    @property
    def text_epoch(self):
        return self.blocks.epoch

    @text_epoch.setter
    def text_epoch(self, value):
        """Bumped by the sync thread when another peer edits the text."""
        self.blocks.epoch = value

    # -- inputs ------------------------------------------------------------

    def on_synced(self):
        """After (re)sync: look at every entry, as if each had just changed."""
        keys = list(self.entries.keys())
        if self._first_sync:
            self._first_sync = False
            self._index(keys)
            self._expire_stale()
        self.claims.reset(self.runs.values())
        self.on_entries_changed(keys, fresh=False)
        self.claims.probe(self.runs.values(), self.clock())
        # Probes sent before the reconnect are never answered: ask again.
        for run in self.runs.values():
            if run.dispatch_gate is not None:
                run.dispatch_probe = self.claims.port.probe()

    def _expire_stale(self):
        """Requests left from long ago are not run by surprise when we start."""
        now = self.now_ms()
        for key, msg in self.claims.stale(self.entries_index, now):
            self.log.bind(exec_id=key).warning("expiring %s: %s", key, msg)
            self._write_entry(key, {"status": p.ERROR, "completedAt": now,
                                    "error": p.error_value("Expired", msg)})

    def on_entries_changed(self, keys, fresh=True):
        """Entries changed by a remote peer (``fresh``: just now, not the
        whole map after a sync, where a claim may be old news)."""
        self.order.changed()
        to_claim = []
        for key in keys:
            try:
                entry = self._on_entry_changed(key, fresh)
            except Exception:  # noqa: BLE001 - one peer's entry must not stop the others
                self.log.bind(exec_id=key).exception("cannot handle entry %r: skipping it", key)
                continue
            if entry is not None:
                to_claim.append(entry)
        if self.claims.deferring():  # no longer ours to claim later
            self.claims.forget_deferred([k for k in keys if not self._claimable(k)])
        self._claim_all(to_claim)

    def _claimable(self, key):
        entry = self.entries_index.get(key)
        return (entry is not None and entry.problem is None and key not in self.runs
                and self.claims.may_claim(entry) and self.accepting)

    def _claim_all(self, to_claim):
        # Claim in request order: a runtime runs its cells in that order.
        order = request_order(to_claim, lambda: str(self.blocks.text))
        to_claim.sort(key=order)
        for entry in to_claim:
            self._claim(entry, order(entry))
        if to_claim:
            self.claims.probe(self.runs.values(), self.clock())

    def _index(self, keys):
        for key in keys:
            self._reindex(key, self.entries.get(key))

    def _reindex(self, key, value):
        # Any entry change may make an orphan or a retention sweep due.
        soon = self.clock() + SWEEP_INTERVAL
        if self._next_sweep is None or self._next_sweep > soon:
            self._next_sweep = soon
        entry = p.parse_entry(key, value)
        if entry is None:
            self.entries_index.pop(key, None)
        else:
            self.entries_index[key] = entry
        return entry

    def _on_entry_changed(self, key, fresh=True):
        """Look at one changed entry; return it when it is a request to claim."""
        value = self.entries.get(key)
        entry = self._reindex(key, value)
        run = self.runs.get(key)
        if fresh and entry is not None:
            self.claims.observe(entry, self.now_ms())
        if entry is not None and entry.problem is not None:
            held = self.claims.lease_holder(entry.claimed_by)
            if not entry.final and (run is not None or not held):
                self._refuse(key, value, entry.problem)
            return None
        if run is not None:
            self._on_own_entry(run, entry)
        elif entry is None:
            if value is not None:
                self.log.debug("ignoring map key %r: not an execution entry", key)
        elif self.claims.may_claim(entry) and self.accepting:
            verdict = self.claims.defer(entry, self.clock(), self.now_ms())
            if verdict == WAIT:
                return None
            if verdict == BACKUP:
                self.log.bind(exec_id=key).info(
                    "claiming %s as a backup: the preferred monitor did not claim it", key)
                self.metrics.inc("mrmd_monitor_claims_backed_up_total")
            return entry
        return None

    def on_probe_acked(self, seq):
        self.claims.acked(self.runs.values(), seq, self.clock())
        for run in self.runs.values():
            if run.dispatch_gate is not None and run.dispatch_probe is not None \
                    and run.dispatch_probe <= seq:
                run.log.debug("%s: the server has its dispatch mark", run.exec_id)
                run.dispatch_gate.set()
                run.dispatch_gate = run.dispatch_probe = None

    def on_message(self, msg):
        run = self.runs.get(getattr(msg, "exec_id", None))
        if isinstance(msg, m.InterruptRefused):  # the run is usually over for us by then
            if run is None:
                self.blocks.append_notice(msg.exec_id, msg.line)
            else:
                self._on_output(run, "\n" + msg.line + "\n")
            return
        if run is None:
            return  # a run we gave up (cancelled, lost): its late messages are dropped
        try:
            self._on_run_message(run, msg)
        except Exception:  # noqa: BLE001 - one run's trouble must not stop the document
            run.log.exception("cannot handle %s for %s", type(msg).__name__, run.exec_id)

    def _on_run_message(self, run, msg):
        if isinstance(msg, m.OutputReady):
            if run.waiting is not None and run.waiting is not msg.buffer:
                self._take_waiting(run)
            if run.output.capped and msg.buffer.held < msg.buffer.big:
                # Past the cap only the latest tail is written, once a second:
                # the output waits in the worker's buffer until the flush (or
                # until a big piece is there), and is rendered in one piece,
                # whose lines that scroll out of the tail are only counted.
                run.waiting = msg.buffer
                self._schedule_flush(run, max(self.config.flush_interval,
                                              CAPPED_FLUSH_INTERVAL))
            else:
                self._on_output(run, msg.buffer.take())
        elif isinstance(msg, m.Dispatching):
            self._on_dispatching(run, msg)
        elif isinstance(msg, m.RunStarted):
            self._on_started(run)
        elif isinstance(msg, m.StdinRequested):
            self._on_stdin_request(run, msg)
        elif isinstance(msg, m.DisplayItems):
            add_display(run, msg.items)
            self._schedule_flush(run, self.config.flush_interval)
        elif isinstance(msg, m.RunFinished):
            self._on_finished(run, msg)
        elif isinstance(msg, m.RuntimeBusy):
            self._write(run, {"queued": True, "queueReason": msg.reason})
        elif isinstance(msg, m.InputSent):
            if not msg.accepted:
                run.log.warning("runtime refused the stdin answer for %s: %s", run.exec_id,
                                msg.reason or "not accepted")

    def tick(self):
        """Run what is due; return the seconds until the next timer, or None."""
        now = self.clock()
        if self._next_sweep is not None and now >= self._next_sweep:
            self._sweep(now)
            interval = self.claims.sweep_interval(self.entries_index, self.runs,
                                                  SWEEP_INTERVAL, RETENTION_SWEEP_INTERVAL)
            self._next_sweep = None if interval is None else now + interval
        later = self._claim_deferred(now) if self.claims.deferring() else None
        if any(self.claims.due(run, now) for run in self.runs.values()):
            self._catch_up()  # a concurrent claim already on the socket decides before we run
        for run in list(self.runs.values()):
            if self.claims.due(run, now):
                self._confirm(run, now)
            if run.exec_id not in self.runs:
                continue
            if run.phase is Phase.WAITING_TURN and run.turn_checked != self.order.version:
                self._try_start(run)
            if run.phase is Phase.WAITING_BLOCK and now >= run.block_deadline:
                run.log.info("no browser made the output block for %s within %.1fs: creating it",
                             run.exec_id, self.config.block_wait)
                self._arm(run, headless=True)
            if run.pending and run.exec_id in self.runs and now >= run.next_flush:
                self._flush(run)
        nxt = next_deadline(self.runs.values(), now)
        if self._next_sweep is not None:
            nxt = _min(nxt, self._next_sweep - now)
        return _min(nxt, later)

    def _claim_deferred(self, now):
        """Requests whose claim delay has ended and whose probe is answered are
        looked at again (on_entries_changed), if nobody claimed them meanwhile.
        Returns the seconds until the next is due."""
        due, nxt = self.claims.deferred_due(now)
        if due:
            self._catch_up()  # the preferred monitor's claim may be waiting on the socket
            self.on_entries_changed(due, fresh=False)
        return nxt

    def _catch_up(self):
        catch_up = getattr(self.claims.port, "catch_up", None)
        if catch_up is not None:
            catch_up()

    # -- claims ----------------------------------------------------------------

    def _sweep(self, now):
        """Entries held by monitors that are gone, and finished entries past
        their retention."""
        for entry in self.claims.orphans(self.entries_index, self.runs, now):
            self._take_over(entry)
        expired = self.claims.retired(self.entries_index, self.runs, self.now_ms())
        if expired:
            # Deleting is idempotent: several monitors may do it at once.
            with self.doc.transaction():
                for key in expired:
                    del self.entries[key]
                    self.entries_index.pop(key, None)
            self.order.changed()
            self.log.info("removed %d finished entr%s older than --retention %.0fs", len(expired),
                          "y" if len(expired) == 1 else "ies", self.config.retention)

    def _take_over(self, entry):
        who = entry.claimed_by
        entry_log = self.log.bind(exec_id=entry.exec_id)
        if entry.problem is not None:
            self._refuse(entry.exec_id, entry.raw, entry.problem)
            return
        if entry.status == p.RUNNING or entry.dispatched_at is not None:
            # A client that is no monitor (a browser's forged claim) ends here too.
            if entry.status == p.RUNNING:
                msg = ("the monitor running this cell (client %s) was lost; the output up to "
                       "that point is kept (a runtime stream cannot be resumed). Run the cell "
                       "again." % who)
            else:   # sent, not yet seen to start: running it again could run it twice
                msg = ("the monitor that sent this cell to its runtime (client %s) was lost "
                       "before the runtime answered; the cell may have run. Run it again if it "
                       "did not." % who)
            entry_log.warning("%s: %s", entry.exec_id, msg)
            self.blocks.append_notice(entry.exec_id, "[mrmd-monitor: %s]" % msg)
            self._write_entry(entry.exec_id, {"status": p.ERROR, "completedAt": self.now_ms(),
                                              "stdinRequest": None,
                                              "error": p.error_value("MonitorLost", msg)})
            return
        if self.accepting:
            entry_log.warning("monitor %s holding %s (%s) is gone: taking the run over", who,
                              entry.exec_id, entry.status)
            self._claim(entry)
            run = self.runs.get(entry.exec_id)
            if run is not None:
                run.block_ready = entry.output_block_ready
                self.claims.probe(self.runs.values(), self.clock())

    def _claim(self, entry, order=None):
        """Claim ``entry``; ``order``: its place among the runs of its runtime
        and session (order.run_order; a run taken over keeps the one it has)."""
        if entry.problem is not None:
            self._refuse(entry.exec_id, entry.raw, entry.problem)
            return
        problem = p.runnable_problem(entry)
        kind = "InvalidRequest"
        if problem is None:
            problem = p.runtime_refused(entry.runtime_url, self.config.allow_runtime)
            kind = "RuntimeNotAllowed"
        if problem:
            self.log.bind(exec_id=entry.exec_id).warning("cannot run %s: %s", entry.exec_id,
                                                         problem)
            changes = {"status": p.ERROR, "error": p.error_value(kind, problem),
                       "completedAt": self.now_ms()}
            if entry.code is not None and p.code_too_large(entry.code):
                # Writing the entry back whole would copy the huge code again.
                changes["code"] = entry.code[:1000] + "\n# ... (cut by mrmd-monitor)"
            self._write_entry(entry.exec_id, changes)
            return
        now = self.clock()
        run = Run(exec_id=entry.exec_id, runtime_url=entry.runtime_url.rstrip("/"),
                  session=entry.session, code=entry.code, language=entry.language,
                  cell_id=entry.cell_id, requested_at=entry.requested_at or 0,
                  order=order or run_order(entry), doc=self.doc_name,
                  since=now, block_deadline=now + self.config.block_wait,
                  log=self.log.bind(exec_id=entry.exec_id),
                  output=RunOutput(self.config.max_output_bytes,
                                   max_columns=self.config.max_columns))
        self.runs[run.exec_id] = run
        self.order.changed()
        self.metrics.inc("mrmd_monitor_claims_total")
        self.metrics.inc("mrmd_monitor_queued_runs")
        self.metrics.inc("mrmd_monitor_queue_depth", runtime=run.runtime_url)
        self._write(run, {"status": p.CLAIMED, "claimedBy": self.me, "claimedAt": self.now_ms(),
                          "notebookOrder": run.order[1]})
        run.log.info("claimed %s (runtime %s, session %s)", run.exec_id, run.runtime_url,
                     run.session)

    def _confirm(self, run, now):
        entry = self.entries_index.get(run.exec_id)
        if not self.claims.still_ours(entry):
            run.log.info("claim on %s not confirmed (now %s by %s): not running it", run.exec_id,
                         entry.status if entry else "gone", entry.claimed_by if entry else None)
            self.metrics.inc("mrmd_monitor_claims_lost_total")
            self._drop(run, interrupt=False)
            return
        self.metrics.inc("mrmd_monitor_claims_won_total")
        run.log.debug("claim on %s confirmed", run.exec_id)
        if run.block_ready:
            self._arm(run, headless=False)
        else:
            transition(run, Phase.WAITING_BLOCK, now, "claim confirmed")

    def _on_own_entry(self, run, entry):
        if entry is None:
            run.log.info("entry %s was removed: dropping the run", run.exec_id)
            self._drop(run, interrupt=True)
            return
        if entry.claimed_by is None and entry.status == p.REQUESTED:
            self._reconcile(run, entry)  # a concurrent write from a stale copy won: claim again
            return
        if entry.claimed_by != self.me:
            run.log.warning("lost the claim on %s to client %s: not running it", run.exec_id,
                            entry.claimed_by)
            if run.phase is Phase.CLAIMED:  # not confirmed yet: counted as lost here
                self.metrics.inc("mrmd_monitor_claims_lost_total")
            self._drop(run, interrupt=True)
            return
        if entry.status == p.CANCELLED:
            run.log.info("%s was cancelled by a browser", run.exec_id)
            self._drop(run, interrupt=True, status=p.CANCELLED)
            return
        if entry.status in (p.COMPLETED, p.ERROR):
            if run.want.get("status") != entry.status:
                run.log.warning("%s was finished by another peer: dropping the run", run.exec_id)
                self._drop(run, interrupt=True)
            return
        if (run.phase in (Phase.CLAIMED, Phase.WAITING_BLOCK)
                and (entry.status == p.READY or entry.output_block_ready)):
            run.block_ready = True
            if run.phase is Phase.WAITING_BLOCK:
                self._arm(run, headless=False)
        if run.awaiting_stdin and entry.stdin_response_text is not None:
            self._forward_stdin(run, entry.stdin_response_text)
        elif not run.awaiting_stdin and entry.raw.get("stdinResponse") is not None:
            # An answer nobody asked for: cleared, or every later write of the
            # entry would publish it again (it may be a password).
            run.log.info("ignoring a stdin answer for %s: no input was asked for", run.exec_id)
            self._write(run, {"stdinResponse": None})
        self._reconcile(run, entry)

    def _reconcile(self, run, entry):
        """Put back what we wrote if a concurrent write by another peer won.

        Browsers' client ids are larger than ours, so in a conflict on an
        entry their copy wins (a cancel is never lost); we then re-apply our
        fields on top of theirs.
        """
        changes = p.lost_changes(run.want, entry)
        if changes:
            run.log.debug("re-applying %s to %s after a concurrent write", sorted(changes),
                          run.exec_id)
            self._write(run, changes)

    def _refuse(self, exec_id, raw, problem):
        """An entry that breaks a limit ends in ``error`` with the reason; it is
        never run, and never walked by code that recurses."""
        run = self.runs.get(exec_id)
        if run is not None:
            self._drop(run, interrupt=True, status=p.ERROR)
        if not isinstance(raw, dict) or raw.get("status") in p.FINAL:
            return
        self.log.bind(exec_id=exec_id).warning("refusing entry %s: %s", exec_id, problem)
        value = p.refused_entry(raw, problem, self.now_ms())
        self.entries[exec_id] = value
        self._reindex(exec_id, value)
        self.order.changed()

    # -- starting ------------------------------------------------------------

    def _arm(self, run, *, headless):
        """The block is ready (a browser's, or ours after the wait): the run
        waits for its turn on its runtime and session."""
        self.blocks.prepare(run)
        if headless:
            self._write(run, {"status": p.READY, "outputBlockReady": True})
        transition(run, Phase.WAITING_TURN, self.clock(), "headless" if headless else "block ready")
        self._try_start(run)

    def _try_start(self, run):
        """Hand the run to the pool when no earlier cell of the same runtime
        and session is unfinished, ours or another monitor's: cells depend on
        each other, whichever monitor runs them. The count of those earlier
        cells is the entry's queuePosition."""
        run.turn_checked = self.order.version
        before = self.order.ahead(run, self.runs.values(), self.entries_index)
        if before:
            if run.want.get("queuePosition") != len(before):
                run.log.info("%s queued behind %d run(s) on %s (first %s)", run.exec_id,
                             len(before), run.runtime_url, before[0])
                self._write(run, {"queued": True, "queuePosition": len(before)})
            return
        transition(run, Phase.QUEUED, self.clock())
        # Another document's run on the same runtime and session may still be
        # ahead in the pool (it runs one per runtime and session, in turn).
        ahead = self.pool.submit(run.exec_id, self._job(run))
        if ahead and run.want.get("queuePosition") != ahead:
            self._write(run, {"queued": True, "queuePosition": ahead})

    def _job(self, run):
        return RunJob(exec_id=run.exec_id, runtime_url=run.runtime_url, session=run.session,
                      code=run.code, post=self.post, doc=self.doc_name,
                      max_run_time=self.config.max_run_time, confirm_dispatch=True)

    def _on_dispatching(self, run, msg):
        """Mark the run as sent before it is: the mark must reach the server
        first (a probe answered after it), so that a monitor taking over after
        our death knows the run may have started and does not run it again."""
        self._write(run, {"dispatchedAt": self.now_ms()})
        run.dispatched = True
        run.dispatch_gate = msg.gate
        run.dispatch_probe = self.claims.port.probe()   # None: offline, asked again at sync

    def _on_started(self, run):
        self.metrics.inc("mrmd_monitor_queued_runs", -1)
        self.metrics.inc("mrmd_monitor_queue_depth", -1, runtime=run.runtime_url)
        self.metrics.inc("mrmd_monitor_active_runs")
        transition(run, Phase.RUNNING, self.clock())
        run.log.info("%s running", run.exec_id)
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
        # Past the output cap only the tail moves: rewriting it once a second
        # is plenty, and keeps the bytes sent bounded.
        self._schedule_flush(run, max(self.config.flush_interval, CAPPED_FLUSH_INTERVAL)
                             if run.output.capped else self.config.flush_interval)

    def _schedule_flush(self, run, interval):
        # Output after a quiet spell shows at once (the sync loop calls tick()
        # right after draining its mailbox); a burst is written at most once
        # per flush interval, whatever arrived in between.
        if not run.pending:
            run.pending = True
            run.pending_since = self.clock()
            run.next_flush = max(self.clock(), run.last_flush + interval)

    def _take_waiting(self, run):
        waiting, run.waiting = run.waiting, None
        text = waiting.take()
        if text:
            run.output.feed(text)

    def _flush(self, run):
        if run.waiting is not None:
            self._take_waiting(run)
        if run.pending_since is not None:
            self.metrics.observe("mrmd_monitor_flush_latency_seconds",
                                 self.clock() - run.pending_since)
            run.pending_since = None
        run.pending = False
        if run.display_dirty:
            run.display_dirty = False
            self._write(run, {"displayData": list(run.display)})
        change = run.output.take_changes()
        if change is None:
            return
        run.last_flush = self.clock()
        self.blocks.write(run, *change)

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
        run.log.info("%s waits for input", run.exec_id)

    def _forward_stdin(self, run, text):
        run.awaiting_stdin = False
        # The answer itself is never logged: it may be a password.
        self.pool.send_input(run.exec_id, run.runtime_url, text, self.post)
        self._write(run, {"stdinRequest": None, "stdinResponse": None})
        run.log.info("forwarded the stdin answer for %s", run.exec_id)

    # -- the end -------------------------------------------------------------

    def _on_finished(self, run, msg):
        if msg.cancelled:
            self._forget(run)   # cancelled by us or a browser: nothing more is written
            return
        if msg.output is not None:
            rest = msg.output.take()
            if rest:
                self._on_output(run, rest)
        err = p.bounded_error(msg.error) if msg.error is not None else None
        if run.output.finish(err):   # the end as the editor's own run writes it
            run.pending = True
        # The last rich outputs go with the final status: one write, not two.
        display, run.display_dirty = run.display_dirty, False
        self._flush(run)
        if not self._ours(run):
            self._forget(run)
            return
        self.blocks.put_images(run.exec_id, run.display)
        changes = {"completedAt": self.now_ms(), "stdinRequest": None, "queued": False,
                   "queuePosition": None}
        if display:
            changes["displayData"] = list(run.display)
        if err is None:
            changes.update({"status": p.COMPLETED, "result": p.slim_result(msg.result)})
        else:
            changes.update({"status": p.ERROR, "error": err})
        self._write(run, changes)
        run.log.info("%s %s", run.exec_id, changes["status"])
        self._forget(run, changes["status"])

    def _drop(self, run, *, interrupt, status=None):
        """Stop a run and write nothing more for it."""
        self.pool.cancel(run.exec_id, interrupt=interrupt)
        self._forget(run, status)

    def _forget(self, run, status=None):
        """The run is over for us; ``status`` is how it ended, when we know."""
        if self.runs.pop(run.exec_id, None) is None:
            return
        started = run.phase is Phase.RUNNING
        transition(run, Phase.DONE, self.clock(), status or "")
        self.blocks.forget(run.exec_id)
        self.order.changed()   # the runs behind it may go now
        if started:
            self.metrics.inc("mrmd_monitor_active_runs", -1)
        else:
            self.metrics.inc("mrmd_monitor_queued_runs", -1)
            self.metrics.inc("mrmd_monitor_queue_depth", -1, runtime=run.runtime_url)
        if status is not None:
            self.metrics.inc("mrmd_monitor_executions_total", status=status)

    # -- shutdown ------------------------------------------------------------

    def stop_claiming(self):
        self.accepting = False
        self.claims.forget_deferred()

    def active(self):
        return len(self.runs)

    def release_unstarted(self, reason):
        """Runs that have not started go back to ``requested``, unclaimed, so
        the next monitor can take them."""
        for run in list(self.runs.values()):
            if run.phase not in UNSTARTED or run.dispatched:   # it may be running already
                continue
            self.pool.cancel(run.exec_id, interrupt=True)
            if self._ours(run):
                self._write(run, {"status": p.REQUESTED, "claimedBy": None, "claimedAt": None,
                                  "queued": False, "queuePosition": None})
            run.log.info("%s handed back (requested): %s", run.exec_id, reason)
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
            run.output.note("%s[mrmd-monitor: %s; the output above is kept]\n" % (sep, reason))
            self._flush(run)
            if self._ours(run):
                self._write(run, {"status": p.ERROR, "completedAt": self.now_ms(),
                                  "error": p.error_value("MonitorStopped", reason),
                                  "stdinRequest": None})
            run.log.info("%s marked error: %s", run.exec_id, reason)
            self._forget(run, p.ERROR)

    def _ours(self, run):
        return self.claims.still_ours(self.entries_index.get(run.exec_id))

    # -- writing entries -------------------------------------------------------

    def _write(self, run, changes):
        if not run.awaiting_stdin:
            changes = {"stdinResponse": None, **changes}
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
                self.log.bind(exec_id=exec_id).debug("not writing %s for %s: %s", new, exec_id,
                                                     exc)
                return False
        try:
            value = p.updated(raw, changes)
        except p.EntryRefused as exc:
            self._refuse(exec_id, raw, str(exc))
            return False
        self.entries[exec_id] = value
        self._reindex(exec_id, value)
        self.order.changed()
        return True


def _min(a, b):
    if a is None:
        return b
    return a if b is None else min(a, b)
