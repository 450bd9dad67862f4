"""Hostile terminal output: each stage holds what it keeps, not what came in.

A few bytes of escape sequences can ask a terminal for thousands of columns
(``ESC[99999C``) or rows (``ESC[999B``). The renderer caps columns at
``--max-columns`` and the run's output cap counts the rendered text it holds,
so peak memory stays under a stated bound whatever the runtime prints.
"""

import tracemalloc

from mrmd_monitor.output import RunOutput
from mrmd_monitor.terminal import DEFAULT_COLUMNS, TerminalRenderer

CAP = 2 * 1024 * 1024          # the default --max-output-bytes
# Everything the renderer and the cap hold, with room for the copies one
# step makes (one fed slice, the lines handed to the block): far below the
# ~150 MB (15 KB of input) and ~10 GB (1 MB) the unbounded renderer reached.
PEAK_BOUND = 24 * 1024 * 1024
EVENT = 4096                   # a runtime's stdout events are at most this long


def pty(text):
    """What a pty makes of text a program prints (``onlcr``)."""
    return text.replace("\n", "\r\n")


# print("\x1b[99999Cx\n" * 1500), as it reaches the monitor.
EXACT = pty("\x1b[99999Cx\n" * 1500 + "\n")


def one_mb(unit):
    return pty(unit * (1024 * 1024 // len(unit)))


def feed_events(out, data, bound=PEAK_BOUND):
    """Feed like the worker does (events of at most 4 KiB), watching memory:
    an unbounded renderer fails at the first events instead of swapping."""
    tracemalloc.start()
    try:
        for i in range(0, len(data), EVENT):
            out.feed(data[i:i + EVENT])
            if i % (64 * EVENT) == 0:
                out.take_changes()   # as the block is flushed meanwhile
            assert tracemalloc.get_traced_memory()[1] < bound, "renderer grew past the bound"
        out.take_changes()
        text = out.text()
        return tracemalloc.get_traced_memory()[1], text
    finally:
        tracemalloc.stop()


def feed_whole(out, data):
    """Feed at once, like a sync thread taking a full output buffer."""
    tracemalloc.start()
    try:
        out.feed(data)
        out.take_changes()
        text = out.text()
        return tracemalloc.get_traced_memory()[1], text
    finally:
        tracemalloc.stop()


def test_far_right_cursor_writes_nothing_past_the_edge():
    peak, text = feed_events(RunOutput(CAP), EXACT)
    # Each x lands past the last column: the user sees the 1500 lines empty.
    assert text == "\n" * 1501
    assert peak < 4 * 1024 * 1024


def test_one_megabyte_of_far_right_cursor_moves():
    data = one_mb("\x1b[99999Cx\n")
    lines = data.count("\n")
    peak, text = feed_events(RunOutput(CAP), data)
    assert text == "\n" * lines
    assert peak < PEAK_BOUND


def test_one_megabyte_of_far_right_cursor_moves_fed_at_once():
    data = one_mb("\x1b[99999Cx\n")
    peak, text = feed_whole(RunOutput(CAP), data)
    assert text == "\n" * data.count("\n")
    assert peak < PEAK_BOUND


def wide_line():
    return " " * 4000 + "x"


def check_capped(out, text, unit_line):
    assert out.capped
    lines = text.split("\n")
    notice = [i for i, line in enumerate(lines) if line.startswith("[mrmd-monitor: output over")]
    assert len(notice) == 1
    head, tail = lines[:notice[0]], lines[notice[0] + 1:]
    assert head and set(head) == {unit_line}
    assert tail[-1] == "" and set(tail[:-1]) == {unit_line}
    # The block holds the cap, not the 400 MB the input would draw.
    assert len(text.encode()) <= CAP + 200


def test_cap_counts_rendered_text_not_input():
    # 15 KB of input that draws 6 MB: over the cap although the input is not.
    data = pty("\x1b[4000Cx\n" * 1500)
    out = RunOutput(CAP)
    peak, text = feed_events(out, data)
    check_capped(out, text, wide_line())
    assert peak < PEAK_BOUND


def test_one_megabyte_of_wide_lines_fed_at_once():
    data = one_mb("\x1b[4000Cx\n")      # would draw ~400 MB
    out = RunOutput(CAP)
    peak, text = feed_whole(out, data)
    check_capped(out, text, wide_line())
    shown = len(text.split("\n")) - 1     # all but the notice
    assert "; %d lines" % (data.count("\n") + 1 - shown) in text
    assert peak < PEAK_BOUND


def test_one_megabyte_of_wide_non_ascii_lines():
    data = one_mb("\x1b[4000C\u00e9\n")   # 2-byte characters after the padding
    out = RunOutput(CAP)
    peak, text = feed_events(out, data)
    check_capped(out, text, " " * 4000 + "\u00e9")
    assert peak < PEAK_BOUND


def test_one_megabyte_of_downward_moves():
    data = one_mb("\x1b[999B")          # 24 new rows per 6 bytes: 4 million rows
    out = RunOutput(CAP)
    peak, text = feed_whole(out, data)
    assert out.capped and len(text.encode()) <= CAP + 200
    tail = text.split("the latest output follows]")[1]
    assert tail == "\n" * len(tail) and 32 * 1024 < len(tail) <= 64 * 1024 + 1
    # The cap holds two million empty rows here, 8 bytes of list entry each,
    # and the block's lines are copied once when handed over (and once more
    # by this test's text()): a bound of its own, still proportional to the cap.
    assert peak < 32 * CAP


def test_columns_are_capped_for_tabs_padding_and_moves():
    r = TerminalRenderer()
    r.feed("\t" * 10_000 + "T\r\n")
    r.feed("\x1b[5000G" + "g\r\n")
    r.feed("\x1b[4090C" + "abcdefghij\r\n")
    r.feed("y" * 10_000 + "\x1b[1K\r\n")
    r.feed("\x1b[999999999C" * 10_000 + "\rok")
    lines = r.lines()
    assert max(map(len, lines)) == DEFAULT_COLUMNS == 4096
    assert lines == [" " * 4096, "", " " * 4090 + "abcdef", " " * 4096, "ok"]
    assert r.size == len(r.text().encode())


def test_max_columns_is_configurable():
    out = RunOutput(CAP, max_columns=80)
    out.feed(pty("\t" * 100 + "\n" + "z" * 100 + "\n"))
    assert out.text() == " " * 80 + "\n" + "z" * 80 + "\n"


def test_cursor_up_and_restore_reach_only_the_screen():
    # Below the cap, 200,000 lines; then moves to the top of the output before
    # every write. Were they to reach it, every flush would hand over (and the
    # block rewrite) the 200,000 lines below the cursor.
    r = TerminalRenderer()
    r.feed("\x1b7" + "line\r\n" * 200_000)
    r.take_changes()
    for sequence, mark in (("\x1b[999999999A", "X"), ("\x1b[999999999F", "Y"), ("\x1b8", "Z")):
        r.feed(sequence + mark)
        first, lines = r.take_changes()
        assert first == r.line_count - 24 and len(lines) == 24
        assert lines[0] == mark + "ine"
    assert r.lines()[0] == "line"
