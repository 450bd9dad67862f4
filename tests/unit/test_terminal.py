"""Tests for mrmd_monitor.terminal: raw pty output to the text a person sees."""

import pytest

from mrmd_monitor.terminal import SCREEN_ROWS, SGR, TerminalRenderer


def render(data, **kwargs):
    r = TerminalRenderer(**kwargs)
    r.feed(data)
    return r


def render_text(data, **kwargs):
    return render(data, **kwargs).text()


# IPython 8 tracebacks (newer colour scheme, with the 30;43 highlight of the
# failing expression) and the older 0;31 scheme, as a pty delivers them.
IPYTHON_TRACEBACK = (
    "\x1b[31m---------------------------------------------------------------------------\x1b[39m\r\n"
    "\x1b[31mZeroDivisionError\x1b[39m                         Traceback (most recent call last)\r\n"
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[1]\x1b[39m\x1b[32m, line 1\x1b[39m\r\n"
    "\x1b[32m----> \x1b[39m\x1b[32m1\x1b[39m \x1b[30;43m1\x1b[39;49m\x1b[30;43m/\x1b[39;49m\x1b[30;43m0\x1b[39;49m\r\n"
    "\r\n"
    "\x1b[31mZeroDivisionError\x1b[39m: division by zero\r\n"
)
IPYTHON_TRACEBACK_TEXT = (
    "---------------------------------------------------------------------------\n"
    "ZeroDivisionError                         Traceback (most recent call last)\n"
    "Cell In[1], line 1\n"
    "----> 1 1/0\n"
    "\n"
    "ZeroDivisionError: division by zero\n"
)
IPYTHON_OLD_TRACEBACK = (
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\r\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)\r\n"
    "Cell \x1b[0;32mIn[1], line 1\x1b[0m\r\n"
    "\x1b[0;32m----> 1\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m\r\n"
    "\r\n"
    "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero\r\n"
)


# -- one rule at a time -------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    # newlines
    ("", ""),
    ("hi", "hi"),
    ("hi\n", "hi\n"),
    ("hi\r\nthere\r\n", "hi\nthere\n"),
    ("a\n\n\nb", "a\n\n\nb"),
    ("a\r\r\nb", "a\nb"),
    # \r returns without erasing
    ("10%\r20%\r100%\n", "100%\n"),
    ("abcdef\rXY", "XYcdef"),
    ("abc\r", "abc"),
    ("abc\r\r\rd", "dbc"),
    # \b moves back without erasing, not past column 0
    ("abc\b\bX", "aXc"),
    ("abc\b", "abc"),
    ("\b\bX", "X"),
    ("ab\b\b\b\bX", "Xb"),
    # \t to the next tab stop, padding only past the end of the line
    ("a\tb", "a       b"),
    ("\tb", "        b"),
    ("abcdefgh\tX", "abcdefgh        X"),
    ("a\t", "a       "),
    ("abcdefghij\r\tX", "abcdefghXj"),
    ("abcdefghijklmnopqr\r\t\tX", "abcdefghijklmnopXr"),
    # other C0 controls are dropped
    ("a\x07b", "ab"),
    ("a\x00\x01\x02\x0b\x0c\x0e\x0f\x1a\x1c\x1fb\x7f", "ab"),
    # SGR and other colour codes are dropped
    ("\x1b[31mred\x1b[39m", "\x1b[31mred\x1b[0m"),
    ("\x1b[30;43mx\x1b[39;49m", "\x1b[30;43mx\x1b[0m"),
    ("\x1b[1;38;5;208mbold\x1b[0m", "\x1b[1;38;5;208mbold\x1b[0m"),
    ("\x1b[38:2::10:20:30mtrue\x1b[m", "true"),
    # K: erase in line
    ("abcdef\x1b[3D\x1b[K", "abc"),
    ("abcdef\x1b[3D\x1b[0K", "abc"),
    ("abcdef\x1b[3D\x1b[1K", "    ef"),
    ("abc\x1b[5C\x1b[1K", "   "),
    ("abcdef\x1b[3D\x1b[2K", ""),
    ("abcdef\x1b[3D\x1b[2Kx", "   x"),
    ("abcdef\r\x1b[K", ""),
    ("abc\x1b[K", "abc"),
    ("abc\x1b[7K", "abc"),
    # J: erase in display
    ("abc\ndef\nghi\x1b[2A\x1b[1D\x1b[J", "ab"),
    ("abc\ndef\nghi\x1b[2A\x1b[0J", "abc"),
    ("abc\ndef\nghi\x1b[1A\x1b[1J", "\n   \nghi"),
    ("abc\ndef\nghi\x1b[1A\x1b[2D\x1b[1J", "\n  f\nghi"),
    ("abc\ndef\x1b[2Jx", "x"),
    ("abc\ndef\x1b[3Jx", "x"),
    ("abc\ndef\x1b[2J\x1b[3J", ""),
    ("abc\x1b[9J", "abc"),
    # A/B/C/D: relative moves
    ("one\ntwo\x1b[AX", "oneX\ntwo"),
    ("one\ntwo\x1b[1AX", "oneX\ntwo"),
    ("a\nb\nc\x1b[2A\rX", "X\nb\nc"),
    ("a\x1b[5AX", "aX"),
    ("a\x1b[BX", "a\n X"),
    ("a\x1b[2BX", "a\n\n X"),
    ("a\nb\nc\x1b[2A\x1b[BX", "a\nbX\nc"),
    ("a\x1b[3CX", "a   X"),
    ("abc\x1b[2DX", "aXc"),
    ("a\x1b[9DX", "X"),
    ("abc\x1b[0DX", "abX"),
    # E/F: next/previous line start
    ("ab\x1b[Ex", "ab\nx"),
    ("ab\x1b[2Ex", "ab\n\nx"),
    ("ab\ncd\x1b[Fx", "xb\ncd"),
    ("ab\x1b[5Fx", "xb"),
    # G: column, 1-based
    ("abcdef\x1b[3GX", "abXdef"),
    ("abc\x1b[GX", "Xbc"),
    ("abc\x1b[0GX", "Xbc"),
    ("abc\x1b[6GX", "abc  X"),
    # H/f: row;col on the virtual screen, 1-based, default 1
    ("abc\ndef\x1b[HX", "Xbc\ndef"),
    ("abc\ndef\x1b[;HX", "Xbc\ndef"),
    ("abc\ndef\x1b[2;2HX", "abc\ndXf"),
    ("abc\ndef\x1b[2;2fX", "abc\ndXf"),
    ("abc\ndef\x1b[2HX", "abc\nXef"),
    ("abc\ndef\x1b[;3HX", "abX\ndef"),
    ("abc\x1b[3;1HX", "abc\n\nX"),
    # private modes are dropped
    ("\x1b[?25lab\x1b[?25h", "ab"),
    ("\x1b[?2004hx\x1b[?1049l", "x"),
    ("\x1b[>4;1mx", "x"),
    # unknown finals and sequences with intermediates are dropped
    ("ab\x1b[2Pc", "abc"),
    ("ab\x1b[Sc\x1b[4Ld", "abcd"),
    ("\x1b[1 qx", "x"),
    ("\x1b[!px", "x"),
    # OSC, ended by BEL, by ST, or cut short by the next escape
    ("\x1b]0;title\x07ab", "ab"),
    ("\x1b]0;title\x1b\\ab", "ab"),
    ("\x1b]8;;https://example.org\x1b\\link\x1b]8;;\x1b\\", "link"),
    ("\x1b]0;t\x1b[31mab", "\x1b[31mab\x1b[0m"),
    ("\x1b]0;multi\nline\x07ok", "ok"),
    # two-character escapes
    ("\x1b=a\x1b>", "a"),
    ("\x1b(Ba\x1b)0", "a"),
    ("a\x1bcb", "ab"),
    ("a\x1b\\b", "ab"),
    ("ab\x1b7\ncd\x1b8X", "abX\ncd"),
    ("ab\x1b8X", "Xb"),
    ("a\nb\nc\x1b7\x1b[2J\x1b8x", " x"),
    # a stray ESC drops the byte after it, unless that is a control
    ("a\x1b\u00e9b", "ab"),
    ("a\x1b[\u00e9b", "a\u00e9b"),
    ("a\x1b\x7fb", "ab"),
    ("a\x1b\nb", "a\nb"),
    ("a\x1b\r\nb", "a\nb"),
    ("ab\x1b\rX", "Xb"),
    ("a\x1b\x1b[31mb", "a\x1b[31mb\x1b[0m"),
    # an unfinished sequence at the end of the stream shows nothing
    ("ab\x1b", "ab"),
    ("ab\x1b[", "ab"),
    ("ab\x1b[31;4", "ab"),
    ("ab\x1b]0;title", "ab"),
    ("ab\x1b(", "ab"),
])
def test_render(data, expected):
    assert render_text(data) == expected


@pytest.mark.parametrize("data, expected", [
    ("", [""]),
    ("hi", ["hi"]),
    ("hi\n", ["hi", ""]),
    ("hi\r\n", ["hi", ""]),
    ("\n", ["", ""]),
    ("a\nb", ["a", "b"]),
])
def test_lines(data, expected):
    r = render(data)
    assert r.lines() == expected
    assert r.line_count == len(expected)
    assert r.text() == "\n".join(expected)


def test_lines_is_a_copy():
    r = render("a\nb")
    r.lines().append("c")
    assert r.lines() == ["a", "b"]


@pytest.mark.parametrize("data, expected", [
    ("a\tb", "a   b"),
    ("abcd\tb", "abcd    b"),
    ("a\t\tb", "a       b"),
])
def test_tab_size(data, expected):
    assert render_text(data, tab_size=4) == expected


@pytest.mark.parametrize("kwargs", [{"tab_size": 0}, {"max_columns": 0}])
def test_rejects_nonsense_sizes(kwargs):
    with pytest.raises(ValueError):
        TerminalRenderer(**kwargs)


# -- the virtual screen ---------------------------------------------------------

def test_cursor_position_is_relative_to_the_last_screen_rows():
    r = render("".join(f"line{i}\n" for i in range(30)))
    assert r.line_count == 31
    top = r.line_count - SCREEN_ROWS
    r.feed("\x1b[1;1HX")
    assert r.lines()[top] == f"Xine{top}"
    r.feed("\x1b[24;3HY")
    assert r.lines()[-1] == "  Y"
    # rows past the screen clamp to its last row
    r.feed("\x1b[99;1HZ")
    assert r.lines()[-1] == "Z Y"
    assert r.line_count == 31


def test_cursor_position_on_a_short_output_creates_rows():
    r = render("a")
    r.feed("\x1b[99;1Hz")
    assert r.line_count == SCREEN_ROWS
    assert r.lines()[-1] == "z"


def test_huge_counts_neither_allocate_nor_raise():
    r = render("a\x1b[999999999Bb")
    assert r.line_count == SCREEN_ROWS + 1
    r = render("a\x1b[" + "9" * 5000 + "Cb\rX")
    assert r.lines() == ["X"]
    r = render("a\x1b[" + "9" * 5000 + ";" + "9" * 5000 + "Hb")
    assert r.line_count == SCREEN_ROWS
    assert r.lines()[-1] == ""


# -- chunk boundaries -----------------------------------------------------------

SPLIT_SAMPLES = [
    "\x1b[31mred\x1b[39m plain\r\n",
    "\x1b[30;43mx\x1b[39;49m\r\n",
    "10%\r20%\r\x1b[K100%\r\n",
    "abc\ndef\x1b[2;2HX\x1b[1A\x1b[2D\x1b[1J",
    "\x1b]0;title\x07a\x1b]8;;u\x1b\\b\x1b]0;t\x1b[1mc",
    "\x1b[?25lab\x1b[?25h\x1b7\r\nx\x1b8y\x1b(Bz",
    "a\x1b\u00e9b\x1b\nc\x1b[1 qd",
    "one\r\ntwo\r\n\x1b[2A\r\x1b[2KONE\x1b[2B\r\n",
    "\u65e5\u672c\x1b[32m\u8a9e\x1b[0m \U0001f389\r\n",
    IPYTHON_TRACEBACK,
]


@pytest.mark.parametrize("data", SPLIT_SAMPLES)
def test_split_at_every_position_renders_the_same(data):
    expected = render(data).lines()
    for i in range(len(data) + 1):
        r = TerminalRenderer()
        r.feed(data[:i])
        r.feed(data[i:])
        assert r.lines() == expected, f"split at {i}: {data[:i]!r} | {data[i:]!r}"


@pytest.mark.parametrize("data", SPLIT_SAMPLES)
def test_one_character_at_a_time_renders_the_same(data):
    expected = render(data).lines()
    r = TerminalRenderer()
    for ch in data:
        r.feed(ch)
    assert r.lines() == expected


@pytest.mark.parametrize("data", SPLIT_SAMPLES[:6])
def test_split_in_three_at_every_pair_of_positions(data):
    expected = render(data).lines()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            r = TerminalRenderer()
            r.feed(data[:i])
            r.feed(data[i:j])
            r.feed(data[j:])
            assert r.lines() == expected, (i, j)


def test_osc_body_across_many_chunks_is_dropped():
    r = TerminalRenderer()
    r.feed("ok\x1b]0;")
    for _ in range(100):
        r.feed("x" * 1000)
    r.feed("\x1b")
    r.feed("\\!")
    assert r.text() == "ok!"


def test_unfinished_sequence_that_never_ends_is_discarded():
    r = TerminalRenderer()
    r.feed("ok\x1b[" + "1" * 1000)
    r.feed("!")
    assert r.text() == "ok!"


# -- what IPython prints --------------------------------------------------------

@pytest.mark.parametrize("data", [IPYTHON_TRACEBACK, IPYTHON_OLD_TRACEBACK])
def test_ipython_traceback_keeps_only_its_colours(data):
    text = render_text(data)
    assert SGR.sub("", text) == IPYTHON_TRACEBACK_TEXT
    assert "\x1b" not in SGR.sub("", text)


def test_error_line_alone():
    text = render_text("\x1b[31mZeroDivisionError\x1b[39m: division by zero\r\n")
    assert text == "\x1b[31mZeroDivisionError\x1b[0m: division by zero\n"


# -- progress bars --------------------------------------------------------------

def test_progress_updates_collapse_to_one_line():
    r = TerminalRenderer()
    for i in range(10_000):
        r.feed(f"\r{i}%")
    assert r.lines() == ["9999%"]


def test_tqdm_style_bar_then_output():
    r = TerminalRenderer()
    for i in range(0, 101, 10):
        r.feed(f"\r{i:3d}%|{'#' * (i // 10):<10}| {i}/100")
    r.feed("\r\n")
    r.feed("done\r\n")
    assert r.lines() == ["100%|##########| 100/100", "done", ""]


def test_shorter_redraw_leaves_the_tail_unless_erased():
    assert render_text("100%\r99%") == "99%%"
    assert render_text("100%\r99%\x1b[K") == "99%"


def test_nested_bars_redrawn_with_cursor_up():
    r = TerminalRenderer()
    r.feed("outer 0\r\ninner 0\r\n")
    for i in range(1, 4):
        r.feed(f"\x1b[2A\router {i}\r\ninner {i}\r\n")
    assert r.lines() == ["outer 3", "inner 3", ""]


# -- take_changes ---------------------------------------------------------------

def test_take_changes_before_any_output_is_none():
    assert TerminalRenderer().take_changes() is None


def test_take_changes_first_call_reports_everything():
    r = render("a\nb")
    assert r.take_changes() == (0, ["a", "b"])
    assert r.take_changes() is None


def test_take_changes_append_to_last_line():
    r = render("x\ny\nz")
    r.take_changes()
    r.feed("w")
    assert r.take_changes() == (2, ["zw"])


def test_take_changes_new_line_only():
    r = render("a")
    r.take_changes()
    r.feed("\n")
    assert r.take_changes() == (1, [""])
    r.feed("b\nc")
    assert r.take_changes() == (1, ["b", "c"])


def test_take_changes_rewrite_of_an_earlier_line():
    r = render("l0\nl1\nl2\n")
    r.take_changes()
    r.feed("\x1b[2A\rX")
    assert r.take_changes() == (1, ["X1", "l2", ""])


def test_take_changes_ignores_identical_rewrites_and_moves():
    r = render("100%")
    r.take_changes()
    r.feed("\r100%")
    assert r.take_changes() is None
    r.feed("\x1b[A\x1b[3D\x1b[3C\x1b[K\x1b[31m\x1b[?25l\x1b]0;t\x07")
    assert r.take_changes() is None


def test_take_changes_after_lines_removed():
    r = render("a\nb\nc")
    r.take_changes()
    r.feed("\x1b[2A\x1b[J")
    assert r.lines() == ["a"]
    assert r.take_changes() == (1, [])
    r.feed("\x1b[2J")
    assert r.take_changes() == (0, [""])


def test_take_changes_reports_the_lowest_line_of_several():
    r = render("a\nb\nc\nd")
    r.take_changes()
    r.feed("\x1b[1A\rC\x1b[2A\rA\x1b[3B")
    assert r.take_changes() == (0, ["A", "b", "C", "d"])


@pytest.mark.parametrize("data", SPLIT_SAMPLES + [
    "a\nb\nc\x1b[2A\x1b[J\x1b[2Jx\ny",
    "".join(f"\r{i}%" for i in range(50)) + "\r\n",
])
def test_take_changes_keeps_a_mirror_in_step(data):
    """Applying each report to a copy reproduces lines() after every chunk."""
    for size in (1, 2, 3, 7):
        r = TerminalRenderer()
        mirror = [""]
        for i in range(0, len(data), size):
            r.feed(data[i:i + size])
            change = r.take_changes()
            if change is not None:
                first, tail = change
                assert first <= len(mirror)
                mirror[first:] = tail
            assert mirror == r.lines()


# -- text that is not ASCII -----------------------------------------------------

@pytest.mark.parametrize("data", [
    "h\u00e9llo w\u00f6rld \u00e7a va \u00f1",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 \u4e2d\u6587",
    "\U0001f389 \u2705 \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f44d\U0001f3fd",
    "e\u0301 combining, \u00a0nbsp, \u0085 C1, \u200b zero width",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
])
def test_non_ascii_passes_through(data):
    assert render_text(data + "\r\n" + data) == data + "\n" + data


def test_columns_count_code_points():
    assert render_text("\u65e5\u672c\u8a9e\rX") == "X\u672c\u8a9e"
    assert render_text("\U0001f389\U0001f389\bX") == "\U0001f389X"


# -- max_columns ----------------------------------------------------------------

@pytest.mark.parametrize("chunks, expected", [
    (["a" * 25 + "\nb"], ["a" * 10, "b"]),
    (["a" * 7, "a" * 7, "\n", "xyz"], ["a" * 10, "xyz"]),
    (["x" * 20 + "\n" + "y" * 20 + "\n"], ["x" * 10, "y" * 10, ""]),
    (["a" * 15 + "\rX"], ["X" + "a" * 9]),
    (["a" * 15 + "\x1b[3DX"], ["a" * 10]),
    (["abcdefghi\tX"], ["abcdefghi "]),
    (["\x1b[999999999Cx\rab"], ["ab"]),
    (["a" * 12 + "\x1b[20D" + "b" * 12], ["b" * 10]),
])
def test_max_columns_cuts_long_lines(chunks, expected):
    r = TerminalRenderer(max_columns=10)
    for chunk in chunks:
        r.feed(chunk)
    assert r.lines() == expected


def test_runaway_line_stays_bounded():
    r = TerminalRenderer(max_columns=1000)
    for _ in range(1000):
        r.feed("z" * 4096)
    r.feed("\r\nnext")
    assert r.lines() == ["z" * 1000, "next"]


# -- size: what the renderer holds ----------------------------------------------

SIZE_SAMPLES = SPLIT_SAMPLES + [
    "\u00e9t\u00e9\r\n\u65e5\u672c\u8a9e\r\x1b[K\U0001f389\r\n",
    "abc\ndef\nghi\x1b[1A\x1b[2D\x1b[1J\u00e9",
    "\u00e9\u00e9\u00e9\u00e9\x1b[2D\x1b[1K\x1b[2Cx\ty\x1b[0J",
    "a\nb\nc\x1b[2A\x1b[0Jz\x1b[2Jq\u00e9\t\u00e9",
    "\u00e9" * 30 + "\x1b[5D\u65e5\u65e5\x1b[H\x1b[3B\u00e9\x1b[2K",
]


@pytest.mark.parametrize("data", SIZE_SAMPLES)
def test_size_is_the_utf8_length_of_the_text_after_every_chunk(data):
    r = TerminalRenderer(max_columns=20)
    for i in range(len(data)):
        r.feed(data[i])
        assert r.size == len(r.text().encode("utf-8")), (i, r.lines())


def test_size_follows_discarded_and_trimmed_lines():
    r = render("\u00e9\u00e9\nbb\n\u65e5\ndd\ne")
    assert r.discard_head(1) == ["\u00e9\u00e9"]
    assert r.size == len(r.text().encode())
    assert r.trim_to(4, keep=1) == (2, 7)      # "bb\n", "日\n" go; "dd\ne" stays
    assert r.lines() == ["dd", "e"] and r.size == 4
    assert r.trim_to(0, keep=1) == (1, 3)      # never the cursor's line
    assert r.lines() == ["e"]


def test_trim_keeps_a_screen_for_cursor_moves():
    r = render("".join("%d\n" % i for i in range(100)))
    dropped, _ = r.trim_to(0)
    assert dropped == 101 - SCREEN_ROWS
    assert r.line_count == SCREEN_ROWS


def test_lines_within_counts_only_lines_above_the_cursor():
    r = render("aa\nbb\ncc")
    assert r.lines_within(3) == 1 and r.lines_within(6) == 2 and r.lines_within(100) == 2
    r.feed("\x1b[2A")
    assert r.lines_within(100) == 0


def test_erase_above_reaches_only_the_screen():
    r = render("".join("line%d\n" % i for i in range(40)) + "\x1b[1J")
    top = r.line_count - SCREEN_ROWS        # 41 lines: the screen is the last 24
    assert r.lines()[:top] == ["line%d" % i for i in range(top)]
    assert set(r.lines()[top:]) == {""}


# -- the bulk paths agree with character-by-character rendering -------------------

BULK_SAMPLES = [
    "plain\r\nlines\r\nonly\r\n",
    "lf\nonly\nlines\n",
    "mixed\r\nand\nlone\rcr\r\n",
    "nbsp\u00a0and\u2028separators\u200b\r\nnext\r\n",
    "c1\u0085kept\u009b31mtext\r\n",
    "\x1b[32mgreen\x1b[0m and \x1b[1;31mbold red\x1b[m\r\n\x1b[38;5;241mgrey\x1b[39m\r\n",
    "sgr\x1b[1mthen\x1b[?25lprivate\x1b[2Kerased\r\n",
    "esc\x1b\x1b[1mA\x1b(\x1b[1mB\x1b]0;t\x1b[1mc\r\n",
    "\u00e9t\u00e9\r\n\u65e5\u672c\x1b[1m\u8a9e\x1b[0m\r\n",
    "x" * 30 + "\r\n" + "y" * 30 + "\n",
]


@pytest.mark.parametrize("data", BULK_SAMPLES)
def test_bulk_rendering_equals_one_character_at_a_time(data):
    whole = TerminalRenderer(max_columns=20)
    whole.feed(data)
    single = TerminalRenderer(max_columns=20)
    for ch in data:
        single.feed(ch)
    assert whole.lines() == single.lines()
    assert whole.size == len(whole.text().encode())


def test_long_lines_in_a_big_chunk_are_cut_at_max_columns():
    r = TerminalRenderer(max_columns=100)
    r.feed(("a" * 30 + "\n") * 50 + "b" * 250 + "\n" + ("c" * 99 + "\n") * 5)
    lines = r.lines()
    assert lines[50] == "b" * 100 and lines[51:56] == ["c" * 99] * 5
    assert r.size == len(r.text().encode())
