"""Markdown pieces the end-to-end tests build notebooks from and check them against."""

import uuid

FINAL = ("completed", "error", "cancelled")


def cell(code, lang="python"):
    return "```%s\n%s\n```" % (lang, code)


def block(exec_id, content=""):
    return "```output:%s\n%s```" % (exec_id, content)


def block_content(text, exec_id):
    start = text.index("```output:%s\n" % exec_id) + len("```output:%s\n" % exec_id)
    return text[start:text.index("```", start)]


def uid():
    return uuid.uuid4().hex[:10]


def loop_code(word, count, delay):
    """A cell that prints ``<word> <i>`` ``count`` times, ``delay`` seconds apart."""
    return ("import time\nfor i in range(%d):\n    print(%r, i, flush=True)\n    time.sleep(%s)"
            % (count, word, delay))


def start_cell(peer, code, runtime_url, prefix="exec", add_cell=False, **request):
    """Ask for a run of ``code`` as the editor does (after appending its cell
    to the text when ``add_cell``); returns the execution id."""
    if add_cell:
        text = peer.text()
        peer.set_text(text + ("\n" if text else "") + cell(code) + "\n")
    exec_id = "%s-%s" % (prefix, uid())
    peer.request(exec_id, code, runtime_url, **request)
    return exec_id


def run_cell(peer, code, runtime_url, timeout=30, **kw):
    """start_cell, then wait for the run to end; returns (exec_id, final entry)."""
    exec_id = start_cell(peer, code, runtime_url, **kw)
    return exec_id, peer.wait_entry(exec_id, FINAL, timeout=timeout)
