"""Output blocks on a real pycrdt Text: placed after their cell, flushed with
small edits, found again after another peer's edit (non-ASCII everywhere)."""

from pycrdt import Doc, Text

from mrmd_monitor.blocks import Blocks
from mrmd_monitor.runs import Run

CELL = "# Titre é 😀\n\n```python\nprint('中')\n```\n\nFin ✓\n"


def setup():
    doc = Doc(client_id=1)
    text = doc.get("content", type=Text)
    text += CELL
    written = []
    blocks = Blocks(doc, text, doc_name="d", on_written=written.append)
    run = Run(exec_id="e1", runtime_url="http://127.0.0.1:9", session="s",
              code="print('中')", language="python", cell_id=None)
    return doc, text, blocks, run, written


def test_prepare_then_write_lines():
    doc, text, blocks, run, written = setup()
    blocks.prepare(run)
    assert str(text) == CELL.replace("```\n\nFin", "```\n\n```output:e1\n```\n\nFin")
    blocks.write(run, 0, ["中 1", ""])
    blocks.write(run, 1, ["😀 2", ""])
    assert "```output:e1\n中 1\n😀 2\n```\n\nFin ✓\n" in str(text)
    assert sum(written) == len("\n\n```output:e1\n```中 1\n😀 2\n".encode())


def test_position_survives_an_edit_by_another_peer():
    doc, text, blocks, run, _ = setup()
    blocks.prepare(run)
    blocks.write(run, 0, ["a", ""])
    other = Doc(client_id=2)
    other.apply_update(doc.get_update())
    other.get("content", type=Text).insert(0, "Préface 中文 ")
    doc.apply_update(other.get_update(doc.get_state()))
    blocks.epoch += 1          # what the sync thread does for a remote edit
    blocks.write(run, 1, ["b", ""])
    assert str(text).startswith("Préface 中文 # Titre")
    assert "```output:e1\na\nb\n```" in str(text)


def test_a_re_run_empties_the_reused_block():
    doc, text, blocks, run, _ = setup()
    blocks.prepare(run)
    blocks.write(run, 0, ["old output", ""])
    blocks.prepare(run)
    assert "```output:e1\n```" in str(text) and "old output" not in str(text)
