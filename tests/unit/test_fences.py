"""Hostile: no output can end the editor's block early or swallow the next
cell, whatever its runs of backticks or tildes and wherever they sit in a
line. Checked through the editor's own parsers (tests/support/editor_parsers,
a port of mrmd-electron 0.5.4's, itself checked against the bundle)."""

from pycrdt import Doc, Text

from mrmd_monitor.blocks import Blocks, YText
from mrmd_monitor.document import fence_for, find_block
from mrmd_monitor.runs import Run
from tests.support.editor_parsers import (find_code_blocks, find_output_block,
                                          find_output_block_by_exec_id)

DOC = "# Titre é 😀\n\n```python\nprint('中')\n```\n\nEntre ✓\n\n```python\nsecond = 2\n```\n"

HOSTILE = [
    ["a ``` b", ""],
    ["```", ""],
    ["x", "````", "y ````` z", ""],
    ["ends with ```", "```python", "  ```", "~~~", "~~~~~ tilde", ""],
    ["`" * 40, "``", "`", "mid ``````````` run", ""],
    ["```output:e1", "```"],   # our own marker, then an unfinished last line
]


def setup(doc_text=DOC):
    doc = Doc(client_id=1)
    text = doc.get("content", type=Text)
    text += doc_text
    blocks = Blocks(YText(doc, text), doc_name="d")
    run = Run(exec_id="e1", runtime_url="http://127.0.0.1:9", session="s",
              code="print('中')", language="python", cell_id=None)
    return text, blocks, run


def assert_editor_reads(text, run):
    """What the editor's parsers see is what we wrote, and the next cell is intact."""
    s = str(text)
    block = find_output_block_by_exec_id(s, "e1")
    assert block is not None and block["content"] == run.content.text
    cells = find_code_blocks(s)
    assert [c["language"] for c in cells] == ["python", "output:e1", "python"]
    assert cells[1]["code"] == run.content.text
    assert cells[2]["code"] == "second = 2\n"
    first = cells[0]
    again = find_output_block(s, first["end"])
    assert again is not None and again["content"] == run.content.text
    assert s.endswith("\n\nEntre ✓\n\n```python\nsecond = 2\n```\n")
    ours = find_block(s, "e1")
    assert s[ours.content_start:ours.content_end] == run.content.text


def test_fence_for_is_longer_than_any_run():
    assert fence_for(["plain", "``"]) == 3
    assert fence_for(["a ``` b"]) == 4
    assert fence_for(["x", "`" * 9 + "y"]) == 10


def test_each_hostile_output_in_one_write():
    for lines in HOSTILE:
        text, blocks, run = setup()
        blocks.prepare(run)
        blocks.write(run, 0, lines)
        assert_editor_reads(text, run)


def test_fence_grows_mid_run_and_a_re_run_leaves_nothing_behind():
    text, blocks, run = setup()
    blocks.prepare(run)
    n = 0
    for lines in HOSTILE:
        blocks.write(run, n, lines)
        n += len(lines) - 1
        assert_editor_reads(text, run)
    # A remote edit: positions are found again from the marker line.
    blocks.epoch += 1
    blocks.write(run, n, ["after ```` an edit", ""])
    assert_editor_reads(text, run)
    # A re-run: the block is emptied, no stray line stays between the cells.
    blocks.prepare(run)
    blocks.write(run, 0, ["clean", ""])
    assert_editor_reads(text, run)
    s = str(text)
    start = s.index("```python\nprint")
    fence = "`" * 41   # longer than the 40 backticks of the first run: kept, harmless
    assert s[start:s.index("Entre")] == \
        "```python\nprint('中')\n```\n\n%soutput:e1\nclean\n%s\n\n" % (fence, fence)


def test_editor_rerun_of_our_block_replaces_it_whole():
    """The editor's direct re-run replaces findOutputBlock's span: our block,
    whatever it holds, is that whole span."""
    text, blocks, run = setup()
    blocks.prepare(run)
    blocks.write(run, 0, ["a ``` b", "```", ""])
    s = str(text)
    cell_end = find_code_blocks(s)[0]["end"]
    old = find_output_block(s, cell_end)
    replaced = s[:old["start"]] + "```output:e2\nnew\n```" + s[old["end"]:]
    assert find_code_blocks(replaced)[2]["code"] == "second = 2\n"
    assert "a ``` b" not in replaced
