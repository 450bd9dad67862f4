"""A thousand documents on one monitor (issue 13).

    bash tests/benchmarks/run.sh docs1000 [--docs 1000] [--idle 30] [--runs 20] [--json PATH]

On 127.0.0.1: the npm y-websocket server (``@y/websocket-server``, documents in
memory), one monitor (``python -m mrmd_monitor``, log level info) given the
``--docs`` documents (rooms ``bench/doc-0000`` ...) in a config file (``doc =``
with one name per indented line: 1,000 ``--doc`` arguments are a long
command line), the scripted runtime (fake_runtime.py, as its own process, so
that the runtime is not what is measured) and, after the idle window, one
browser peer (tests/js/peer.mjs, the editor's way of requesting runs) in the
last document. Measured, against the issue's goals:

- attach time: from the spawn of the monitor to its "monitor ready" log line,
  which it prints once every document has synced;
- RSS of the monitor (``VmRSS`` in /proc/<pid>/status) right after ready and
  after the idle window (goal < 400 MB), its threads and open descriptors;
- idle CPU: the monitor's utime + stime (/proc/<pid>/stat) over the idle
  window, after ``--settle`` seconds (2 by default; 40 to measure only the
  steady state, after every document's first renewal, when the monitor,
  alone in each document, has fallen silent), in % of one core (goal
  < 1 %), and the context
  switches of its threads per second over the same window (how often it wakes);
- the start of a run in the last document: ``--runs`` runs one after
  another, each a one-line print on the fake runtime in its own cell; the
  time from the entry's ``requestedAt`` (written by the peer) to the moment
  the peer sees the entry's ``status: "running"`` (the peer's own clock for
  both), p50 and p95 (goal p95 < 100 ms).

The sync server's RSS and CPU are recorded too (information only).

``--reference REV``: the monitor of another commit (its ``mrmd_monitor/``
taken with ``git archive``, run with the same interpreter) is attached too,
to the same documents on a second server, and idles over the same window:
its idle CPU and context switches are reported next to ours, with the
ratio (the machine is shared: only figures from one window compare). It
is stopped before the runs.

Not part of the test suite. Every process it starts is stopped at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.benchmarks.run import (FakeRuntimeProcess, machine, pct, proc_cpu_seconds,  # noqa: E402
                                  proc_status)
from tests.support.peer import BrowserPeer  # noqa: E402
from tests.support.procs import MonitorProcess, SyncServer  # noqa: E402

RESULTS_DIR = HERE / "results"

RSS_GOAL_MB = 400.0
CPU_GOAL_PCT = 1.0
START_P95_GOAL_MS = 100.0


def snapshot(pid):
    """RSS (MB), peak RSS (MB), threads and open descriptors of a process."""
    return {
        "rss_mb": round(proc_status(pid, "VmRSS") / 1024.0, 1),
        "hwm_mb": round(proc_status(pid, "VmHWM") / 1024.0, 1),
        "threads": proc_status(pid, "Threads"),
        "fds": len(os.listdir("/proc/%d/fd" % pid)),
    }


def wakeups(pid):
    """Context switches of all the threads of a process so far (each wake-up
    from a wait is at least one voluntary switch): how often the idle monitor wakes up."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if "ctxt_switches:" in line:  # voluntary and nonvoluntary
                        total += int(line.split()[1])
        except OSError:  # a thread that just ended
            pass
    return total


def export_tree(rev, into):
    """The ``mrmd_monitor`` package as of commit ``rev``, unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", rev, "mrmd_monitor"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def write_config(path, docs):
    path.write_text("[mrmd-monitor]\ndoc =\n" + "".join("    %s\n" % d for d in docs))
    return path


def cell(code):
    return "```python\n%s\n```" % code


def measure(args, logs):
    docs = ["bench/doc-%04d" % i for i in range(args.docs)]
    out = {"docs": args.docs}
    server = SyncServer(log_path=logs / "sync-server.log").start()
    runtime = mon = peer = ref = ref_server = None
    tmp = tempfile.TemporaryDirectory(prefix="docs1000-ref-")
    try:
        runtime = FakeRuntimeProcess(log_path=logs / "fake-runtime.log").start()
        config = write_config(logs / "monitor.ini", docs)
        if args.reference:
            # Attached first, so that our attach time is measured as without it.
            ref_server = SyncServer(log_path=logs / "sync-server-ref.log").start()
            ref = MonitorProcess(ref_server.url, [], name="reference", log_path=logs / "reference.log",
                                 cwd=export_tree(args.reference, tmp.name),
                                 extra_args=["-c", str(config), "--log-level", "info",
                                             *args.monitor_args.split()])
            ref.start(wait_ready=False)
            ref.wait_for_line(MonitorProcess.READY_PHRASE, timeout=args.attach_timeout)
            out["reference"] = {"rev": args.reference}
        mon = MonitorProcess(server.url, [], name="monitor", log_path=logs / "monitor.log",
                             extra_args=["-c", str(config), "--log-level", "info",
                                         *args.monitor_args.split()])
        t0 = time.monotonic()
        mon.start(wait_ready=False)
        line = mon.wait_for_line(MonitorProcess.READY_PHRASE, timeout=args.attach_timeout)
        out["attach_s"] = round(time.monotonic() - t0, 3)
        out["ready_line"] = line
        out["monitor_cpu_attach_s"] = round(proc_cpu_seconds(mon.pid), 2)
        out["after_attach"] = snapshot(mon.pid)
        print("attached %d documents in %.2f s: %s" % (args.docs, out["attach_s"], out["after_attach"]),
              flush=True)

        time.sleep(args.settle)  # let the connections settle (deliberate: a fixed warm-up)
        w0 = wakeups(mon.pid)
        if ref is not None:
            rw0, rc0 = wakeups(ref.pid), proc_cpu_seconds(ref.pid)
        c0, s0, t0 = proc_cpu_seconds(mon.pid), proc_cpu_seconds(server.pid), time.monotonic()
        time.sleep(args.idle)  # the measurement window itself
        c1, s1, t1 = proc_cpu_seconds(mon.pid), proc_cpu_seconds(server.pid), time.monotonic()
        w1 = wakeups(mon.pid)
        if ref is not None:
            rc1, rw1 = proc_cpu_seconds(ref.pid), wakeups(ref.pid)
            out["reference"].update(idle_cpu_pct=round(100.0 * (rc1 - rc0) / (t1 - t0), 3),
                                    idle_switches_per_s=round((rw1 - rw0) / (t1 - t0), 1))
            ref.stop(timeout=30)
            ref_server.stop()
        out["idle_switches_per_s"] = round((w1 - w0) / (t1 - t0), 1)
        out["idle_window_s"] = round(t1 - t0, 2)
        out["idle_cpu_pct"] = round(100.0 * (c1 - c0) / (t1 - t0), 3)
        out["server_idle_cpu_pct"] = round(100.0 * (s1 - s0) / (t1 - t0), 3)
        out["after_idle"] = snapshot(mon.pid)
        out["server"] = snapshot(server.pid)
        print("idle %.0f s: CPU %.3f %% of a core, %.0f context switches/s, %s; server %s, CPU %.3f %%" % (
            t1 - t0, out["idle_cpu_pct"], out["idle_switches_per_s"], out["after_idle"], out["server"],
            out["server_idle_cpu_pct"]), flush=True)
        if ref is not None:
            print("reference %s over the same window: CPU %.3f %% of a core, %.0f context switches/s"
                  % (args.reference, out["reference"]["idle_cpu_pct"],
                     out["reference"]["idle_switches_per_s"]), flush=True)

        last = docs[-1]
        peer = BrowserPeer(server.url, last, name="browser", log_path=logs / "browser.log")
        codes = [json.dumps({"lines": 1, "id": i}) for i in range(args.runs)]
        peer.set_text("# the last document\n\n" + "\n\n".join(cell(c) for c in codes) + "\n")
        starts, finals, runs = [], [], []
        for i, code in enumerate(codes):
            exec_id = "bench-%03d-%d" % (i, os.getpid())
            peer.watch(exec_id)
            entry = peer.request(exec_id, code, runtime.url, session="bench")
            t_req = float(entry["requestedAt"])
            running = peer.wait_event(lambda e: e.get("event") == "entry" and e["execId"] == exec_id
                                      and e["status"] == "running", timeout=30)
            done = peer.wait_event(lambda e: e.get("event") == "entry" and e["execId"] == exec_id
                                   and e["status"] in ("completed", "error", "cancelled"), timeout=30)
            statuses = [(e["status"], round(e["t"] - t_req, 1)) for e in peer.events("entry")
                        if e["execId"] == exec_id]
            starts.append(running["t"] - t_req)
            finals.append(done["status"])
            runs.append({"exec_id": exec_id, "start_ms": running["t"] - t_req, "final": done["status"],
                         "statuses": statuses})
            peer.unwatch(exec_id)
        text = peer.text()
        out["runs"] = runs
        out["runs_completed"] = sum(f == "completed" for f in finals)
        out["outputs_ok"] = sum("```output:%s\n0\n```" % r["exec_id"] in text for r in runs)
        out["start_p50_ms"] = round(pct(starts, 50), 1)
        out["start_p95_ms"] = round(pct(starts, 95), 1)
        out["start_max_ms"] = round(max(starts), 1)
        out["after_runs"] = snapshot(mon.pid)
        print("runs in %s: %d/%d completed, %d outputs right, start p50 %.1f ms, p95 %.1f ms, max %.1f ms"
              % (last, out["runs_completed"], args.runs, out["outputs_ok"], out["start_p50_ms"],
                 out["start_p95_ms"], out["start_max_ms"]), flush=True)
        out["monitor_alive"] = mon.alive
        return out
    finally:
        if peer is not None:
            peer.close()
        if mon is not None:
            mon.stop(timeout=30)
        for proc in (ref, ref_server, runtime):
            if proc is not None:
                proc.stop()
        server.stop()
        tmp.cleanup()


def table(out, info):
    rss = max(out["after_attach"]["rss_mb"], out["after_idle"]["rss_mb"])
    rows = [
        ("attach (spawn → ready)", "%.2f s" % out["attach_s"], "(info)", ""),
        ("RSS after attach / after %.0f s idle" % out["idle_window_s"],
         "%.1f / %.1f MB" % (out["after_attach"]["rss_mb"], out["after_idle"]["rss_mb"]),
         "< %.0f MB" % RSS_GOAL_MB, "pass" if rss < RSS_GOAL_MB else "MISS"),
        ("idle CPU (%.0f s)" % out["idle_window_s"],
         "%.2f %% (%.0f context switches/s)" % (out["idle_cpu_pct"], out["idle_switches_per_s"]),
         "< %.0f %% of a core" % CPU_GOAL_PCT,
         "pass" if out["idle_cpu_pct"] < CPU_GOAL_PCT else "MISS"),
        ("run start in the last document, p50 / p95",
         "%.1f / %.1f ms" % (out["start_p50_ms"], out["start_p95_ms"]),
         "p95 < %.0f ms" % START_P95_GOAL_MS,
         "pass" if out["start_p95_ms"] < START_P95_GOAL_MS and out["runs_completed"] == len(out["runs"])
         else "MISS"),
    ]
    if "reference" in out:
        r = out["reference"]
        rows.append(("idle CPU of %s, same window" % r["rev"],
                     "%.2f %% (%.0f context switches/s); ours / its: %.2f" % (
                         r["idle_cpu_pct"], r["idle_switches_per_s"],
                         out["idle_cpu_pct"] / r["idle_cpu_pct"] if r["idle_cpu_pct"] else float("nan")),
                     "(reference)", ""))
    rows += [
        ("threads / open descriptors", "%d / %d" % (out["after_idle"]["threads"], out["after_idle"]["fds"]),
         "(info)", ""),
    ]
    print("\n%d documents on one monitor; %s (%s cores, %s GB), Python %s, node %s, commit %s%s"
          % (out["docs"], info["cpu"], info["cores"], info["mem_gb"], info["python"], info["node"],
             info["commit"], " (dirty)" if info["dirty"] else ""))
    print("| figure | measured | goal | result |")
    print("|---|---|---|---|")
    for r in rows:
        print("| %s |" % " | ".join(r))
    return all(r[3] != "MISS" for r in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds from ready to the idle window (40: after the first "
                             "awareness renewals, when a lone monitor has fallen silent)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--attach-timeout", type=float, default=600.0)
    parser.add_argument("--monitor-args", default="", help="more options for the monitor")
    parser.add_argument("--reference", default=None, metavar="REV",
                        help="also idle the monitor of this commit, over the same window")
    parser.add_argument("--json", default=None, help="default: results/docs<N>.json")
    args = parser.parse_args(argv)
    logs = RESULTS_DIR / ("docs%d-logs" % args.docs)
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    info = machine()
    out = measure(args, logs)
    ok = table(out, info)
    path = Path(args.json or RESULTS_DIR / ("docs%d.json" % args.docs))
    path.write_text(json.dumps({"args": vars(args), "machine": info, "result": out}, indent=2))
    print("\nJSON: %s   logs: %s\nresult: %s" % (path, logs, "pass" if ok else "MISS"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
