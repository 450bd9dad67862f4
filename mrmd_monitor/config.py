"""The parser, the frozen Config and the start line, all driven by the option
table in :mod:`mrmd_monitor.options`.

Each option is declared once there; here it becomes one ConfigArgParse
argument with its default, type, help and environment variable (given
explicitly as ``env_var``, ConfigArgParse's supported way). A value can come
from the command line, the environment, an INI file given with ``-c``
(section ``[mrmd-monitor]``), or the default, in that order of precedence.

``load_config(argv, env)`` turns all of that into a frozen :class:`Config` and
records where each value came from; ``describe(config)`` renders it as one log
line, secrets masked. ConfigArgParse's own ``format_values()`` reads from the
same ``get_source_to_settings_dict()`` we use, but it prints secrets as they
are and on several lines, so the start line is built here. Nothing here
touches sockets, threads or the clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import stat
import sys
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import configargparse

from . import __version__
from .errors import ConfigError, ParserExit  # noqa: F401 - ParserExit is re-exported
from .options import (  # noqa: F401 - re-exported: the value types are part of the config API
    DEFAULT_ALLOWED_RUNTIMES,
    ENV_PREFIX,
    LOG_FORMATS,
    LOG_LEVELS,
    OPTIONS,
    BY_FIELD,
    Option,
    host_address,
    log_format,
    log_level,
    non_empty,
    seconds_above_zero,
    seconds_at_least_zero,
    size_in_bytes,
)
from .redact import mask, url_secrets

PROG = "mrmd-monitor"
CONFIG_SECTION = "mrmd-monitor"
CONFIG_ENV_VAR = ENV_PREFIX + "CONFIG"

# Where a value came from, as it appears in Config.sources and describe().
SOURCE_COMMAND_LINE = "command line"
SOURCE_DEFAULT = "default"
SOURCE_ENV_PREFIX = "environment "
SOURCE_FILE_PREFIX = "config file "

# ConfigArgParse's keys in get_source_to_settings_dict() (stable since 1.0).
_CAP_ENV = getattr(configargparse, "_ENV_VAR_SOURCE_KEY", "environment_variables")
_CAP_FILE = getattr(configargparse, "_CONFIG_FILE_SOURCE_KEY", "config_file")

# Option name (as in sources and describe) -> Config field, in declaration order.
OPTION_FIELDS = (("config", "config_file"),) + tuple((o.name, o.field) for o in OPTIONS)
_FIELD_TO_OPTION = {field: option for option, field in OPTION_FIELDS}


def _source_of(self, option: str) -> str:
    """Where the value of ``option`` (e.g. ``"max-workers"``) came from."""
    return dict(self.sources).get(option, SOURCE_DEFAULT)


def _annotation(option: Option):
    if option.many:
        return tuple
    return type(option.default) if option.default is not None else Optional[str]


# The effective configuration of one monitor process: one field per option
# (``config.max_workers``...), plus the config file and where each value came
# from. Built from the table so that an option is declared in one place.
Config = dataclasses.make_dataclass(
    "Config",
    [("sync_url", str)]
    + [(o.field, _annotation(o), dataclasses.field(default=o.default))
       for o in OPTIONS if o.field != "sync_url"]
    + [("config_file", Optional[str], dataclasses.field(default=None)),
       ("sources", tuple, dataclasses.field(default=()))],
    namespace={"source_of": _source_of,
               "__doc__": "The effective configuration of one monitor process."},
    frozen=True,
)
Config.__module__ = __name__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


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
        raise ConfigError(f"the sync URL must start with ws:// or wss://, got {mask(value)!r}")
    url = (scheme + "://" + rest).rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"the sync URL {mask(value)!r} is not valid: {_one_line(exc)}") from None
    if not parts.hostname:
        raise ConfigError(f"the sync URL {mask(value)!r} has no host")
    if any(ch.isspace() for ch in url):
        raise ConfigError(f"the sync URL {mask(value)!r} contains whitespace")
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

Without --doc it follows every document the server lists at /stats.
It stays in the foreground. TERM or INT stops it gracefully (running cells
get --grace seconds to finish, a second signal stops at once); HUP loads the
configuration again (command line, environment, config file), applies what
can change while running and reopens the log file.
"""

EPILOG = """\
examples:
  mrmd-monitor ws://localhost:4444
  mrmd-monitor --doc notebook.md ws://localhost:4444
  mrmd-monitor --log-level debug ws://localhost:4444
  mrmd-monitor --doc a.md --doc b.md --log-format json wss://sync.example.org
  mrmd-monitor -c /etc/mrmd-monitor/monitor.ini
  MRMD_MONITOR_SYNC_URL=ws://localhost:4444 mrmd-monitor
  MRMD_MONITOR_TOKEN=... mrmd-monitor ws://localhost:4444   # keeps the token out of ps
  mrmd-monitor status --status-addr 127.0.0.1:9464   # a running monitor's status as a table

exit status:
  0  stopped by TERM/INT (runs settled in the document)
  1  could not start (status address busy) or an internal error
  2  a bad option, or no document to watch (give them with --doc)
  3  the sync server refused the monitor (wrong or missing --token, read-only)
"""


def _add(parser, option: Option):
    """One table row -> one argument; its default is written into the help text."""
    text = f"{option.help} (default: {option.shown_default})".replace("%", "%%")
    if not option.reloadable:
        text += "; a HUP does not change it"
    kwargs = dict(default=None if option.many else option.default, help=text,
                  metavar=option.metavar or None, env_var=option.env)
    kwargs["dest"] = "sync_url_setting" if option.field == "sync_url" else option.field
    if option.many:
        kwargs["action"] = "append"
    if option.type is not None:
        kwargs["type"] = option.type
    return parser.add_argument("--" + option.name, **kwargs)


def build_parser() -> configargparse.ArgumentParser:
    parser = MonitorArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        config_file_parser_class=_IniParser(
            sections=[CONFIG_SECTION], split_ml_text_to_list=True
        ),
        allow_abbrev=False,
    )
    config_action = parser.add_argument(
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
    # Our own record of the declared arguments: nothing needs argparse's private list.
    parser.monitor_actions = {option.name: _add(parser, option) for option in OPTIONS}
    parser.config_action = config_action
    return parser


def option_actions(parser) -> dict:
    """Option name -> argparse action, for every option a file or env var can set."""
    return dict(parser.monitor_actions)


def _all_actions(parser):
    return [parser.config_action] + list(parser.monitor_actions.values())


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
    for action in _all_actions(parser):
        if _on_command_line(argv, action.option_strings):
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
    for action in _all_actions(parser):
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


def _sync_url(namespace, sources) -> str:
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
        return normalize_sync_url(raw_url)
    except ConfigError as exc:
        where = sources.get("sync_url", SOURCE_DEFAULT)
        if where == SOURCE_COMMAND_LINE:
            raise
        raise ConfigError(f"{exc} (from {where})") from None


def _value(option: Option, namespace) -> Any:
    value = getattr(namespace, option.field)
    if option.finish is not None:
        try:
            return option.finish(value)
        except ValueError as exc:
            raise ConfigError(_one_line(exc)) from None
    return value


def load_config(argv: Optional[Sequence[str]], env: Optional[Mapping[str, str]] = None):
    """Parse ``argv`` (without the program name), ``env`` and any ``-c`` file
    into a frozen :class:`Config`.

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

    values = {"sync_url": _sync_url(namespace, sources)}
    for option in OPTIONS:
        if option.field != "sync_url":
            values[option.field] = _value(option, namespace)
    by_option = tuple((name, sources.get(field, SOURCE_DEFAULT)) for name, field in OPTION_FIELDS)
    return Config(config_file=namespace.config_file, sources=by_option, **values)


def config_file_warning(config) -> Optional[str]:
    """A warning when the ``-c`` file can be read by its group or by others
    (it may hold the token), else None. Said at start and on each reload;
    the file is left as it is: its owner decides."""
    path = getattr(config, "config_file", None)
    if not path:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    who = [name for bit, name in ((stat.S_IRGRP, "group"), (stat.S_IROTH, "others"))
           if mode & bit]
    if not who:
        return None
    return ("the config file %s (mode %04o) is readable by %s; it may hold the token: "
            "chmod 600 it" % (path, mode, " and ".join(who)))


# --------------------------------------------------------------------------
# Describing.


def is_secret(name: str) -> bool:
    """A field or option name that holds a secret: declared so in the table,
    or named like one (a field added elsewhere before it reaches the table)."""
    option = BY_FIELD.get(name.replace("-", "_"))
    if option is not None and option.secret:
        return True
    lowered = name.lower()
    return any(word in lowered for word in ("token", "password", "secret"))


def secrets_of(config) -> tuple:
    """Every secret value of ``config``: secret options and credentials in its URLs."""
    found = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, str) and value and is_secret(f.name):
            found.append(value)
        elif isinstance(value, str) and "://" in value:
            found.extend(url_secrets(value))
    return tuple(found)


def mask_url(url: str) -> str:
    """Hide a password in the user part and secret-looking query values."""
    return mask(url)


def render(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(render(v) for v in value) if value else "none"
    text = str(value)
    if not text or any(ch.isspace() for ch in text) or "," in text:
        return json.dumps(text)
    return text


def shown(field: str, value) -> str:
    """One value as the start line and the HUP line show it, secrets masked."""
    if value not in (None, "", ()) and is_secret(field):
        return "***"
    if field == "log_file" and value is None:
        return "stderr"
    return render(mask(value) if isinstance(value, str) else value)


def describe(config) -> str:
    """One line: every effective value and where it came from, secrets masked."""
    sources = dict(getattr(config, "sources", ()) or ())
    names = [f.name for f in dataclasses.fields(config) if f.name != "sources"]
    known = [field for _, field in OPTION_FIELDS if field in names]
    items = []
    for name in known + [n for n in names if n not in known]:
        option = _FIELD_TO_OPTION.get(name, name.replace("_", "-"))
        items.append(f"{option}={shown(name, getattr(config, name))} "
                     f"({sources.get(option, SOURCE_DEFAULT)})")
    return mask(", ".join(items), secrets_of(config))
