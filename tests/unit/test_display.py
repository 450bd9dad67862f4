import base64

from mrmd_monitor.assets import AssetStore
from mrmd_monitor.display import DisplayConverter, asset_item


def test_small_bundle_inline_with_text_fallback():
    conv = DisplayConverter(1000)
    items = conv.bundle({"text/html": "<b>hi</b>", "text/plain": "hi"})
    assert items == [{"mimeType": "text/html", "data": "<b>hi</b>", "assetId": None},
                     {"mimeType": "text/plain", "data": "hi", "assetId": None}]


def test_large_html_kept_as_asset(tmp_path):
    store = AssetStore(str(tmp_path / "assets"), "http://127.0.0.1:9464/assets")
    conv = DisplayConverter(1000, store)
    html = "<table>" + "<tr><td>x</td></tr>" * 500 + "</table>"
    items = conv.bundle({"text/html": html, "text/plain": "<table>"})
    big = items[0]
    assert big["data"] is None and big["size"] == len(html)
    assert big["url"] == "http://127.0.0.1:9464/assets/" + big["assetId"]
    assert (tmp_path / "assets" / big["assetId"]).read_text() == html
    assert items[1] == {"mimeType": "text/plain", "data": "<table>", "assetId": None}


def test_large_png_decoded_to_file(tmp_path):
    png = b"\x89PNG\r\n" + bytes(range(256)) * 20
    store = AssetStore(str(tmp_path))
    conv = DisplayConverter(100, store)
    [item] = conv.bundle({"image/png": base64.b64encode(png).decode()})
    assert item["assetId"].endswith(".png") and item["url"] is None
    assert (tmp_path / item["assetId"]).read_bytes() == png


def test_large_without_store_is_omitted_with_reason():
    conv = DisplayConverter(10)
    [item, plain] = conv.bundle({"image/svg+xml": "<svg>" + "x" * 50 + "</svg>",
                                 "text/plain": "y" * 30})
    assert item["data"] is None and "--assets-dir" in item["omitted"]
    assert plain["data"].startswith("y" * 10) and "left out" in plain["data"]


def test_runtime_assets_referenced_by_url():
    item = asset_item({"path": "/tmp/a/e1_0001.png", "url": "/mrp/v1/assets/e1_0001.png",
                       "mimeType": "image/png", "size": 123}, "http://127.0.0.1:8000/mrp/v1")
    assert item == {"mimeType": "image/png", "data": None, "assetId": "/tmp/a/e1_0001.png",
                    "url": "http://127.0.0.1:8000/mrp/v1/assets/e1_0001.png", "size": 123}


def test_result_items():
    conv = DisplayConverter(1000)
    result = {"displayData": [{"data": {"text/plain": "1"}, "metadata": {}}, "junk"],
              "assets": [{"path": "p", "url": "/x", "mimeType": "image/png"}, 5]}
    items = conv.from_result(result, "http://h:1/mrp/v1")
    assert [i["mimeType"] for i in items] == ["text/plain", "image/png"]
    assert conv.from_result("nope", "http://h:1") == []
    assert conv.from_event("display", {"data": {"text/plain": "x"}}, "http://h:1")[0]["data"] == "x"


def test_mrp3_assets_named_by_id():
    item = asset_item({"id": "e1_0001.png", "url": "/mrp/v1/assets/e1_0001.png",
                       "mimeType": "image/png", "assetType": "image", "size": 2048},
                      "http://127.0.0.1:8000/mrp/v1")
    assert item == {"mimeType": "image/png", "data": None, "assetId": "e1_0001.png",
                    "url": "http://127.0.0.1:8000/mrp/v1/assets/e1_0001.png", "size": 2048}


def test_asset_urls_stay_on_the_runtime():
    runtime = "http://127.0.0.1:8000/mrp/v1"
    same = "http://127.0.0.1:8000/mrp/v1/assets/a.png"
    assert asset_item({"id": "a", "url": same}, runtime)["url"] == same
    for url in ("http://127.0.0.1:8001/a.png", "https://127.0.0.1:8000/a.png",
                "//elsewhere.example/a.png", "javascript:alert(1)", "http://[::1/a", 5):
        assert asset_item({"id": "a", "url": url}, runtime)["url"] is None, url


def test_budget_counts_over_calls():
    conv = DisplayConverter(1000, max_display_bytes=1500)
    budget = conv.budget()
    first = conv.bundle({"text/html": "h" * 1000}, budget)
    second = conv.from_event("display", {"data": {"text/html": "h" * 1000}}, "http://h:1",
                             budget=budget)
    assert first[0]["data"] == "h" * 1000
    assert second[0]["data"] is None and "--max-display-bytes (1500 bytes" in second[0]["omitted"]
    assert budget.used_bytes == 1000 and budget.remaining == 500
    # Without a budget, each call has one of its own.
    assert conv.bundle({"text/html": "h" * 1000})[0]["data"] == "h" * 1000


def test_budget_admits_items_then_one_note():
    from mrmd_monitor.display import DisplayBudget
    budget = DisplayBudget(max_items=2)
    assert budget.admit("a") == ["a"] and budget.admit("b") == ["b"]
    [note] = budget.admit("c")
    assert note["mimeType"] == "text/plain" and "more than 2 rich outputs" in note["data"]
    assert budget.admit("d") == [] and budget.full
