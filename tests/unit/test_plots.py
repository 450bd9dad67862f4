"""Plots as the editor shows them: saved under the project's
_assets/generated/ (hostile names, symlinks, sizes) and shown by image lines
right after the output block, replacing a previous run's."""

import base64
import os
import stat

import pytest
from pycrdt import Doc, Text

from mrmd_monitor.assets import AssetStore
from mrmd_monitor.blocks import Blocks, YText
from mrmd_monitor.display import DisplayConverter
from mrmd_monitor.document import find_block, image_lines_edit, image_target
from mrmd_monitor.plots import PlotKeeper, safe_name
from tests.support.local_http import LocalServer, QuietHandler

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Assets(QuietHandler):
    def do_GET(self):
        if self.path == "/mrp/v1/assets/exec-1_0001.png":
            self.answer(200, PNG, "image/png")
        elif self.path == "/mrp/v1/assets/huge.png":
            self.answer(200, b"x" * 5000, "image/png")
        elif self.path == "/mrp/v1/assets/moved.png":
            self.answer(302, b"", headers=[("Location", "http://127.0.0.1:1/x.png")])
        else:
            self.answer(404, b"no")


@pytest.fixture
def runtime():
    with LocalServer(Assets) as server:
        yield server


def asset(server, name):
    return {"path": name, "url": "/mrp/v1/assets/" + name, "mimeType": "image/png",
            "assetType": "image", "size": 1}


def test_a_runtime_asset_is_saved_under_the_editors_name(tmp_path, runtime):
    conv = DisplayConverter(1024, plots=PlotKeeper(str(tmp_path)))
    [item] = conv.from_result({"assets": [asset(runtime, "exec-1_0001.png")]}, runtime.url)
    assert item["imagePath"] == "_assets/generated/exec-1_0001.png"
    path = tmp_path / "_assets" / "generated" / "exec-1_0001.png"
    assert path.read_bytes() == PNG
    umask = os.umask(0o22)
    os.umask(umask)
    # As the editor's own write: the notebook's readers read its plots too.
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [f for f in os.listdir(path.parent) if f.startswith(".tmp")] == []
    # The same plot again reuses the file; other bytes under the name get "-1".
    assert conv.from_result({"assets": [asset(runtime, "exec-1_0001.png")]},
                            runtime.url)[0]["imagePath"] == "_assets/generated/exec-1_0001.png"
    path.write_bytes(b"other")
    assert conv.from_result({"assets": [asset(runtime, "exec-1_0001.png")]},
                            runtime.url)[0]["imagePath"] == "_assets/generated/exec-1_0001-1.png"


def test_inline_display_data_is_saved_too(tmp_path):
    conv = DisplayConverter(10, plots=PlotKeeper(str(tmp_path)))   # too big to stay inline
    [item] = conv.bundle({"image/png": base64.b64encode(PNG).decode()})
    assert item["imagePath"].startswith("_assets/generated/plot-")
    assert (tmp_path / item["imagePath"]).read_bytes() == PNG
    assert "omitted" in item   # still not inline in the entry


def test_hostile_names_sizes_redirects_and_symlinks(tmp_path, runtime):
    assert safe_name("../../etc/passwd", "image/png", PNG) == "etc-passwd.png"
    assert safe_name("..", "image/png", PNG).startswith("plot-")
    assert safe_name("x.svg.png\n", "image/svg+xml", PNG) == "x.svg.svg"
    keeper = PlotKeeper(str(tmp_path), max_bytes=4096)
    for name, why in (("huge.png", "larger than 4096 bytes"),
                      ("moved.png", "the runtime answered HTTP 302"),
                      ("missing.png", "the runtime answered HTTP 404")):
        item = keeper.keep({"mimeType": "image/png", "data": None, "assetId": name,
                            "url": runtime.base + "/mrp/v1/assets/" + name})
        assert "imagePath" not in item and item["imageError"] == why, name
    item = PlotKeeper(str(tmp_path / "no-such-dir")).keep(
        {"mimeType": "image/png", "data": "eA==", "assetId": None}, PNG)
    assert item["imageError"] == "cannot write it under --project-root (no such file or directory)"
    # A symlink planted where _assets would be is not followed.
    root = tmp_path / "p"
    root.mkdir()
    (root / "_assets").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    item = PlotKeeper(str(root)).keep({"mimeType": "image/png", "data": "eA==",
                                       "assetId": None}, PNG)
    assert "imagePath" not in item and os.listdir(tmp_path / "elsewhere") == []
    # Nor one planted at the file's name: the file gets the next name.
    gen = tmp_path / "q" / "_assets" / "generated"
    gen.mkdir(parents=True)
    (gen / "exec-1_0001.png").symlink_to(tmp_path / "target")
    item = PlotKeeper(str(tmp_path / "q")).keep(
        {"mimeType": "image/png", "data": None, "assetId": "a",
         "url": runtime.base + "/mrp/v1/assets/exec-1_0001.png"})
    assert item["imagePath"] == "_assets/generated/exec-1_0001-1.png"
    assert not (tmp_path / "target").exists()


def test_without_a_project_root(tmp_path, runtime):
    # --assets-dir served by the status server: its URL, file 0600.
    store = AssetStore(str(tmp_path / "a"), "http://127.0.0.1:9/assets")
    conv = DisplayConverter(1024, store, plots=PlotKeeper(None, store))
    [item] = conv.from_result({"assets": [asset(runtime, "exec-1_0001.png")]}, runtime.url)
    assert item["imageUrl"].startswith("http://127.0.0.1:9/assets/")
    name = item["imageUrl"].rsplit("/", 1)[1]
    assert stat.S_IMODE(os.stat(tmp_path / "a" / name).st_mode) == 0o600
    # Nothing of ours: the runtime's own URL, for what the runtime serves.
    conv = DisplayConverter(1024, plots=PlotKeeper(None, None))
    [item] = conv.from_result({"assets": [asset(runtime, "exec-1_0001.png")]}, runtime.url)
    assert item["imageUrl"] == runtime.base + "/mrp/v1/assets/exec-1_0001.png"
    [item] = conv.bundle({"image/png": base64.b64encode(PNG[:20]).decode()})
    assert "imageUrl" not in item and "imagePath" not in item


def test_image_targets():
    ref = "_assets/generated/a.png"
    assert image_target("notes", ref) == "_assets/generated/a.png"
    assert image_target("dir/sub/notes", ref) == "../../_assets/generated/a.png"
    assert image_target("../../x/notes", ref) == "../_assets/generated/a.png"
    assert image_target("d", "http://127.0.0.1:9/a b(1).png") == "http://127.0.0.1:9/a%20b%281%29.png"


DOC = "# é 😀\n\n```python\nplot()\n```\n\n````output:e1\nx ``` y\n````\n\nNext 中.\n"


def test_image_lines_after_the_block_then_replaced_by_a_re_run():
    block = find_block(DOC, "e1")
    edit = image_lines_edit(DOC, block, [("a.png", ""), ("b.png", "")])
    text = apply(DOC, edit)
    assert text.endswith("````\n\n![plot-1](a.png)\n![plot-2](b.png)\n\nNext 中.\n")
    again = apply(text, image_lines_edit(text, find_block(text, "e1"),
                                         [("", "larger than 5 bytes [x]")]))
    assert again.endswith("````\n\n![plot-1 (not shown: larger than 5 bytes x)]()\n\nNext 中.\n")
    again = apply(again, image_lines_edit(again, find_block(again, "e1"), [("c.png", "")]))
    assert again.endswith("````\n\n![plot-1](c.png)\n\nNext 中.\n")
    end = DOC[:DOC.index("\n\nNext")]
    assert apply(end, image_lines_edit(end, find_block(end, "e1"), [("a.png", "")])) == \
        end + "\n\n![plot-1](a.png)\n"
    assert image_lines_edit(DOC, block, []) is None


def apply(text, edit):
    raw = text.encode()
    return (raw[:edit.at] + edit.insert.encode() + raw[edit.at + edit.delete:]).decode()


def test_blocks_put_images_on_the_document():
    doc = Doc(client_id=1)
    text = doc.get("content", type=Text)
    text += DOC
    blocks = Blocks(YText(doc, text), doc_name="dir/notes")
    blocks.put_images("e1", [{"mimeType": "text/plain"},
                             {"imagePath": "_assets/generated/a.png"},
                             {"imageUrl": "http://127.0.0.1:9/assets/b.png"}])
    assert str(text).endswith("````\n\n![plot-1](../_assets/generated/a.png)\n"
                              "![plot-2](http://127.0.0.1:9/assets/b.png)\n\nNext 中.\n")
