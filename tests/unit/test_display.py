import base64

from mrmd_monitor.display import AssetStore, DisplayConverter, asset_item


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
