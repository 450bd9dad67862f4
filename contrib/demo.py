"""The demo: a notebook author starts a long run, closes the browser, and
finds every line of output in the document when a browser comes back.

Brings up a real y-websocket server (npm), a real mrmd-python runtime and
mrmd-monitor, all on 127.0.0.1, drives the browsers with the real npm yjs
(tests/js/peer.mjs), prints the final markdown, and stops everything.
Run it through contrib/demo.sh, which installs what it needs.
"""

import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.peer import BrowserPeer  # noqa: E402
from tests.support.procs import MonitorProcess, Runtime, SyncServer  # noqa: E402
from tests.support.waiting import wait_until  # noqa: E402

CELLS = [
    "data = [n * n for n in range(1, 6)]\nprint('squares:', data)",
    "import sys, time\n"
    "for step in range(1, 31):\n"
    "    sys.stdout.write('\\rtraining %3d%%' % (step * 100 // 30)); sys.stdout.flush()\n"
    "    if step % 10 == 0:\n"
    "        print('\\nepoch', step // 10, 'loss', round(1 / step, 4))\n"
    "    time.sleep(0.2)\n"
    "print('done')",
    "print('sum of squares:', sum(data))",
]

NOTEBOOK = ("# Demo notebook ✓\n\nA long run that outlives its browser.\n\n"
            + "\n\n".join("```python\n%s\n```" % c for c in CELLS) + "\n")


def say(msg):
    print("[demo %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def main():
    work = Path(tempfile.mkdtemp(prefix="mrmd-demo-"))
    doc = "demo-notebook.md"
    procs = []
    try:
        server = SyncServer(log_path=work / "sync-server.log")
        procs.append(server)
        server.start()
        say("y-websocket server on %s" % server.url)
        runtime = Runtime(workdir=work / "runtime", log_path=work / "mrmd-python.log")
        procs.append(runtime)
        runtime.start()
        say("mrmd-python runtime on %s" % runtime.url)
        monitor = MonitorProcess(server.url, [doc], extra_args=["--log-level", "info"],
                                 log_path=work / "monitor.log")
        procs.append(monitor)
        monitor.start()
        say("mrmd-monitor ready (log: %s)" % (work / "monitor.log"))

        browser = BrowserPeer(server.url, doc, name="browser-a", log_path=work / "browser-a.log")
        procs.append(browser)
        browser.set_text(NOTEBOOK)
        ids = ["exec-%s-%d" % (uuid.uuid4().hex[:6], i + 1) for i in range(len(CELLS))]
        for exec_id, code in zip(ids, CELLS):
            browser.request(exec_id, code, runtime.url)
        say("browser A asked to run %d cells" % len(ids))
        browser.wait_entry(ids[1], "running", timeout=60)
        browser.wait_text("epoch 1", timeout=60)
        say("cell 2 is running and printing; browser A closes now")
        browser.close()

        monitor.wait_for_line("%s completed" % ids[-1], timeout=120)
        say("the monitor finished every cell while no browser was connected")
        late = BrowserPeer(server.url, doc, name="browser-b", log_path=work / "browser-b.log")
        procs.append(late)
        entries = {i: late.entry(i) for i in ids}
        for i in ids:
            say("%s: %s" % (i, entries[i]["status"]))
        print("\n----- the notebook as browser B sees it -----")
        print(late.text())
        print("----- end -----")
        ok = all(e["status"] == "completed" for e in entries.values())
        ok = ok and "sum of squares: 55" in late.text() and "epoch 3" in late.text()
        late.close()
        say("all output is there" if ok else "SOMETHING IS MISSING")
        return 0 if ok else 1
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
