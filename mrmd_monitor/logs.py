"""Logging setup: text for people, one JSON object per line for machines.

``setup_logging(config)`` configures the root logger (so the libraries we use
log through the same handler) and may be called again: it replaces the handler
it installed earlier instead of adding a second one. ``reopen_logs()`` is for
SIGHUP: it reopens the log file so an external rotation takes effect at once
(WatchedFileHandler also notices a moved file on its own at the next record).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import datetime, timezone

from .errors import ConfigError

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"

# Record attributes copied into JSON lines when a caller passes them in extra=.
CONTEXT_FIELDS = ("doc", "exec_id")

_MARK = "_mrmd_monitor_handler"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, thread, logger, message [, doc,
    exec_id, exc, stack]."""

    def format(self, record: logging.LogRecord) -> str:
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
        return json.dumps(entry, ensure_ascii=False, default=str)


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
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    setattr(handler, _MARK, True)

    for old in _our_handlers(root):
        root.removeHandler(old)
        if isinstance(old, logging.FileHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(_level(config.log_level))
    # One line per HTTP connection and per SSE event drowns our own debug log.
    for noisy in ("urllib3", "sseclient"):
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
