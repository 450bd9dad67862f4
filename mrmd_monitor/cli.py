"""The ``mrmd-monitor`` command: parse the configuration, set up logging, run.

``main(argv)`` returns the exit status instead of exiting, so tests can call
it; ``main_entry()`` is the console script. A first argument named in
:data:`SUBCOMMANDS` runs that subcommand with the rest of the arguments
instead of the daemon (a sync URL is never a bare word: ``ws://`` or
``host:port``).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from . import __version__
from .config import PROG, ParserExit, config_file_warning, describe, load_config
from .errors import ConfigError
from .logs import setup_logging

log = logging.getLogger(__name__)

EXIT_USAGE = 2


#: The exact text the mrmd launchers wait for on a monitor's stdout (stderr
#: merged), case included: ``mrmd`` 0.10.1 waits 30 s for it, mrmd-orchestrator
#: 0.2.0 10 s. Printed whatever the log level, and wherever the log goes.
READY_LINE = "Monitor ready"


def tell_launcher(stream=None):
    """READY_LINE on ``stream`` (default: stdout)."""
    stream = sys.stdout if stream is None else stream
    if stream is None:   # started without a stdout (a closed descriptor)
        return
    try:
        stream.write(READY_LINE + "\n")
        stream.flush()
    except (OSError, ValueError):   # a reader that went away must not stop the monitor
        pass


def _status(argv):
    from .statuspage import status_command  # a running monitor's status as a table
    return status_command(argv)


# Subcommand name -> function(argv) -> exit status. The daemon is the command
# itself; these run instead of it.
SUBCOMMANDS = {"status": _status}


def _fail(reason) -> int:
    text = " ".join(str(reason).split())
    sys.stderr.write(f"{PROG}: error: {text}\n")
    sys.stderr.flush()
    return EXIT_USAGE


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return int(SUBCOMMANDS[argv[0]](argv[1:]) or 0)
    try:
        config = load_config(argv)
    except ParserExit as done:  # --help or --version, already printed
        sys.stdout.flush()
        return int(done.code or 0)
    except ConfigError as exc:
        return _fail(exc)

    try:
        setup_logging(config)
    except ConfigError as exc:
        return _fail(exc)

    log.info("mrmd-monitor %s starting with %s", __version__, describe(config))
    warning = config_file_warning(config)
    if warning:
        log.warning("%s", warning)

    from .daemon import Daemon  # imported here: the CLI must work without it for --help

    # argv: a HUP loads the configuration again.
    status = Daemon(config, argv=argv, on_ready=tell_launcher).run()
    return 0 if status is None else int(status)


def main_entry() -> None:
    sys.exit(main())
