"""assets.py: large rich outputs stored as files under their content hash,
kept within the size and age limits, and read back only as the regular files
the store made."""

import base64
import os
import time

import pytest

from mrmd_monitor.assets import AssetStore, open_asset, read_asset
from mrmd_monitor.errors import AssetRejected

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class Clock:
    """The store's clock, set at the time files are written now."""

    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def age(directory, name, mtime):
    os.utime(os.path.join(directory, name), (mtime, mtime))


def test_an_asset_is_stored_under_its_hash_and_served_from_the_base_url(tmp_path):
    store = AssetStore(str(tmp_path), "http://127.0.0.1:9464/assets/")
    name, url = store.put("image/png", base64.b64encode(PNG).decode())
    assert name.endswith(".png") and len(name) == 32 + 4
    assert url == "http://127.0.0.1:9464/assets/" + name
    assert (tmp_path / name).read_bytes() == PNG   # base64 decoded
    assert AssetStore(str(tmp_path)).put("image/png", base64.b64encode(PNG).decode()) == (name, None)
    assert sorted(os.listdir(tmp_path)) == [name]   # the same content once


def test_text_is_stored_as_utf8_and_read_back_with_its_type(tmp_path):
    store = AssetStore(str(tmp_path / "new" / "dir"))   # made when first needed
    name, _ = store.put("text/html", "<p>é 中</p>")
    assert name.endswith(".html")
    assert read_asset(store.directory, name) == ("text/html", "<p>é 中</p>".encode())


def test_an_asset_larger_than_the_whole_quota_is_refused_and_not_written(tmp_path):
    store = AssetStore(str(tmp_path), max_bytes=1000)
    with pytest.raises(AssetRejected, match="larger than --assets-max-bytes"):
        store.put("text/plain", "x" * 1001)
    assert os.listdir(tmp_path) == []


def test_past_the_quota_the_oldest_files_go_first(tmp_path):
    clock = Clock()
    store = AssetStore(str(tmp_path), max_bytes=2500, clock=clock)
    a, _ = store.put("text/plain", "a" * 1000)
    age(tmp_path, a, clock.now - 30)
    b, _ = store.put("text/plain", "b" * 1000)
    age(tmp_path, b, clock.now - 20)
    store.put("text/plain", "a" * 1000)      # used again: young again
    c, _ = store.put("text/plain", "c" * 1000)
    assert sorted(os.listdir(tmp_path)) == sorted([a, c])


def test_files_past_the_retention_are_removed(tmp_path):
    clock = Clock()
    store = AssetStore(str(tmp_path), retention=3600, clock=clock)
    old, _ = store.put("text/plain", "old")
    age(tmp_path, old, clock.now - 3601)
    young, _ = store.put("text/plain", "young")
    age(tmp_path, young, clock.now - 60)
    store.prune()
    assert os.listdir(tmp_path) == [young]


def test_pruning_leaves_other_files_alone_and_clears_stale_partial_writes(tmp_path):
    clock = Clock()
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / ".tmp-crashed.part").write_text("half")
    age(tmp_path, ".tmp-crashed.part", clock.now - 7200)
    (tmp_path / ".tmp-writing.part").write_text("now")
    age(tmp_path, ".tmp-writing.part", clock.now - 5)
    store = AssetStore(str(tmp_path), max_bytes=10, retention=1, clock=clock)
    store.prune()
    assert sorted(os.listdir(tmp_path)) == [".tmp-writing.part", "notes.txt"]


def test_only_regular_files_with_store_names_are_opened(tmp_path):
    name, _ = AssetStore(str(tmp_path)).put("text/plain", "hello")
    found = open_asset(str(tmp_path), name)
    assert found is not None
    ctype, f, size = found
    with f:
        assert (ctype, f.read(), size) == ("text/plain", b"hello", 5)

    secret = tmp_path.parent / "secret.txt"
    secret.write_text("not for the web")
    link = "0" * 32 + ".txt"
    os.symlink(secret, tmp_path / link)
    fifo = "1" * 32 + ".txt"
    os.mkfifo(tmp_path / fifo)
    for bad in (link, fifo, "notes.txt", "../secret.txt", name.upper(), ""):
        assert open_asset(str(tmp_path), bad) is None, bad
        assert read_asset(str(tmp_path), bad) is None, bad
    assert open_asset(None, name) is None
    assert open_asset(str(tmp_path / "missing"), name) is None
