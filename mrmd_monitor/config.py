"""Every option of mrmd-monitor, declared once, and its validation.

Each option is declared a single time on a ConfigArgParse parser: its default,
type, help and environment variable (``MRMD_MONITOR_<OPTION>``, through
``auto_env_var_prefix``) live in that one declaration. A value can come from
the command line, the environment, an INI file given with ``-c`` (section
``[mrmd-monitor]``), or the default, in that order of precedence.

``load_config(argv, env)`` turns all of that into a frozen :class:`Config` and
records where each value came from; ``describe(config)`` renders it as one log
line. Nothing here touches sockets, threads or the clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import configargparse

from . import __version__
from .errors import ConfigError

PROG = "mrmd-monitor"
ENV_PREFIX = "MRMD_MONITOR_"
CONFIG_SECTION = "mrmd-monitor"
CONFIG_ENV_VAR = ENV_PREFIX + "CONFIG"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

# Where a value came from, as it appears in Config.sources and describe().
SOURCE_COMMAND_LINE = "command line"
SOURCE_DEFAULT = "default"
SOURCE_ENV_PREFIX = "environment "
SOURCE_FILE_PREFIX = "config file "

# ConfigArgParse's keys in get_source_to_settings_dict() (stable since 1.0).
_CAP_ENV = getattr(configargparse, "_ENV_VAR_SOURCE_KEY", "environment_variables")
_CAP_FILE = getattr(configargparse, "_CONFIG_FILE_SOURCE_KEY", "config_file")

# Option name (as in sources and describe) -> Config field, in declaration order.
OPTION_FIELDS = (
    ("config", "config_file"),
    ("sync-url", "sync_url"),
    ("doc", "docs"),
    ("name", "name"),
    ("log-level", "log_level"),
    ("log-format", "log_format"),
    ("log-file", "log_file"),
    ("max-workers", "max_workers"),
    ("flush-interval", "flush_interval"),
    ("block-wait", "block_wait"),
    ("grace", "grace"),
    ("connect-timeout", "connect_timeout"),
    ("idle-timeout", "idle_timeout"),
    ("reconnect-max", "reconnect_max"),
    ("claim-settle", "claim_settle"),
    ("orphan-timeout", "orphan_timeout"),
    ("stale-after", "stale_after"),
    ("max-run-time", "max_run_time"),
    ("max-output-bytes", "max_output_bytes"),
    ("max-inline-bytes", "max_inline_bytes"),
    ("max-event-bytes", "max_event_bytes"),
    ("assets-dir", "assets_dir"),
    ("retention", "retention"),
    ("allow-runtime", "allow_runtime"),
    ("token", "token"),
    ("ca-file", "ca_file"),
    ("discover-interval", "discover_interval"),
    ("status-addr", "status_addr"),
)
_FIELD_TO_OPTION = {field: option for option, field in OPTION_FIELDS}

_SECRET_WORDS = ("token", "password")

# Runtime hosts a monitor may call when nothing else is configured: this
# machine only. A peer that can edit the document must not be able to aim the
# monitor at another host.
DEFAULT_ALLOWED_RUNTIMES = ("localhost", "127.0.0.0/8", "::1")


@dataclass(frozen=True)
class Config:
    """The effective configuration of one monitor process."""

    sync_url: str
    docs: tuple[str, ...] = ()
    name: str = "mrmd-monitor"
    log_level: str = "info"
    log_format: str = "text"
    log_file: Optional[str] = None
    max_workers: int = 8
    flush_interval: float = 0.05
    block_wait: float = 1.0
    grace: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    reconnect_max: float = 30.0
    claim_settle: float = 0.3
    orphan_timeout: float = 20.0
    stale_after: float = 600.0
    max_run_time: float = 0.0
    max_output_bytes: int = 2 * 1024 * 1024
    max_inline_bytes: int = 256 * 1024
    max_event_bytes: int = 8 * 1024 * 1024
    assets_dir: Optional[str] = None
    retention: float = 3600.0
    allow_runtime: tuple[str, ...] = DEFAULT_ALLOWED_RUNTIMES
    token: Optional[str] = None
    ca_file: Optional[str] = None
    discover_interval: float = 5.0
    status_addr: Optional[str] = None
    config_file: Optional[str] = None
    sources: tuple[tuple[str, str], ...] = ()

    def source_of(self, option: str) -> str:
        """Where the value of ``option`` (e.g. ``"max-workers"``) came from."""
        return dict(self.sources).get(option, SOURCE_DEFAULT)


class ParserExit(SystemExit):
    """``--help`` or ``--version`` was handled; the text is already printed.

    A SystemExit, so a caller that does not care behaves like argparse; the
    CLI catches it and returns ``code`` as its exit status.
    """


# --------------------------------------------------------------------------
# Value types. They run on command-line, environment and config-file values
# alike (ConfigArgParse turns the latter two into command-line arguments).


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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


def workers(value: str) -> int:
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


def normalize_sync_url(value: str) -> str:
    """``"localhost:4444"`` -> ``"ws://localhost:4444"``; only ws/wss; no trailing ``/``.

    Raises ConfigError with a one-line reason.
    """
    url = str(value).strip()
    if not url:
        raise ConfigError("the sync URL is empty")
    if "://" not in url:
        url = "ws://" + url
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ConfigError(f"the sync URL must start with ws:// or wss://, got {value!r}")
    url = (scheme + "://" + rest).rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"the sync URL {value!r} is not valid: {_one_line(exc)}") from None
    if not parts.hostname:
        raise ConfigError(f"the sync URL {value!r} has no host")
    if any(ch.isspace() for ch in url):
        raise ConfigError(f"the sync URL {value!r} contains whitespace")
    return url


# --------------------------------------------------------------------------
# The parser.


class _IniParser(configargparse.IniConfigParser):
    """The stock INI parser, whose errors also name the file."""

    def parse(self, stream):
        try:
            return super().parse(stream)
        except configargparse.ConfigFileParserException as exc:
            name = getattr(stream, "name", "config file")
            raise configargparse.ConfigFileParserException(
                f"cannot read config file {name}: {_one_line(exc)}"
            ) from None


class MonitorArgumentParser(configargparse.ArgumentParser):
    """Reports errors by raising instead of exiting the process."""

    def error(self, message):
        raise ConfigError(_one_line(message))

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


DESCRIPTION = """\
mrmd-monitor - headless Yjs peer that runs mrmd notebook code cells

Connects to mrmd-sync as a Yjs peer and:
  - watches for execution requests in Y.Map('executions')
  - claims them and executes them via MRP runtimes
  - writes the output into the document's Y.Text, so a long run keeps
    writing its output after the browser that started it is closed
  - relays stdin requests from runtimes to the notebook and back

It stays in the foreground. TERM or INT stops it gracefully (running cells
get --grace seconds to finish, a second signal stops at once); HUP reopens
the log file.
"""

EPILOG = """\
examples:
  mrmd-monitor ws://localhost:4444
  mrmd-monitor --doc notebook.md ws://localhost:4444
  mrmd-monitor --log-level debug ws://localhost:4444
  mrmd-monitor --doc a.md --doc b.md --log-format json wss://sync.example.org
  mrmd-monitor -c /etc/mrmd-monitor/monitor.ini
  MRMD_MONITOR_SYNC_URL=ws://localhost:4444 mrmd-monitor
"""


def _add(parser, flag, *, default, help, shown_default=None, **kwargs):
    """Declare one option; its default is written into the help text."""
    shown = default if shown_default is None else shown_default
    text = f"{help} (default: {shown})".replace("%", "%%")
    return parser.add_argument(flag, default=default, help=text, **kwargs)


def build_parser() -> configargparse.ArgumentParser:
    parser = MonitorArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        config_file_parser_class=_IniParser(
            sections=[CONFIG_SECTION], split_ml_text_to_list=True
        ),
        auto_env_var_prefix=ENV_PREFIX,
        allow_abbrev=False,
    )
    parser.add_argument(
        "-c", "--config",
        dest="config_file",
        metavar="PATH",
        is_config_file=True,
        env_var=CONFIG_ENV_VAR,
        help=f"read options from this INI file, section [{CONFIG_SECTION}] "
             "(sample: contrib/monitor.ini)",
    )
    parser.add_argument(
        "-V", "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the version and exit",
    )
    parser.add_argument(
        "sync_url",
        nargs="?",
        metavar="sync-url",
        help="WebSocket URL of mrmd-sync, e.g. ws://localhost:4444; 'host:port' "
             "means ws://host:port. May also be given as --sync-url.",
    )
    _add(parser, "--sync-url", dest="sync_url_setting", metavar="URL", default=None,
         shown_default="none, required here or as the positional sync-url",
         help="the sync URL, for the environment and config files")
    _add(parser, "--doc", dest="docs", metavar="PATH", action="append", default=None,
         shown_default="none: the daemon's default document",
         help="document to monitor; repeat to monitor several; in a config file, "
              "one per indented line")
    _add(parser, "--name", metavar="NAME", type=non_empty, default="mrmd-monitor",
         help="name shown to other peers in Awareness")
    _add(parser, "--log-level", metavar="{debug,info,warn,error}", type=log_level,
         default="info", help="least severe messages to log")
    _add(parser, "--log-format", metavar="{text,json}", type=log_format, default="text",
         help="text for people, json for one JSON object per line")
    _add(parser, "--log-file", metavar="PATH", default=None, shown_default="stderr",
         help="append logs to this file, reopened when logrotate moves it; '-' means stderr")
    _add(parser, "--max-workers", metavar="N", type=workers, default=8,
         help="executions that may run at the same time")
    _add(parser, "--flush-interval", metavar="SECONDS", type=seconds_at_least_zero,
         default=0.05, help="how often buffered output is written into the document")
    _add(parser, "--block-wait", metavar="SECONDS", type=seconds_at_least_zero, default=1.0,
         help="how long a claimed run waits for a browser to create its output block "
              "before the monitor creates it")
    _add(parser, "--grace", metavar="SECONDS", type=seconds_at_least_zero, default=10.0,
         help="on TERM/INT, how long running executions may finish")
    _add(parser, "--connect-timeout", metavar="SECONDS", type=seconds_above_zero,
         default=10.0, help="timeout for connecting to mrmd-sync and to a runtime")
    _add(parser, "--idle-timeout", metavar="SECONDS", type=seconds_above_zero, default=300.0,
         help="give up on a runtime stream silent this long (runtimes ping every 60 s)")
    _add(parser, "--reconnect-max", metavar="SECONDS", type=seconds_above_zero, default=30.0,
         help="cap of the backoff between reconnects to mrmd-sync")
    _add(parser, "--claim-settle", metavar="SECONDS", type=seconds_at_least_zero, default=0.3,
         help="after a claim has made a round trip through the server, wait this long for a "
              "concurrent claim by another monitor before running")
    _add(parser, "--orphan-timeout", metavar="SECONDS", type=seconds_above_zero, default=20.0,
         help="a monitor missing from awareness this long has lost its claims: not-started "
              "runs are taken over, running ones marked error")
    _add(parser, "--stale-after", metavar="SECONDS", type=seconds_at_least_zero, default=600.0,
         help="at start, requests older than this are marked expired instead of run (0: never)")
    _add(parser, "--max-run-time", metavar="SECONDS", type=seconds_at_least_zero, default=0.0,
         shown_default="0: unlimited", help="stop and mark error a run that takes longer")
    _add(parser, "--max-output-bytes", metavar="BYTES", type=size_in_bytes, default=2 * 1024 * 1024,
         shown_default="2M", help="most output one run keeps in the document: past it, the head "
         "and the latest tail are kept with a line saying how much was left out")
    _add(parser, "--max-event-bytes", metavar="BYTES", type=size_in_bytes, default=8 * 1024 * 1024,
         shown_default="8M", help="largest single event a runtime may send on a stream (its "
         "bytes held at once); a larger one ends the run in error")
    _add(parser, "--max-inline-bytes", metavar="BYTES", type=size_in_bytes, default=256 * 1024,
         shown_default="256K", help="rich output larger than this is kept as an asset reference, "
         "not inline in the document")
    _add(parser, "--assets-dir", metavar="PATH", default=None, shown_default="none",
         help="keep rich outputs larger than --max-inline-bytes as files here (served at "
              "/assets/ on --status-addr) instead of dropping them")
    _add(parser, "--retention", metavar="SECONDS", type=seconds_at_least_zero, default=3600.0,
         help="finished entries are removed from the executions map after this long (0: never); "
              "the output stays in the text")
    _add(parser, "--allow-runtime", dest="allow_runtime", metavar="PATTERN", action="append",
         default=None, shown_default="localhost, 127.0.0.0/8, ::1",
         help="runtime hosts the monitor may call: a host name (shell wildcards allowed), an "
              "IP network, or host:port; repeat for several")
    _add(parser, "--token", metavar="TOKEN", default=None, shown_default="none",
         help="auth token for mrmd-sync, sent as ?token= and as an Authorization: Bearer header")
    _add(parser, "--ca-file", metavar="PATH", default=None, shown_default="system CAs",
         help="CA bundle to verify a wss:// sync server's certificate")
    _add(parser, "--discover-interval", metavar="SECONDS", type=seconds_above_zero, default=5.0,
         help="without --doc, how often to ask the server's /stats for its open documents")
    _add(parser, "--status-addr", metavar="HOST:PORT", type=host_address, default=None,
         shown_default="off", help="serve /healthz and /metrics here (a bare port means "
         "127.0.0.1)")

    _assign_env_vars(parser)
    return parser


def _assign_env_vars(parser) -> None:
    """Name each option's environment variable now, exactly as
    ``auto_env_var_prefix`` would.

    ConfigArgParse only does this inside parse_known_args(), so format_help()
    on a fresh parser would not list them.
    """
    for action in parser._actions:
        keys = parser.get_possible_config_keys(action)
        if (
            not keys
            or getattr(action, "env_var", None)
            or not action.option_strings
            or getattr(action, "is_config_file_arg", False)
            or isinstance(action, (argparse._VersionAction, argparse._HelpAction))
        ):
            continue
        action.env_var = (ENV_PREFIX + keys[0].lstrip("-")).replace("-", "_").upper()


def option_actions(parser) -> dict:
    """Option name -> argparse action, for every option a file or env var can set."""
    result = {}
    for action in parser._actions:
        if not action.option_strings or getattr(action, "is_config_file_arg", False):
            continue
        if isinstance(action, (argparse._VersionAction, argparse._HelpAction)):
            continue
        result[action.option_strings[-1][2:]] = action
    return result


# --------------------------------------------------------------------------
# Loading.


def _on_command_line(argv: Sequence[str], option_strings: Sequence[str]) -> bool:
    for arg in argv:
        if arg == "--":
            return False
        for opt in option_strings:
            if arg == opt or arg.startswith(opt + "="):
                return True
            if len(opt) == 2 and opt[1] != "-" and arg.startswith(opt) and not arg.startswith("--"):
                return True  # -cPATH
    return False


def _collect_sources(parser, argv, namespace) -> dict:
    """dest -> where its value came from."""
    sources = {}
    for source_key, settings in parser.get_source_to_settings_dict().items():
        kind, _, label = source_key.partition("|")
        for key, (action, _value) in settings.items():
            if action is None:
                if kind == _CAP_FILE:
                    raise ConfigError(f"unknown setting {key!r} in config file {label}")
                continue
            if kind == _CAP_ENV:
                sources.setdefault(action.dest, SOURCE_ENV_PREFIX + key)
            elif kind == _CAP_FILE:
                if action.dest == "config_file":
                    raise ConfigError(f"'config' cannot be set inside config file {label}")
                sources.setdefault(action.dest, SOURCE_FILE_PREFIX + label)
    for action in parser._actions:
        if action.option_strings and _on_command_line(argv, action.option_strings):
            sources[action.dest] = SOURCE_COMMAND_LINE
    if namespace.sync_url is not None:
        sources["sync_url"] = SOURCE_COMMAND_LINE
    return sources


_ARGUMENT_ERROR = re.compile(r"^argument (?P<flags>[^:]+): (?P<reason>.*)$")


def _blame(parser, argv, env, message: str) -> str:
    """Say where a bad value came from when it was not the command line."""
    match = _ARGUMENT_ERROR.match(message)
    if not match:
        return message
    flags = match.group("flags").split("/")
    for action in parser._actions:
        if not set(flags) & set(action.option_strings):
            continue
        if _on_command_line(argv, action.option_strings):
            return message
        env_var = getattr(action, "env_var", None)
        if env_var and env_var in env:
            return f"{message} (from environment {env_var})"
        for source_key, entries in parser.get_source_to_settings_dict().items():
            kind, _, label = source_key.partition("|")
            if kind == _CAP_FILE and any(a is action for a, _ in entries.values()):
                return f"{message} (from config file {label})"
    return message


def load_config(argv: Optional[Sequence[str]], env: Optional[Mapping[str, str]] = None) -> Config:
    """Parse ``argv`` (without the program name), ``env`` and any ``-c`` file.

    Raises ConfigError with a one-line reason on any bad value, and
    ParserExit after printing ``--help`` or ``--version``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    parser = build_parser()
    for arg in argv:
        if arg == "--":
            break
        if arg in ("-h", "--help", "-V", "--version"):
            # Answer these even when another value is bad: alone, without env or file.
            parser.parse_known_args([arg], env_vars={})
    try:
        namespace, unknown = parser.parse_known_args(argv, env_vars=env)
    except ConfigError as exc:
        raise ConfigError(_blame(parser, argv, env, str(exc))) from None

    sources = _collect_sources(parser, argv, namespace)
    if unknown:
        raise ConfigError("unrecognized arguments: " + " ".join(unknown))

    if namespace.sync_url is not None and sources.get("sync_url_setting") == SOURCE_COMMAND_LINE:
        raise ConfigError("give the sync URL once: either as the sync-url argument or as --sync-url")
    if namespace.sync_url is not None:
        raw_url = namespace.sync_url
    elif namespace.sync_url_setting is not None:
        raw_url = namespace.sync_url_setting
        sources["sync_url"] = sources.get("sync_url_setting", SOURCE_DEFAULT)
    else:
        raise ConfigError(
            "the sync URL is required: give it as an argument (e.g. ws://localhost:4444), "
            f"in {ENV_PREFIX}SYNC_URL, or as sync-url in the config file"
        )
    try:
        sync_url = normalize_sync_url(raw_url)
    except ConfigError as exc:
        where = sources.get("sync_url", SOURCE_DEFAULT)
        if where == SOURCE_COMMAND_LINE:
            raise
        raise ConfigError(f"{exc} (from {where})") from None

    docs = []
    for doc in namespace.docs or ():
        doc = str(doc).strip()
        if not doc:
            raise ConfigError("--doc must not be empty")
        if doc not in docs:
            docs.append(doc)

    log_file = namespace.log_file
    if log_file is not None:
        log_file = str(log_file).strip()
        if log_file in ("", "-"):
            log_file = None

    by_option = []
    for option, field in OPTION_FIELDS:
        by_option.append((option, sources.get(field, SOURCE_DEFAULT)))

    return Config(
        sync_url=sync_url,
        docs=tuple(docs),
        name=namespace.name,
        log_level=namespace.log_level,
        log_format=namespace.log_format,
        log_file=log_file,
        max_workers=namespace.max_workers,
        flush_interval=float(namespace.flush_interval),
        block_wait=float(namespace.block_wait),
        grace=float(namespace.grace),
        connect_timeout=float(namespace.connect_timeout),
        idle_timeout=float(namespace.idle_timeout),
        reconnect_max=float(namespace.reconnect_max),
        claim_settle=float(namespace.claim_settle),
        orphan_timeout=float(namespace.orphan_timeout),
        stale_after=float(namespace.stale_after),
        max_run_time=float(namespace.max_run_time),
        max_output_bytes=int(namespace.max_output_bytes),
        max_inline_bytes=int(namespace.max_inline_bytes),
        max_event_bytes=int(namespace.max_event_bytes),
        assets_dir=namespace.assets_dir or None,
        retention=float(namespace.retention),
        allow_runtime=tuple(namespace.allow_runtime or DEFAULT_ALLOWED_RUNTIMES),
        token=namespace.token or None,
        ca_file=namespace.ca_file or None,
        discover_interval=float(namespace.discover_interval),
        status_addr=namespace.status_addr,
        config_file=namespace.config_file,
        sources=tuple(by_option),
    )


# --------------------------------------------------------------------------
# Describing.


def _is_secret(name: str) -> bool:
    name = name.lower()
    return any(word in name for word in _SECRET_WORDS)


def mask_url(url: str) -> str:
    """Hide a password in the user part and secret-looking query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}{sep}{'***' if sep else ''}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret(k) or k.lower() in ("key", "secret", "auth") for k, _ in pairs):
            query = urlencode(
                [(k, "***" if (_is_secret(k) or k.lower() in ("key", "secret", "auth")) else v)
                 for k, v in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _render(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(_render(v) for v in value) if value else "none"
    text = str(value)
    if not text or any(ch.isspace() for ch in text) or "," in text:
        return json.dumps(text)
    return text


def describe(config) -> str:
    """One line: every effective value and where it came from, secrets masked."""
    sources = dict(getattr(config, "sources", ()) or ())
    names = [f.name for f in dataclasses.fields(config) if f.name != "sources"]
    known = [field for _, field in OPTION_FIELDS if field in names]
    items = []
    for name in known + [n for n in names if n not in known]:
        option = _FIELD_TO_OPTION.get(name, name.replace("_", "-"))
        value = getattr(config, name)
        if value not in (None, "", ()) and (_is_secret(option) or _is_secret(name)):
            shown = "***"
        elif name == "sync_url" and isinstance(value, str):
            shown = _render(mask_url(value))
        elif name == "log_file" and value is None:
            shown = "stderr"
        else:
            shown = _render(value)
        items.append(f"{option}={shown} ({sources.get(option, SOURCE_DEFAULT)})")
    return ", ".join(items)
