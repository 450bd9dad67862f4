"""The real mrmd editor in headless chromium, driven through tests/js/editor/driver.mjs.

``EditorBrowser`` is one chromium (shared by a module's tests); ``open()``
gives an ``EditorTab``: the mrmd-electron 0.5.4 editor bundle on one
document, wired as the app wires it (in monitor mode, or running cells
itself). A tab acts as a user does (clicks a cell's Run or Stop button,
presses Ctrl+Shift+Enter, types into the stdin block, closes the tab) and
reads what the editor holds and shows: its text, its output blocks as its
own decorations mark them, the colours of their spans, the images after
them, the execution entries it sees, and the collaborators it lists.
"""

import itertools
import re
import shutil
from dataclasses import dataclass, field

from .jsonlines import JsonLinesProcess
from .procs import JS_DIR, NODE_MODULES, MissingNodeModules, MissingStack, node_executable, require_node_modules
from .waiting import wait_for

EDITOR_DRIVER = JS_DIR / "editor" / "driver.mjs"
EDITOR_BUNDLE = NODE_MODULES / "mrmd-electron" / "editor" / "mrmd.iife.js"
PUPPETEER = NODE_MODULES / "puppeteer-core"

_FENCE_START = {"cm-output-fence-start", "cm-output-fence-start-editing"}
_FENCE_END = {"cm-output-fence-end", "cm-output-fence-end-editing"}


def find_chromium():
    """Debian's chromium (tests/run.sh installs it where it is missing)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise MissingStack("chromium is not installed: the editor tests need it (apt-get install chromium)")
    return found


def require_editor():
    require_node_modules()
    missing = [str(p) for p in (EDITOR_BUNDLE, PUPPETEER) if not p.exists()]
    if missing:
        raise MissingNodeModules("the editor test dependencies are not installed (missing %s): run `npm ci` in %s"
                                 % (", ".join(missing), JS_DIR))


@dataclass
class OutputBlock:
    """An output block as the editor renders it: between the lines it marks as
    the block's opening and closing fences (its own parser decides where)."""

    fence: str
    lines: list
    spans: list = field(default_factory=list)
    #: the images the editor shows right after the block: ``{src, alt, loaded}``
    images_after: list = field(default_factory=list)

    @property
    def exec_id(self):
        m = re.search(r"output:([^\s:]+)", self.fence)
        return m.group(1) if m else None

    @property
    def text(self):
        return "".join(line + "\n" for line in self.lines)

    def colours_of(self, text):
        """The computed colours of the rendered spans holding ``text``."""
        return [s["color"] for s in self.spans if text in s["text"]]


def output_blocks(items):
    """The output blocks in the editor's rendered lines (``rendered()["items"]``)."""
    blocks, current = [], None
    for i, item in enumerate(items):
        classes = set(item["classes"].split())
        if current is None:
            if item["kind"] == "line" and classes & _FENCE_START:
                current = OutputBlock(fence=item["text"], lines=[])
                blocks.append(current)
            continue
        if classes & _FENCE_END:
            current.images_after = _images_after(items[i + 1:])
            current = None
            continue
        current.lines.append(item["text"])
        current.spans.extend(item["spans"])
    return blocks


def _images_after(items):
    """The images on the blank and image lines (and image widgets) right after a block."""
    images = []
    for item in items:
        text = item["text"].strip()
        if item["kind"] == "line" and text and not text.startswith("!["):
            break
        images.extend(item["images"])
    return images


class EditorBrowser(JsonLinesProcess):
    """One headless chromium with the driver's page server; ``open()`` opens a tab."""

    name = "editor-browser"
    ready_timeout = 60.0
    _tab_names = itertools.count(1)

    def __init__(self, log_path=None):
        require_editor()
        argv = [node_executable(), EDITOR_DRIVER, "--chromium", find_chromium()]
        super().__init__(argv, cwd=JS_DIR, log_path=log_path, max_lines=20000)

    def is_ready(self):
        return bool(self.events("ready"))

    def console_tail(self, n=300):
        """The last ``n`` lines of the pages' consoles and the driver's diagnostics."""
        return "\n".join(self.lines("stderr")[-n:])

    def open(self, sync_url, doc, runtime_url, monitor=True, project_root=None, timeout=30.0):
        """A new tab with the editor on ``doc``; in monitor mode unless ``monitor`` is False."""
        name = "tab-%d" % next(self._tab_names)
        reply = self.call("open", timeout=timeout, tab=name, syncUrl=sync_url, doc=doc, runtimeUrl=runtime_url,
                          monitor=bool(monitor), projectRoot=str(project_root) if project_root else None)
        return EditorTab(self, name, doc, reply.get("clientId"))

    def close(self):
        """Close the browser (cleanly if it answers, else the process group is killed)."""
        if self.alive:
            try:
                self.call("quit", timeout=10.0)
                self.wait(15.0)
            except AssertionError:
                pass
        self.stop(timeout=5.0)


class EditorTab:
    """One tab of the editor on one document."""

    def __init__(self, browser, name, doc, client_id):
        self.browser = browser
        self.name = name
        self.doc = doc
        self.client_id = client_id
        self.closed = False

    def _call(self, cmd, timeout=10.0, **args):
        return self.browser.call(cmd, timeout=timeout, tab=self.name, **args)

    # ------------------------------------------------------------------ acting as a user
    def set_text(self, text):
        self._call("setText", text=text)

    def run(self, cell, timeout=10.0):
        """Click cell ``cell``'s Run button (0-based, as the editor counts cells)."""
        self._call("run", timeout=timeout + 5, cell=cell, timeoutMs=int(timeout * 1000))

    def stop(self, cell, timeout=10.0):
        """Wait for cell ``cell``'s Stop button and click it."""
        self._call("stop", timeout=timeout + 5, cell=cell, timeoutMs=int(timeout * 1000))

    def run_all(self):
        """Ctrl+Shift+Enter in the editor."""
        self._call("runAll")

    def answer_stdin(self, text, timeout=20.0):
        """Wait for the editor to put the cursor in its stdin block, type ``text``, press Enter."""
        self._call("answerStdin", timeout=timeout + 5, text=text, timeoutMs=int(timeout * 1000))

    def close(self):
        if not self.closed:
            self.closed = True
            self._call("close")

    # ------------------------------------------------------------------ reading
    def text(self):
        return self._call("text")["text"]

    def rendered(self, park=True):
        """Every line as shown (``park``: the cursor on the first line first, so that
        no block is in editing mode)."""
        return self._call("rendered", park=park)

    def output_blocks(self, park=True):
        return output_blocks(self.rendered(park)["items"])

    def block(self, exec_id=None, index=None):
        """The rendered output block with this execution id (or at this index)."""
        blocks = self.output_blocks()
        if index is not None:
            return blocks[index] if index < len(blocks) else None
        return next((b for b in blocks if b.exec_id == exec_id), None)

    def executions(self):
        """Y.Map('executions') as this tab sees it."""
        return self._call("executions")["executions"]

    def statuses(self):
        return {k: v.get("status") for k, v in self.executions().items() if isinstance(v, dict)}

    def monitor_available(self):
        return self._call("monitorAvailable")["available"]

    def collaborators(self):
        return self._call("collaborators")["collaborators"]

    def cells(self):
        return self._call("cells")["cells"]

    # ------------------------------------------------------------------ waiting
    def wait_text(self, predicate_or_substring, timeout=30.0):
        p = predicate_or_substring
        return wait_for(self.text, (lambda t: p in t) if isinstance(p, str) else p, timeout=timeout, interval=0.1,
                        message="%s: the editor's text never matched" % self.name, show=lambda t: repr(t[-3000:]))

    def wait_blocks(self, predicate, timeout=30.0, message="the rendered output blocks never matched"):
        """Wait until ``predicate(blocks)`` holds for the rendered output blocks; return them."""
        return wait_for(self.output_blocks, predicate, timeout=timeout, interval=0.1,
                        message="%s: %s" % (self.name, message),
                        show=lambda b: "%r\ntext: %r" % (b, self.text()[-3000:]))

    def wait_statuses(self, predicate, timeout=30.0, message="the statuses never matched"):
        """Wait until ``predicate(statuses)`` holds for ``{exec id: status}``; return them."""
        return wait_for(self.statuses, predicate, timeout=timeout, interval=0.1,
                        message="%s: %s" % (self.name, message))

    def __repr__(self):
        return "<EditorTab %s on %s>" % (self.name, self.doc)
