"""Rich output (images, HTML, SVG, any MIME bundle) in the entry's shape.

The entry's ``displayData`` is a list of ``{mimeType, data, assetId}``
items (the spec's shape), plus ``url`` for assets. Small data goes inline;
data over ``--max-inline-bytes`` never enters the document (a Yjs update near
the sync server's 1 MiB limit would cut the connection), and neither does
inline data past ``--max-display-bytes`` in total for one run (twenty 200 KB
displays would make a 4 MB entry): such data is kept as an asset reference
instead, in ``--assets-dir`` when one is configured, or replaced by an item
saying what was left out and why. A run keeps at most ``MAX_ITEMS`` items,
then one saying that the rest were left out. ``text/plain`` is kept as the
fallback a browser can show, cut to what fits.

Everything here comes from a runtime and is untrusted: sizes are measured
without recursion limits biting (an unmeasurable value is left out), and the
fields of a runtime's asset are checked and bounded.

Runs on worker threads (it may write files), never on a sync thread.
"""

import json
import logging
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_ITEMS = 64
DEFAULT_DISPLAY_BYTES = 512 * 1024
# A text/plain fallback is cut to the room left only if that keeps this much
# of it (or all of --max-inline-bytes, when that is smaller): a few bytes of a
# cut say less than the note that replaces them.
_MIN_CUT = 64
# Longest mimeType, assetId and url taken from a runtime's asset.
_MAX_FIELD = 2048
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "image/svg+xml")


def _is_text(mime):
    return mime.startswith(_TEXT_TYPES) or mime.endswith(("+json", "+xml"))


class DisplayBudget:
    """What one run may still add to its entry's ``displayData``: inline bytes
    and items. The worker keeps one per run and passes it to every call, so the
    limits hold over all of a run's display events and its result. Pure."""

    def __init__(self, max_bytes=DEFAULT_DISPLAY_BYTES, max_items=MAX_ITEMS):
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.used_bytes = 0
        self.items = 0
        self.full = False   # the item saying the rest were left out is out

    @property
    def remaining(self):
        return max(0, self.max_bytes - self.used_bytes)

    def admit(self, item):
        """``[item]`` while there is room for items, then once the note that the
        rest were left out, then nothing."""
        if self.items < self.max_items:
            self.items += 1
            return [item]
        if self.full:
            return []
        self.full = True
        return [{"mimeType": "text/plain", "assetId": None,
                 "data": "[mrmd-monitor: more than %d rich outputs in this run; the rest are "
                         "left out]" % self.max_items}]


class DisplayConverter:
    """``plots``: a plots.PlotKeeper, which saves the run's images where the
    editor would and says where in ``imagePath`` / ``imageUrl``; None: no
    image is kept for an image line."""

    def __init__(self, max_inline_bytes, store=None, max_display_bytes=DEFAULT_DISPLAY_BYTES,
                 plots=None):
        self.max_inline = max_inline_bytes
        self.max_display = max_display_bytes
        self.store = store
        self.plots = plots

    def budget(self):
        """A fresh budget for one run."""
        return DisplayBudget(self.max_display)

    def bundle(self, bundle, budget=None):
        """Items for one MIME bundle ``{mime: data}``.

        Without a budget, the call gets one of its own: a caller that does not
        keep one per run still gets each call bounded.
        """
        if budget is None:
            budget = self.budget()
        items = []
        if not isinstance(bundle, dict):
            return items
        for mime, data in bundle.items():
            if not isinstance(mime, str):
                continue
            if budget.full:
                break
            admitted = budget.admit(self._item(mime[:_MAX_FIELD], data, budget))
            if self.plots is not None:
                raw = self.plots.inline_bytes(mime, data)
                admitted = [self.plots.keep(item, raw) for item in admitted]
            items.extend(admitted)
        return items

    def _asset(self, asset, runtime_url, budget):
        items = budget.admit(asset_item(asset, runtime_url))
        if self.plots is not None:
            items = [self.plots.keep(item) for item in items]
        return items

    def _item(self, mime, data, budget):
        size = _size(data)
        if size is None:
            return {"mimeType": mime, "data": None, "assetId": None, "size": None,
                    "omitted": "not JSON data (too deeply nested or of an unknown type)"}
        room = min(self.max_inline, budget.remaining)
        if size <= room:
            budget.used_bytes += size
            return {"mimeType": mime, "data": data, "assetId": None}
        if size <= self.max_inline:
            limit = "over --max-display-bytes (%d bytes of rich output inline per run)" \
                % self.max_display
        else:
            limit = "larger than --max-inline-bytes (%d bytes)" % self.max_inline
        if mime == "text/plain" and isinstance(data, str) and room >= min(self.max_inline,
                                                                          _MIN_CUT):
            # The fallback stays readable: its head, marked as cut.
            kept = data.encode("utf-8")[:room]
            cut = kept.decode("utf-8", "ignore")
            budget.used_bytes += room
            return {"mimeType": mime, "assetId": None,
                    "data": cut + "\n[... %d bytes left out]" % (size - len(cut.encode("utf-8")))}
        advice = "start the monitor with --assets-dir to keep such outputs"
        if self.store is not None:
            try:
                asset_id, url = self.store.put(mime, data)
                return {"mimeType": mime, "data": None, "assetId": asset_id, "url": url,
                        "size": size}
            except OSError as exc:
                log.warning("cannot store a %d-byte %s output in %s: %s", size, mime,
                            self.store.directory, exc)
                advice = "it could not be kept in --assets-dir (see the monitor's log)"
        return {"mimeType": mime, "data": None, "assetId": None, "size": size,
                "omitted": "%s; %s" % (limit, advice)}

    def from_event(self, kind, data, runtime_url, budget=None):
        """Items from a ``display`` or ``asset`` event."""
        if not isinstance(data, dict):
            return []
        if kind == "asset":
            if budget is None:
                budget = self.budget()
            return self._asset(data, runtime_url, budget)
        return self.bundle(data.get("data"), budget)

    def from_result(self, result, runtime_url, budget=None):
        """Items from a result's ``displayData`` and ``assets``."""
        if not isinstance(result, dict):
            return []
        if budget is None:
            budget = self.budget()
        items = []
        for bundle in _list(result.get("displayData")):
            if isinstance(bundle, dict):
                items.extend(self.bundle(bundle.get("data"), budget))
        for asset in _list(result.get("assets")):
            if budget.full:
                break
            if isinstance(asset, dict):
                items.extend(self._asset(asset, runtime_url, budget))
        return items


def _list(value):
    return value if isinstance(value, list) else []


def _size(data):
    """Bytes ``data`` takes inline: UTF-8 for text, JSON for anything else;
    None when it cannot be written as JSON (nesting past the recursion limit,
    a type JSON has not)."""
    if isinstance(data, str):
        return len(data.encode("utf-8"))
    try:
        return len(json.dumps(data).encode("utf-8"))
    except (RecursionError, ValueError, TypeError):
        return None


def _field(value):
    """A runtime's string field, if it is one and short and single-line."""
    if isinstance(value, str) and len(value) <= _MAX_FIELD and value.isprintable():
        return value
    return None


def asset_item(asset, runtime_url):
    """An asset the runtime serves itself: a reference, never the bytes.

    MRP 0.3.0 names an asset by ``id``; mrmd-python 0.4.2 by ``path``. The
    URL is the runtime's own (relative, or absolute on the runtime's origin):
    a runtime must not point browsers at other hosts.
    """
    asset_id = _field(asset.get("id")) or _field(asset.get("path"))
    url = _field(asset.get("url"))
    runtime = urlsplit(runtime_url)
    if url is not None:
        if url.startswith("/") and not url.startswith("//"):
            url = "%s://%s%s" % (runtime.scheme, runtime.netloc, url)
        else:
            try:
                parts = urlsplit(url)
            except ValueError:
                parts = None
            if parts is None or (parts.scheme, parts.netloc) != (runtime.scheme,
                                                                 runtime.netloc):
                url = None
    size = asset.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        size = None
    return {"mimeType": _field(asset.get("mimeType")), "data": None, "assetId": asset_id,
            "url": url, "size": size}
