"""The monitor's memory across sync server restarts under load.

    .venv/bin/python tests/benchmarks/reconnect_soak.py [--docs 4] [--restarts 8] [--every 15]
        [--interval 0.5] [--lines 200] [--keep 5] [--down 1] [--json PATH]

On 127.0.0.1: the npm y-websocket server (documents in memory), the scripted
runtime (fake_runtime.py with ``--log-runs``, so every execution it is asked
for is counted by id), one monitor (``python -m mrmd_monitor``, log level
info, ``--reconnect-max 0.5``) on ``--docs`` documents, and one browser peer
(tests/js/peer.mjs) per document. Each peer asks for a run of its one cell
(``--lines`` lines of output) every ``--interval`` seconds and deletes each
entry ``--keep`` seconds after it saw it final, as the editor's clean-up
does. Every ``--every`` seconds the server is killed and started again on
the same port ``--down`` seconds later (its documents are lost; the peers and
the monitor bring them back). The peers keep requesting and deleting while
it is down, so each restart leaves entries that were deleted, and runs that
were in flight, while the monitor was away.

Measured: the monitor's RSS (``VmRSS``) just before each restart, i.e. a
whole period after the previous one (the first sample, restart 0, is the
end of a warm-up period without restart); the runs the peers saw final in
each period; at the end, after the requests stop, the runs never seen final
(lost) and the runs the runtime was asked for more than once. The slope is
the least-squares MB per restart over the second half of the samples.

Not part of the test suite. Every process it starts is stopped at the end.
"""

import argparse
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.benchmarks.run import FakeRuntimeProcess, machine, proc_status  # noqa: E402
from tests.support.notebook import FINAL, cell  # noqa: E402
from tests.support.peer import BrowserPeer  # noqa: E402
from tests.support.procs import MonitorProcess, SyncServer  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

RESULTS_DIR = HERE / "results"


class CountingRuntime(FakeRuntimeProcess):
    """The fake runtime, counting the executions it is asked for, by id."""

    def __init__(self, log_path=None):
        super().__init__(log_path=log_path)
        self.argv.append("--log-runs")
        self.asked = collections.Counter()
        self._lock = threading.Lock()

    def on_line(self, stream, line):
        super().on_line(stream, line)
        if line.startswith("run "):
            with self._lock:
                self.asked[line[4:].strip()] += 1

    def counts(self):
        with self._lock:
            return dict(self.asked)


class CountingMonitor(MonitorProcess):
    """The monitor, counting its "synced <doc>" lines (its line buffer is bounded)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.synced = 0
        self._lock = threading.Lock()

    def on_line(self, stream, line):
        if " synced " in line:
            with self._lock:
                self.synced += 1


class Requester(threading.Thread):
    """One document's editor: a run every ``interval`` s, finished entries
    deleted ``keep`` s after they were seen final. It goes on while the
    server is down (the peer writes locally and sends it all on reconnect)."""

    def __init__(self, peer, code, runtime_url, interval, keep, tag):
        super().__init__(name="requester-" + tag, daemon=True)
        self.peer, self.code, self.runtime_url = peer, code, runtime_url
        self.interval, self.keep, self.tag = interval, keep, tag
        self.requested = []
        self.final = {}        # exec id -> (status, monotonic time first seen final)
        self.deleted = set()
        self.reopened = set()  # seen final, later not: a run that ended twice
        self.errors = []
        self.stop_requests = threading.Event()
        self.requests_stopped = threading.Event()  # set by the thread: no request is on its way
        self.stop_all = threading.Event()
        self._lock = threading.Lock()

    def run(self):
        n = 0
        next_at = time.monotonic()
        while not self.stop_all.is_set():
            now = time.monotonic()
            if self.stop_requests.is_set():
                self.requests_stopped.set()
            try:
                if not self.requests_stopped.is_set() and now >= next_at:
                    exec_id = "soak-%s-%05d" % (self.tag, n)
                    n += 1
                    self.peer.request(exec_id, self.code, self.runtime_url, session="soak-" + self.tag)
                    with self._lock:
                        self.requested.append(exec_id)
                    next_at += self.interval
                self._sweep(now)
            except Exception as exc:  # noqa: BLE001 - reported at the end, the soak goes on
                self.errors.append(repr(exc))
            self.stop_all.wait(min(0.1, max(0.0, next_at - time.monotonic())))

    def _sweep(self, now):
        for exec_id, entry in self.peer.call("entries")["entries"].items():
            status = entry.get("status") if isinstance(entry, dict) else None
            with self._lock:
                seen = self.final.get(exec_id)
                if status in FINAL and seen is None:
                    self.final[exec_id] = seen = (status, now)
                elif seen is not None and status != seen[0]:
                    self.reopened.add(exec_id)
            if seen is not None and now - seen[1] >= self.keep and exec_id not in self.deleted:
                self.peer.delete_entry(exec_id)
                self.deleted.add(exec_id)

    def snapshot(self):
        with self._lock:
            return list(self.requested), dict(self.final)


def rss_mb(pid):
    return proc_status(pid, "VmRSS") / 1024.0


def slope(points):
    """Least-squares slope of [(x, y), ...]."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def soak(docs, restarts, every, interval, lines, keep, down, logs, drain=60.0, on_sample=None, control=False):
    """Run the soak; return a dict of the samples and the counts (see the module text).
    ``control``: the same periods and load, the server never restarted (the reference)."""
    names = ["soak/doc-%d-%d" % (i, os.getpid()) for i in range(docs)]
    server = SyncServer(log_path=logs / "sync-server.log").start()
    runtime = monitor = None
    peers, requesters = [], []
    try:
        runtime = CountingRuntime(log_path=logs / "fake-runtime.log").start()
        monitor = CountingMonitor(server.url, names, name="monitor", log_path=logs / "monitor.log",
                                  extra_args=["--log-level", "info", "--reconnect-max", "0.5"])
        monitor.start()
        for i, name in enumerate(names):
            code = json.dumps({"lines": lines, "doc": i})
            peer = BrowserPeer(server.url, name, name="editor-%d" % i, log_path=logs / ("editor-%d.log" % i))
            peers.append(peer)
            peer.set_text("# soak %d\n\n%s\n" % (i, cell(code)))
            requesters.append(Requester(peer, code, runtime.url, interval, keep, str(i)))
        for r in requesters:
            r.start()
        samples = []
        done_before = 0

        def sample(k):
            nonlocal done_before
            done = sum(len(r.snapshot()[1]) for r in requesters)
            row = {"restart": k, "rss_mb": round(rss_mb(monitor.pid), 1), "runs_done": done - done_before,
                   "t": round(time.monotonic() - t0, 1)}
            done_before = done
            samples.append(row)
            if on_sample:
                on_sample(row)

        t0 = time.monotonic()
        time.sleep(every)   # the warm-up period (deliberate: load for a fixed time)
        sample(0)
        for k in range(1, restarts + 1):
            synced = monitor.synced
            if control:
                time.sleep(every)   # the period without its restart
                sample(k)
                continue
            server.restart(down_for=down)
            wait_until(lambda: monitor.synced >= synced + docs, timeout=60,
                       message="the monitor did not sync its documents again after restart %d" % k)
            time.sleep(max(0.0, every - (time.monotonic() - t0 - samples[-1]["t"])))  # the rest of the period
            sample(k)
        for r in requesters:
            r.stop_requests.set()

        def all_final():
            return all(r.requests_stopped.is_set() and set(r.snapshot()[0]) <= set(r.snapshot()[1])
                       for r in requesters)

        try:
            wait_until(all_final, timeout=drain, interval=0.5, message="runs still not final")
        except AssertionError:
            pass   # counted as lost below
        for r in requesters:
            r.stop_all.set()
        for r in requesters:
            r.join(timeout=10)
        asked = runtime.counts()
        requested, final = [], {}
        for r in requesters:
            req, fin = r.snapshot()
            requested += req
            final.update(fin)
        return {
            "samples": samples,
            "requested": len(requested),
            "final": len([e for e in requested if e in final]),
            "completed": len([e for e in requested if final.get(e, ("",))[0] == "completed"]),
            "lost": sorted(e for e in requested if e not in final),
            "reopened": sorted(e for r in requesters for e in r.reopened),
            "asked_twice": sorted(e for e in requested if asked.get(e, 0) > 1),
            "never_asked": sorted(e for e in requested if asked.get(e, 0) == 0),
            "requester_errors": [e for r in requesters for e in r.errors][:20],
            "monitor_alive": monitor.alive,
            "wall_s": round(time.monotonic() - t0, 1),
        }
    finally:
        for r in requesters:
            r.stop_all.set()
        for peer in peers:
            peer.close()
        if monitor is not None:
            monitor.stop(timeout=30)
        if runtime is not None:
            runtime.stop()
        server.stop()


def second_half_slope(samples):
    half = samples[len(samples) // 2:]
    return slope([(s["restart"], s["rss_mb"]) for s in half])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between restarts")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between runs, per document")
    parser.add_argument("--lines", type=int, default=200, help="lines of output per run")
    parser.add_argument("--keep", type=float, default=5.0, help="seconds a final entry stays before deletion")
    parser.add_argument("--down", type=float, default=1.0, help="seconds the server stays down")
    parser.add_argument("--control", action="store_true",
                        help="the reference: the same periods and load without restarting the server")
    parser.add_argument("--json", default=None, help="default: results/reconnect_soak.json")
    args = parser.parse_args(argv)
    logs = RESULTS_DIR / "reconnect-soak-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    info = machine()
    print("%d documents, a run every %.2f s each (%d lines), entries deleted %.0f s after final, "
          "%d restarts every %.0f s (down %.1f s)%s" % (args.docs, args.interval, args.lines, args.keep,
                                                        args.restarts, args.every, args.down,
                                                        " -- control: no restart" if args.control else ""),
          flush=True)
    print("| restart | RSS MB | runs final in the period |\n|---|---|---|", flush=True)
    out = soak(args.docs, args.restarts, args.every, args.interval, args.lines, args.keep, args.down, logs,
               control=args.control,
               on_sample=lambda s: print("| %d | %.1f | %d |" % (s["restart"], s["rss_mb"], s["runs_done"]),
                                         flush=True))
    out["slope_mb_per_restart"] = round(second_half_slope(out["samples"]), 2)
    print("\nruns requested %d, final %d (completed %d), lost %d, final then changed %d, "
          "asked of the runtime twice %d, never %d; %.0f s"
          % (out["requested"], out["final"], out["completed"], len(out["lost"]), len(out["reopened"]),
             len(out["asked_twice"]), len(out["never_asked"]), out["wall_s"]))
    print("RSS %.1f MB after the warm-up, %.1f MB after restart 2, %.1f MB after the last; "
          "slope over the second half: %+.2f MB per restart"
          % (out["samples"][0]["rss_mb"], out["samples"][min(2, len(out["samples"]) - 1)]["rss_mb"],
             out["samples"][-1]["rss_mb"], out["slope_mb_per_restart"]))
    if out["requester_errors"]:
        print("peer errors: %s" % out["requester_errors"])
    path = Path(args.json or RESULTS_DIR / "reconnect_soak.json")
    path.write_text(json.dumps({"args": vars(args), "machine": info, "result": out}, indent=2))
    print("JSON: %s   logs: %s" % (path, logs))
    ok = out["monitor_alive"] and not (out["lost"] or out["asked_twice"] or out["reopened"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
