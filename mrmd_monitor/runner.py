"""One run's stream, on a pool thread: MRP events in, messages to the
document's sync thread out.

The pool (workers.py) decides when a run starts; this module decides what
its events mean. Nothing here touches a document: everything is posted.
"""

import logging
import threading

from . import messages as m
from .display import DisplayConverter
from .errors import Cancelled, MrpError, RunTimedOut
from .http import sanitize
from .logs import context
from .mrp import MrpClient
from .protocol import error_value, slim_result

log = logging.getLogger(__name__)

#: The text the coordinator has always written for a run over --max-run-time.
MAX_RUN_TIME_MESSAGE = "the run took longer than --max-run-time (%.0fs) and was stopped"
#: How often a run waiting for its dispatch mark looks whether it was stopped.
DISPATCH_POLL = 0.1
#: Longest runtime warning shown in a block.
MAX_WARNING_CHARS = 500


class Runner:
    def __init__(self, client: MrpClient, display: DisplayConverter):
        self.client = client
        self.display = display

    def stream(self, job, token) -> m.RunFinished:
        """Run ``job`` to its end; the RunFinished to post (the caller posts it)."""
        outcome = {"result": None, "error": None}
        started = []
        rich_events = []   # MRP 0.3.0 sends display/asset events and repeats them in the result
        output = m.OutputBuffer()
        budget = self.display.budget()   # the run's inline rich output, over all its events
        post, exec_id = job.post, job.exec_id
        # The pool thread's lines about the run say which document and run
        # they are about, as the sync thread's do; the MRP client's too.
        run_log = job_log(job)

        def on_event(ev):
            kind, data = ev
            if not started:
                started.append(True)
                post(m.RunStarted(exec_id))
            if kind in ("stdout", "stderr"):
                text = data.get("content")
                if isinstance(text, str) and text and output.put(text):
                    post(m.OutputReady(exec_id, output))
            elif kind == "stdin_request":
                post(m.StdinRequested(exec_id, str(data.get("prompt") or ""),
                                      bool(data.get("password"))))
            elif kind in ("display", "asset"):
                rich_events.append(True)
                items = self.display.from_event(kind, data, job.runtime_url,
                                                budget=budget)
                if items:
                    post(m.DisplayItems(exec_id, tuple(items)))
            elif kind == "warning":
                text = data.get("message")
                if isinstance(text, str) and text.strip():
                    line = "[runtime warning: %s]\n" % sanitize(text, MAX_WARNING_CHARS)
                    if output.put(line):
                        post(m.OutputReady(exec_id, output))
            elif kind == "result":
                outcome["result"] = data
                if not rich_events:
                    items = self.display.from_result(data, job.runtime_url, budget=budget)
                    if items:
                        post(m.DisplayItems(exec_id, tuple(items)))
            elif kind == "error":
                outcome["error"] = error_value(data.get("type") or "Error",
                                               data.get("message") or "",
                                               data.get("traceback") or [])

        def on_busy(reason):
            post(m.RuntimeBusy(exec_id, reason))

        if job.confirm_dispatch and not self._dispatch(job, token):
            return m.RunFinished(exec_id, cancelled=True, output=output)
        run_log.debug("starting %s on %s", exec_id, job.runtime_url)
        try:
            self.client.execute_stream(job.runtime_url, code=job.code, session=job.session,
                                       exec_id=exec_id, on_event=on_event, cancel=token,
                                       max_run_time=getattr(job, "max_run_time", 0.0),
                                       on_busy=on_busy, run_log=run_log)
        except Cancelled:
            return m.RunFinished(exec_id, cancelled=True, output=output)
        except RunTimedOut:
            run_log.warning("%s ran longer than --max-run-time %.0fs: stopping it", exec_id,
                            job.max_run_time)
            interrupted, why = self.client.interrupt_status(job.runtime_url, job.session, exec_id,
                                                            run_log=run_log)
            if not interrupted:
                output.put("[mrmd-monitor: the runtime did not stop the code (%s); it may still "
                           "be running]\n" % why)
            return m.RunFinished(exec_id, error=error_value(
                "MaxRunTime", MAX_RUN_TIME_MESSAGE % job.max_run_time), output=output)
        except MrpError as exc:
            run_log.warning("%s failed: %s", exec_id, exc)
            return m.RunFinished(exec_id, error=error_value(type(exc).__name__, str(exc)),
                                 output=output)
        if outcome["error"] is None:
            result = outcome["result"]
            if isinstance(result, dict) and result.get("success") is False and result.get("error"):
                e = result["error"]
                if isinstance(e, dict):
                    outcome["error"] = error_value(e.get("type") or "Error", e.get("message") or "",
                                                   e.get("traceback") or [])
        return m.RunFinished(exec_id, result=slim_result(outcome["result"]),
                             error=outcome["error"], output=output)

    @staticmethod
    def _dispatch(job, token) -> bool:
        """Wait until the document's server has the run's dispatch mark; False
        if the run was stopped first (it never reached the runtime then)."""
        gate = threading.Event()
        job.post(m.Dispatching(job.exec_id, gate))
        # Normally one round trip to the sync server; as long as an outage
        # lasts otherwise (the run waits, unsent, for the document to be back).
        while not gate.wait(DISPATCH_POLL):
            if token.stopped:
                return False
        return not token.stopped

    def send_input(self, exec_id, runtime_url, text, post, doc=None):
        """Forward a stdin answer (blocking: run it on a control thread).
        ``doc``: the run's document, for the log lines."""
        run_log = context(log, doc=doc, exec_id=exec_id)
        try:
            ok = self.client.send_input(runtime_url, exec_id, text, run_log=run_log)
            post(m.InputSent(exec_id, bool(ok)))
        except MrpError as exc:
            post(m.InputSent(exec_id, False, str(exc)))
        except Exception:  # noqa: BLE001
            run_log.exception("sending input for %s failed", exec_id)
            post(m.InputSent(exec_id, False, "internal error"))

    def interrupt(self, job):
        """Ask the runtime to stop a cancelled run; say so in its block if it would not."""
        run_log = job_log(job)
        try:
            interrupted, why = self.client.interrupt_status(job.runtime_url, job.session,
                                                            job.exec_id, run_log=run_log)
        except Exception as exc:  # noqa: BLE001 - best effort by design
            run_log.info("interrupt of %s on %s failed: %s", job.exec_id, job.runtime_url, exc)
            interrupted, why = False, "the interrupt request failed"
        if not interrupted:
            job.post(m.InterruptRefused(job.exec_id, "[mrmd-monitor: the runtime did not stop "
                                        "this cell (%s); its code may still be running]" % why))


def job_log(job, logger=log):
    """``logger`` with the job's ``doc`` and ``exec_id`` (a job of no document: none)."""
    return context(logger, doc=getattr(job, "doc", "") or None, exec_id=job.exec_id)
