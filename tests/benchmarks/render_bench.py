"""Micro-benchmark of output rendering (issue 13 item 4): what rendering a
runtime's stdout costs per byte, next to the cheapest honest reference.

    .venv/bin/python tests/benchmarks/render_bench.py [--mb 4] [--repeats 3]

Each case feeds the same text in 4 KiB events (the size a runtime's stdout
events have) to the TerminalRenderer alone and to a run's RunOutput with the
default 2 MiB cap (which renders in slices and trims its tail), and reports
MB/s and the ratio to the reference: splitting each event into lines and
keeping them (what any line-oriented consumer must do at least). Short runs,
best of --repeats, interleaved so that a noisy machine affects all alike.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mrmd_monitor.output import RunOutput  # noqa: E402
from mrmd_monitor.terminal import TerminalRenderer  # noqa: E402

EVENT = 4096
CAP = 2 * 1024 * 1024


def plain(n_bytes):
    line = "%06d " + "x" * 93 + "\r\n"
    return "".join(line % i for i in range(n_bytes // 102))


def coloured(n_bytes):
    line = "\x1b[32m%06d\x1b[0m \x1b[1mINFO\x1b[0m " + "y" * 70 + "\r\n"
    return "".join(line % i for i in range(n_bytes // len(line % 0)))


def progress(n_bytes):
    step = "\r%3d%% |" + "#" * 40 + "|"
    return "".join(step % (i % 101) for i in range(n_bytes // len(step % 0))) + "\r\n"


def unicode_lines(n_bytes):
    line = "%06d \u00e9t\u00e9 \u65e5\u672c\u8a9e " + "z" * 80 + "\r\n"
    return "".join(line % i for i in range(n_bytes // len((line % 0).encode())))


CASES = {"plain lines": plain, "coloured lines": coloured, "progress bar": progress,
         "non-ASCII lines": unicode_lines}


def events(text):
    return [text[i:i + EVENT] for i in range(0, len(text), EVENT)]


def reference(chunks):
    kept = []
    for chunk in chunks:
        kept.extend(chunk.replace("\r\n", "\n").split("\n"))
    return kept


def renderer(chunks):
    r = TerminalRenderer()
    for chunk in chunks:
        r.feed(chunk)
    return r


def run_output(chunks):
    out = RunOutput(CAP)
    for i, chunk in enumerate(chunks):
        out.feed(chunk)
        if i % 64 == 0:          # the block is flushed now and then
            out.take_changes()
    out.take_changes()
    return out


CONSUMERS = {"reference (split lines)": reference, "TerminalRenderer": renderer,
             "RunOutput (2 MiB cap)": run_output}


def timed(fn, chunks):
    start = time.perf_counter()
    fn(chunks)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=4.0, help="output per case (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many (default 3)")
    args = parser.parse_args(argv)
    size = int(args.mb * 1024 * 1024)
    print("%-16s %-26s %9s %8s" % ("case", "consumer", "MB/s", "ratio"))
    for case, make in CASES.items():
        chunks = events(make(size))
        n = sum(len(c.encode()) for c in chunks) / 1e6
        best = {name: float("inf") for name in CONSUMERS}
        for _ in range(args.repeats):
            for name, fn in CONSUMERS.items():
                best[name] = min(best[name], timed(fn, chunks))
        ref = best["reference (split lines)"]
        for name in CONSUMERS:
            print("%-16s %-26s %9.1f %8.2f" % (case, name, n / best[name], best[name] / ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
