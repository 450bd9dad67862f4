"""The benchmark suite of mrmd-monitor (issue #7): one command, one table, one JSON file.

    .venv/bin/python tests/benchmarks/run.py [--quick] [--only throughput,latency]
                                             [--runtime fake,fake-noacc,mrmd-python] [--json PATH]

Every figure is measured in this run next to its reference and reported as a
ratio where one exists; the machine is shared and noisy, so only ratios
measured side by side mean anything. Everything runs on 127.0.0.1: the npm
y-websocket server, the monitor as its own process (``python -m
mrmd_monitor``), the requesting browser (tests/js/peer.mjs), a second npm yjs
peer that records when text arrives (observer.mjs), and two MRP runtimes:
mrmd-python, and fake_runtime.py, which streams the same wire format as fast
as the socket takes it so that the monitor's own cost shows. The reference
for throughput is a bare SSE reader (sse_reader.py) on the same stream.

Figures (targets from the issue):
  startup      process start to "monitor ready" on one document            < 1 s
  idle         16 documents, no work, 60 s: CPU, RSS                       < 0.5 %, < 60 MB
  throughput   100,000 lines: monitor's request->completed (seen by the
               observer) / bare reader's time, on each runtime             <= 1.05 mrmd-python
               marginal cost per byte on the fake runtimes: the same
               workload at two sizes (fake 10,000 -> 100,000 lines,
               fake-noacc 100,000 -> 1,000,000), interleaved; monitor's
               extra time / reader's extra time                            <= 1.5
               document size (encoded state / output bytes)                <= 1.3
               bytes sent (monitor's y-sync bytes / output bytes)          <= 1.5
  latency      a line every 100 ms for 10 s: line sent -> observer sees it p50 <= 25 ms, p95 <= 60 ms
  progress     10,000 \\r updates: lines left, document growth             1 line, <= 64 KiB
  concurrency  64 runs at once over 16 documents, 1,000 lines each with
               small sleeps: all complete, slowest / fastest, sync threads
               never seen inside HTTP code (py-spy samples)                <= 1.5, 0 samples
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.benchmarks.proxy import CountingProxy  # noqa: E402
from tests.support.peer import BrowserPeer  # noqa: E402
from tests.support.procs import (JS_DIR, ManagedProcess, MonitorProcess, Runtime,  # noqa: E402
                                 SyncServer, node_executable)
from tests.support.waiting import wait_until  # noqa: E402

RESULTS_DIR = HERE / "results"
OBSERVER = HERE / "observer.mjs"
READER = HERE / "sse_reader.py"
FAKE = HERE / "fake_runtime.py"

SCENARIOS = ("startup", "idle", "throughput", "latency", "progress", "concurrency")
RUNTIMES = ("fake", "fake-noacc", "mrmd-python")
#: fake-noacc: the fake runtime without ``accumulated``, in 4 KiB output events
#: (like MRP 0.3.0): the stream is only the output, so the monitor's own cost
#: per output byte shows. Throughput only.
THROUGHPUT_ONLY = ("fake-noacc",)
FINAL = ("completed", "error", "cancelled")
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: mrmd-python sent 100,000 printed lines (588,890 bytes) in about 2,270 output
#: events (measured on this machine), about 260 bytes each; the fake runtime
#: cuts its output the same way so that both streams have the same shape.
FAKE_CHUNK = 256


# ---------------------------------------------------------------------- sizes of the workloads
class Sizes:
    def __init__(self, quick):
        self.lines = 10_000 if quick else 100_000
        # Lines of the large throughput workload per runtime; on the fake
        # runtimes the same workload also runs at marginal_small lines, and the
        # difference is the marginal cost (measured 100,000 -> 1,000,000
        # lines without accumulated; with it the stream grows with the square of
        # the output, so 10,000 -> 100,000 lines is already 1.2 GB).
        scale = 10 if quick else 1
        self.throughput_lines = {"fake": 100_000 // scale, "fake-noacc": 1_000_000 // scale,
                                 "mrmd-python": self.lines}
        self.marginal_small = {"fake": 10_000 // scale, "fake-noacc": 100_000 // scale}
        self.throughput_repeats = 1 if quick else 2
        self.latency_count = 20 if quick else 100
        self.progress = 2_000 if quick else 10_000
        self.conc_docs, self.conc_per_doc = (4, 2) if quick else (16, 4)
        self.conc_lines = 300 if quick else 1_000
        self.idle_docs = 16
        self.idle_seconds = 10 if quick else 60
        self.startup_runs = 3


# ---------------------------------------------------------------------- processes
class FakeRuntimeProcess(ManagedProcess):
    name = "fake-runtime"
    ready_timeout = 15.0

    def __init__(self, log_path=None):
        super().__init__([sys.executable, FAKE], cwd=HERE, log_path=log_path)
        self.url = None

    def on_line(self, stream, line):
        if line.startswith("listening on "):
            self.url = line[len("listening on "):].strip()

    def is_ready(self):
        return self.url is not None


class Observer(ManagedProcess):
    """observer.mjs: replies to commands, collects events."""

    ready_timeout = 30.0

    def __init__(self, sync_url, docs, editor=False, log_path=None, name="observer"):
        argv = [node_executable(), OBSERVER, "--url", sync_url]
        for d in docs:
            argv += ["--doc", d]
        if editor:
            argv.append("--editor")
        super().__init__(argv, name=name, cwd=JS_DIR, stdin=True, log_path=log_path, max_lines=200,
                         max_line_chars=300)
        self._n = 0
        self._replies = {}
        self.events = []
        self._write = threading.Lock()
        self.start(wait_ready=False)
        self.call("waitSynced", timeout=30)

    def on_line(self, stream, line):
        if stream != "stdout":
            return
        msg = json.loads(line)
        with self._cond:
            if "event" in msg:
                self.events.append(msg)
            else:
                self._replies[msg["id"]] = msg
            self._cond.notify_all()

    def call(self, cmd, timeout=30.0, **args):
        with self._write:
            self._n += 1
            cid = self._n
            self.proc.stdin.write((json.dumps(dict(args, id=cid, cmd=cmd)) + "\n").encode())
            self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while cid not in self._replies:
                if time.monotonic() > deadline or not self.alive:
                    raise RuntimeError("observer: no reply to %s\n%s" % (cmd, self._tail_locked()))
                self._cond.wait(0.2)
            reply = self._replies.pop(cid)
        if not reply.get("ok"):
            raise RuntimeError("observer: %s failed: %s" % (cmd, reply.get("error")))
        return reply

    def find(self, pred):
        with self._cond:
            return [e for e in self.events if pred(e)]

    def wait_final(self, doc, exec_id, timeout):
        def final():
            hits = self.find(lambda e: e["event"] == "entry" and e["doc"] == doc and e["execId"] == exec_id
                             and e["status"] in FINAL)
            return hits[0] if hits else None
        return wait_until(final, timeout=timeout, interval=0.01, message="%s to finish" % exec_id)

    def close(self):
        if self.alive:
            try:
                self.call("quit", timeout=5)
                self.proc.wait(5)
            except Exception:  # noqa: BLE001 - stop() kills it anyway
                pass
        self.stop()


def read_reference(url, code, stamps=False, session=None):
    """The bare SSE reader, as its own process (like the monitor)."""
    argv = [sys.executable, READER, url, code, "--session", session or "ref-" + uuid.uuid4().hex[:6]]
    if stamps:
        argv.append("--stamps")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError("sse_reader failed: %s" % out.stderr[-2000:])
    return json.loads(out.stdout)


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return None


def cell(code):
    return "```python\n%s\n```" % code


def block_content(text, exec_id):
    marker = "```output:%s\n" % exec_id
    start = text.index(marker) + len(marker)
    if text.startswith("```", start):
        return ""
    return text[start:text.index("\n```", start) + 1]


def _lines_ok(content, n):
    """The block shows ``0``..``n-1``, one per line; past --max-output-bytes its
    head, the monitor's notice and the latest tail, each line exact."""
    expected = "".join("%d\n" % i for i in range(n))
    if content == expected:
        return True
    marker = "[mrmd-monitor: output over"
    at = content.find(marker)
    if at <= 0:
        return False
    head, tail = content[:at], content[content.index("\n", at) + 1:]
    return expected.startswith(head) and expected.endswith(tail) and len(tail) > 0


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def uid():
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args):
        self.args = args
        self.sizes = Sizes(args.quick)
        if args.repeats:
            self.sizes.throughput_repeats = args.repeats
        self.rows = []
        self.details = {}
        self.logs = Path(tempfile.mkdtemp(prefix="mrmd-bench-"))
        self.server = None
        self.runtimes = {}
        self._cleanup = []

    # -- rows ------------------------------------------------------------------
    def row(self, figure, runtime, workload, measured, unit, target, ok, reference=None, ratio=None,
            note=""):
        r = {"figure": figure, "runtime": runtime, "workload": workload, "measured": measured, "unit": unit,
             "reference": reference, "ratio": ratio, "target": target, "ok": ok, "note": note}
        self.rows.append(r)
        print("  %-34s %-12s %s" % (figure, runtime or "", _fmt_row(r)), flush=True)
        return r

    # -- setup -----------------------------------------------------------------
    def start_shared(self, need_runtimes):
        self.server = SyncServer(log_path=self.logs / "sync-server.log").start()
        self._cleanup.append(self.server.stop)
        if "fake" in need_runtimes:
            fake = FakeRuntimeProcess(log_path=self.logs / "fake-runtime.log").start()
            self._cleanup.append(fake.stop)
            self.runtimes["fake"] = fake
            self.runtimes["fake-noacc"] = fake
        if "mrmd-python" in need_runtimes:
            rt = Runtime(log_path=self.logs / "mrmd-python.log").start()
            self._cleanup.append(rt.stop)
            self.runtimes["mrmd-python"] = rt

    def close(self):
        for fn in reversed(self._cleanup):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001
                print("cleanup failed: %r" % (exc,), file=sys.stderr)

    def monitor(self, docs, sync_url=None, extra=(), name="monitor"):
        mon = MonitorProcess(sync_url or self.server.url, docs,
                             extra_args=["--log-level", "info", *self.args.monitor_args.split(), *extra],
                             log_path=self.logs / ("%s.log" % name), name=name)
        mon.start()
        return mon

    # -- scenarios -------------------------------------------------------------
    def run_startup(self):
        n = self.sizes.startup_runs
        times = []
        for i in range(n):
            doc = "bench-startup-%s" % uid()
            mon = MonitorProcess(self.server.url, doc, extra_args=["--log-level", "info"],
                                 log_path=self.logs / "startup.log", name="monitor-startup")
            t0 = time.monotonic()
            mon.start(wait_ready=False)
            try:
                mon.wait_for_line(MonitorProcess.READY_PHRASE, timeout=30)
                times.append(time.monotonic() - t0)
            finally:
                mon.stop()
        refs = []
        for i in range(n):
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-c", "import mrmd_monitor.daemon, mrmd_monitor.cli"], check=True,
                           cwd=REPO_ROOT)
            refs.append(time.monotonic() - t0)
        med, ref = statistics.median(times), statistics.median(refs)
        self.details["startup"] = {"runs_s": times, "reference_import_s": refs}
        self.row("startup (spawn -> ready)", None, "1 document, median of %d" % n, med, "s", "< 1 s", med < 1.0,
                 reference=ref, ratio=med / ref, note="reference: python -c 'import mrmd_monitor.daemon'")

    def run_idle(self):
        docs = ["bench-idle-%d-%s" % (i, uid()) for i in range(self.sizes.idle_docs)]
        mon = self.monitor(docs, name="monitor-idle")
        try:
            time.sleep(2.0)  # let the connections settle (deliberate: a fixed warm-up)
            c0, t0 = proc_cpu_seconds(mon.pid), time.monotonic()
            time.sleep(self.sizes.idle_seconds)  # the measurement window itself
            c1, t1 = proc_cpu_seconds(mon.pid), time.monotonic()
            rss_kb = proc_status(mon.pid, "VmRSS")
            hwm_kb = proc_status(mon.pid, "VmHWM")
            threads = proc_status(mon.pid, "Threads")
        finally:
            mon.stop()
        cpu = 100.0 * (c1 - c0) / (t1 - t0)
        rss = rss_kb / 1024.0
        wl = "%d documents, %d s" % (len(docs), self.sizes.idle_seconds)
        self.details["idle"] = {"cpu_seconds": c1 - c0, "window_s": t1 - t0, "rss_kb": rss_kb, "hwm_kb": hwm_kb,
                                "threads": threads}
        self.row("idle CPU", None, wl, cpu, "%", "< 0.5 %", cpu < 0.5, note="of one core")
        self.row("idle RSS", None, wl, rss, "MB", "< 60 MB", rss < 60, note="%s threads" % threads)

    def _single_doc_run(self, kind, code, doc, scan=False, with_proxy=False, timeout=600, references=(),
                        extra=(), profile=False):
        """One run through the monitor on one document, seen by an observer. Returns a dict."""
        rt = self.runtimes[kind]
        proxy = None
        sync_url = self.server.url
        if with_proxy:
            proxy = CountingProxy(self.server.port).start()
            sync_url = proxy.url
        mon = peer = obs = None
        res = {}
        try:
            mon = self.monitor([doc], sync_url=sync_url, extra=extra, name="monitor-%s" % doc[:30])
            peer = BrowserPeer(self.server.url, doc, name="browser", log_path=self.logs / "browser.log")
            obs = Observer(self.server.url, [doc], log_path=self.logs / "observer.log")
            peer.set_text(cell(code) + "\n")
            wait_until(lambda: cell(code) in obs.call("getText", doc=doc)["text"], timeout=10)
            obs.call("watch", doc=doc, scan=scan)
            res["refs_before"] = [read_reference(rt.url, code, stamps=scan) for r in references if r == "before"]
            size0 = obs.call("stateSize", doc=doc)["bytes"]
            bytes0 = proxy.snapshot() if proxy else None
            spy = self._start_profiler(mon.pid, doc) if profile else None
            cpu0 = proc_cpu_seconds(mon.pid)
            exec_id = "bench-" + uid()
            entry = peer.request(exec_id, code, rt.url, session="bench-" + uid())
            t_req = float(entry["requestedAt"]) if isinstance(entry, dict) and "requestedAt" in entry \
                else time.time() * 1000.0
            done = obs.wait_final(doc, exec_id, timeout)
            cpu1 = proc_cpu_seconds(mon.pid)
            if spy is not None:
                res["profile"] = self._stop_profiler(spy)
            time.sleep(0.3)  # anything the monitor still sends after "completed" (deliberate)
            bytes1 = proxy.snapshot() if proxy else None
            text = obs.call("getText", doc=doc, timeout=60)["text"]
            size1 = obs.call("stateSize", doc=doc, timeout=60)["bytes"]
            final_entry = obs.call("entry", doc=doc, execId=exec_id)["entry"]
            res["refs_after"] = [read_reference(rt.url, code, stamps=scan) for r in references if r == "after"]
            texts = obs.find(lambda e: e["event"] == "text" and e["doc"] == doc)
            entries = obs.find(lambda e: e["event"] == "entry" and e["execId"] == exec_id)
            content = block_content(text, exec_id)
            res.update({
                "exec_id": exec_id, "status": done["status"], "t_request": t_req, "t_done": done["t"],
                "elapsed_s": (done["t"] - t_req) / 1000.0,
                "started_at": final_entry.get("startedAt") if final_entry else None,
                "first_text_t": texts[0]["t"] if texts else None, "text_events": len(texts),
                "statuses": [(e["status"], round(e["t"] - t_req, 1)) for e in entries],
                "content": content, "output_bytes": len(content.encode("utf-8")),
                "state_before": size0, "state_after": size1, "monitor_cpu_s": cpu1 - cpu0,
                "stamps": [(s, e["t"]) for e in texts for s in e.get("stamps", ())],
            })
            if proxy:
                res["sent"] = _diff_snap(bytes1, bytes0)
                res["sent_total"] = bytes1
            return res
        finally:
            for p in (obs, peer):
                if p is not None:
                    p.close()
            if mon is not None:
                mon.stop()
            if proxy is not None:
                proxy.stop()

    def _start_profiler(self, pid, doc):
        """py-spy record (collapsed stacks, per thread) on the monitor; returns (process, path)."""
        exe = _py_spy()
        if exe is None:
            print("   py-spy not found: no profile", flush=True)
            return None
        path = RESULTS_DIR / ("profile-%s.txt" % doc.rsplit("-", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--threads", "--rate", "250",
                                 *self.args.py_spy_args.split(), "-o", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # py-spy attaches (deliberate)
        return proc, path

    def _stop_profiler(self, spy):
        proc, path = spy
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        top = summarize_profile(path) if path.exists() else None
        if top:
            print("   profile %s: %d samples" % (path, top["samples"]), flush=True)
            for name, share in top["self"][:12]:
                print("     self %5.1f%%  %s" % (100 * share, name), flush=True)
        return {"path": str(path), "summary": top}

    def _throughput_code(self, kind, n):
        if kind == "fake":
            return json.dumps({"lines": n, "chunk": FAKE_CHUNK})
        if kind == "fake-noacc":
            return json.dumps({"lines": n, "chunk": 4096, "accumulated": False})
        return "for i in range(%d):\n    print(i)" % n

    def _throughput_rounds(self, kind, n, repeats, first_profile=False):
        """Monitor runs of ``n`` lines with reader runs before the first and
        after each (reader, monitor, reader[, monitor, reader]): the runtime's
        own speed drifts (mrmd-python's stream size varies by a third between runs)."""
        code = self._throughput_code(kind, n)
        results = []
        for i in range(repeats):
            doc = "bench-throughput-%s-%s" % (kind, uid())
            results.append(self._single_doc_run(kind, code, doc, with_proxy=True,
                                                references=("before", "after") if i == 0 else ("after",),
                                                profile=first_profile and i == 0))
        refs = [r for x in results for r in x["refs_before"] + x["refs_after"]]
        return results, refs

    def _keep_wrong(self, results, n):
        """A block that is not what it should be goes to the logs, for a look."""
        for x in results:
            if not _lines_ok(x["content"], n):
                path = self.logs / ("wrong-%s.txt" % x["exec_id"])
                path.write_text(x["content"])
                print("   output of %s (%s) is wrong: %s" % (x["exec_id"], x["status"], path), flush=True)

    def run_throughput(self, kind):
        n = self.sizes.throughput_lines[kind]
        target = {"fake": 1.5, "fake-noacc": 1.5}.get(kind, 1.05)
        # The marginal cost per byte: the same workload at two sizes,
        # the fixed costs of a run (claim, block, process start) cancel out.
        small = self.sizes.marginal_small.get(kind)
        marginal = small is not None and not self.args.no_marginal
        if marginal:
            # Interleaved by size too: small, large, small, large, ...
            rounds = {small: ([], []), n: ([], [])}
            for i in range(self.sizes.throughput_repeats):
                for size in (small, n):
                    res, refs = self._throughput_rounds(
                        kind, size, 1, first_profile=self.args.profile and i == 0 and size == n)
                    rounds[size][0].extend(res)
                    rounds[size][1].extend(refs)
            results, refs = rounds[n]
        else:
            results, refs = self._throughput_rounds(kind, n, self.sizes.throughput_repeats,
                                                    first_profile=self.args.profile)
        res = results[0]
        ref = statistics.median(r["elapsed"] for r in refs)
        ok_output = all(_lines_ok(x["content"], n) and x["status"] == "completed" for x in results)
        self._keep_wrong(results, n)
        elapsed = statistics.median(x["elapsed_s"] for x in results)
        runs = [(x["t_done"] - x["started_at"]) / 1000.0 for x in results if x.get("started_at")]
        run_s = statistics.median(runs) if runs else None
        cpu = statistics.median(x["monitor_cpu_s"] for x in results)
        wl = "%s lines" % format(n, ",")
        if refs:
            wl += " (%.0f MB stream)" % (statistics.median(r["bytes"] for r in refs) / 1e6)
        detail = self.details["throughput-" + kind] = {
            "runs": [{k: v for k, v in x.items() if k not in ("content", "stamps")} for x in results],
            "references": refs, "output_ok": ok_output, "running_to_completed_s": runs,
            "monitor_s": [x["elapsed_s"] for x in results]}
        ratio = elapsed / ref
        self.row("throughput ratio", kind, wl, elapsed, "s", "<= %.2f" % target if not marginal else "(info)",
                 (ratio <= target and ok_output) if not marginal else (None if ok_output else False),
                 reference=ref, ratio=ratio,
                 note="median of %d monitor runs / median of %d reader runs, interleaved; monitor cpu %.1f s%s" % (
                     len(results), len(refs), cpu, "" if ok_output else "; OUTPUT WRONG"))
        if run_s:
            self.row("  same, running -> completed", kind, wl, run_s, "s", "(info)", None, reference=ref,
                     ratio=run_s / ref, note="without claim, claim settle and block creation")
        if marginal:
            s_results, s_refs = rounds[small]
            s_ok = all(_lines_ok(x["content"], small) and x["status"] == "completed" for x in s_results)
            self._keep_wrong(s_results, small)
            s_mon = statistics.median(x["elapsed_s"] for x in s_results)
            s_ref = statistics.median(r["elapsed"] for r in s_refs)
            s_cpu = statistics.median(x["monitor_cpu_s"] for x in s_results)
            d_mon, d_ref = elapsed - s_mon, ref - s_ref
            d_bytes = statistics.median(r["bytes"] for r in refs) - statistics.median(r["bytes"] for r in s_refs)
            m_ratio = d_mon / d_ref if d_ref > 0 else None
            detail["marginal"] = {"small_lines": small, "large_lines": n, "monitor_small_s": s_mon,
                                  "reader_small_s": s_ref, "monitor_large_s": elapsed, "reader_large_s": ref,
                                  "monitor_delta_s": d_mon, "reader_delta_s": d_ref, "stream_delta_bytes": d_bytes,
                                  "ratio": m_ratio, "monitor_cpu_small_s": s_cpu, "monitor_cpu_large_s": cpu,
                                  "small_runs": [x["elapsed_s"] for x in s_results],
                                  "small_refs": [r["elapsed"] for r in s_refs],
                                  "large_runs": [x["elapsed_s"] for x in results],
                                  "large_refs": [r["elapsed"] for r in refs]}
            self.row("marginal cost per byte", kind, "%s -> %s lines (+%.0f MB stream)" % (
                format(small, ","), format(n, ","), d_bytes / 1e6), d_mon, "s",
                "<= %.2f" % target, m_ratio is not None and m_ratio <= target and ok_output and s_ok,
                reference=d_ref, ratio=m_ratio,
                note="monitor %.3f -> %.3f s, reader %.3f -> %.3f s (medians of %d/%d and %d/%d runs); "
                     "monitor cpu %.2f -> %.2f s%s" % (
                         s_mon, elapsed, s_ref, ref, len(s_results), len(results), len(s_refs), len(refs),
                         s_cpu, cpu, "" if s_ok else "; SMALL OUTPUT WRONG"))
        out_b = res["output_bytes"]
        size = res["state_after"]
        capped = "[mrmd-monitor: output over" in res["content"]
        self.row("document size", kind, wl, size, "B", "<= 1.3", capped or size / out_b <= 1.3, reference=out_b,
                 ratio=size / out_b, note="encoded state / output bytes" + (
                     " (output over --max-output-bytes: the block holds head + tail)" if capped else ""))
        sent = res["sent"]
        sync_bytes = sum(v for k, v in sent["payload"].items() if k.startswith("sync"))
        self.row("bytes sent", kind, wl, sync_bytes, "B", "<= 1.5", sync_bytes / out_b <= 1.5, reference=out_b,
                 ratio=sync_bytes / out_b,
                 note="y-sync payload; wire total %d B in %d frames" % (sent["wire"], sum(sent["frames"].values())))

    def run_latency(self, kind):
        n = self.sizes.latency_count
        if kind == "fake":
            code = json.dumps({"every_ms": 100, "count": n})
        else:
            code = ("import time\nfor i in range(%d):\n    print('T%%.3f' %% (time.time() * 1000), flush=True)\n"
                    "    time.sleep(0.1)" % n)
        doc = "bench-latency-%s-%s" % (kind, uid())
        res = self._single_doc_run(kind, code, doc, scan=True, references=("after",))
        lat = [t - s for s, t in res["stamps"]]
        ref = res["refs_after"][0]["latencies_ms"]
        wl = "%d lines, one per 100 ms" % n
        p50, p95 = pct(lat, 50), pct(lat, 95)
        self.details["latency-" + kind] = {"latencies_ms": lat, "reference_ms": ref, "seen": len(lat),
                                           "expected": n, "status": res["status"],
                                           "text_events": res["text_events"], "monitor_cpu_s": res["monitor_cpu_s"]}
        complete = len(lat) == n
        note = "" if complete else "only %d of %d lines seen" % (len(lat), n)
        if kind == "mrmd-python":
            note = (note + "; " if note else "") + "stamp taken at print(), inside the runtime"
        self.row("latency p50", kind, wl, p50, "ms", "<= 25 ms", p50 is not None and p50 <= 25 and complete,
                 reference=pct(ref, 50), note=note)
        self.row("latency p95", kind, wl, p95, "ms", "<= 60 ms", p95 is not None and p95 <= 60 and complete,
                 reference=pct(ref, 95), note="max %.1f ms" % max(lat) if lat else "")

    def run_progress(self, kind):
        n = self.sizes.progress
        if kind == "fake":
            code = json.dumps({"progress": n})
        else:
            code = ("import sys\nfor i in range(1, %d):\n    sys.stdout.write('\\rprogress %%d/%d' %% i)\n"
                    "    sys.stdout.flush()\nprint()" % (n + 1, n))
        doc = "bench-progress-%s-%s" % (kind, uid())
        res = self._single_doc_run(kind, code, doc, with_proxy=True)
        content = res["content"]
        lines = content.count("\n")
        growth = res["state_after"] - res["state_before"]
        wl = "%s \\r updates" % format(n, ",")
        expected = "progress %d/%d\n" % (n, n)
        self.details["progress-" + kind] = {k: v for k, v in res.items() if k not in ("stamps",)}
        self.row("progress bar: lines left", kind, wl, lines, "lines", "1 line",
                 lines == 1 and content == expected,
                 note="" if content == expected else "content %r" % content[:80])
        sent = res["sent"]
        sync_bytes = sum(v for k, v in sent["payload"].items() if k.startswith("sync"))
        self.row("progress bar: doc growth", kind, wl, growth / 1024.0, "KiB", "<= 64 KiB", growth <= 64 * 1024,
                 note="monitor sent %.1f KiB of y-sync in %d text events seen" % (
                     sync_bytes / 1024.0, res["text_events"]))

    def run_concurrency(self):
        s = self.sizes
        rt = self.runtimes["fake"]
        docs = ["bench-conc-%d-%s" % (i, uid()) for i in range(s.conc_docs)]
        runs = []  # (doc, exec_id, code)
        for d in docs:
            for k in range(s.conc_per_doc):
                code = json.dumps({"lines": s.conc_lines, "chunk": 1, "sleep_ms": 2, "id": "%s-%d" % (d, k)})
                runs.append((d, "bench-" + uid(), code))
        n = len(runs)
        mon = obs = None
        sampler = None
        try:
            # Every run is on the one fake runtime: --worker-share (0.5 by default) would
            # hold half of them back until the first half is done.
            mon = self.monitor(docs, extra=["--max-workers", str(n), "--worker-share", "1"],
                               name="monitor-concurrency")
            obs = Observer(self.server.url, docs, editor=True, log_path=self.logs / "observer-conc.log")
            for d in docs:
                obs.call("setText", doc=d, text="\n\n".join(cell(c) for dd, _, c in runs if dd == d) + "\n")
                obs.call("watch", doc=d)
            ref = read_reference(rt.url, runs[0][2])
            sampler = StackSampler(mon.pid) if shutil.which("py-spy") or _py_spy() else None
            if sampler:
                sampler.start()
            t_req = {}
            for d, exec_id, code in runs:
                t_req[exec_id] = obs.call("request", doc=d, execId=exec_id, code=code, runtimeUrl=rt.url,
                                          session="s-" + exec_id)["t"]
            done = {}
            deadline = time.monotonic() + 300
            for d, exec_id, _ in runs:
                done[exec_id] = obs.wait_final(d, exec_id, max(1.0, deadline - time.monotonic()))
            if sampler:
                sampler.stop()
            texts = {d: obs.call("getText", doc=d)["text"] for d in docs}
        finally:
            if sampler:
                sampler.stop()
            if obs is not None:
                obs.close()
            if mon is not None:
                mon.stop()
        durations = {e: (done[e]["t"] - t_req[e]) / 1000.0 for _, e, _ in runs}
        completed = sum(1 for e in done.values() if e["status"] == "completed")
        expected = "".join("%d\n" % i for i in range(s.conc_lines))
        outputs_ok = sum(1 for d, e, _ in runs if block_content(texts[d], e) == expected)
        fastest, slowest = min(durations.values()), max(durations.values())
        wl = "%d runs over %d docs, %s lines each, 2 ms sleeps" % (n, len(docs), format(s.conc_lines, ","))
        self.details["concurrency"] = {"durations_s": durations, "reference": ref, "completed": completed,
                                       "outputs_ok": outputs_ok,
                                       "samples": sampler.summary() if sampler else None}
        self.row("concurrency: completed", "fake", wl, completed, "runs", "all %d" % n,
                 completed == n and outputs_ok == n, note="%d outputs exact" % outputs_ok)
        self.row("concurrency: slowest/fastest", "fake", wl, slowest, "s", "<= 1.5", slowest / fastest <= 1.5,
                 reference=fastest, ratio=slowest / fastest,
                 note="bare reader alone: %.2f s; slowest/bare %.2f" % (ref["elapsed"], slowest / ref["elapsed"]))
        if sampler:
            summ = sampler.summary()
            self.row("concurrency: sync threads in HTTP", "fake", wl, summ["sync_in_http"], "samples", "0",
                     summ["sync_in_http"] == 0,
                     note="of %d sync-thread samples in %d py-spy dumps" % (summ["sync_samples"], summ["dumps"]))

    # -- driver ----------------------------------------------------------------
    def run(self, only, kinds):
        need = set(kinds) if {"throughput", "latency", "progress"} & set(only) else set()
        if "fake-noacc" in need:
            need.add("fake")
        if "concurrency" in only:
            need.add("fake")
        self.start_shared(need)
        plan = []
        for sc in SCENARIOS:
            if sc not in only:
                continue
            if sc in ("throughput", "latency", "progress"):
                plan += [(sc, (k,)) for k in RUNTIMES
                         if k in kinds and (sc == "throughput" or k not in THROUGHPUT_ONLY)]
            else:
                plan.append((sc, ()))
        for sc, a in plan:
            print("== %s %s" % (sc, " ".join(a)), flush=True)
            t0 = time.monotonic()
            try:
                getattr(self, "run_" + sc)(*a)
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not hide the others
                import traceback
                traceback.print_exc()
                self.row(sc, a[0] if a else None, "", None, "", "", False, note="FAILED: %r" % (exc,))
            print("   (%.1f s)" % (time.monotonic() - t0), flush=True)


def summarize_profile(path, threads_prefix=None):
    """Top functions of a py-spy raw (collapsed) profile: self and inclusive shares of the busy samples.

    Idle samples (a thread waiting in select/recv/sleep/queue) are dropped so the
    shares are of the time the monitor actually spends working.
    """
    idle_leaf = ("select (", "poll (", "wait (", "_wait_for_tstate_lock", "sleep (", "recv_into (",
                 "recv (", "get (queue", "accept (", "readinto (socket")
    self_c, incl_c, threads = {}, {}, {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        if not frames:
            continue
        leaf = frames[-1]
        if any(leaf.startswith(m) or m in leaf for m in idle_leaf):
            continue
        n = int(count)
        total += n
        threads[thread] = threads.get(thread, 0) + n
        self_c[leaf] = self_c.get(leaf, 0) + n
        for f in set(frames):
            incl_c[f] = incl_c.get(f, 0) + n
    if not total:
        return None
    rank = lambda d: [(k, v / total) for k, v in sorted(d.items(), key=lambda kv: -kv[1])]  # noqa: E731
    return {"samples": total, "threads": rank(threads)[:10], "self": rank(self_c)[:25],
            "inclusive": rank(incl_c)[:40]}


def _py_spy():
    cand = Path(sys.executable).parent / "py-spy"
    return str(cand) if cand.exists() else shutil.which("py-spy")


class StackSampler:
    """Takes ``py-spy dump`` of a process at intervals; counts sync threads seen inside HTTP code."""

    HTTP_MARKERS = ("http/client.py", "/requests/", "/urllib3/", "mrmd_monitor/mrp.py",
                    "mrmd_monitor/http.py", "mrmd_monitor/httpbody.py", "mrmd_monitor/mrpstream.py")

    def __init__(self, pid, interval=0.25):
        self.pid = pid
        self.interval = interval
        self.exe = _py_spy()
        self.dumps = 0
        self.sync_samples = 0
        self.sync_in_http = 0
        self.examples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                out = subprocess.run([self.exe, "dump", "--pid", str(self.pid)], capture_output=True, text=True,
                                     timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            self.dumps += 1
            for name, frames in _parse_dump(out):
                if not name.startswith("sync:"):
                    continue
                self.sync_samples += 1
                if any(m in f for f in frames for m in self.HTTP_MARKERS):
                    self.sync_in_http += 1
                    if len(self.examples) < 3:
                        self.examples.append({"thread": name, "frames": frames[:12]})

    def summary(self):
        return {"dumps": self.dumps, "sync_samples": self.sync_samples, "sync_in_http": self.sync_in_http,
                "examples": self.examples}


def _parse_dump(text):
    threads, name, frames = [], None, []
    for line in text.splitlines():
        if line.startswith("Thread "):
            if name is not None:
                threads.append((name, frames))
            name = line.split('"')[1] if '"' in line else line
            frames = []
        elif line.startswith("    ") and name is not None:
            frames.append(line.strip())
    if name is not None:
        threads.append((name, frames))
    return threads


def _diff_snap(a, b):
    out = {"wire": a["wire"] - b["wire"], "payload": {}, "frames": {}}
    for key in ("payload", "frames"):
        for k, v in a[key].items():
            out[key][k] = v - b[key].get(k, 0)
    return out


def _num(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            s = "%.0f" % v
        elif abs(v) >= 10:
            s = "%.1f" % v
        else:
            s = "%.3g" % v
    else:
        s = format(v, ",") if isinstance(v, int) else str(v)
    return s + (" " + unit if unit else "")


def _fmt_row(r):
    return "%s | ref %s | ratio %s | %s | %s" % (
        _num(r["measured"], r["unit"]), _num(r["reference"], r["unit"] if r["unit"] not in ("",) else ""),
        "-" if r["ratio"] is None else "%.3f" % r["ratio"], r["target"], _verdict(r["ok"]))


def _verdict(ok):
    return "info" if ok is None else "pass" if ok else "MISS"


def print_table(rows):
    head = ("figure", "runtime", "workload", "measured", "reference", "ratio", "target", "result")
    body = [(r["figure"], r["runtime"] or "", r["workload"], _num(r["measured"], r["unit"]),
             _num(r["reference"], r["unit"]), "-" if r["ratio"] is None else "%.3f" % r["ratio"],
             r["target"], _verdict(r["ok"])) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        print(line(b))
    notes = [(r["figure"], r["runtime"], r["note"]) for r in rows if r["note"]]
    if notes:
        print()
        for f, k, n in notes:
            print("- %s%s: %s" % (f, " (%s)" % k if k else "", n))


def machine():
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        mem_kb = proc_status_file("/proc/meminfo", "MemTotal")
    except OSError:
        mem_kb = None
    versions = {}
    for mod in ("pycrdt", "websocket-client", "requests", "urllib3", "mrmd-python"):
        try:
            from importlib.metadata import version
            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem_kb / 1048576, 1) if mem_kb else None,
            "kernel": platform.release(), "python": platform.python_version(), "node": cmd(["node", "--version"]),
            "loadavg_at_start": os.getloadavg(), "versions": versions,
            "commit": cmd(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
            "dirty": bool(cmd(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "mrmd_monitor"]))}


def proc_status_file(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description="mrmd-monitor benchmarks: prints a table, writes JSON")
    p.add_argument("--quick", action="store_true", help="small workloads, for a smoke test (targets still shown)")
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help="comma-separated subset of: %s" % ", ".join(SCENARIOS))
    p.add_argument("--runtime", default=",".join(RUNTIMES), help="comma-separated subset of: fake, fake-noacc, mrmd-python")
    p.add_argument("--repeats", type=int, default=0,
                   help="monitor runs per throughput figure (default 2, 1 with --quick); a reader run before the first "
                        "and after each")
    p.add_argument("--no-marginal", action="store_true",
                   help="throughput: the large workload only, without the small one the marginal cost needs")
    p.add_argument("--profile", action="store_true",
                   help="record the monitor with py-spy during the throughput runs (results/profile-*.txt)")
    p.add_argument("--py-spy-args", default="--nonblocking",
                   help="extra py-spy record arguments for --profile (e.g. '--gil' or '--idle')")
    p.add_argument("--monitor-args", default="",
                   help="extra options for every monitor, e.g. --monitor-args='--claim-settle 0' (for diagnosis)")
    p.add_argument("--json", default=str(RESULTS_DIR / "latest.json"), help="where to write the results")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    kinds = [s.strip() for s in args.runtime.split(",") if s.strip()]
    bad = [s for s in only if s not in SCENARIOS] + [k for k in kinds if k not in RUNTIMES]
    if bad:
        p.error("unknown: %s" % ", ".join(bad))
    info = machine()
    print("mrmd-monitor benchmarks%s on %s (%s cores), Python %s, node %s, commit %s%s" % (
        " (quick)" if args.quick else "", info["cpu"], info["cores"], info["python"], info["node"], info["commit"],
        " + local changes" if info["dirty"] else ""), flush=True)
    bench = Bench(args)
    started = time.time()
    try:
        bench.run(only, kinds)
    finally:
        bench.close()
    print()
    print_table(bench.rows)
    result = {"started": started, "duration_s": time.time() - started, "quick": args.quick, "only": only,
              "runtimes": kinds, "machine": info, "loadavg_at_end": os.getloadavg(), "rows": bench.rows,
              "details": bench.details, "logs": str(bench.logs)}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print("\nJSON: %s   logs: %s" % (out, bench.logs))
    return 0 if all(r["ok"] is not False for r in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
