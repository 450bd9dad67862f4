"""The port of the editor's parsers (tests/support/editor_parsers.py) agrees
with the real ones, run in node from the bundle of npm mrmd-electron 0.5.4
(installed in tests/js by tests/setup.sh; MRMD_EDITOR_BUNDLE names another
copy), on documents the monitor wrote and on hand-made ones."""

import json
import os
import subprocess
from pathlib import Path

from pycrdt import Doc, Text

from mrmd_monitor.blocks import Blocks, YText
from mrmd_monitor.runs import Run
from tests.support import editor_parsers as port
from tests.unit.test_fences import DOC, HOSTILE

HERE = Path(__file__).resolve().parent.parent
BUNDLE = os.environ.get("MRMD_EDITOR_BUNDLE") or str(
    HERE / "js" / "node_modules" / "mrmd-electron" / "editor" / "mrmd.iife.js")


def monitor_documents():
    docs = []
    for lines in HOSTILE:
        doc = Doc(client_id=1)
        text = doc.get("content", type=Text)
        text += DOC
        blocks = Blocks(YText(doc, text))
        run = Run(exec_id="e1", runtime_url="http://127.0.0.1:9", session="s",
                  code="print('中')", language="python", cell_id=None)
        blocks.prepare(run)
        blocks.write(run, 0, lines)
        docs.append(str(text))
    return docs


HAND_MADE = [
    "```python\nx\n```\n\n```output:e1\na ``` b\n```\n\n```python\ny\n```\n",
    "```python\nx\n```\n\n````output:e1\n```\n````\n",
    "```output:e1 extra\n\n```",
    "```output:e10\nA\n```\n```output:e1\nB ~~~ \n```\n",
    "  ```python\nx\n   ```  \n```\n",
]


def test_port_agrees_with_the_bundle():
    assert Path(BUNDLE).is_file(), "no editor bundle at %s: run tests/setup.sh" % BUNDLE
    texts = monitor_documents() + HAND_MADE
    cases = []
    for t in texts:
        cells = port.find_code_blocks(t)
        end = cells[0]["end"] if cells else None
        # JavaScript counts UTF-16 units (an emoji is two).
        js_end = None if end is None else len(t[:end].encode("utf-16-le")) // 2
        cases.append({"text": t, "execId": "e1", "cellEnd": js_end, "end": end})
    out = subprocess.run(["node", str(HERE / "support" / "editor_parsers.mjs"), BUNDLE],
                         input=json.dumps(cases), capture_output=True, text=True, timeout=60,
                         check=True)
    real = json.loads(out.stdout)
    for case, got in zip(cases, real):
        t = case["text"]
        mine = port.find_output_block_by_exec_id(t, "e1")
        assert (mine and mine["content"]) == (got["byExecId"] and got["byExecId"]["content"]), t
        after = port.find_output_block(t, case["end"]) if case["end"] is not None else None
        assert (after and after["content"]) == (got["afterCell"] and got["afterCell"]["content"]), t
        assert [(c["language"], c["code"]) for c in port.find_code_blocks(t)] == \
            [(c["language"], c["code"]) for c in got["cells"]], t
