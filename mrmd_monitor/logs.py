"""Logging setup: text for people, one JSON object per line for machines.

``setup_logging(config)`` configures the root logger (so the libraries we use
log through the same handler) and may be called again: it replaces the handler
it installed earlier instead of adding a second one. ``reopen_logs()`` is for
SIGHUP: it reopens the log file so an external rotation takes effect at once
(WatchedFileHandler also notices a moved file on its own at the next record).

Both formatters are the last stop before a line is written, so the two rules
about outside text are kept here, once, for every call site:

- every secret of the configuration (the token, a password in the sync URL),
  and any URL password, ``token=`` value or bearer token, is masked in the
  finished line, whatever form it reached the message in
  (:func:`mrmd_monitor.redact.mask`);
- in text lines, values that came from outside (message arguments, extra
  fields, thread names, exception texts) have their control characters
  escaped, so one record is one line (a traceback's frames aside) and no
  document name, execution id, session or runtime error can start a forged
  line. JSON lines are one line by construction (json escapes controls; the
  Unicode line separators are escaped too).

``context(logger, doc=..., exec_id=...)`` gives a logger that adds ``doc`` and
``exec_id`` to each of its records (shown in JSON lines). Each document's
parts make one with ``doc`` once; a run's is that one ``.bind(exec_id=...)``;
the pool side builds one from the job's ``doc`` and ``exec_id``.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import sys
import traceback
from datetime import datetime, timezone
from typing import Optional

from .config import secrets_of
from .errors import ConfigError
from .redact import Masker, escape

# A launcher reads our output a line at a time with asyncio's 64 KiB limit (mrmd
# 0.10.1): one longer line and it stops reading the pipe for good. Values from
# peers can be any size, so every line is cut well below that, after masking (a
# cut before it could leave half a secret that no longer matches). Text lines
# count characters (at most 4 UTF-8 bytes each); a JSON line's strings are cut
# one by one, only when the line is long, so that even with every character escaped
# as \uXXXX the line stays under 48 KiB.
MAX_LINE_CHARS = 8192
MAX_JSON_CHARS = {"message": 2048, "exc": 4096, "stack": 1024}
MAX_JSON_FIELD_CHARS = 256

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"

# Record attributes copied into JSON lines (set by a ContextAdapter, or extra=).
CONTEXT_FIELDS = ("doc", "exec_id")

_MARK = "_mrmd_monitor_handler"

# The configured secrets, read by both formatters (set by setup_logging).
_secrets: tuple = ()
_masker = Masker()


def set_secrets(secrets) -> None:
    """Mask these values (in every form) in every line from now on."""
    global _secrets, _masker
    _secrets = tuple(dict.fromkeys(s for s in secrets if s))
    _masker = Masker(_secrets)


def redact_line(text: str) -> str:
    return _masker(text)


def shorten(text: str, limit: int, keep_tail: bool = False) -> str:
    """``text`` cut to ``limit`` characters, saying how many were cut; the head
    is kept, or the tail (the end of a traceback says most)."""
    if len(text) <= limit:
        return text
    cut = "[%d characters cut]" % (len(text) - limit)
    return cut + " ..." + text[-limit:] if keep_tail else text[:limit] + "... " + cut


def _cap_lines(text: str) -> str:
    if len(text) <= MAX_LINE_CHARS:
        return text
    return "\n".join(shorten(line, MAX_LINE_CHARS) for line in text.split("\n"))


class _Escaped:
    """A message argument from outside, shown with its control characters
    escaped whether the message uses %s or %r."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return escape(str(self.value))

    def __repr__(self):
        return escape(repr(self.value))

    def __format__(self, spec):
        return escape(format(self.value, spec))


def _escaped_args(args):
    if isinstance(args, dict):
        return {k: _safe_arg(v) for k, v in args.items()}
    if isinstance(args, tuple):
        return tuple(_safe_arg(a) for a in args)
    return args


def _safe_arg(value):
    # Numbers keep working with %d and %.1f; everything else may carry outside text.
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _Escaped(value)


def _format_exception_escaped(exc_info) -> str:
    """A traceback whose exception texts (and notes) are escaped: the frames
    come from our own source files, the messages may quote a runtime or a peer."""
    te = traceback.TracebackException(*exc_info)
    out = []
    _traceback_lines(te, out, set())
    return "".join(out).rstrip("\n")


def _traceback_lines(te, out, seen) -> None:
    seen.add(id(te))
    cause, context = te.__cause__, te.__context__
    if cause is not None and id(cause) not in seen:
        _traceback_lines(cause, out, seen)
        out.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context is not None and not te.__suppress_context__ and id(context) not in seen:
        _traceback_lines(context, out, seen)
        out.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if te.stack:
        out.append("Traceback (most recent call last):\n")
        out.extend(te.stack.format())
    for chunk in te.format_exception_only():
        out.append(escape(chunk.rstrip("\n")) + "\n")


class TextFormatter(logging.Formatter):
    """The text format, one record per line, secrets masked."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers may share the record
        # Arguments escaped one by one keep %d and %r working; the whole
        # message escaped again covers one written with an f-string.
        safe.args = _escaped_args(record.args)
        try:
            message = safe.getMessage()
        except (TypeError, ValueError):  # e.g. %d given a number type we wrapped
            message = record.getMessage()
        safe.msg, safe.args = escape(message), None
        safe.threadName = escape(record.threadName)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                setattr(safe, name, escape(value))
        safe.exc_text = None
        if record.exc_info:
            safe.exc_text = _format_exception_escaped(record.exc_info)
        elif record.exc_text:
            safe.exc_text = record.exc_text
        safe.exc_info = None
        text = super().format(safe)
        return _cap_lines(redact_line(text))

    def formatException(self, ei) -> str:
        return _format_exception_escaped(ei)


_JSON_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, thread, logger, message [, doc,
    exec_id, exc, stack]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record)
        # Masked value by value, before encoding: masking the encoded text
        # could cut a JSON escape in half.
        for key, value in entry.items():
            if isinstance(value, str) and key not in ("time", "level"):
                entry[key] = redact_line(value)
        line = _one_json_line(json.dumps(entry, ensure_ascii=False, default=str))
        if len(line) > MAX_LINE_CHARS:
            # Rare (a huge value from a peer): cut each string, then escapes can
            # at most multiply it by six.
            for key, value in entry.items():
                if isinstance(value, str):
                    entry[key] = shorten(value, MAX_JSON_CHARS.get(key, MAX_JSON_FIELD_CHARS),
                                         keep_tail=key == "exc")
            line = _one_json_line(json.dumps(entry, ensure_ascii=False, default=str))
        return line

    def _entry(self, record: logging.LogRecord) -> dict:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return entry


def _one_json_line(text: str) -> str:
    # json leaves these raw with ensure_ascii=False; str.splitlines would cut there.
    for raw, escaped in _JSON_LINE_BREAKS.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text


class ContextAdapter(logging.LoggerAdapter):
    """A logger for one document or one run: every record carries ``doc`` and
    ``exec_id`` (JSON lines show them) without ``extra=`` at each call."""

    def process(self, msg, kwargs):
        extra = dict(self.extra)
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs

    def bind(self, **fields) -> "ContextAdapter":
        """The same logger with more context (a run's ``exec_id`` on a document's logger)."""
        return ContextAdapter(self.logger, {**self.extra, **fields})

    def on(self, logger) -> "ContextAdapter":
        """The same context on another logger: a run's lines from the MRP client
        keep the client's logger name (operators filter by it)."""
        return ContextAdapter(logger, dict(self.extra))


def context(logger, doc: Optional[str] = None, exec_id: Optional[str] = None) -> ContextAdapter:
    """``context(log, doc="a.md").info("synced")`` logs with ``doc`` set."""
    base = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    fields = {k: v for k, v in (("doc", doc), ("exec_id", exec_id)) if v is not None}
    if isinstance(logger, logging.LoggerAdapter):
        fields = {**logger.extra, **fields}
    return ContextAdapter(base, fields)


def _level(name: str) -> int:
    return {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
            "warning": logging.WARNING, "error": logging.ERROR}[name.lower()]


def _our_handlers(logger: logging.Logger):
    return [h for h in logger.handlers if getattr(h, _MARK, False)]


def setup_logging(config) -> None:
    """Install one handler on the root logger according to ``config``.

    Raises ConfigError when the log file cannot be opened.
    """
    root = logging.getLogger()
    if config.log_file:
        try:
            handler = logging.handlers.WatchedFileHandler(config.log_file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot open log file {config.log_file}: {exc.strerror or exc}"
            ) from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    setattr(handler, _MARK, True)
    # The previous secrets stay masked too: a line about the old connection
    # may still be written after a HUP changed the token.
    set_secrets(_secrets + secrets_of(config))

    for old in _our_handlers(root):
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(_level(config.log_level))
    # One line per HTTP connection and per SSE event drowns our own debug log.
    for noisy in ("urllib3",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def reopen_logs() -> None:
    """Close and reopen the log file (SIGHUP after logrotate). No-op on stderr."""
    for handler in _our_handlers(logging.getLogger()):
        if not isinstance(handler, logging.FileHandler):
            continue
        handler.acquire()
        try:
            if handler.stream is not None:
                try:
                    handler.stream.flush()
                finally:
                    handler.stream.close()
            handler.stream = handler._open()
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                handler._statstream()
        finally:
            handler.release()
