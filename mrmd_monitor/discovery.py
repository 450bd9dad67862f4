"""Which documents the sync server has open, from its HTTP ``/stats``.

mrmd-sync lists its open documents at ``/stats`` (``documents[].name``) on
the same host and port as the websockets. Without ``--doc`` the monitor
follows that list. The poll is blocking HTTP, so it has a thread of its own;
it only reports names, and the daemon attaches and detaches sync threads.
"""

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import requests

from .errors import MonitorError

log = logging.getLogger(__name__)


class NoStatsEndpoint(MonitorError):
    """The server answers but has no /stats: it cannot tell us its documents."""


def stats_url(sync_url):
    parts = urlsplit(sync_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.rstrip("/") + "/stats"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def parse_stats(payload):
    """Document names from a /stats answer; raises ValueError if it has no list."""
    docs = payload.get("documents") if isinstance(payload, dict) else None
    if not isinstance(docs, list):
        raise ValueError("no documents list")
    names = []
    for doc in docs:
        name = doc.get("name") if isinstance(doc, dict) else doc
        if isinstance(name, str) and name.strip() and name not in names:
            names.append(name)
    return names


def fetch_documents(url, *, timeout, token=None, verify=True):
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    params = {"token": token} if token else None
    try:
        response = requests.get(url, timeout=timeout, headers=headers, params=params,
                                verify=verify)
    except requests.RequestException as exc:
        raise ConnectionError("cannot reach %s: %s" % (url, type(exc).__name__)) from exc
    if response.status_code == 404:
        raise NoStatsEndpoint(
            "the sync server has no %s (a plain y-websocket server?): it cannot list its "
            "documents, so give them with --doc" % url)
    if response.status_code != 200:
        raise ConnectionError("%s answered HTTP %d" % (url, response.status_code))
    try:
        return parse_stats(response.json())
    except ValueError as exc:
        raise NoStatsEndpoint("%s does not list documents (documents[].name): give them "
                              "with --doc" % url) from exc


class Discovery(threading.Thread):
    """Polls /stats every ``interval`` seconds and calls ``report(names)`` or
    ``fail(error)`` (for a server without /stats) from its own thread."""

    def __init__(self, config, report, fail):
        super().__init__(name="discover", daemon=True)
        self.url = stats_url(config.sync_url)
        self.config = config
        self._report = report
        self._fail = fail
        self._halt = threading.Event()
        self._warned = False

    def stop(self):
        self._halt.set()

    def run(self):
        try:
            while not self._halt.is_set():
                try:
                    names = fetch_documents(self.url, timeout=self.config.connect_timeout,
                                            token=self.config.token,
                                            verify=self.config.ca_file or True)
                except NoStatsEndpoint as exc:
                    self._fail(exc)
                    return
                except ConnectionError as exc:
                    if not self._warned:
                        log.warning("document discovery: %s; retrying every %.0fs", exc,
                                    self.config.discover_interval)
                        self._warned = True
                else:
                    self._warned = False
                    self._report(names)
                self._halt.wait(self.config.discover_interval)
        except BaseException:  # noqa: B902 - never die silently
            log.exception("document discovery crashed")
            self._fail(MonitorError("document discovery crashed (see the log)"))
