"""The real mrmd editor against the monitor, as a user drives it.

The editor is mrmd-electron 0.5.4's bundle in headless chromium
(tests/support/editor.py), wired in monitor mode as the app wires it. Each
test clicks, types and reads what the editor holds and shows: its text, its
output blocks where its own decorations put them, the colours and images it
renders, the statuses it sees and the collaborators it lists. On both sync
servers, with the real mrmd-python runtime.
"""

import difflib
import re

import pytest

from tests.support.stacks import SERVERS, on_stacks
from tests.support.waiting import wait_until

FINAL = ("completed", "error", "cancelled")
TITLE = "# Café 😀 中文\n\n"   # non-ASCII before every block


def _final(statuses, n):
    return len(statuses) == n and all(s in FINAL for s in statuses.values())


def _notebook(*cells, after="The end."):
    return TITLE + "".join("```python\n%s\n```\n\n" % code for code in cells) + after + "\n"


def _without_ids(text):
    return re.sub(r"(output|stdin):[\w.-]+", r"\1:ID", text)


@pytest.fixture
def user(stack, doc_name, editor, monitor_factory):
    """A tab of the editor in monitor mode on a fresh document, a monitor on it."""
    monitor_factory(stack.server.url, doc_name)
    return editor(stack.server.url, doc_name, stack.runtime.url)


@on_stacks(SERVERS)
def test_a_cell_run_with_its_button(stack, user):
    user.set_text(_notebook('print("hello from the editor")'))
    user.run(0)
    statuses = user.wait_statuses(lambda s: _final(s, 1))
    assert list(statuses.values()) == ["completed"]
    [block] = user.wait_blocks(lambda b: len(b) == 1 and b[0].lines)
    assert block.lines == ["hello from the editor"]
    assert block.exec_id in statuses
    text = user.text()
    assert text.startswith(TITLE) and text.endswith("The end.\n")
    idle = [{"index": 0, "run": True, "stop": False, "running": False, "queued": False}]
    wait_until(lambda: user.cells() == idle, timeout=10, message="the cell never showed its Run button again")


@on_stacks(SERVERS)
def test_run_all_carries_state_between_cells(stack, user):
    user.set_text(_notebook('x_all = 20\nprint("x", x_all)', 'y_all = x_all + 1\nprint("y", y_all)',
                            'print("x*y", x_all * y_all)'))
    user.run_all()
    statuses = user.wait_statuses(lambda s: _final(s, 3), timeout=45)
    assert sorted(statuses.values()) == ["completed"] * 3
    blocks = user.wait_blocks(lambda b: len(b) == 3 and all(x.lines for x in b))
    assert [b.lines for b in blocks] == [["x 20"], ["y 21"], ["x*y 420"]]


@on_stacks(SERVERS)
def test_closing_the_tab_mid_run_and_reopening_shows_the_whole_output(stack, doc_name, editor, monitor_factory):
    monitor_factory(stack.server.url, doc_name)
    first = editor(stack.server.url, doc_name, stack.runtime.url)
    first.set_text(_notebook('import time\nfor i in range(8):\n    print("tick", i, flush=True)\n'
                             '    time.sleep(0.4)\nprint("done")'))
    first.run(0)
    first.wait_text("tick 1")
    first.close()

    again = editor(stack.server.url, doc_name, stack.runtime.url)
    expected = ["tick %d" % i for i in range(8)] + ["done"]
    [block] = again.wait_blocks(lambda b: len(b) == 1 and b[0].lines == expected, timeout=30)
    assert again.statuses() == {block.exec_id: "completed"}
    assert again.text().endswith("```\n\nThe end.\n")


@on_stacks(SERVERS)
def test_input_answered_in_the_editors_stdin_block(stack, user):
    user.set_text(_notebook('name = input("Your name? ")\nprint("Hi", name)'))
    user.run(0)
    user.answer_stdin("Ada")
    [block] = user.wait_blocks(lambda b: len(b) == 1 and "Hi Ada" in b[0].lines, timeout=30)
    assert block.lines == ["Your name? Ada", "Hi Ada"]
    assert user.wait_statuses(lambda s: _final(s, 1)) == {block.exec_id: "completed"}
    assert "stdin:" not in user.text()


@on_stacks(SERVERS)
def test_stop_button_cancels_and_the_next_cell_runs(stack, doc_name, editor, monitor_factory):
    # mrmd-python keeps running a cancelled loop (NOTES.md): a runtime of the test's own.
    runtime = stack.new_runtime()
    monitor_factory(stack.server.url, doc_name)
    user = editor(stack.server.url, doc_name, runtime.url)
    user.set_text(_notebook('import time\nfor i in range(600):\n    print("loop", i, flush=True)\n'
                            '    time.sleep(0.1)', 'print("after the stop")'))
    user.run(0)
    user.wait_text("loop 2")
    user.stop(0)
    [cancelled] = user.wait_statuses(lambda s: list(s.values()) == ["cancelled"]).keys()
    wait_until(lambda: user.cells()[0]["run"], timeout=10, message="cell 0 never showed its Run button again")
    shown = len(user.block(cancelled).lines)

    user.run(1)
    statuses = user.wait_statuses(lambda s: _final(s, 2))
    [after] = [k for k in statuses if k != cancelled]
    assert statuses[after] == "completed"
    block = user.wait_blocks(lambda b: any(x.exec_id == after and "after the stop" in x.lines for x in b))
    assert [x.exec_id for x in block] == [cancelled, after]
    # The loop prints ten lines a second: the cancelled block no longer follows it.
    assert len(block[0].lines) <= shown + 3


@on_stacks(SERVERS)
def test_colour_printed_red_shows_red(stack, user):
    user.set_text(_notebook(r'print("\033[31mred\033[0m and plain")'))
    user.run(0)
    user.wait_statuses(lambda s: _final(s, 1))
    [block] = user.wait_blocks(lambda b: len(b) == 1 and b[0].lines, timeout=10)
    assert block.lines == ["red and plain"]
    colours = block.colours_of("red")
    assert colours, "no coloured span in %r" % (block,)
    r, g, b = (int(v) for v in re.findall(r"\d+", colours[0])[:3])
    assert r >= 120 and r > 1.5 * g and r > 1.5 * b, "%s is not red" % colours[0]
    assert not block.colours_of("and plain")


@on_stacks(SERVERS)
def test_backticks_in_output_are_rendered_whole_and_a_rerun_leaves_no_stray_lines(stack, user):
    user.set_text(_notebook('print("a ``` b")\nprint("````")\nprint("~~~")', 'print("next cell")'))
    user.run(0)
    user.wait_statuses(lambda s: _final(s, 1))
    [block] = user.wait_blocks(lambda b: len(b) == 1 and b[0].lines, timeout=10)
    assert block.lines == ["a ``` b", "````", "~~~"]
    first = _without_ids(user.text())
    assert first.endswith('```python\nprint("next cell")\n```\n\nThe end.\n')
    assert len(user.cells()) == 2

    user.run(0)
    user.wait_statuses(lambda s: _final(s, 2))
    [block] = user.wait_blocks(lambda b: len(b) == 1 and b[0].lines, timeout=10)
    assert block.lines == ["a ``` b", "````", "~~~"]
    assert _without_ids(user.text()) == first
    assert len(user.cells()) == 2


@on_stacks(SERVERS)
def test_a_plot_shows_as_an_image_after_the_block(stack, doc_name, editor, monitor_factory, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    monitor_factory(stack.server.url, doc_name, extra_args=["--project-root", str(project)])
    user = editor(stack.server.url, doc_name, stack.runtime.url, project_root=project)
    user.set_text(_notebook('import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()'))
    user.run(0)
    user.wait_statuses(lambda s: _final(s, 1), timeout=60)
    [block] = user.wait_blocks(lambda b: len(b) == 1 and any(i["loaded"] for i in b[0].images_after), timeout=20,
                               message="no image shown after the block")
    text = user.text()
    [path] = re.findall(r"\n!\[plot-1\]\(([^)]+)\)\n", text)
    assert (project / path).is_file() and path.startswith("_assets/generated/")


@on_stacks(SERVERS)
def test_presence_the_editor_sees_the_monitor(stack, user):
    wait_until(user.monitor_available, timeout=10,
               message="the editor's execution.isMonitorAvailable() stayed false")
    others = wait_until(lambda: [c for c in user.collaborators() if not c["self"]], timeout=10,
                        message="the editor's collaborator list shows no one but the user")
    assert [(c["name"], c["type"]) for c in others] == [("mrmd-monitor", "monitor")]


PARITY_CELLS = (
    'print("plain")',
    'print("line one")\nprint()\nprint("after a blank line")',
    r'print("\033[32mgreen\033[0m and \033[1;31mbold red\033[0m")',
    'print("50%", end="\\r")\nprint("100%")',
    'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()',
)


def _comparable(text):
    """A notebook's text with what differs by nature between two runs made the same:
    execution ids and generated asset names; and the one difference we keep on
    purpose: the editor's first run leaves an extra blank line after its image lines
    (and its re-run takes it away again), the monitor keeps the blank lines as they were."""
    text = _without_ids(text)
    text = re.sub(r"(!\[plot-\d+\]\([^)\n]*\)\n)\n{2,}", r"\1\n", text)
    return re.sub(r"_assets/generated/[^)\s]+", "_assets/generated/NAME", text)


def _run_notebook(tab, n_cells):
    """Run every cell with Ctrl+Shift+Enter and wait until the editor shows them done."""
    tab.set_text(_notebook(*PARITY_CELLS))
    tab.run_all()

    def done(blocks):
        cells = tab.cells()
        return (len(blocks) == n_cells and len(cells) == n_cells
                and all(c["run"] and not (c["running"] or c["queued"]) for c in cells))

    tab.wait_blocks(done, timeout=60, message="the notebook did not finish")
    return tab.wait_blocks(lambda b: any(i["loaded"] for i in b[-1].images_after), timeout=10,
                           message="no plot shown after the last block")


@on_stacks(SERVERS[:1])
def test_parity_a_notebook_reads_the_same_run_directly_or_through_the_monitor(
        stack, doc_name, editor, monitor_factory, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    direct = editor(stack.server.url, doc_name + "-direct", stack.runtime.url, monitor=False, project_root=project)
    _run_notebook(direct, len(PARITY_CELLS))
    expected = _comparable(direct.text())

    monitor_factory(stack.server.url, doc_name, extra_args=["--project-root", str(project)])
    through = editor(stack.server.url, doc_name, stack.runtime.url, project_root=project)
    _run_notebook(through, len(PARITY_CELLS))
    through.wait_statuses(lambda s: _final(s, len(PARITY_CELLS)))
    try:
        through.wait_text(lambda t: _comparable(t) == expected, timeout=5)
    except AssertionError:
        diff = difflib.unified_diff(expected.splitlines(True), _comparable(through.text()).splitlines(True),
                                    "run by the editor", "run by the monitor")
        pytest.fail("the notebook differs:\n" + "".join(diff), pytrace=False)
