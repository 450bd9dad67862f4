"""Seeded fuzz of the output stages with hostile pieces (huge counts, cut
sequences, controls, wide and combining characters): whatever arrives, in
whatever chunks, the renderer holds at most max_columns per line, its size is
exact, chunking never changes the result, and the capped run output and the
worker's buffer stay within their bounds. Bounded in time by its sizes.

(A sequence still unfinished after 256 characters is dropped as garbage, so
chunking may change what follows one that long: pieces here stay shorter.)"""

import random

import pytest

from mrmd_monitor.output import PendingOutput, RunOutput
from mrmd_monitor.terminal import SGR, TerminalRenderer

PIECES = [
    "a", "xyz", "\u00e9", "\u65e5\u672c", "\U0001f389", "e\u0301", "\u00a0", "\u0085", "\u200b",
    "\r", "\n", "\r\n", "\t", "\b", "\x00", "\x07", "\x7f", "\x1b", "\x1b[", "\x1b]",
    "\x1b[1m", "\x1b[0m", "\x1b[38;5;241m", "\x1b[2K", "\x1b[1K", "\x1b[K", "\x1b[J", "\x1b[1J",
    "\x1b[2J", "\x1b[3A", "\x1b[999999999A", "\x1b[5B", "\x1b[999999999B", "\x1b[7C",
    "\x1b[99999C", "\x1b[999999999C", "\x1b[4D", "\x1b[99999G", "\x1b[H", "\x1b[5;9H",
    "\x1b[99999;99999H", "\x1b[2E", "\x1b[2F", "\x1b[" + "9" * 200 + "C", "\x1b[?25l",
    "\x1b[1 q", "\x1b]0;title\x07", "\x1b]8;;u\x1b\\", "\x1b7", "\x1b8", "\x1b(B", "\x1b\\",
    "\r 50% |#####|", "w" * 300,
]
COLUMNS = 40


def hostile(rng, n):
    return "".join(rng.choice(PIECES) for _ in range(n))


def chunks(rng, data):
    cuts = sorted(rng.sample(range(len(data) + 1), min(6, len(data) + 1)))
    out, prev = [], 0
    for cut in cuts + [len(data)]:
        out.append(data[prev:cut])
        prev = cut
    return out


@pytest.mark.parametrize("seed", range(4))
def test_renderer_invariants(seed):
    rng = random.Random(seed)
    for _ in range(1500):
        data = hostile(rng, rng.randint(1, 60))
        whole = TerminalRenderer(max_columns=COLUMNS)
        whole.feed(data)
        cut = TerminalRenderer(max_columns=COLUMNS)
        mirror = [""]
        for piece in chunks(rng, data):
            cut.feed(piece)
            change = cut.take_changes()
            if change is not None:
                mirror[change[0]:] = change[1]
        assert cut.lines() == whole.lines() == mirror, repr(data)
        # Colours (SGR) are kept, as the editor keeps them: they take no column.
        assert max(len(SGR.sub("", line)) for line in whole.lines()) <= COLUMNS, repr(data)
        assert "\x1b" not in SGR.sub("", whole.text()), repr(data)
        assert whole.size == len(whole.text().encode("utf-8")), repr(data)
        # Moves and erases reach at most a screen of rows per sequence.
        assert whole.line_count <= 1 + data.count("\n") + 24 * (data.count("\x1b") + 1)


@pytest.mark.parametrize("seed", range(3))
def test_capped_output_stays_within_its_cap(seed):
    rng = random.Random(100 + seed)
    out = RunOutput(max_bytes=8192, tail_bytes=2048, max_columns=COLUMNS)
    for _ in range(400):
        out.feed(hostile(rng, rng.randint(1, 400)))
        if rng.random() < 0.3:
            out.take_changes()
        # Head within the cap, the tail within twice its size between trims,
        # plus what the last rows the cursor can reach hold (24 of COLUMNS).
        assert out.renderer.size <= 2 * 2048 + 24 * (4 * COLUMNS + 1) + 4096 * 4 * COLUMNS // 9
    out.take_changes()
    assert len(out.text().encode()) <= 8192 + 200 + 24 * (4 * COLUMNS + 1)


@pytest.mark.parametrize("seed", range(3))
def test_pending_output_bounded_and_in_order(seed):
    rng = random.Random(200 + seed)
    pending = PendingOutput(limit=3000)
    sent = []
    for i in range(3000):
        text = "%06d %s\r\n" % (i, hostile(rng, rng.randint(0, 5)).replace("\n", ""))
        pending.add(text)
        sent.append(text)
        assert pending.held <= 3000 + len(text)
        if rng.random() < 0.01:
            taken = pending.take()
            if "[mrmd-monitor:" not in taken:
                assert taken == "".join(sent)
            else:
                assert taken.startswith(sent[0][:7])
                # The tail (half the limit) ends with the latest text.
                assert taken.endswith(sent[-1][-700:])
            sent = []
