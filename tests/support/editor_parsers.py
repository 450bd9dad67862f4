"""The mrmd editor's own block parsers, ported line for line from
``editor/mrmd.iife.js`` of npm mrmd-electron 0.5.4, as test oracles: what the
monitor writes must read the same through them as through our own parser.
``tests/unit/test_editor_parsers.py`` checks this port against the bundle
itself (run in node) on the same inputs.
"""

import re


def find_output_block_by_exec_id(content, exec_id):
    """``findOutputBlockByExecId``: the first equal run of backticks anywhere
    (mid-line too) closes the block. ``None`` or a dict like the editor's."""
    m = re.search("(`{3,})output:" + re.escape(exec_id) + r"[^\n]*\n([\s\S]*?)\1", content)
    if m is None:
        return None
    content_start = m.start() + m.group(0).index("\n") + 1
    return {"start": m.start(), "end": m.end(), "contentStart": content_start,
            "contentEnd": content_start + len(m.group(2)), "content": m.group(2)}


def find_output_block(content, code_block_end):
    """``findOutputBlock``: the output block right after a cell (a re-run reuses it)."""
    after = content[code_block_end:]
    m = re.match(r"(\s*\n)(`{3,})(output(?::([^\n]*))?\n)([\s\S]*?)\2", after)
    if m is None:
        return None
    start = code_block_end + len(m.group(1))
    return {"start": start, "end": code_block_end + m.end(), "execId": m.group(4),
            "content": m.group(5)}


def find_code_blocks(content):
    """``findCodeBlocks``, the cell parser: a block opens on a line starting
    with three or more backticks and closes on the next line made only of
    three or more backticks and white space, whatever the opening's length."""
    blocks = []
    in_block = False
    offset = 0
    for line in content.split("\n"):
        line_start = offset
        if not in_block:
            m = re.match(r"(`{3,})([A-Za-z0-9_:.-]*)(?:\s+(\S+))?", line)
            if m:
                in_block = True
                block_start = line_start
                language = m.group(2).lower()
                code_start = line_start + len(line) + 1
        elif re.match(r"`{3,}\s*$", line):
            blocks.append({"language": language, "start": block_start,
                           "end": line_start + len(line),
                           "code": content[code_start:line_start]})
            in_block = False
        offset += len(line) + 1
    return blocks
