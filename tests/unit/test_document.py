from pycrdt import Doc, Text

from mrmd_monitor.document import (FENCE_ESCAPE, BlockContent, byte_offset, content_edit,
                                   escape_line, find_block, find_cell, place_block,
                                   rewrite_edit)

NOTEBOOK = "# Title ✓ 😀 é 中\n\n```python\nprint('hi')\n```\n\nAfter.\n"


def apply(text, edit):
    """Apply an Edit to a real pycrdt Text, as the coordinator does."""
    doc = Doc()
    t = doc.get("content", type=Text)
    t += text
    if edit.delete:
        del t[edit.at:edit.at + edit.delete]
    if edit.insert:
        t.insert(edit.at, edit.insert)
    return str(t)


def test_byte_offset_counts_utf8():
    s = "a😀é中b"
    assert byte_offset(s, 1) == 1
    assert byte_offset(s, 2) == 5
    assert byte_offset(s, 3) == 7
    assert byte_offset(s, 4) == 10


def test_find_block_empty_and_filled():
    text = "x\n```output:e1\n```\ny"
    b = find_block(text, "e1")
    assert b.content_start == b.content_end == text.index("```\ny")
    assert b.closed and text[b.end:] == "\ny"
    text = "x\n```output:e1\nhello\nworld\n```\ny"
    b = find_block(text, "e1")
    assert text[b.content_start:b.content_end] == "hello\nworld\n"


def test_find_block_needs_exact_id_at_line_start():
    text = "see ```output:e1 inline\n```output:e10\nA\n```\n```output:e1\nB\n```\n"
    b = find_block(text, "e1")
    assert text[b.content_start:b.content_end] == "B\n"
    assert find_block(text, "e2") is None


def test_find_block_unclosed():
    text = "```output:e1\nabc"
    b = find_block(text, "e1")
    assert not b.closed and text[b.content_start:b.content_end] == "abc"


def test_escaped_fence_lines_do_not_close_block():
    assert escape_line("```") == FENCE_ESCAPE + "```"
    assert escape_line("  ~~~~ x") == FENCE_ESCAPE + "  ~~~~ x"
    assert escape_line("text ```") == "text ```"
    text = "```output:e1\n" + escape_line("```") + "\nafter\n```\ntail"
    b = find_block(text, "e1")
    assert text[b.end:] == "\ntail"


def test_find_cell_by_code_and_by_id():
    text = "```python\na = 1\n```\n\n```python {#cell-7}\nb = 2\n```\n"
    c = find_cell(text, "a = 1", "python")
    assert text[c.start:c.end] == "```python\na = 1\n```"
    c = find_cell(text, "other", "python", cell_id="cell-7")
    assert text[c.start:c.end] == "```python {#cell-7}\nb = 2\n```"
    assert find_cell(text, "zzz", "python") is None
    # Output blocks are never cells, even when their content matches.
    assert find_cell("```output:x\na = 1\n```\n", "a = 1", "") is None


def test_place_block_after_cell_with_non_ascii_before():
    cell = find_cell(NOTEBOOK, "print('hi')", "python")
    edit, content_at = place_block(NOTEBOOK, "e1", cell)
    out = apply(NOTEBOOK, edit)
    assert out == ("# Title ✓ 😀 é 中\n\n```python\nprint('hi')\n```\n\n```output:e1\n```"
                   "\n\nAfter.\n")
    assert out[content_at:].startswith("```\n\nAfter")


def test_place_block_replaces_previous_output_block():
    text = NOTEBOOK.replace("```\n\nAfter", "```\n\n```output:old\nold line\n```\n\nAfter")
    cell = find_cell(text, "print('hi')", "python")
    edit, _ = place_block(text, "new", cell)
    out = apply(text, edit)
    assert out.count("```output:") == 1
    assert "```output:new\n```\n\nAfter." in out and "old line" not in out


def test_place_block_without_cell_goes_at_end():
    edit, _ = place_block("para", "e1", None)
    assert apply("para", edit) == "para\n\n```output:e1\n```"


def t(change):
    return change.char_offset, change.removed, change.inserted


def test_block_content_minimal_edits():
    c = BlockContent()
    assert t(c.apply(0, ["hello"])) == (0, "", "hello\n")
    assert c.text == "hello\n"
    # Appending to the last line inserts only the new characters.
    assert t(c.apply(0, ["hello world"])) == (5, "", " world")
    assert t(c.apply(0, ["hello world", ""])) == (12, "", "")  # same text: "hello world\n"
    assert t(c.apply(1, ["next"])) == (12, "", "next\n")
    # A rewritten last line (progress bar) replaces only that line's changed part.
    c2 = BlockContent()
    c2.apply(0, ["a", "10%"])
    assert t(c2.apply(1, ["20%"])) == (2, "1", "2")
    assert c2.text == "a\n20%\n"


def test_content_edit_round_trip_through_pycrdt_with_unicode():
    text0 = "✓ 😀 é 中\n```output:e1\n```\nafter 中\n"
    c = BlockContent()
    doc_text = text0
    for first, lines in [(0, ["héllo 😀"]), (0, ["héllo 😀 wörld", "中"]), (1, ["中文", ""]),
                         (2, ["```", "x"])]:
        block = find_block(doc_text, "e1")
        old = c.text
        change = c.apply(first, lines)
        edit = content_edit(doc_text, block, old, change)
        assert edit is not None
        doc_text = apply(doc_text, edit)
        b = find_block(doc_text, "e1")
        assert doc_text[b.content_start:b.content_end] == c.text
        assert doc_text.endswith("```\nafter 中\n")
    assert c.text == "héllo 😀 wörld\n中文\n" + FENCE_ESCAPE + "```\nx\n"


def test_content_edit_detects_foreign_change_and_rewrite_restores():
    text = "```output:e1\nsomeone typed\n```\n"
    c = BlockContent()
    block = find_block(text, "e1")
    old = c.text
    change = c.apply(0, ["ours"])
    assert content_edit(text, block, old, change) is None
    out = apply(text, rewrite_edit(text, block, c.text))
    assert out == "```output:e1\nours\n```\n"


def test_block_content_tracks_bytes_and_removals():
    c = BlockContent()
    c.apply(0, ["é😀", "中", ""])
    assert c.text == "é😀\n中\n"
    ch = c.apply(2, ["x"])
    assert (ch.char_offset, ch.byte_offset, ch.removed, ch.inserted) == (5, 11, "", "x\n")
    # Lines removed at the end (ESC[J): the line before loses nothing but the rest.
    ch = c.apply(1, [])
    assert c.text == "é😀\n" and ch.removed == "中\nx\n" and ch.inserted == ""
    assert ch.byte_offset == len("é😀\n".encode())
    ch = c.apply(0, [])
    assert c.text == "" and ch.removed == "é😀\n"



def test_duplicate_empty_blocks_found_after_the_first():
    from mrmd_monitor.document import duplicate_blocks
    text = ("```python\nx\n```\n\n```output:e1\nhi 中\n```\n\n```output:e1\n```\n\nEnd\n"
            "\n\n```output:e1\n```")
    spans = duplicate_blocks(text, "e1")
    out = text
    for start, end in spans:
        out = out[:start] + out[end:]
    assert out == "```python\nx\n```\n\n```output:e1\nhi 中\n```\n\nEnd\n"
    assert duplicate_blocks(out, "e1") == []
    assert duplicate_blocks("```output:e10\n```\n\n```output:e1\n```", "e1") == []
