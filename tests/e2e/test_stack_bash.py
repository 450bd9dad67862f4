"""Bash cells on mrmd-bash 0.1.2 (issue 11 item 5), behind mrmd-sync.

mrmd-bash runs one interactive bash behind a pseudo-terminal. Between
commands its stream sometimes carries the shell's own prompt
(``root@host:DIR# ``, then ``\\r``), and the terminal echoes every line after
the first of a multi-line cell. Those are the runtime's, not ours: each cell
here is one line, and starts with ``sleep 0.5; echo`` to let the prompt come
and then end its line (without the pause it sometimes comes after the first
output and the first line overwrites it: ``line 1m:/tmp/...# ``), and
the tests check the lines the cell prints after it exactly (``_cell_lines``)."""

import re

import pytest

from tests.support.notebook import FINAL, block_content, cell, start_cell

pytestmark = pytest.mark.e2e


@pytest.fixture
def on_bash(module_mrmd_sync, bash_runtime, doc_name, peer_factory, monitor_factory):
    monitor = monitor_factory(module_mrmd_sync.url, doc_name)
    browser = peer_factory(module_mrmd_sync.url, doc_name)
    return monitor, browser, bash_runtime


#: mrmd-bash's shell prompt, e.g. "root@host:/tmp/work# "
PROMPT = re.compile(r"^\S+@\S+:.*[#$] ?$")


def _cell_lines(content, first):
    """The block's lines from ``first`` on; before it only the runtime's noise
    may stand (nothing, an empty line, its prompt line, the tail of its end marker or the
    head of its wrapper command), and after the cell's last line at most its prompt line
    again."""
    lines = content.split("\n")
    assert lines[-1] == "", "the block does not end with a whole line: %r" % content
    lines = lines[:-1]
    if lines and PROMPT.match(lines[-1]):
        lines = lines[:-1]
    assert first in lines, "%r is not a line of the block: %r" % (first, content)
    i = lines.index(first)
    noise = lines[:i]
    assert len(noise) <= 2 and all(l == "" or PROMPT.match(l) or _marker_tail(l) or _wrapper_head(l)
                                   for l in noise), content
    return lines[i:]


#: mrmd-bash's markers, as its shell prints them: ``__MRMD_END_MARKER___<ns>``.
_MARKER_TAIL = re.compile(r"([A-Z_]*)(\d*)")


def _marker_tail(line):
    """True for the tail of one of mrmd-bash's marker lines: it filters its markers per
    4096-byte read, so a marker cut between two reads leaks what follows the cut as a line
    of its own ("740269499193", or "D_END_MARKER___1795981174995768568")."""
    m = _MARKER_TAIL.fullmatch(line)
    return bool(line) and m is not None and any(
        (marker + "_").endswith(m.group(1)) for marker in ("__MRMD_END_MARKER__", "__MRMD_EXIT_CODE__"))


def _wrapper_head(line):
    """True for the head of mrmd-bash's echoed wrapper command (``__exit_code__=0; eval ...``)
    cut by the same 4096-byte reads: it drops echoed lines that start with ``__exit_code__=``,
    so a cut before the ``=`` leaks what came before it ("__exit_code_")."""
    return bool(line) and "__exit_code__=".startswith(line) and line != "__exit_code__="


def test_bash_cell_streams(on_bash):
    monitor, b, bash = on_bash
    code = "sleep 0.5; echo; for i in 1 2 3 4 5; do echo \"line $i\"; sleep 0.4; done"
    b.set_text(cell(code, "bash") + "\n\nAfter.\n")
    exec_id = start_cell(b, code, bash.url, prefix="bash", language="bash")
    # The first lines are in the document while the cell still runs.
    b.wait_text(lambda t: "line 2\n" in t, timeout=30)
    assert b.entry(exec_id)["status"] == "running"
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    text = b.text()
    assert _cell_lines(block_content(text, exec_id), "line 1") == ["line %d" % i for i in range(1, 6)]
    assert text.endswith("```\n\nAfter.\n")


def test_failing_bash_command_ends_in_error_with_its_status(on_bash):
    monitor, b, bash = on_bash
    code = "sleep 0.5; echo; echo before; ls /nonexistent-mrmd-dir"
    b.set_text(cell(code, "bash") + "\n")
    exec_id = start_cell(b, code, bash.url, prefix="bash", language="bash")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "error"
    assert "code 2" in entry["error"]["message"]          # ls's exit status
    lines = _cell_lines(block_content(b.text(), exec_id), "before")
    assert lines[1] == "ls: cannot access '/nonexistent-mrmd-dir': No such file or directory"
    assert any(entry["error"]["message"] in l for l in lines[2:]), lines


def test_bash_read_gets_its_stdin(on_bash):
    monitor, b, bash = on_bash
    code = "sleep 0.5; echo; read -p \"Your name: \" name; echo \"Hi $name\""
    b.set_text(cell(code, "bash") + "\n")
    exec_id = start_cell(b, code, bash.url, prefix="bash", language="bash")
    entry = b.wait_entry(exec_id, lambda e: e and e.get("stdinRequest"), timeout=30)
    assert entry["status"] == "running"
    b.answer_stdin(exec_id, "Ada")
    entry = b.wait_entry(exec_id, FINAL, timeout=30)
    assert entry["status"] == "completed"
    assert entry["stdinRequest"] is None
    assert _cell_lines(block_content(b.text(), exec_id), "Your name: Ada") == ["Your name: Ada",
                                                                        "Hi Ada"]
    assert "```stdin:" not in b.text()
