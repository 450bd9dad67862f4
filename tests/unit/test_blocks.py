"""Output blocks on a real pycrdt Text: placed after their cell, flushed with
small edits, found again after another peer's edit (non-ASCII everywhere)."""

import pytest
from pycrdt import Doc, Text

from mrmd_monitor.blocks import Blocks, YText
from mrmd_monitor.runs import Run

CELL = "# Titre é 😀\n\n```python\nprint('中')\n```\n\nFin ✓\n"


def setup():
    doc = Doc(client_id=1)
    text = doc.get("content", type=Text)
    text += CELL
    written = []
    blocks = Blocks(YText(doc, text), doc_name="d", on_written=written.append)
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


class Buffer:
    """A worker's output buffer (messages.OutputBuffer) as blocks see it."""

    def __init__(self, text, big=1000):
        self.text, self.big = text, big

    @property
    def held(self):
        return len(self.text)

    def take(self):
        text, self.text = self.text, ""
        return text


def test_flush_record_writes_a_burst_once_per_interval():
    doc, text, blocks, run, _ = setup()
    blocks.flush_interval = 0.5
    blocks.prepare(run)
    blocks.feed(run, "a\n", now=10.0)
    assert blocks.due("e1", 10.0)                  # after a quiet spell: at once
    assert blocks.flush(run, 10.0) == (0.0, False)
    blocks.feed(run, "b\n", now=10.1)
    blocks.ready(run, Buffer("c\n"), now=10.2)
    assert not blocks.due("e1", 10.4) and blocks.next_deadline(10.4) == pytest.approx(0.1)
    blocks.add_display(run, [{"mimeType": "text/plain", "data": "x"}, "not an item"], now=10.45)
    waited, display = blocks.flush(run, 10.5)
    assert waited == pytest.approx(0.4) and display and run.display == [{"mimeType": "text/plain", "data": "x"}]
    assert "```output:e1\na\nb\nc\n```" in str(text)
    assert not blocks.pending("e1") and blocks.next_deadline(11.0) is None
    blocks.set_awaiting_stdin("e1", True)
    assert blocks.state("e1").awaiting_stdin
    blocks.forget("e1")
    assert not blocks.state("e1").awaiting_stdin  # a new record after forget
