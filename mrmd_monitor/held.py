"""The runs this monitor holds in one document (the coordinator's second half):
worker messages move them through ``runs.transition``, fill their blocks
(``blocks``) and write their entries (``entries``, the map's one writer)."""

from typing import Dict

from . import messages as m
from . import protocol as p
from .runs import (RELEASED, UNSTARTED, Phase, Run, final_changes, running_changes,
                   stopped_changes, transition)


class Held:
    """The runs this monitor holds in one document: worker messages move them
    (``runs.transition``), fill their blocks and write their entries."""

    def __init__(self, *, entries, blocks, claims, order, pool, post, metrics, clock, now_ms):
        self.runs: Dict[str, Run] = {}
        self.entries, self.blocks, self.claims, self.order = entries, blocks, claims, order
        self.pool, self.post, self.metrics = pool, post, metrics
        self.clock, self.now_ms = clock, now_ms

    def on_message(self, msg):
        run = self.runs.get(getattr(msg, "exec_id", None))
        if isinstance(msg, m.InterruptRefused):  # the run is usually over for us by then
            if run is None:
                self.blocks.append_notice(msg.exec_id, msg.line)
            else:
                self.blocks.feed(run, "\n" + msg.line + "\n", self.clock())
            return
        if run is None:
            return  # a run we gave up (cancelled, lost): its late messages are dropped
        try:
            self._on_run_message(run, msg, self.clock())
        except Exception:  # noqa: BLE001 - one run's trouble must not stop the document
            run.log.exception("cannot handle %s for %s", type(msg).__name__, run.exec_id)

    def _on_run_message(self, run, msg, now):
        if isinstance(msg, m.OutputReady):
            self.blocks.ready(run, msg.buffer, now)
        elif isinstance(msg, m.Dispatching):
            # Marked as sent before it is: a monitor taking over after our death
            # then knows the run may have started and does not run it again.
            mark = self.now_ms()
            transition(run, Phase.DISPATCHED, now, metrics=self.metrics)
            self.write(run, {"dispatchedAt": mark})
            self.claims.dispatching(run.exec_id, msg.gate, mark, now)
        elif isinstance(msg, m.RunStarted):
            transition(run, Phase.RUNNING, now, metrics=self.metrics)
            run.log.info("%s running", run.exec_id)
            self.write(run, running_changes(run.want, self.now_ms()))
        elif isinstance(msg, m.StdinRequested):
            self.blocks.set_awaiting_stdin(run.exec_id, True)
            self.flush(run)
            self.write(run, {"stdinRequest": {"prompt": msg.prompt, "password": bool(msg.password),
                                              "requestedAt": self.now_ms()},
                             "stdinResponse": None})
            run.log.info("%s waits for input", run.exec_id)
        elif isinstance(msg, m.DisplayItems):
            self.blocks.add_display(run, msg.items, now)
        elif isinstance(msg, m.RunFinished):
            self.finish(run, msg)
        elif isinstance(msg, m.RuntimeBusy):
            self.write(run, {"queued": True, "queueReason": msg.reason})
        elif isinstance(msg, m.InputSent) and not msg.accepted:
            run.log.warning("runtime refused the stdin answer for %s: %s", run.exec_id,
                            msg.reason or "not accepted")

    def on_stdin(self, run, entry):
        """A browser's answer to our stdin request goes to the runtime; one
        nobody asked for is cleared, or every later write of the entry would
        publish it again (it may be a password). Neither is ever logged."""
        if self.blocks.state(run.exec_id).awaiting_stdin:
            if entry.stdin_response_text is not None:
                self.blocks.set_awaiting_stdin(run.exec_id, False)
                self.pool.send_input(run.exec_id, run.runtime_url, entry.stdin_response_text,
                                     self.post)
                self.write(run, {"stdinRequest": None, "stdinResponse": None})
                run.log.info("forwarded the stdin answer for %s", run.exec_id)
        elif entry.raw.get("stdinResponse") is not None:
            run.log.info("ignoring a stdin answer for %s: no input was asked for", run.exec_id)
            self.write(run, {"stdinResponse": None})

    def flush(self, run):
        waited, display = self.blocks.flush(run, self.clock())
        if waited is not None:
            self.metrics.observe("mrmd_monitor_flush_latency_seconds", waited)
        if display:
            self.write(run, {"displayData": list(run.display)})

    def flush_all(self):
        for run in list(self.runs.values()):
            if self.blocks.pending(run.exec_id):
                self.flush(run)

    def finish(self, run, msg):
        if msg.cancelled:
            self.forget(run)   # cancelled by us or a browser: nothing more is written
            return
        if msg.output is not None:
            self.blocks.feed(run, msg.output.take(), self.clock())
        err = p.bounded_error(msg.error) if msg.error is not None else None
        run.output.finish(err)   # the end as the editor's own run writes it
        # The last rich outputs go with the final status: one write, not two.
        display = self.blocks.take_display(run.exec_id)
        self.flush(run)
        if not self.ours(run):
            self.forget(run)
            return
        self.blocks.put_images(run.exec_id, run.display)
        changes = final_changes(run, msg.result, err, display, self.now_ms())
        self.write(run, changes)
        run.log.info("%s %s", run.exec_id, changes["status"])
        self.forget(run, changes["status"])

    def drop(self, run, *, interrupt, status=None):
        """Stop a run and write nothing more for it."""
        self.pool.cancel(run.exec_id, interrupt=interrupt)
        self.forget(run, status)

    def forget(self, run, status=None):
        """The run is over for us; ``status`` is how it ended, when we know."""
        if self.runs.pop(run.exec_id, None) is None:
            return
        transition(run, Phase.DONE, self.clock(), status or "", metrics=self.metrics,
                   status=status)
        self.blocks.forget(run.exec_id)
        self.claims.forget(run.exec_id)
        self.order.changed()   # the runs behind it may go now

    def release_unstarted(self, reason):
        """Runs not sent to their runtime go back to ``requested``, unclaimed,
        so the next monitor can take them."""
        for run in [r for r in self.runs.values() if r.phase in UNSTARTED]:
            self.pool.cancel(run.exec_id, interrupt=True)
            if self.ours(run):
                self.write(run, dict(RELEASED))
            run.log.info("%s handed back (requested): %s", run.exec_id, reason)
            self.forget(run)

    def settle(self, reason):
        """Leave no entry of ours claimed or running: running ones end in
        ``error`` saying why, with their output so far kept."""
        self.release_unstarted(reason)
        for run in list(self.runs.values()):
            self.pool.cancel(run.exec_id, interrupt=True)
            changes = stopped_changes(run, reason, self.now_ms())
            self.flush(run)
            if self.ours(run):
                self.write(run, changes)
            run.log.info("%s marked error: %s", run.exec_id, reason)
            self.forget(run, p.ERROR)

    def ours(self, run):
        return self.claims.still_ours(self.entries.get(run.exec_id))

    def write(self, run, changes):
        keep = self.blocks.state(run.exec_id).awaiting_stdin
        if self.entries.write(run.exec_id, changes, keep_answer=keep):
            # stdinResponse is the browser's field: never put it back ourselves.
            run.want.update({k: v for k, v in p.clean(changes).items() if k != "stdinResponse"})
