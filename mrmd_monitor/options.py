"""Every option of mrmd-monitor, declared once, in one table.

One :class:`Option` row gives an option's name (the long command-line flag
without ``--``, also its key in the INI file), how a raw string becomes its
value, its default, its help text, its environment variable, whether it is a
secret and whether a HUP applies it to a running monitor. The parser
(``config.build_parser``), the frozen ``Config``, the start line, masking, the
HUP reload and the check that ``contrib/monitor.ini`` lists every option are
all driven by :data:`OPTIONS`.

To add an option: add one row to :data:`OPTIONS` and a commented line to
``contrib/monitor.ini`` (a test checks it is there with the same default); a
main option also gets a row in the README's table. Its value is then
``config.<field>``.

Nothing here touches sockets, threads or the clock.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

ENV_PREFIX = "MRMD_MONITOR_"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# Runtime hosts a monitor may call when nothing else is configured: this
# machine only. A peer that can edit the document must not be able to aim the
# monitor at another host.
DEFAULT_ALLOWED_RUNTIMES = ("localhost", "127.0.0.0/8", "::1")


# --------------------------------------------------------------------------
# Value types. They run on command-line, environment and config-file values
# alike (ConfigArgParse turns the latter two into command-line arguments), and
# raise ArgumentTypeError, which the parser reports with the option's name.


def _number(value: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {value!r}")
    return number


def seconds_at_least_zero(value: str) -> float:
    number = _number(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {value!r}")
    return number


def seconds_above_zero(value: str) -> float:
    number = _number(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {value!r}")
    return number


def at_least_one(value: str) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value!r}")
    return number


def size_in_bytes(value: str) -> int:
    """``1048576``, ``512K``, ``2M``, ``1G`` (powers of 1024)."""
    text = str(value).strip().upper()
    if text.endswith("B"):
        text = text[:-1]
    scale = 1
    if text and text[-1] in "KMG":
        scale = 1024 ** ("KMG".index(text[-1]) + 1)
        text = text[:-1]
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 65536, 512K or 2M, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value!r}")
    return number * scale


def host_address(value: str) -> str:
    """``HOST:PORT`` or ``PORT`` (loopback) for the status server."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {value!r}")
    return f"{host}:{number}"


def fraction(value: str) -> float:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not (0 < number <= 1):
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {value!r}")
    return number


def message_size(value: str) -> int:
    """A --max-message-bytes value: a size of at least 4K."""
    number = size_in_bytes(value)
    if number < 4096:
        raise argparse.ArgumentTypeError(f"must be at least 4K, got {value!r}")
    return number


def replicas_count(value: str):
    """``all`` (or 0): every monitor follows every document (None); else a
    whole number >= 1."""
    text = str(value).strip().lower()
    if text in ("all", "0"):
        return None
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 'all' or at least 1, got {value!r}")
    return number


def log_level(value: str) -> str:
    level = str(value).strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"expected one of debug, info, warn, warning, error; got {value!r}"
        )
    return level


def log_format(value: str) -> str:
    fmt = str(value).strip().lower()
    if fmt not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"expected text or json, got {value!r}")
    return fmt


def non_empty(value: str) -> str:
    text = str(value).strip()
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


# --------------------------------------------------------------------------
# Final conversions: from what the parser holds to the Config value.


def _or_none(value):
    return value or None


def _log_file(value):
    text = str(value).strip() if value is not None else ""
    return None if text in ("", "-") else text


def _docs(value):
    """Order kept, duplicates dropped; an empty name is an error."""
    docs = []
    for doc in value or ():
        doc = str(doc).strip()
        if not doc:
            raise ValueError("--doc must not be empty")
        if doc not in docs:
            docs.append(doc)
    return tuple(docs)


def _secret_file(value):
    """The secret in a file: its first line, read once at start."""
    path = str(value).strip() if value is not None else ""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError("cannot read --cluster-secret-file %s: %s"
                         % (path, getattr(exc, "strerror", None) or exc)) from None
    if not secret:
        raise ValueError("--cluster-secret-file %s is empty" % path)
    return secret


def _stripped_or_none(value):
    return str(value).strip() or None if value is not None else None


def _allowlist(value):
    return tuple(value) if value else DEFAULT_ALLOWED_RUNTIMES


# --------------------------------------------------------------------------
# The table.


@dataclass(frozen=True)
class Option:
    """One option. ``type`` turns a raw string into the value (None keeps the
    string); ``many`` makes it repeatable (``--doc a --doc b``; one value per
    indented line in a file); ``finish`` turns the parsed value into the
    Config value; ``shown`` is how the default reads in --help when
    ``str(default)`` would not say it well."""

    name: str
    type: Optional[Callable[[str], Any]]
    default: Any
    help: str
    env: str = ""
    secret: bool = False
    reloadable: bool = True
    metavar: str = ""
    shown: Optional[str] = None
    many: bool = False
    finish: Optional[Callable[[Any], Any]] = None
    field: str = ""

    def __post_init__(self):
        if not self.env:
            object.__setattr__(self, "env", ENV_PREFIX + self.name.replace("-", "_").upper())
        if not self.field:
            object.__setattr__(self, "field", self.name.replace("-", "_"))

    @property
    def shown_default(self) -> str:
        return str(self.default) if self.shown is None else self.shown


S, B = "SECONDS", "BYTES"

OPTIONS = (
    Option("sync-url", None, None, "the sync URL as an option, for the environment and config "
           "files (on the command line, give it as sync-url)", metavar="URL",
           shown="none, required here or as the positional sync-url", reloadable=False),
    Option("doc", None, (), "document to monitor; repeat to monitor several; in a config file, "
           "one per indented line", metavar="PATH", many=True, finish=_docs, field="docs",
           shown="none: follow every document the server lists at /stats", reloadable=False),
    Option("name", non_empty, "mrmd-monitor", "name shown to other peers in Awareness",
           metavar="NAME", reloadable=False),
    Option("log-level", log_level, "info", "least severe messages to log",
           metavar="{debug,info,warn,error}"),
    Option("log-format", log_format, "text", "text for people, json for one JSON object per line",
           metavar="{text,json}"),
    Option("log-file", None, None, "append logs to this file, reopened on HUP and when logrotate "
           "moves it; '-' means stderr", metavar="PATH", shown="stderr", finish=_log_file),
    Option("max-workers", at_least_one, 8, "executions that may run at the same time",
           metavar="N", reloadable=False),
    Option("worker-share", fraction, 0.5, "the largest part of --max-workers that one document, "
           "or one runtime (its host and port, however a URL spells them), may hold at once (at "
           "least one worker); below 1, the last free worker also waits for a document that "
           "holds none, so that others are never starved", metavar="FRACTION",
           reloadable=False),
    Option("flush-interval", seconds_at_least_zero, 0.05,
           "how often buffered output is written into the document", metavar=S),
    Option("block-wait", seconds_at_least_zero, 1.0, "how long a claimed run waits for a browser "
           "to create its output block before the monitor creates it", metavar=S),
    Option("grace", seconds_at_least_zero, 3.0,
           "on TERM/INT, how long running executions may finish (the mrmd launchers kill a "
           "monitor 5 s after TERM: keep it under 4 s there)", metavar=S),
    Option("connect-timeout", seconds_above_zero, 10.0,
           "timeout for connecting to mrmd-sync and to a runtime", metavar=S, reloadable=False),
    Option("idle-timeout", seconds_above_zero, 300.0, "give up on a runtime stream silent this "
           "long (runtimes ping every 60 s)", metavar=S, reloadable=False),
    Option("reconnect-max", seconds_above_zero, 30.0,
           "cap of the backoff between reconnects to mrmd-sync", metavar=S),
    Option("claim-settle", seconds_at_least_zero, 0.3, "after a claim has made a round trip "
           "through the server, wait at least this long for a concurrent claim by another "
           "monitor before running (only when another monitor is present; longer while round "
           "trips are slow: twice the slowest of the last 16 round trips and claim delays, at "
           "most 5 s; 0: no wait)", metavar=S),
    Option("orphan-timeout", seconds_above_zero, 20.0, "a monitor missing from awareness this "
           "long has lost its claims: not-started runs are taken over, running ones marked error",
           metavar=S),
    Option("stale-after", seconds_at_least_zero, 600.0, "at start, requests older than this are "
           "marked expired instead of run (0: never)", metavar=S),
    Option("max-run-time", seconds_at_least_zero, 86400.0, "stop and mark error a run that "
           "takes longer, counted from the request to the runtime: a day lets hours-long "
           "notebook runs finish while an endless cell cannot hold a worker for good; raise it "
           "for longer runs, 0 for no limit", metavar=S, shown="86400 (24 h); 0: unlimited"),
    Option("max-output-bytes", size_in_bytes, 2 * 1024 * 1024, "most output one run keeps in "
           "the document: past it, the head and the latest tail are kept with a line saying how "
           "much was left out", metavar=B, shown="2M"),
    Option("max-inline-bytes", size_in_bytes, 256 * 1024, "rich output larger than this is kept "
           "as an asset reference, not inline in the document", metavar=B, shown="256K",
           reloadable=False),
    Option("max-message-bytes", message_size, 1024 * 1024, "largest websocket message sent to "
           "the sync server (mrmd-sync's maxMessageSize): larger updates are cut into several "
           "messages; at least 4K", metavar=B, shown="1M"),
    Option("max-event-bytes", size_in_bytes, 8 * 1024 * 1024, "largest single event a runtime "
           "may send on a stream (its bytes held at once); a larger one ends the run in error",
           metavar=B, shown="8M", reloadable=False),
    Option("max-columns", at_least_one, 4096, "width of the terminal output is rendered on: "
           "text, tabs and cursor moves past this column are dropped", metavar="COLUMNS"),
    Option("max-display-bytes", size_in_bytes, 512 * 1024, "most rich output one run keeps "
           "inline in its entry: past it, outputs become asset references (with --assets-dir) or "
           "a note of what was left out; 0 keeps none inline. Keep it well under the sync "
           "server's 1 MiB message limit", metavar=B, shown="512K", reloadable=False),
    Option("assets-dir", None, None, "keep rich outputs larger than --max-inline-bytes as files "
           "here (served at /assets/ on --status-addr) instead of dropping them", metavar="PATH",
           shown="none", finish=_or_none, reloadable=False),
    Option("project-root", None, None, "the notebooks' project directory: plots are saved under "
           "its _assets/generated/ and shown by an image line after their output block, as the "
           "mrmd editor does (without it, by a URL: see --assets-dir)", metavar="PATH",
           shown="none", finish=_or_none, reloadable=False),
    Option("assets-max-bytes", size_in_bytes, 512 * 1024 * 1024, "most bytes kept in "
           "--assets-dir: past it the oldest assets are removed (0: no limit)", metavar=B,
           shown="512M", reloadable=False),
    Option("assets-retention", seconds_at_least_zero, 0.0, "assets older than this are removed "
           "from --assets-dir (0: kept until --assets-max-bytes needs the room)", metavar=S,
           shown="0: by size only", reloadable=False),
    Option("retention", seconds_at_least_zero, 3600.0, "finished entries are removed from the "
           "executions map after this long (0: never); the output stays in the text", metavar=S),
    Option("allow-runtime", None, DEFAULT_ALLOWED_RUNTIMES, "runtime hosts the monitor may call: "
           "a host name (shell wildcards allowed), an IP network, or host:port; repeat for several",
           metavar="PATTERN", many=True, finish=_allowlist, shown="localhost, 127.0.0.0/8, ::1"),
    Option("token", None, None, "auth token for mrmd-sync, sent as ?token= and as an "
           "Authorization: Bearer header; never logged; give it in MRMD_MONITOR_TOKEN or the "
           "config file to keep it out of ps", metavar="TOKEN", shown="none", secret=True,
           finish=_or_none),
    Option("ca-file", None, None, "CA bundle to verify a wss:// sync server's certificate",
           metavar="PATH", shown="system CAs", finish=_or_none),
    Option("discover-interval", seconds_above_zero, 5.0, "without --doc, how often to ask the "
           "server's /stats for its open documents", metavar=S),
    Option("max-docs", at_least_one, 256, "without --doc, most documents followed at once; past "
           "it, documents the server lists are left alone (one log line says so)", metavar="N"),
    Option("status-addr", host_address, None, "serve /healthz, /metrics and /assets/ here (a "
           "bare port means 127.0.0.1)", metavar="HOST:PORT", shown="off", reloadable=False),
    Option("replicas", replicas_count, None, "without --doc, how many of the monitors present "
           "in --control-doc follow each document listed at /stats ('all': every monitor follows "
           "every document)", metavar="R", shown="all", reloadable=False),
    Option("control-doc", None, "mrmd-monitors", "with --replicas R, the document on the sync "
           "server in whose awareness monitors find each other (empty: none; then --replicas has "
           "no effect)", metavar="NAME", finish=_stripped_or_none, reloadable=False),
    Option("cluster-secret", None, None, "a secret shared by the monitors of one cluster: each "
           "signs its state in awareness with it, and a peer that does not prove it is no "
           "monitor (its claims hold no lease, it takes no documents or runs); never logged; "
           "prefer --cluster-secret-file or MRMD_MONITOR_CLUSTER_SECRET", metavar="SECRET",
           shown="none: every peer that says it is a monitor is one", secret=True,
           finish=_or_none, reloadable=False),
    Option("cluster-secret-file", None, None, "read --cluster-secret from the first line of "
           "this file at start", metavar="PATH", shown="none", secret=True,
           finish=_secret_file, field="cluster_secret_from_file", reloadable=False),
)

BY_NAME = {option.name: option for option in OPTIONS}
BY_FIELD = {option.field: option for option in OPTIONS}


def cluster_secret(config):
    """The secret monitors prove their membership with, or None."""
    return (getattr(config, "cluster_secret", None)
            or getattr(config, "cluster_secret_from_file", None))


def secret_fields():
    return tuple(option.field for option in OPTIONS if option.secret)


def restart_only_fields():
    return tuple(option.field for option in OPTIONS if not option.reloadable)
