"""A notebook run through the monitor looks as if the editor had run it
plots as image lines after the block with the files under the
project root, colours kept, with the real mrmd-python runtime."""

import os

import pytest

from tests.support import editor_parsers
from tests.support.notebook import block, block_content, cell, run_cell, uid

pytestmark = pytest.mark.e2e

PLOT = ("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.figure()\nplt.plot([1, 3, 2])\nplt.show()\nprint('plotted')")


def test_plot_saved_under_the_project_root_and_shown_after_the_block(
        sync_server, runtime, peer_factory, monitor_factory, tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    doc = "notes/plot-%s" % uid()   # a notebook in a folder of the project
    monitor_factory(sync_server.url, doc, extra_args=["--project-root", str(root)])
    b = peer_factory(sync_server.url, doc)
    b.set_text(cell(PLOT) + "\n\nAfter.\n")
    exec_id, e = run_cell(b, PLOT, runtime.url, timeout=90, prefix="fig")
    assert e["status"] == "completed"
    name = "%s_0001.png" % exec_id   # the runtime's name, which the editor keeps
    saved = root / "_assets" / "generated" / name
    assert saved.read_bytes().startswith(b"\x89PNG")
    assert b.text() == (cell(PLOT) + "\n\n" + block(exec_id, "plotted\n")
                        + "\n\n![plot-1](../_assets/generated/%s)\n\nAfter.\n" % name)
    # A re-run replaces the image line a previous run left; the text after keeps its place.
    again, e = run_cell(b, PLOT, runtime.url, timeout=90, prefix="fig")
    assert e["status"] == "completed"
    name2 = "%s_0001.png" % again
    assert (root / "_assets" / "generated" / name2).is_file()
    assert b.text() == (cell(PLOT) + "\n\n" + block(again, "plotted\n")
                        + "\n\n![plot-1](../_assets/generated/%s)\n\nAfter.\n" % name2)
    assert os.stat(saved).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def test_colours_are_kept_as_the_editor_keeps_them(sync_server, runtime, doc_name, peer_factory,
                                                   monitor_factory):
    monitor_factory(sync_server.url, doc_name)
    b = peer_factory(sync_server.url, doc_name)
    code = ("print('\\x1b[31mred\\x1b[0m plain \\x1b[1;32mbold green')\n"
            "print('10%\\r\\x1b[33m100%\\x1b[0m done')")
    b.set_text(cell(code) + "\n")
    exec_id, e = run_cell(b, code, runtime.url)
    assert e["status"] == "completed"
    # Bold, never reset, carries on to the next line, as on a terminal.
    content = "\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[0m\n\x1b[1;33m100%\x1b[0m done\n"
    assert block_content(b.text(), exec_id) == content
    assert editor_parsers.find_output_block_by_exec_id(b.text(), exec_id)["content"] == content
