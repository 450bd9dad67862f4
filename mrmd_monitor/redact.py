"""Secrets out of every line we write, and outside text kept on one line.

``mask(text, secrets)`` is the one masking function: the start line, the HUP
reload line and both log formatters use it. A secret is hidden in every form
it can take on its way into a message: raw, URL-quoted once or twice
(``quote``, ``quote_plus``, either case of hex), JSON-, repr- or
ascii-escaped, its UTF-8 bytes' repr, as a URL password,
as a ``token=`` query value and after ``Bearer``. The last three are masked
whatever their value, so a credential the operator never configured (a
password typed into a URL) is hidden as well.

``escape(text)`` makes text from outside (document names, execution ids,
sessions, runtime URLs, error texts) unable to start a log line of its own:
every control character, newlines included, becomes a visible escape.

Pure functions; no threads, sockets or clocks.
"""

from __future__ import annotations

import json
import re
from typing import Iterable, Optional
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"

# Words that make a URL query key or an option name a secret.
SECRET_WORDS = ("token", "password", "passwd", "secret", "auth", "key")

# The value classes stop at a quote and a backslash: masking inside a JSON
# log line must never eat half of an escape and end its string early.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"]*:)(?P<pw>[^@\s/\"\\]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:[A-Za-z0-9_.-]*(?:%s)[A-Za-z0-9_.-]*)=)(?P<value>[^&#\s'\"\\]+)"
    % "|".join(SECRET_WORDS), re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<value>[^\s'\",;\\]+)", re.IGNORECASE)

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators and
# bidi overrides, which can make a line look like another one.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match) -> str:
    ch = match.group(0)
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def escape(text) -> str:
    """``text`` on one line: control characters shown as ``\\n``, ``\\x1b``, ``\\u2028``..."""
    text = str(text)
    return _UNSAFE.sub(_escape_one, text) if _UNSAFE.search(text) else text


def forms(secret: str) -> list:
    """The spellings of ``secret`` that can reach a message, longest first."""
    if not secret:
        return []
    quoted = {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    # Quoted twice: a URL carried in another URL's query (a redirect target).
    quoted |= {quote(q, safe="") for q in quoted if "%" in q}
    found = quoted | {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], ascii(secret)[1:-1],
                      repr(secret.encode("utf-8", "surrogatepass"))[2:-1]}
    for form in list(found):
        if "%" in form:
            found.add(re.sub(r"%(?:25)?[0-9A-F]{2}", lambda m: m.group(0).lower(), form))
    return sorted((f for f in found if f), key=len, reverse=True)


def url_secrets(url: Optional[str]) -> list:
    """The password and secret query values of ``url`` (raw and unquoted)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = []
    if password:
        found += [password, unquote(password)]
    for match in _QUERY_SECRET.finditer("?" + parts.query if parts.query else ""):
        value = match.group("value")
        found += [value, unquote(value)]
    return [f for f in found if f]


class Masker:
    """``mask`` with the forms of its secrets worked out once (the log
    formatters call it for every line)."""

    def __init__(self, secrets: Iterable[str] = ()):
        found = set()
        for secret in secrets:
            if secret:
                found.update(forms(str(secret)))
        self.forms = tuple(sorted(found, key=len, reverse=True))

    def __call__(self, text) -> str:
        text = str(text)
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        if "://" in text and "@" in text:
            text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
        if "=" in text:
            text = _QUERY_SECRET.sub(lambda m: m.group("head") + MASK, text)
        if "earer" in text:
            text = _BEARER.sub(lambda m: m.group("head") + MASK, text)
        return text


def mask(text, secrets: Iterable[str] = ()) -> str:
    """``text`` with every form of every secret, URL passwords, secret query
    values and bearer tokens replaced by ``***``."""
    return Masker(secrets)(text)
