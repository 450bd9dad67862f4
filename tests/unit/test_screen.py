"""Tests for mrmd_monitor.screen: the lines and the cursor, driven directly
(the decoder that maps a stream onto these operations is test_terminal.py)."""

import pytest

from mrmd_monitor.screen import SCREEN_ROWS, Screen
from mrmd_monitor.styles import sgr


def lines_of(*texts, **kwargs):
    screen = Screen(**kwargs)
    for i, text in enumerate(texts):
        if i:
            screen.newline()
        screen.write(text)
    return screen


def assert_size(screen):
    assert screen.size == len(screen.text().encode("utf-8"))


def test_a_new_screen_is_one_empty_line_with_nothing_changed():
    screen = Screen()
    assert screen.lines() == [""]
    assert screen.size == 0
    assert screen.take_changes() is None


@pytest.mark.parametrize("kwargs", [{"tab_size": 0}, {"max_columns": 0}])
def test_sizes_below_one_are_refused(kwargs):
    with pytest.raises(ValueError):
        Screen(**kwargs)


def test_write_overwrites_from_the_cursor_and_pads_past_the_end():
    screen = lines_of("hello")
    screen.back(5)
    screen.write("J")
    screen.forward(6)
    screen.write("é")
    assert screen.lines() == ["Jello  é"]
    assert_size(screen)


def test_a_line_is_cut_at_max_columns_but_the_cursor_goes_on():
    screen = Screen(max_columns=4)
    screen.write("abcdefgh")
    screen.back(6)
    screen.write("X")
    assert screen.lines() == ["abXd"]
    screen.tab()
    assert screen.lines() == ["abXd"]   # a tab never extends a line past the edge


def test_redraw_leaves_the_last_text_then_what_longer_ones_left():
    screen = Screen()
    screen.redraw(["abcdef", "xyz", "12"])
    assert screen.lines() == ["12zdef"]
    screen.write("!")
    assert screen.lines() == ["12!def"]


def test_write_parts_overwrites_lines_below_the_cursor_then_appends():
    screen = lines_of("one", "two", "three")
    screen.up(2)
    screen.to_column(1)
    screen.write_lines("ONE\nTWO\nTHREE\nfour")
    assert screen.lines() == ["ONE", "TWO", "THREE", "four"]
    assert screen.cursor_row == 3
    assert_size(screen)


def test_upward_moves_stop_at_the_top_of_the_screen():
    screen = lines_of(*[str(i) for i in range(40)])
    screen.up(10 ** 9)
    assert screen.cursor_row == 40 - SCREEN_ROWS
    screen.previous_line(1)
    assert screen.cursor_row == 40 - SCREEN_ROWS


def test_a_downward_move_creates_at_most_a_screen_of_lines():
    screen = Screen()
    screen.down(10 ** 9)
    assert screen.line_count == SCREEN_ROWS + 1
    screen.next_line(3)
    assert screen.cursor_row == SCREEN_ROWS + 3


def test_position_is_relative_to_the_screen_and_clamped():
    screen = lines_of(*[str(i) for i in range(30)])
    screen.position(1, 2)
    screen.write("X")
    assert screen.lines()[30 - SCREEN_ROWS] == "6X"
    screen.position(10 ** 9, 1)
    assert screen.cursor_row == 29


def test_restore_cursor_after_a_clear_lands_on_the_line_that_is_left():
    screen = lines_of("a", "b", "c")
    screen.save_cursor()
    screen.erase_display(2)
    assert screen.lines() == [""]
    screen.restore_cursor()
    screen.write("x")
    assert screen.lines() == [" x"]


@pytest.mark.parametrize("mode, expected", [(0, "ab"), (1, "   d"), (2, ""), (7, "abcd")])
def test_erase_line(mode, expected):
    screen = lines_of("abcd")
    screen.back(2)
    screen.erase_line(mode)
    assert screen.lines() == [expected]
    assert_size(screen)


def test_erase_below_reports_a_shorter_tail():
    screen = lines_of("one", "two", "three")
    screen.take_changes()
    screen.up(1)
    screen.to_column(2)
    screen.erase_display(0)
    assert screen.take_changes() == (1, ["t"])
    assert screen.lines() == ["one", "t"]
    assert_size(screen)


def test_erase_above_leaves_the_scrollback():
    screen = lines_of(*[str(i) for i in range(30)])
    screen.erase_display(1)
    assert screen.lines()[:30 - SCREEN_ROWS] == [str(i) for i in range(30 - SCREEN_ROWS)]
    assert screen.lines()[30 - SCREEN_ROWS:] == [""] * (SCREEN_ROWS - 1) + ["  "]
    assert_size(screen)


def test_each_character_keeps_the_style_it_was_written_with():
    screen = Screen()
    screen.style = sgr(None, "1")
    screen.write("b")
    screen.style = None
    screen.write("n")
    assert screen.lines() == ["\x1b[1mb\x1b[0mn"]
    assert_size(screen)


def test_write_coloured_builds_what_writes_one_at_a_time_build():
    pieces = ["\x1b[32m001\x1b[0m ok", "plain", "\x1b[1mbold"]
    bulk = Screen()
    bulk.write_coloured(pieces)
    single = Screen()
    for i, piece in enumerate(pieces):
        if i:
            single.newline()
        for j, part in enumerate(piece.split("\x1b[")):
            if j:
                params, part = part.split("m", 1)
                single.style = sgr(single.style, params)
            single.write(part)
    assert bulk.lines() == single.lines()
    assert bulk.style == single.style
    assert_size(bulk)


def test_discard_head_keeps_the_cursor_and_the_saved_cursor_on_their_lines():
    screen = lines_of("a", "b", "c", "d")
    screen.up(1)
    screen.save_cursor()
    screen.take_changes()
    assert screen.discard_head(10) == ["a", "b"]   # never the cursor's line
    assert screen.lines() == ["c", "d"]
    screen.down(1)
    screen.restore_cursor()
    assert screen.cursor_row == 0
    assert_size(screen)


def test_trim_to_keeps_the_last_lines_and_says_what_went():
    screen = lines_of(*["x" * 9 for _ in range(50)])
    lines, freed = screen.trim_to(300, keep=10)
    assert screen.size <= 300
    assert (lines, freed) == (50 - screen.line_count, 10 * lines)
    assert screen.lines_within(10 ** 9) == screen.cursor_row


def test_trim_blank_end_keeps_one_empty_line():
    screen = lines_of("x", "", "", "")
    screen.trim_blank_end()
    assert screen.lines() == ["x", ""]
    assert screen.cursor_row == 1
