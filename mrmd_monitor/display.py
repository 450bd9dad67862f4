"""Rich output (images, HTML, SVG, any MIME bundle) in the entry's shape.

The entry's ``displayData`` is a list of ``{mimeType, data, assetId}``
items (the spec's shape), plus ``url`` for assets. Small data goes inline; data
over ``--max-inline-bytes`` never enters the document (a Yjs update near the
sync server's 1 MiB limit would cut the connection): it is kept as an asset
reference instead, in ``--assets-dir`` when one is configured. ``text/plain``
is always kept as the fallback a browser can show.

Runs on worker threads (it may write files), never on a sync thread.
"""

import base64
import hashlib
import logging
import mimetypes
import os
from urllib.parse import urlsplit

from .assets import AssetStore  # noqa: F401 - moved to assets.py; imported where it was

log = logging.getLogger(__name__)

MAX_ITEMS = 64
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


def _is_text(mime):
    return mime.startswith(_TEXT_TYPES) or mime.endswith(("+json", "+xml"))


class DisplayConverter:
    def __init__(self, max_inline_bytes, store=None):
        self.max_inline = max_inline_bytes
        self.store = store

    def bundle(self, bundle):
        """Items for one MIME bundle ``{mime: data}``."""
        items = []
        if not isinstance(bundle, dict):
            return items
        for mime, data in bundle.items():
            if not isinstance(mime, str):
                continue
            items.append(self._item(mime, data))
        return items

    def _item(self, mime, data):
        size = len(data.encode("utf-8")) if isinstance(data, str) else len(repr(data))
        if size <= self.max_inline:
            return {"mimeType": mime, "data": data, "assetId": None}
        if mime == "text/plain" and isinstance(data, str):
            # The fallback stays readable: its head, marked as cut.
            cut = data.encode("utf-8")[:self.max_inline].decode("utf-8", "ignore")
            return {"mimeType": mime, "data": cut + "\n[... %d bytes left out]" % (size - len(cut)),
                    "assetId": None}
        if self.store is not None:
            try:
                asset_id, url = self.store.put(mime, data)
                return {"mimeType": mime, "data": None, "assetId": asset_id, "url": url,
                        "size": size}
            except OSError as exc:
                log.warning("cannot store a %d-byte %s output in %s: %s", size, mime,
                            self.store.directory, exc)
        return {"mimeType": mime, "data": None, "assetId": None, "size": size,
                "omitted": "larger than --max-inline-bytes (%d bytes); start the monitor with "
                           "--assets-dir to keep such outputs" % self.max_inline}

    def from_event(self, kind, data, runtime_url):
        """Items from a ``display`` or ``asset`` event."""
        if not isinstance(data, dict):
            return []
        if kind == "asset":
            return [asset_item(data, runtime_url)]
        return self.bundle(data.get("data"))

    def from_result(self, result, runtime_url):
        """Items from a result's ``displayData`` and ``assets``."""
        if not isinstance(result, dict):
            return []
        items = []
        for bundle in result.get("displayData") or []:
            if isinstance(bundle, dict):
                items.extend(self.bundle(bundle.get("data")))
        for asset in result.get("assets") or []:
            if isinstance(asset, dict):
                items.append(asset_item(asset, runtime_url))
        return items[:MAX_ITEMS]


def asset_item(asset, runtime_url):
    """An asset the runtime serves itself: a reference, never the bytes."""
    url = asset.get("url")
    if isinstance(url, str) and url.startswith("/"):
        parts = urlsplit(runtime_url)
        url = "%s://%s%s" % (parts.scheme, parts.netloc, url)
    return {"mimeType": asset.get("mimeType"), "data": None, "assetId": asset.get("path"),
            "url": url if isinstance(url, str) else None, "size": asset.get("size")}
