"""The end of a run as the editor's own run writes it (mrmd-electron 0.5.4,
runCell): output with the empty lines at its end trimmed, then for an error
``\\n[Error: <message>]``, and a newline before the closing fence."""

from mrmd_monitor.document import BlockContent
from mrmd_monitor.output import RunOutput


def finished(data, err=None):
    """The block's content once the run is over."""
    out = RunOutput()
    out.feed(data)
    out.finish(err)
    content = BlockContent()
    content.apply(0, out.lines())
    return content.text


def editor(output, message=None):
    """What the editor writes: toAnsi() (trailing empty lines trimmed), the
    error text, then a newline if it does not end in one."""
    lines = output.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    text = "\n".join(lines)
    if message is not None:
        text += "\n[Error: %s]" % message
    if text and not text.endswith("\n"):
        text += "\n"
    return text


ZDE = {"type": "ZeroDivisionError", "message": "division by zero",
       "traceback": ["Traceback (most recent call last):", "  File x", "ZeroDivisionError: division by zero"]}


def test_trailing_empty_lines_are_trimmed():
    for data in ["a\n", "a\n\n\n", "a\r\n\r\n", "a", "", "\n\n"]:
        assert finished(data) == editor(data.replace("\r\n", "\n")), repr(data)


def test_error_after_output_that_printed_the_traceback():
    data = "x\nTraceback (most recent call last):\n\x1b[31mZeroDivisionError\x1b[39m: division by zero\n\n"
    assert finished(data, ZDE) == editor(
        "x\nTraceback (most recent call last):\n\x1b[31mZeroDivisionError\x1b[0m: division by zero",
        "division by zero")


def test_error_without_output_or_traceback_is_the_editors():
    err = {"type": "RuntimeUnavailable", "message": "cannot reach", "traceback": []}
    assert finished("", err) == editor("", "cannot reach") == "\n[Error: cannot reach]\n"
    assert finished("a", err) == editor("a", "cannot reach") == "a\n[Error: cannot reach]\n"


def test_a_traceback_the_runtime_did_not_print_is_kept_before_the_error_line():
    """Ours is better here: the editor shows only the message."""
    assert finished("partial", ZDE) == ("partial\nTraceback (most recent call last):\n  File x\n"
                                        "ZeroDivisionError: division by zero\n"
                                        "[Error: division by zero]\n")


def test_the_error_line_is_not_coloured_by_what_the_program_left_on():
    assert finished("\x1b[31mred", ZDE | {"traceback": []}) == \
        "\x1b[31mred\x1b[0m\n[Error: division by zero]\n"
