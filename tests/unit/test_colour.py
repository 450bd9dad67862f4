"""Colours as the editor keeps them: our renderer writes each line the way
the mrmd editor's own TerminalBuffer.toAnsi() does (checked against the real
one, run in node from npm mrmd-electron 0.5.4's bundle), while \\r, \\b,
cursor moves and erases still act and every other sequence is dropped."""

import json
import random
import subprocess
from pathlib import Path

import pytest

from mrmd_monitor.output import RunOutput
from mrmd_monitor.styles import sgr, transition
from mrmd_monitor.terminal import SGR, TerminalRenderer
from tests.unit.test_editor_parsers import BUNDLE
from tests.unit.test_terminal import IPYTHON_OLD_TRACEBACK, IPYTHON_TRACEBACK

HERE = Path(__file__).resolve().parent.parent

# Streams on which the editor's terminal and ours mean the same thing (no
# tabs at a line's end, no private modes, no screen-relative moves, no
# sequence cut between two chunks, which the editor prints as text: there the
# two models differ, and ours is the documented one).
STREAMS = [
    [IPYTHON_TRACEBACK], [IPYTHON_OLD_TRACEBACK],
    ["\x1b[31mred\x1b[39m plain\r\n"],
    ["\x1b[1;32mbold green\x1b[22m green\x1b[0m\r\n"],
    ["\x1b[2;3;4;7;9mall\x1b[23;24;27;29mdim\x1b[m\r\n"],
    ["\x1b[38;5;208morange\x1b[48;2;1;2;3m on rgb\x1b[49m\x1b[39m.\r\n"],
    ["\x1b[44m  \x1b[0m bg spaces\r\n"],
    ["\x1b[91mbright\x1b[101m both\x1b[0;97mwhite\r\n"],
    ["10%\r\x1b[32m20%\r\x1b[33m100%\x1b[0m done\r\n"],
    ["\x1b[31mabcdef\x1b[0m\x1b[3D\x1b[K!\r\n"],
    ["\x1b[31mabc\x1b[0m\x1b[2Dx\r\n"],
    ["\x1b[35mab\bc\x1b[0m\r\n"],
    ["\x1b[31mone\r\ntwo\r\n", "\x1b[2A\rONE\x1b[0m\x1b[2B\r\n"],
    ["\x1b[31m", "red 😀 é 中\x1b[0m\r\n"],
    ["a\x1b[5Cb\x1b[41mc\r\n"],
    ["\x1b[1;31mx\x1b[31my\x1b[1mz\r\n"],
    ["\x1b[31;1m\x1b[38;5;9mk\x1b[38;2;0;0;0mj\x1b[0m\r\n"],
    ["\x1b[32mkept\x1b[2Jafter clear\r\n"],
]


def ours(chunks):
    r = TerminalRenderer()
    for chunk in chunks:
        r.feed(chunk)
    lines = r.lines()
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines)


def test_our_lines_are_the_editors_to_ansi():
    assert Path(BUNDLE).is_file(), "no editor bundle at %s: run tests/setup.sh" % BUNDLE
    out = subprocess.run(["node", str(HERE / "support" / "editor_terminal.mjs"), BUNDLE],
                         input=json.dumps(STREAMS), capture_output=True, text=True,
                         timeout=60, check=True)
    for chunks, theirs in zip(STREAMS, json.loads(out.stdout)):
        assert ours(chunks) == theirs, chunks


def test_sgr_codes_and_transitions():
    red = sgr(None, "31")
    assert red == ((31,), None, 0)
    assert sgr(red, "0") is None and sgr(red, "") is None and sgr(red, "39") is None
    assert sgr(None, "1;22") is None
    assert sgr(None, "38;5") is None          # incomplete: ignored, as by the editor
    assert transition(red, None) == "\x1b[31m"
    assert transition(None, red) == "\x1b[0m"
    assert transition(sgr(None, "1;31"), red) == "\x1b[1m"
    assert transition(red, sgr(None, "1;31")) == "\x1b[0;31m"


@pytest.mark.parametrize("data", [
    "\x1b[>4;1mx",               # private: not SGR
    "\x1b[38:2::10:20:30mx",     # colon form: not read by the editor either
    "\x1b]0;title\x07\x1b[?25lx\x1b(B",
])
def test_what_is_not_sgr_is_still_dropped(data):
    assert ours([data]) == "x"


def test_size_and_changes_stay_exact_with_colours():
    """Seeded fuzz: coloured writes, moves and erases; the size is the UTF-8
    length of the text, and the changes rebuild the lines."""
    rnd = random.Random(17)
    pieces = ["\x1b[31m", "\x1b[0m", "\x1b[1;44m", "\x1b[38;5;200m", "\x1b[39m", "ab", "é中",
              "😀", "\r", "\n", "\r\n", "\b", "\x1b[K", "\x1b[1K", "\x1b[2K", "\x1b[3D",
              "\x1b[2C", "\x1b[A", "\x1b[B", "\x1b[J", "\x1b[1J", "\x1b[2J", "\t", "xyz" * 5]
    for _ in range(40):
        r = TerminalRenderer(max_columns=12)
        mirror = [""]
        for _ in range(60):
            r.feed(rnd.choice(pieces))
            assert r.size == len(r.text().encode("utf-8"))
            change = r.take_changes()
            if change is not None:
                first, tail = change
                mirror[first:] = tail
            assert mirror == r.lines()


def test_a_capped_output_counts_the_colour_codes():
    out = RunOutput(max_bytes=2000, tail_bytes=500)
    for i in range(400):
        out.feed("\x1b[3%dmline %d\x1b[0m\r\n" % (i % 8, i))
    assert out.capped
    assert len(out.text().encode()) < 2000 + 500 + 200
    assert "\x1b[3" in out.text()


def test_a_notice_is_written_in_the_default_style():
    r = TerminalRenderer()
    r.feed("\x1b[31mred, never reset\r\n")
    r.note("[mrmd-monitor: a notice]\r\n")
    r.feed("still red")
    assert r.lines() == ["\x1b[31mred, never reset\x1b[0m", "[mrmd-monitor: a notice]",
                         "\x1b[31mstill red\x1b[0m"]
    assert SGR.sub("", r.text()) == "red, never reset\n[mrmd-monitor: a notice]\nstill red"


def test_a_sequence_cut_between_chunks_still_sets_the_colour():
    assert ours(["\x1b[3", "1mcut\x1b", "[0m across chunks\r\n"]) == \
        "\x1b[31mcut\x1b[0m across chunks"


def test_a_line_of_many_colour_changes_is_written_back_once(monkeypatch):
    """Hostile: a colour change before every character. Each line is written
    back with its SGR once per read, not once per change (which made such a
    stream cost the square of its line length)."""
    import mrmd_monitor.styles as styles
    calls = []
    real = styles.render
    monkeypatch.setattr(styles, "render", lambda line, st: calls.append(1) or real(line, st))
    r = TerminalRenderer()
    r.feed("".join("\x1b[3%dmx" % (i % 8) for i in range(2000)) + "\r\nnext")
    assert r.size == len(r.text().encode())
    assert len(calls) == 2   # each of the two lines once
    # 2,000 changes and a reset; "next" is still in the last colour.
    assert r.text().count("\x1b[") == 2001 + 2


def test_coloured_lines_in_bulk_are_the_same_as_one_piece_at_a_time():
    """Seeded: a chunk of only text, SGR and newlines takes the bulk path;
    fed one character at a time it takes the general one. Same lines, same
    size, same changes."""
    rnd = random.Random(23)
    pieces = ["\x1b[31m", "\x1b[0m", "\x1b[1;44m", "\x1b[38;5;200m", "\x1b[39m", "\x1b[m",
              "\x1b[22;2m", "ab", "é中", "😀", " ", "\n", "\r\n", "xyz" * 7]
    for _ in range(300):
        data = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 40)))
        prefix = rnd.choice(["", "\x1b[32mstart", "plain\n", "\x1b[33m"])
        whole = TerminalRenderer(max_columns=16)
        whole.feed(prefix)
        whole.feed(data)
        one = TerminalRenderer(max_columns=16)
        mirror = [""]
        for ch in prefix + data:
            one.feed(ch)
            change = one.take_changes()
            if change is not None:
                mirror[change[0]:] = change[1]
        assert whole.lines() == one.lines() == mirror, repr(prefix + data)
        assert whole.size == len(whole.text().encode()), repr(prefix + data)
        whole.feed("!")
        one.feed("!")
        assert whole.lines() == one.lines(), repr(prefix + data)
