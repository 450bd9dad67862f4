"""One document's side of the coordination protocol: wiring only.

Lives on the document's sync thread and never blocks (HTTP happens on the
pool). Two halves: :class:`Coordinator` wires map changes (from browsers)
through ``entries`` (the map's one writer) to ``claims``, ``order`` and the
pool; :class:`Held`, the runs this monitor holds, wires worker messages to
``runs.transition``, ``blocks`` and the entry.

One execution id (``held.py`` holds the second half): ``on_entries_changed`` -> ``entries.reindex`` ->
``claims.defer`` -> ``_claim`` (``runs.new_run``, ``entries.write``) ->
``claims.acked``/``tick`` (confirmed) -> ``_arm`` (``blocks.prepare``) ->
``_try_start`` (``order.ahead``) -> ``pool.submit(RunJob)``; back,
``Held.on_message``: ``Dispatching`` (``dispatchedAt``; ``claims`` opens the
gate), output to ``blocks``, ``RunFinished`` -> ``Held.finish``.
"""

import logging
import time

from pycrdt import Text

from . import messages as m
from . import protocol as p
from .blocks import Blocks, YText
from .claims import BACKUP, WAIT, Claims, DocPort
from .entries import Entries
from .logs import context
from .metrics import Metrics
from .order import RunOrder, request_order, run_order
from .held import Held
from .runs import Phase, begin, new_run, next_deadline, transition

log = logging.getLogger(__name__)

POOL_WAIT = "an earlier run on this runtime and session has not ended yet"

# Orphans are looked at this often while another monitor holds an entry of
# this document, finished entries' retention this often while some wait for it.
# Otherwise nothing can come due and an idle document does not wake at all:
# a thousand idle documents are a thousand threads asleep.
SWEEP_INTERVAL = 1.0
RETENTION_SWEEP_INTERVAL = 30.0


def wall_ms():
    return int(time.time() * 1000)


class Coordinator:
    def __init__(self, doc, *, me, pool, post, config, port: DocPort, doc_name="", metrics=None,
                 clock=time.monotonic, now_ms=wall_ms, latencies=None):
        self.me = me
        self.port = port
        self.doc_name = doc_name
        # Every line about this document carries its name; a run's adds its exec_id.
        self.log = context(log, doc=doc_name)
        self.clock = clock
        self.now_ms = now_ms
        self.metrics = metrics if metrics is not None else Metrics()
        self.claims = Claims(me, port, config, doc_name=doc_name, latencies=latencies)
        self.blocks = Blocks(YText(doc, doc.get("content", type=Text)), doc_name=doc_name,
                             on_written=lambda n: self.metrics.inc(
                                 "mrmd_monitor_output_bytes_total", n))
        self.order = RunOrder(me, self.claims.lease_holder)
        self.entries = Entries(doc, now_ms=now_ms, on_change=self._entries_moved,
                               on_refused=self._refused, doc_name=doc_name)
        self.held = Held(entries=self.entries, blocks=self.blocks, claims=self.claims,
                         order=self.order, pool=pool, post=post, metrics=self.metrics,
                         clock=clock, now_ms=now_ms)
        self.runs = self.held.runs
        self.pool, self.post = pool, post
        self.config = config
        self.accepting = True
        self._next_sweep = 0.0
        self._first_sync = True
        # The sync thread's calls for the runs we hold.
        self.on_message, self.flush_all = self.held.on_message, self.held.flush_all
        self.release_unstarted, self.settle = self.held.release_unstarted, self.held.settle

    @property
    def config(self):
        return self._config

    @config.setter
    def config(self, config):
        """A reloaded configuration (HUP) reaches every part at once."""
        self._config = config
        self.claims.config = config
        self.blocks.flush_interval = config.flush_interval

    @property
    def text_epoch(self):
        return self.blocks.epoch

    @text_epoch.setter
    def text_epoch(self, value):
        """Bumped by the sync thread when another peer edits the text."""
        self.blocks.epoch = value

    def _entries_moved(self):
        # Any entry change may move a turn, or make an orphan or a retention sweep due.
        self.order.changed()
        soon = self.clock() + SWEEP_INTERVAL
        if self._next_sweep is None or self._next_sweep > soon:
            self._next_sweep = soon

    def on_synced(self):
        """After (re)sync: look at every entry, as if each had just changed."""
        keys = self.entries.keys()
        if self._first_sync:
            self._first_sync = False
            for key in keys:
                self.entries.reindex(key)
            for key, msg in self.claims.stale(self.entries.index, self.now_ms()):
                # Requests left from long ago are not run by surprise when we start.
                self.log.bind(exec_id=key).warning("expiring %s: %s", key, msg)
                self.entries.end(key, "Expired", msg)
        self.claims.reset()   # probes sent before the reconnect are never answered
        # Entries deleted while we were away are not in the map any more: look
        # at them too, or their index entries and runs stay for good.
        present = set(keys)
        gone = [k for k in dict.fromkeys([*self.entries.index, *self.runs]) if k not in present]
        self.on_entries_changed(keys + gone, fresh=False)

    def on_entries_changed(self, keys, fresh=True):
        """Entries changed by a remote peer (``fresh``: just now, not the
        whole map after a sync, where a claim may be old news)."""
        to_claim = []
        for key in keys:
            try:
                entry = self._on_entry_changed(key, fresh)
            except Exception:  # noqa: BLE001 - one peer's entry must not stop the others
                self.log.bind(exec_id=key).exception("cannot handle entry %r: skipping it", key)
                continue
            if entry is not None and self._runnable(entry):   # before any cell search
                to_claim.append(entry)
        if self.claims.deferring():  # no longer ours to claim later
            self.claims.forget_deferred([k for k in keys if not self._claimable(k)])
        # Claim in request order: a runtime runs its cells in that order.
        order = request_order(to_claim, self.blocks.text.read)
        for entry in sorted(to_claim, key=order):
            self._claim(entry, order(entry))
        self.claims.probe(self.clock())

    def _claimable(self, key):
        entry = self.entries.get(key)
        return (entry is not None and entry.problem is None and key not in self.runs
                and self.claims.may_claim(entry) and self.accepting)

    def _on_entry_changed(self, key, fresh=True):
        """Look at one changed entry; return it when it is a request to claim."""
        entry = self.entries.reindex(key)
        run = self.runs.get(key)
        if fresh and entry is not None:
            self.claims.observe(entry, self.now_ms())
        if entry is not None and entry.problem is not None:
            if not entry.final and (run is not None
                                    or not self.claims.lease_holder(entry.claimed_by)):
                self.entries.refuse(key, entry.problem)
        elif run is not None:
            self._on_own_entry(run, entry)
        elif entry is None:
            if self.entries.raw(key) is not None:
                self.log.debug("ignoring map key %r: not an execution entry", key)
        elif entry.claimed_by == self.me and not entry.final and self.entries.restore_end(key):
            return None   # it ran here: its end is back, and it never runs again
        elif self.claims.may_claim(entry) and self.accepting:
            verdict = self.claims.defer(entry, self.clock(), self.now_ms())
            if verdict == BACKUP:
                self.log.bind(exec_id=key).info(
                    "claiming %s as a backup: the preferred monitor did not claim it", key)
                self.metrics.inc("mrmd_monitor_claims_backed_up_total")
            return entry if verdict != WAIT else None
        return None

    def on_probe_acked(self, seq):
        # The answer's updates are applied, not yet looked at: gates read the map itself.
        self.claims.acked(seq, self.clock(), self.entries.reindex)

    def tick(self):
        """Run what is due; return the seconds until the next timer, or None."""
        now = self.clock()
        if self._next_sweep is not None and now >= self._next_sweep:
            self._sweep(now)
            interval = self.claims.sweep_interval(self.entries.index, self.runs,
                                                  SWEEP_INTERVAL, RETENTION_SWEEP_INTERVAL)
            self._next_sweep = None if interval is None else now + interval
        later = None
        if self.claims.deferring():
            due, later = self.claims.deferred_due(now)
            if due:
                self.port.catch_up()  # the preferred monitor's claim may be on the socket
                self.on_entries_changed(due, fresh=False)
        if any(self.claims.due(key, now) for key in self.runs):
            self.port.catch_up()  # a concurrent claim already on the socket decides first
        for run in list(self.runs.values()):
            if self.claims.due(run.exec_id, now):
                self._confirm(run, now)
            if run.exec_id not in self.runs:
                continue
            if run.phase is Phase.WAITING_TURN and run.turn_checked != self.order.version:
                self._try_start(run)
            if run.phase is Phase.WAITING_BLOCK and now >= run.block_deadline:
                run.log.info("no browser made the output block for %s within %.1fs: creating it",
                             run.exec_id, self.config.block_wait)
                self._arm(run, headless=True)
            if run.exec_id in self.runs and self.blocks.due(run.exec_id, now):
                self.held.flush(run)
        timers = (next_deadline(self.runs.values(), now), self.claims.next_deadline(now),
                  self.blocks.next_deadline(now), later,
                  None if self._next_sweep is None else self._next_sweep - now)
        return min((t for t in timers if t is not None), default=None)

    def _sweep(self, now):
        """Orphans (claims.orphans), and finished entries past their retention."""
        index, runs = self.entries.index, self.runs
        first = lambda e: self.order.first_in_line(e, runs.values(), index)  # noqa: E731
        for entry in self.claims.orphans(index, runs, now, first):
            self._take_over(entry)
        if self.port.is_connected():
            self.entries.retire(self.runs, self.config.retention)

    def _take_over(self, entry):
        lost = self.claims.lost_message(entry)
        if entry.problem is not None:
            self.entries.refuse(entry.exec_id, entry.problem)
        elif lost is not None:
            self.log.bind(exec_id=entry.exec_id).warning("%s: %s", entry.exec_id, lost)
            self.blocks.append_notice(entry.exec_id, "[mrmd-monitor: %s]" % lost)
            self.entries.end(entry.exec_id, "MonitorLost", lost, stdinRequest=None)
        elif self.accepting and self._runnable(entry):
            self.log.bind(exec_id=entry.exec_id).warning(
                "monitor %s holding %s (%s) is gone: taking the run over", entry.claimed_by,
                entry.exec_id, entry.status)
            self._claim(entry)
            self.blocks.set_block_ready(entry.exec_id, entry.output_block_ready)
            self.claims.probe(self.clock())

    def _runnable(self, entry):
        """False (and the entry ends in ``error`` saying why) for a request
        this monitor will not run."""
        if entry.problem is not None:
            self.entries.refuse(entry.exec_id, entry.problem)
            return False
        refused = p.refusal(entry, self.config.allow_runtime, self.now_ms())
        if refused is not None:
            self.log.bind(exec_id=entry.exec_id).warning("cannot run %s: %s", entry.exec_id,
                                                         refused[0])
            self.entries.write(entry.exec_id, refused[1])
        return refused is None

    def _claim(self, entry, order=None):
        """Claim ``entry``; ``order``: its place among the runs of its runtime
        and session (order.run_order; a run taken over keeps the one it has)."""
        run = new_run(entry, order or run_order(entry), self.clock(), self.config,
                      self.doc_name, self.log.bind(exec_id=entry.exec_id))
        self.runs[run.exec_id] = run
        begin(run, self.metrics)
        self.claims.begin(run.exec_id)
        self.held.write(run, {"status": p.CLAIMED, "claimedBy": self.me,
                              "claimedAt": self.now_ms(), "notebookOrder": run.order[1]})
        run.log.info("claimed %s (runtime %s, session %s)", run.exec_id, run.runtime_url,
                     run.session)

    def _confirm(self, run, now):
        self.claims.confirmed(run.exec_id)
        entry = self.entries.get(run.exec_id)
        if not self.claims.still_ours(entry):
            run.log.info("claim on %s not confirmed (now %s by %s): not running it", run.exec_id,
                         entry.status if entry else "gone", entry.claimed_by if entry else None)
            self.metrics.inc("mrmd_monitor_claims_lost_total")
            self.held.drop(run, interrupt=False)
            return
        self.metrics.inc("mrmd_monitor_claims_won_total")
        run.log.debug("claim on %s confirmed", run.exec_id)
        if self.blocks.state(run.exec_id).block_ready:
            self._arm(run, headless=False)
        else:
            transition(run, Phase.WAITING_BLOCK, now, "claim confirmed")

    def _on_own_entry(self, run, entry):
        if entry is None:
            run.log.info("entry %s was removed: dropping the run", run.exec_id)
            self.held.drop(run, interrupt=True)
        elif entry.claimed_by is None and entry.status == p.REQUESTED:
            self._reconcile(run, entry)  # a concurrent write from a stale copy won: claim again
        elif entry.claimed_by != self.me:
            run.log.warning("lost the claim on %s to client %s: not running it", run.exec_id,
                            entry.claimed_by)
            if run.phase is Phase.CLAIMED:  # not confirmed yet: counted as lost here
                self.metrics.inc("mrmd_monitor_claims_lost_total")
            self.held.drop(run, interrupt=True)
        elif entry.status == p.CANCELLED:
            run.log.info("%s was cancelled by a browser", run.exec_id)
            self.held.drop(run, interrupt=True, status=p.CANCELLED)
        elif entry.final:
            if run.want.get("status") != entry.status:
                run.log.warning("%s was finished by another peer: dropping the run", run.exec_id)
                self.held.drop(run, interrupt=True)
        else:
            if (run.phase in (Phase.CLAIMED, Phase.WAITING_BLOCK)
                    and (entry.status == p.READY or entry.output_block_ready)):
                self.blocks.set_block_ready(run.exec_id)
                if run.phase is Phase.WAITING_BLOCK:
                    self._arm(run, headless=False)
            self.held.on_stdin(run, entry)
            self._reconcile(run, entry)

    def _reconcile(self, run, entry):
        """Put back what we wrote if another peer's concurrent write won (their
        copy wins, so a browser's cancel is never lost; ours goes on top)."""
        changes = p.lost_changes(run.want, entry)
        if changes:
            run.log.debug("re-applying %s to %s after a concurrent write", sorted(changes),
                          run.exec_id)
            self.held.write(run, changes)

    def _refused(self, exec_id):
        run = self.runs.get(exec_id)
        if run is not None:
            self.held.drop(run, interrupt=True, status=p.ERROR)

    def _arm(self, run, *, headless):
        """The block is ready (a browser's, or ours after the wait): the run
        waits for its turn on its runtime and session."""
        self.blocks.prepare(run)
        if headless:
            self.held.write(run, {"status": p.READY, "outputBlockReady": True})
        transition(run, Phase.WAITING_TURN, self.clock(), "headless" if headless else "block ready")
        self._try_start(run)

    def _try_start(self, run):
        """Hand the run to the pool when no earlier cell of its runtime and
        session is unfinished (order.py; their count is its queuePosition)."""
        run.turn_checked = self.order.version
        before = self.order.ahead(run, self.runs.values(), self.entries.index)
        if before:
            if run.want.get("queuePosition") != len(before):
                run.log.info("%s queued behind %d run(s) on %s (first %s)", run.exec_id,
                             len(before), run.runtime_url, before[0])
                self.held.write(run, {"queued": True, "queuePosition": len(before)})
            return
        transition(run, Phase.QUEUED, self.clock())
        # A run the pool still holds on the same runtime and session (another
        # document's, or a cancelled one it drains) goes first: say why we wait.
        if self.pool.submit(run.exec_id, m.RunJob(
                exec_id=run.exec_id, runtime_url=run.runtime_url, session=run.session,
                code=run.code, post=self.post, doc=self.doc_name,
                max_run_time=self.config.max_run_time, confirm_dispatch=True)):
            self.held.write(run, {"queued": True, "queueReason": POOL_WAIT})

    def stop_claiming(self):
        self.accepting = False
        self.claims.forget_deferred()

    def active(self):
        return len(self.runs)
