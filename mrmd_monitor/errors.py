"""The exception tree. Each error carries what an operator needs to act on it."""


class MonitorError(Exception):
    """Root of every error mrmd-monitor raises on purpose."""


class ConfigError(MonitorError):
    """A configuration value is missing or invalid."""


class SyncError(MonitorError):
    """The connection to the sync server failed or broke."""

    def __init__(self, message, *, doc=None, url=None):
        super().__init__(message)
        self.doc = doc
        self.url = url


class ProtocolError(SyncError):
    """The sync server sent bytes we cannot decode."""


class FrameError(ProtocolError):
    """The sync server's bytes are not websocket frames we accept (wsframes.py)."""


class MrpError(MonitorError):
    """A call to an MRP runtime failed.

    ``str(error)`` is written into the document for the notebook author, so it
    must read as a sentence a person understands.
    """

    def __init__(self, message, *, runtime_url=None, execution_id=None, status_code=None):
        super().__init__(message)
        self.runtime_url = runtime_url
        self.execution_id = execution_id
        self.status_code = status_code


class RuntimeUnavailable(MrpError):
    """The runtime could not be reached (refused, DNS, connect timeout)."""


class RuntimeHTTPError(MrpError):
    """The runtime answered with an HTTP error status."""

    retry_after = None  # seconds from a Retry-After header, when there was one


class StreamError(MrpError):
    """The event stream was malformed, stalled, or ended early."""


class Cancelled(MrpError):
    """The stream was closed on purpose (cancel or shutdown)."""


class StatusServerError(MonitorError):
    """The status server could not listen on its address."""

    def __init__(self, message, *, address=None):
        super().__init__(message)
        self.address = address


class DiscoveryError(MonitorError):
    """The sync server's /stats could not be read (unreachable, HTTP error,
    an answer too large or not a document list)."""

    def __init__(self, message, *, url=None, status_code=None):
        super().__init__(message)
        self.url = url
        self.status_code = status_code


class NoStatsEndpoint(DiscoveryError):
    """The server answers but has no /stats: it cannot tell us its documents."""


class AssetRejected(MonitorError, OSError):
    """An output cannot be kept in --assets-dir (larger than --assets-max-bytes).

    An OSError too, so a caller that handles a failed write handles this."""


class ParserExit(SystemExit):
    """``--help`` or ``--version`` was handled; the text is already printed.

    A SystemExit (not a MonitorError), so a caller that does not care behaves
    like argparse; the CLI catches it and returns ``code`` as its exit status.
    """


class UpdateFormatError(SyncError):
    """A Yjs update could not be read or cut (see updates.py)."""


class SyncAuthRefused(SyncError):
    """The sync server refused the monitor (websocket close 1008, or HTTP 401/403
    at the handshake): a missing or wrong --token. Retrying cannot help."""


class SyncReadOnly(SyncError):
    """The sync server accepts the connection but drops the monitor's updates
    (an auth hook that marks the connection read-only)."""


class RuntimeRefused(MrpError):
    """The runtime URL may not be called, or what answers there is not an MRP runtime."""


class RuntimeBusy(MrpError):
    """The runtime stayed busy with an execution that is not ours for too long."""


class RunTimedOut(MrpError):
    """A deadline of the run passed (connect + headers, or --max-run-time)."""


class EventError(MonitorError):
    """The SSE splitter refused an event (malformed or over --max-event-bytes).

    ``kind`` is the event's name when it was known.
    """

    def __init__(self, message, *, kind=None):
        super().__init__(message)
        self.kind = kind


class EventTooLarge(EventError):
    """One SSE event held more bytes than --max-event-bytes."""


# Refusals of a value, moved here from the modules that raise them. Each is a
# ValueError too, as it was before, so a caller catching ValueError still does.

class URLRefused(MonitorError, ValueError):
    """A URL the monitor will not call; ``str()`` is a short reason that
    never quotes the URL (it may hold control characters). Raised by http.parse_url."""


class IllegalTransition(MonitorError, ValueError):
    """The monitor may not move an entry from this status to that one
    (protocol.check_transition): the write is skipped."""


class EntryRefused(MonitorError, ValueError):
    """An entry breaks a limit: it must not be walked, only refused (protocol.py)."""


class IllegalMove(MonitorError, ValueError):
    """A run's phase may not move this way (runs.transition): a bug, never a peer's doing."""
