"""Rich output a runtime sends without limit: one run's inline displayData is
capped in total, so its entry stays far below mrmd-sync's 1 MiB message limit
(twenty 200 KB displays made one 4 MB entry update, which the server refused,
wedging the document)."""

import base64
import json

from mrmd_monitor.assets import AssetStore
from mrmd_monitor.display import DisplayConverter

KiB = 1024
MAX_DISPLAY = 512 * KiB        # the default --max-display-bytes
MAX_INLINE = 256 * KiB         # the default --max-inline-bytes
RUNTIME = "http://127.0.0.1:8000/mrp/v1"


def html(i, size=200 * 1000):
    body = "<p>%d</p>" % i
    return body + "x" * (size - len(body))


def run_displays(conv, events):
    """What one run's entry holds: the items of every display event, in order,
    from the converter the way the worker calls it (one budget per run)."""
    budget = conv.budget()
    items = []
    for data in events:
        items.extend(conv.from_event("display", {"data": data}, RUNTIME, budget=budget))
    return items


def inline_bytes(items):
    return sum(len(json.dumps(i["data"]).encode()) for i in items if i.get("data") is not None)


def test_twenty_large_displays_without_assets_dir():
    conv = DisplayConverter(MAX_INLINE, max_display_bytes=MAX_DISPLAY)
    items = run_displays(conv, [{"text/html": html(i)} for i in range(20)])
    assert len(items) == 20
    kept = [i for i in items if i["data"] is not None]
    assert [i["data"] for i in kept] == [html(0), html(1)]
    assert inline_bytes(items) <= MAX_DISPLAY
    for item in items[2:]:
        assert item == {"mimeType": "text/html", "data": None, "assetId": None, "size": 200_000,
                        "omitted": "over --max-display-bytes (524288 bytes of rich output inline "
                                   "per run); start the monitor with --assets-dir to keep such "
                                   "outputs"}
    # The whole displayData, as one entry update would carry it.
    assert len(json.dumps(items).encode()) < 600 * KiB


def test_twenty_large_displays_spill_to_assets(tmp_path):
    store = AssetStore(str(tmp_path), "http://127.0.0.1:9464/assets")
    conv = DisplayConverter(MAX_INLINE, store, max_display_bytes=MAX_DISPLAY)
    items = run_displays(conv, [{"text/html": html(i)} for i in range(20)])
    assert [i["data"] is not None for i in items] == [True, True] + [False] * 18
    for i, item in enumerate(items[2:], 2):
        assert item["url"] == "http://127.0.0.1:9464/assets/" + item["assetId"]
        assert (tmp_path / item["assetId"]).read_text() == html(i)
    assert len(json.dumps(items).encode()) < 600 * KiB


def test_text_fallback_cut_to_what_is_left():
    conv = DisplayConverter(MAX_INLINE, max_display_bytes=1000)
    items = run_displays(conv, [{"text/plain": "a" * 900}, {"text/plain": "b" * 900},
                                {"text/plain": "c" * 900}])
    assert items[0]["data"] == "a" * 900
    assert items[1]["data"].startswith("b" * 64) and "bytes left out" in items[1]["data"]
    assert items[2]["data"] is None and "--max-display-bytes" in items[2]["omitted"]
    assert inline_bytes(items) <= 1000 + 50


def test_ten_thousand_small_displays():
    conv = DisplayConverter(MAX_INLINE, max_display_bytes=MAX_DISPLAY)
    items = run_displays(conv, [{"text/plain": str(i)} for i in range(10_000)])
    assert len(items) == 65
    assert [i["data"] for i in items[:64]] == [str(i) for i in range(64)]
    assert items[64]["mimeType"] == "text/plain"
    assert "more than 64 rich outputs" in items[64]["data"]


def test_one_result_with_many_bundles_and_assets():
    conv = DisplayConverter(MAX_INLINE, max_display_bytes=MAX_DISPLAY)
    png = base64.b64encode(b"\x89PNG" + bytes(150_000)).decode()
    result = {"displayData": [{"data": {"image/png": png, "text/plain": "<Figure>"}}] * 10,
              "assets": [{"id": "a%d.png" % i, "url": "/mrp/v1/assets/a%d.png" % i,
                          "mimeType": "image/png", "assetType": "image", "size": 10}
                         for i in range(100)]}
    items = conv.from_result(result, RUNTIME, budget=conv.budget())
    assert len(items) == 65
    assert inline_bytes(items) <= MAX_DISPLAY
    assert len(json.dumps(items).encode()) < 600 * KiB


def test_unmeasurable_data_is_left_out_not_raised():
    deep = []
    for _ in range(100_000):
        deep = [deep]
    conv = DisplayConverter(MAX_INLINE, max_display_bytes=MAX_DISPLAY)
    [item] = run_displays(conv, [{"application/json": deep}])
    assert item["data"] is None and "not JSON" in item["omitted"]


def test_asset_fields_from_the_runtime_are_bounded():
    conv = DisplayConverter(MAX_INLINE)
    [item] = conv.from_event("asset", {"id": "x" * 100_000, "url": "http://elsewhere.example/a",
                                       "mimeType": "image/png\n" * 1000, "size": "big"}, RUNTIME)
    assert item == {"mimeType": None, "data": None, "assetId": None, "url": None, "size": None}
