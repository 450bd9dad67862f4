"""Scale benchmark (issue 13): several monitors share the documents and the runs.

    .venv/bin/python tests/benchmarks/scale.py [--monitors 4] [--docs 64] [--runs 256]
                                               [--browsers 4] [--replicas all,2] [--json PATH]
    .venv/bin/python tests/benchmarks/scale.py --kill [--orphan-timeout 4] [--replicas 2]

For each ``--replicas`` value: the npm y-websocket server with a proxy in front
that lists the documents at /stats (tests/support/sync_proxy.py, standing in
for mrmd-sync's), ``--monitors`` monitors as their own processes following
/stats, a scripted runtime (fake_runtime.py's wire format, in this process)
that counts every execution it is asked for, and ``--browsers`` npm-yjs
browsers (scale_browser.mjs) that each open their part of the documents and
ask for the runs. Measured, against the issue's targets:

- every run exactly once: each execution id reached the runtime once, its
  entry ended ``completed`` and its block holds its output once;
- each monitor's share of the runs within 0.75x-1.25x of an even split
  (from each monitor's ``mrmd_monitor_executions_total{status="completed"}``);
- with ``--replicas R``: each document followed by exactly R monitors (the
  monitors' /status.json, synced documents), all of them with ``all``.

With ``--kill``, one round per ``--replicas`` value (default 2) with
``--orphan-timeout`` small: in the middle of the load, once the victim holds
runs both running and not started, one monitor is killed with ``kill -9``.
Measured: the time from the kill until each document it followed is followed
again by R live monitors (the survivors' /status.json; target: within
--orphan-timeout + 5 s); its runs not started completed by others (taken
over), its running ones ended ``error`` (``MonitorLost``) with their output
kept; 0 lost (every entry final, none ``requested``) and 0 doubled (each
execution id reached the runtime at most once).

Not part of the test suite; everything on 127.0.0.1.
"""

import argparse
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.benchmarks.fake_runtime import PREFIX, Handler  # noqa: E402
from tests.support.local_http import LocalServer  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.procs import JS_DIR, MonitorProcess, SyncServer, node_executable  # noqa: E402
from tests.support.sync_proxy import SyncProxy  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

BROWSER = HERE / "scale_browser.mjs"
RESULTS_DIR = HERE / "results"


class LedgerRuntime(LocalServer):
    """fake_runtime.py's runtime in a thread, counting the executions asked of it
    (a monitor killed with kill -9, --kill, resets its streams: expected)."""

    def __init__(self):
        self.ledger = collections.Counter()
        lock = threading.Lock()
        ledger = self.ledger

        class Counting(Handler):
            def _stream(self, body):
                with lock:
                    ledger[body.get("execId")] += 1
                super()._stream(body)

        super().__init__(Counting, "ledger-runtime", resets_expected=True)
        self.url = self.base + PREFIX


def get_json(port, path="/status.json"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.loads(r.read())


def completed_runs(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^mrmd_monitor_executions_total\{status="completed"\} (\d+)', text, re.M)
    counters = {}
    for name in ("claims_won", "claims_lost", "claims_backed_up"):
        found = re.search(r"^mrmd_monitor_%s_total (\d+)" % name, text, re.M)
        counters[name] = int(found.group(1)) if found else 0
    return (int(m.group(1)) if m else 0), counters


def followed_by(port, monitor):
    """Documents a monitor follows and has synced: its /status.json, or, for a
    build without it (--monitor-src), its log."""
    try:
        return {d["name"] for d in get_json(port)["documents"] if d["synced"]}
    except urllib.error.HTTPError:
        return {line.split("synced ", 1)[1] for line in monitor.lines("stderr")
                if "mrmd_monitor.sync: synced " in line} - {"mrmd-monitors"}


def followers(ports, monitors):
    count = collections.Counter()
    for port, monitor in zip(ports, monitors):
        count.update(followed_by(port, monitor))
    return count


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    found = re.search(r"^%s (\d+(?:\.\d+)?)" % re.escape(name), text, re.M)
    return float(found.group(1)) if found else 0.0


def held_at_kill(victim):
    """Runs the killed monitor held (claimed and not finished, not lost) by
    its own log, and which of them it had started."""
    held, running = set(), set()
    for line in victim.lines("stderr"):
        m = re.search(r"coordinator: claimed (\S+) \(", line)
        if m:
            held.add(m.group(1))
            continue
        m = re.search(r"coordinator: (\S+) running$", line)
        if m:
            running.add(m.group(1))
            continue
        m = re.search(r"coordinator: (?:(\S+) (?:completed|error|cancelled|handed back)"
                      r"|lost the claim on (\S+)|claim on (\S+) not confirmed)", line)
        if m:
            done = next(g for g in m.groups() if g)
            held.discard(done)
            running.discard(done)
    return held, running & held


def kill_in_the_middle(args, monitors, ports, want, out):
    """Kill -9 one monitor once it holds runs both running and waiting, then
    time until every document it followed is followed by ``want`` survivors."""
    victim_i = args.kill_index % len(monitors)
    victim, vport = monitors[victim_i], ports[victim_i]
    wait_until(lambda: metric(vport, "mrmd_monitor_active_runs") >= 1
               and metric(vport, "mrmd_monitor_queued_runs") >= 1,
               timeout=120, interval=0.05, message="the victim holds running and waiting runs")
    its_docs = followed_by(vport, victim)
    victim.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()
    victim.wait(10)
    survivors = [(p, m) for i, (p, m) in enumerate(zip(ports, monitors)) if i != victim_i]
    restored_at = None
    while time.monotonic() - t_kill < args.orphan_timeout + 60:
        count = collections.Counter()
        for port, mon in survivors:
            count.update(followed_by(port, mon) & its_docs)
        if all(count[d] >= want for d in its_docs):
            restored_at = time.monotonic()
            break
        time.sleep(0.1)  # polling other processes' status pages: no event to wait on
    out["kill"] = {"victim": "mon%d" % victim_i, "its_documents": len(its_docs),
                   "restored_s": None if restored_at is None else round(restored_at - t_kill, 2),
                   "target_s": args.orphan_timeout + 5}
    return victim, survivors


def one_round(args, replicas, workdir):
    label = "all" if replicas == 0 else str(replicas)
    logs = workdir / ("replicas-" + label + ("-kill" if args.kill else ""))
    docs = ["bench/nb-%03d.md" % i for i in range(args.docs)]
    runs_per_doc = args.runs // args.docs
    server = SyncServer(log_path=logs / "sync-server.log").start()
    proxy = SyncProxy(server.port, documents=docs).start()
    runtime = LedgerRuntime().start()
    monitors, ports = [], []
    out = {"replicas": label}
    try:
        for i in range(args.monitors):
            port = free_port()
            mon = MonitorProcess(proxy.url, [], name="mon%d" % i, log_path=logs / ("mon%d.log" % i),
                                 extra_args=["--replicas", label, "--discover-interval", "0.5",
                                             "--block-wait", "0.2", "--name", "mon%d" % i,
                                             "--orphan-timeout", str(args.orphan_timeout),
                                             "--log-level", os.environ.get("SCALE_LOG_LEVEL", "info"),
                                             "--status-addr", "127.0.0.1:%d" % port])
            if args.monitor_src:  # another build of the monitor, for a side-by-side figure
                mon.cwd = args.monitor_src
                mon.argv = [a for a in mon.argv if a not in ("--replicas", label)]
            mon.start(wait_ready=False)
            monitors.append(mon)
            ports.append(port)
        for mon in monitors:
            mon.wait_ready(timeout=60)
        want = replicas or args.monitors
        t0 = time.monotonic()
        wait_until(lambda: (lambda c: len(c) == len(docs) and set(c.values()) == {want})(
            followers(ports, monitors)), timeout=120, interval=0.2,
            message="each document followed by %d monitor(s)" % want)
        out["assignment_settled_s"] = round(time.monotonic() - t0, 2)
        follow = followers(ports, monitors)
        out["followers_per_document"] = sorted(set(follow.values()))
        out["documents_per_monitor"] = [len(followed_by(p, m)) for p, m in zip(ports, monitors)]

        per_browser = [docs[i::args.browsers] for i in range(args.browsers)]
        procs = [subprocess.Popen(
            [node_executable(), str(BROWSER), "--url", server.url, "--docs", ",".join(part),
             "--runtime", runtime.url, "--runs", str(runs_per_doc),
             "--interval-ms", str(args.interval_ms), "--timeout-s", "600"],
            cwd=JS_DIR, stdout=subprocess.PIPE, stderr=open(logs / ("browser%d.log" % i), "w"),
            text=True) for i, part in enumerate(per_browser)]
        victim = None
        if args.kill:
            victim, survivors = kill_in_the_middle(args, monitors, ports, want, out)
        results, elapsed = [], []
        for p in procs:
            line, _ = p.communicate(timeout=900)
            data = json.loads(line.strip().splitlines()[-1])
            results.extend(data["results"])
            elapsed.append(data["elapsed"])
        total = len(results)
        out["runs"] = total
        out["elapsed_s"] = round(max(elapsed), 2)
        out["completed"] = sum(r["status"] == "completed" for r in results)
        out["blocks_exactly_once"] = sum(r["blocks"] == 1 and r["outputOk"] for r in results)
        asked = [runtime.ledger.get(r["execId"], 0) for r in results]
        out["runtime_once"] = sum(n == 1 for n in asked)
        out["runtime_twice_or_more"] = sum(n > 1 for n in asked)
        out["runtime_never"] = sum(n == 0 for n in asked)
        if victim is not None:
            return kill_results(out, victim, survivors, results, asked, runtime)
        shares, counters = [], []
        for port in ports:
            done, c = completed_runs(port)
            shares.append(done)
            counters.append(c)
        even = total / args.monitors
        out["share_per_monitor"] = shares
        out["share_ratio_min"] = round(min(shares) / even, 3)
        out["share_ratio_max"] = round(max(shares) / even, 3)
        out["claims"] = counters
        out["pass_exactly_once"] = (out["completed"] == total == out["runtime_once"]
                                    == out["blocks_exactly_once"])
        out["pass_share"] = 0.75 <= out["share_ratio_min"] and out["share_ratio_max"] <= 1.25
        out["pass_followers"] = out["followers_per_document"] == [want]
        return out
    finally:
        for mon in monitors:
            mon.stop()
        runtime.stop()
        proxy.stop()
        server.stop()


def kill_results(out, victim, survivors, results, asked, runtime):
    """What became of the killed monitor's runs, and of every run."""
    held, running = held_at_kill(victim)
    by_id = {r["execId"]: r for r in results}
    # Sent to the runtime (its dispatchedAt had reached the server) but not yet
    # seen to start: it may have run, so it is marked lost like a running one,
    # never sent again (at most once: the run may also have died unsent).
    sent = {x for x in held - running if x in by_id and by_id[x].get("dispatchedAt")
            and by_id[x]["errorType"] == "MonitorLost"}
    running = running | sent
    waiting = held - running
    took_over = set()
    for _, mon in survivors:
        for line in mon.lines("stderr"):
            m = re.search(r"holding (\S+) \((?:claimed|ready)\) is gone: taking the run over",
                          line)
            if m:
                took_over.add(m.group(1))
    k = out["kill"]
    k["held_running"] = len(running)
    k["held_sent_not_started"] = len(sent)
    k["sent_never_reached_runtime"] = sum(runtime.ledger.get(x, 0) == 0 for x in sent)
    k["held_waiting"] = len(waiting)
    k["running_marked_lost"] = sum(by_id[x]["status"] == "error"
                                   and by_id[x]["errorType"] == "MonitorLost"
                                   and by_id[x]["blocks"] == 1 for x in running if x in by_id)
    k["waiting_completed_by_others"] = sum(by_id[x]["status"] == "completed"
                                           and by_id[x]["outputOk"] for x in waiting if x in by_id)
    k["taken_over"] = len(took_over)
    k["monitor_lost_total"] = sum(r["errorType"] == "MonitorLost" for r in results)
    out["final"] = sum(r["status"] in ("completed", "error", "cancelled") for r in results)
    out["lost"] = len(results) - out["final"]
    out["doubled"] = sum(n > 1 for n in asked)
    doubled = [r["execId"] for r, n in zip(results, asked) if n > 1]
    k["doubled_ids"] = doubled
    k["doubled_taken_over"] = sum(x in took_over for x in doubled)
    out["other_errors"] = sum(r["status"] == "error" and r["errorType"] != "MonitorLost"
                              for r in results)
    ok_runs = [r for r in results if r["execId"] not in running]
    out["others_exactly_once"] = sum(r["status"] == "completed" and r["blocks"] == 1
                                     and r["outputOk"] and runtime.ledger.get(r["execId"]) == 1
                                     for r in ok_runs)
    out["others"] = len(ok_runs)
    out["pass_kill"] = (k["restored_s"] is not None and k["restored_s"] <= k["target_s"]
                        and k["running_marked_lost"] == len(running)
                        and k["waiting_completed_by_others"] == len(waiting)
                        and out["lost"] == 0 and out["doubled"] == 0
                        and out["others_exactly_once"] == out["others"])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=4)
    parser.add_argument("--docs", type=int, default=64)
    parser.add_argument("--runs", type=int, default=256)
    parser.add_argument("--browsers", type=int, default=4)
    parser.add_argument("--replicas", default=None,
                        help="comma list: all or a number (default all,2; with --kill, 2)")
    parser.add_argument("--kill", action="store_true",
                        help="kill -9 one monitor in the middle of the load (see above)")
    parser.add_argument("--kill-index", type=int, default=1, help="which monitor --kill kills")
    parser.add_argument("--orphan-timeout", type=float, default=None,
                        help="the monitors' --orphan-timeout (default 20, or 4 with --kill)")
    parser.add_argument("--interval-ms", type=int, default=40,
                        help="each browser asks for a run this often")
    parser.add_argument("--json", default=str(RESULTS_DIR / "scale.json"))
    parser.add_argument("--monitor-src", help="run the monitors from this source tree "
                        "(e.g. `git archive <commit>` unpacked), with --replicas all only")
    args = parser.parse_args(argv)
    if args.replicas is None:
        args.replicas = "2" if args.kill else "all,2"
    if args.orphan_timeout is None:
        args.orphan_timeout = 4.0 if args.kill else 20.0
    workdir = RESULTS_DIR / "scale-logs"
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = []
    for value in args.replicas.split(","):
        replicas = 0 if value.strip() == "all" else int(value)
        result = one_round(args, replicas, workdir)
        rounds.append(result)
        print(json.dumps(result), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": rounds}, indent=2))
    if args.kill:
        return report_kill(rounds)
    print("\n%-9s %-6s %-10s %-22s %-14s %-22s %s" % ("replicas", "runs", "exactly 1x",
                                                       "share (x even)", "followers/doc",
                                                       "docs per monitor", "time"))
    for r in rounds:
        print("%-9s %-6d %-10s %-22s %-14s %-22s %.1fs" % (
            r["replicas"], r["runs"], "%d/%d" % (r["runtime_once"], r["runs"]),
            "%.2f-%.2f %s" % (r["share_ratio_min"], r["share_ratio_max"], r["share_per_monitor"]),
            r["followers_per_document"], r["documents_per_monitor"], r["elapsed_s"]))
    ok = all(r["pass_exactly_once"] and r["pass_share"] and r["pass_followers"] for r in rounds)
    print("\nresult: %s" % ("pass" if ok else "FAIL"))
    return 0 if ok else 1


def report_kill(rounds):
    print("\n%-9s %-6s %-16s %-20s %-16s %-6s %-8s %s" % (
        "replicas", "runs", "refollowed", "running(sent)->lost", "waiting->others", "lost",
        "doubled", "others exactly 1x"))
    for r in rounds:
        k = r["kill"]
        print("%-9s %-6d %-16s %-20s %-16s %-6d %-8d %d/%d" % (
            r["replicas"], r["runs"], "%ss (<= %gs)" % (k["restored_s"], k["target_s"]),
            "%d/%d (%d)" % (k["running_marked_lost"], k["held_running"],
                            k["held_sent_not_started"]),
            "%d/%d" % (k["waiting_completed_by_others"], k["held_waiting"]),
            r["lost"], r["doubled"], r["others_exactly_once"], r["others"]))
    ok = all(r["pass_kill"] for r in rounds)
    print("\nresult: %s" % ("pass" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
