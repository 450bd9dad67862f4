"""Tests for mrmd_monitor.escapes: what the renderer's decoder recognises in
a raw stream, and the limits on it."""

import random

import pytest

from mrmd_monitor.escapes import (BS, CR, CSI, DROP, ESC2, INCOMPLETE, LONE_ESC, MAX_DIGITS,
                                  MAX_PENDING, OSC, SPECIAL, TAB, held, number, plain_ascii,
                                  short_lines)


@pytest.mark.parametrize("data, kind, text", [
    ("\x1b[12;3H", CSI, "\x1b[12;3H"),
    ("\x1b[?25lrest", CSI, "\x1b[?25l"),
    ("\x1b]0;title\x07rest", OSC, "\x1b]0;title\x07"),
    ("\x1b]0;title\x1b\\rest", OSC, "\x1b]0;title\x1b\\"),
    ("\x1b]0;cut\x1b[1m", OSC, "\x1b]0;cut"),   # a new sequence aborts the OSC
    ("\x1b7", ESC2, "\x1b7"),
    ("\x1b(B", ESC2, "\x1b(B"),
    ("\r\n", CR, "\r"),
    ("\x08", BS, "\x08"),
    ("\t", TAB, "\t"),
    ("\x1b", LONE_ESC, "\x1b"),
    ("\x1b\n", LONE_ESC, "\x1b"),
    ("\x00\x07\x7fz", DROP, "\x00\x07\x7f"),
])
def test_each_sequence_is_recognised_whole(data, kind, text):
    m = SPECIAL.match(data)
    assert (m.lastindex, m.group()) == (kind, text)


@pytest.mark.parametrize("cut", ["\x1b", "\x1b[", "\x1b[12;", "\x1b[1 ", "\x1b]0;ti", "\x1b]0;ti\x1b",
                                 "\x1b("])
def test_a_sequence_cut_by_the_end_of_a_chunk_is_incomplete(cut):
    assert INCOMPLETE.match(cut)


@pytest.mark.parametrize("whole", ["\x1bx", "\x1b\n"])
def test_an_escape_that_starts_nothing_is_not_incomplete(whole):
    assert not INCOMPLETE.match(whole)


def test_what_is_held_of_a_cut_sequence_is_bounded():
    assert held("\x1b[12;") == "\x1b[12;"
    assert held("\x1b]0;" + "t" * 10_000) == "\x1b]"
    assert held("\x1b]0;title\x1b") == "\x1b]\x1b"
    assert held("\x1b[" + "1;" * MAX_PENDING) == ""


@pytest.mark.parametrize("param, value", [("", 0), ("7", 7), ("x", 0), ("9" * 5000, 10 ** MAX_DIGITS)])
def test_a_parameter_is_a_small_number(param, value):
    assert number(param) == value


@pytest.mark.parametrize("text, plain", [("a b\nc\n", True), ("a\rb", False), ("a\x1b[m", False),
                                         ("\x7f", False), ("é", False), ("", True)])
def test_plain_ascii_is_lines_of_printable_ascii(text, plain):
    assert plain_ascii(text) is plain


def test_short_lines_never_misses_a_long_line():
    """The search that spares measuring every line: seeded random lines around
    the limit; when it says "short", every line is within the limit."""
    rnd = random.Random(5)
    for _ in range(300):
        limit = rnd.choice((128, 129, 200, 4096))
        lines = ["x" * rnd.choice((0, 1, limit // 2 - 1, limit // 2, limit - 1, limit, limit + 1,
                                   2 * limit)) for _ in range(rnd.randint(1, 40))]
        text = "\n".join(lines)
        longest = max(map(len, lines))
        if short_lines(text, limit):
            assert longest <= limit
        elif longest < limit // 2 - 1:
            raise AssertionError("short lines reported as maybe long")
