"""Which documents the sync server has open, from its HTTP ``/stats``.

mrmd-sync lists its open documents at ``/stats`` (``documents[].name``) on
the same host and port as the websockets. Without ``--doc`` the monitor
follows that list, at most ``--max-docs`` documents. The poll is blocking
HTTP, so it has a thread of its own; it only reports names, and the daemon
attaches and detaches sync threads (``plan`` decides which).

The answer is outside input: it is read to at most ``MAX_STATS_BYTES`` and
``MAX_LISTED`` names, redirects are not followed (the token would go with
them), and a bad answer after a good one is logged once while the documents
already followed are kept; only a server that never listed its documents
ends the monitor.
"""

import json
import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import requests

from .cluster import MAX_DOCUMENTS
from .errors import DiscoveryError, MonitorError, NoStatsEndpoint
from .httpbody import read_limited

log = logging.getLogger(__name__)

#: Most bytes of a /stats answer read (about 40,000 document names).
MAX_STATS_BYTES = 4 * 1024 * 1024
#: Most distinct document names taken from one answer (the rest are not
#: read); the cluster's assignment plans over as many at most.
MAX_LISTED = MAX_DOCUMENTS


def stats_url(sync_url):
    parts = urlsplit(sync_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.rstrip("/") + "/stats"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def parse_stats(payload, limit=MAX_LISTED):
    """Document names from a /stats answer, each once, in order, at most
    ``limit`` of them; raises ValueError if it has no list."""
    docs = payload.get("documents") if isinstance(payload, dict) else None
    if not isinstance(docs, list):
        raise ValueError("no documents list")
    names = {}   # a dict keeps the order and finds a duplicate in one step
    for doc in docs:
        name = doc.get("name") if isinstance(doc, dict) else doc
        if isinstance(name, str) and name.strip():
            names[name] = None
            if len(names) >= limit:
                break
    return list(names)


def plan(listed, following, max_docs):
    """``(attach, detach, left_out)``: the documents to attach to, to leave, and
    the listed ones left alone because ``max_docs`` are followed already.

    Documents already followed keep their place (one newly listed ahead of
    them in the server's order does not push them out)."""
    listed_set = set(listed)
    keep = [d for d in following if d in listed_set]
    detach = [d for d in following if d not in listed_set]
    room = max(0, max_docs - len(keep))
    followed = set(following)
    new = [d for d in listed if d not in followed]
    return new[:room], detach, new[room:]


def fetch_documents(url, *, timeout, token=None, verify=True, limit=MAX_STATS_BYTES):
    """The names listed at ``url``. Raises NoStatsEndpoint when the server has
    no document list there, DiscoveryError for any other failure."""
    headers = {"Authorization": "Bearer %s" % token} if token else {}
    params = {"token": token} if token else None
    try:
        with requests.get(url, timeout=timeout, headers=headers, params=params, verify=verify,
                          stream=True, allow_redirects=False) as response:
            if response.status_code == 404:
                raise NoStatsEndpoint(
                    "the sync server has no %s (a plain y-websocket server?): it cannot list its "
                    "documents, so give them with --doc" % url, url=url, status_code=404)
            if response.status_code != 200:
                raise DiscoveryError("%s answered HTTP %d" % (url, response.status_code),
                                     url=url, status_code=response.status_code)
            body = read_limited(response, limit)
            if len(body) > limit:
                raise DiscoveryError("%s answered more than %d bytes: larger than a document "
                                     "list should be" % (url, limit), url=url)
    except requests.RequestException as exc:
        raise DiscoveryError("cannot reach %s: %s" % (url, type(exc).__name__), url=url) from None
    try:
        return parse_stats(json.loads(body))
    except (ValueError, RecursionError):
        raise NoStatsEndpoint("%s does not list documents (documents[].name): give them "
                              "with --doc" % url, url=url, status_code=200) from None


class Discovery(threading.Thread):
    """Polls /stats every ``discover-interval`` seconds and calls ``report(names)``
    after each good answer, or ``fail(error)`` for a server that has never
    listed its documents, from its own thread.

    ``settings`` is the current Config or a callable returning it (so a HUP's
    token, CA file and interval apply at the next poll).
    """

    def __init__(self, settings, report, fail):
        super().__init__(name="discover", daemon=True)
        self._settings = settings if callable(settings) else (lambda: settings)
        self.url = stats_url(self._settings().sync_url)
        self._report = report
        self._fail = fail
        self._halt = threading.Event()
        self._known = None       # the names of the last good answer
        self._troubled = False   # a failure is logged; the next success says so
        self._full = False       # the list reached MAX_LISTED (said once)

    @property
    def config(self):
        return self._settings()

    def stop(self):
        self._halt.set()

    def run(self):
        try:
            while not self._halt.is_set():
                config = self._settings()
                try:
                    names = fetch_documents(self.url, timeout=config.connect_timeout,
                                            token=config.token, verify=config.ca_file or True)
                except NoStatsEndpoint as exc:
                    if self._known is None:
                        self._fail(exc)
                        return
                    self._trouble(exc, config)
                except DiscoveryError as exc:
                    self._trouble(exc, config)
                else:
                    if self._troubled:
                        log.info("document discovery: %s answers again", self.url)
                    self._troubled = False
                    self._known = names
                    if (len(names) >= MAX_LISTED) != self._full:
                        self._full = not self._full
                        if self._full:
                            log.warning("document discovery: %s lists %d documents or more; "
                                        "only the first %d are considered", self.url,
                                        MAX_LISTED, MAX_LISTED)
                    self._report(names)
                self._halt.wait(config.discover_interval)
        except BaseException:  # noqa: B902 - never die silently
            log.exception("document discovery crashed")
            self._fail(MonitorError("document discovery crashed (see the log)"))

    def _trouble(self, error, config):
        if self._troubled:
            return
        self._troubled = True
        if self._known is None:
            log.warning("document discovery: %s; retrying every %gs", error,
                        config.discover_interval)
        else:
            log.warning("document discovery: %s; keeping the %d document(s) already followed, "
                        "retrying every %gs", error, len(self._known), config.discover_interval)
