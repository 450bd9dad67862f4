"""Waiting on a condition with a deadline (tests never sleep blindly)."""

import time

_UNSET = object()


def wait_until(predicate, timeout=10.0, interval=0.02, message=""):
    """Call ``predicate()`` until it returns a truthy value, and return that value.

    Raises ``AssertionError`` after ``timeout`` seconds, with ``message`` and the
    last value the predicate returned (or the exception it last raised).
    """
    deadline = time.monotonic() + timeout
    last = _UNSET
    last_exc = None
    while True:
        try:
            last = predicate()
            last_exc = None
        except Exception as exc:  # the condition may not be checkable yet
            last_exc = exc
        else:
            if last:
                return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen = "nothing" if last is _UNSET else repr(last)
            if last_exc is not None:
                seen += " (last call raised %r)" % (last_exc,)
            raise AssertionError(
                "%s: condition not met within %.1fs; last value: %s"
                % (message or "wait_until", timeout, _shorten(seen))
            )
        time.sleep(min(interval, remaining))


def _shorten(text, limit=2000):
    if len(text) <= limit:
        return text
    return text[: limit // 2] + " ... " + text[-limit // 2:]


def wait_for(read, predicate, timeout=10.0, interval=0.05, message="", show=repr):
    """Call ``read()`` until ``predicate(value)`` holds, and return that value.

    The AssertionError after ``timeout`` shows the last value read, through ``show``.
    """
    box = {}

    def check():
        box["value"] = value = read()
        return predicate(value)

    try:
        wait_until(check, timeout=timeout, interval=interval, message=message)
    except AssertionError as exc:
        seen = show(box["value"]) if "value" in box else "nothing (every read raised)"
        raise AssertionError("%s\nlast value read: %s" % (exc, seen)) from None
    return box["value"]
