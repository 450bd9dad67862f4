"""What the terminal renderer recognises in a raw stream: escape sequences
(CSI, OSC, two-character escapes), the controls that act, the limits on
what a sequence may hold, and the C-speed checks and measures that let
plain text skip the decoding loop. Pure: regular expressions and small functions, no
state; ``terminal.py`` decodes a stream with them and ``screen.py`` acts.
"""

from __future__ import annotations

import re

__all__ = ["SGR", "plain_ascii", "short_lines", "utf8_len"]

# What the decoder takes in one step from where it stands: printable text
# and LF, so that runs of whole lines reach the screen's bulk path.
RUN = re.compile(r"[^\x00-\x09\x0b-\x1f\x7f]*")
SGR = re.compile(r"\x1b\[[0-9;]*m")
SGR_PARAMS = re.compile(r"\x1b\[([0-9;]*)m")
# Text, SGR and newlines only (what a program printing in colour sends). One
# character or one SGR per step: unambiguous, so a chunk that does not match
# fails in linear time (a "+" inside the "*" would backtrack exponentially).
COLOURED = re.compile(r"(?:[^\x00-\x09\x0b-\x1f\x7f]|\x1b\[[0-9;]*m)*")
# Every control but LF (CR LF already folded): text without one is only lines.
_CONTROL_BYTES = bytes([*range(0x00, 0x0a), *range(0x0b, 0x20), 0x7f])
# A progress bar redraws its line from column 0 many times per chunk; the
# whole run of redraws is taken at once, as only what the last ones leave
# is visible.
REDRAWS = re.compile(r"(?:\r[^\x00-\x1f\x7f]*)+")

# Matched where RUN stops; group numbers are the dispatch keys (match.lastindex).
SPECIAL = re.compile(
    r"\x1b\[([0-?]*)([ -/]*)([@-~])"                      # 1-3 CSI params, intermediates, final
    r"|(\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|(?=\x1b[^\\])))"  # 4 OSC; a new ESC aborts it
    r"|\x1b([0-Z\\^-~]|[ -/]+[0-~])"                       # 5 two-character escapes
    r"|(\r)"                                               # 6
    r"|(\x08)"                                             # 7
    r"|(\t)"                                               # 8
    r"|(\x1b)"                                             # 9 ESC that starts nothing known
    r"|([\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]+)"       # 10 controls we drop
)
CSI, OSC, ESC2, CR, BS, TAB, LONE_ESC, DROP = 3, 4, 5, 6, 7, 8, 9, 10

# What a sequence cut by a chunk boundary can look like; matched at a lone ESC.
INCOMPLETE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")

# An unfinished CSI longer than this is garbage, not a sequence still arriving.
MAX_PENDING = 256
# Longer counts are clamped before int(), which refuses over 4300 digits;
# every use clamps them far lower anyway.
MAX_DIGITS = 9


def utf8_len(text: str) -> int:
    """UTF-8 length; isascii() is O(1) on CPython, so ASCII lines cost nothing."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def plain_ascii(text: str) -> bool:
    """ASCII without any control but LF: only lines of text. Checked as
    bytes, at C speed (a regex or isprintable() looks at each character far
    more slowly)."""
    if not text.isascii():
        return False
    raw = text.encode("ascii")
    return len(raw.translate(None, _CONTROL_BYTES)) == len(raw)


def short_lines(text: str, limit: int) -> bool:
    """True when no line of ``text`` is longer than ``limit`` characters, found
    with a few C-speed searches instead of measuring every line: a longer
    line would hold a whole aligned stretch of ``limit // 2`` characters
    without a newline. False means "maybe": measure."""
    step = limit // 2
    if step < 64:
        return False
    find = text.find
    for start in range(0, len(text) - step + 1, step):
        if find("\n", start, start + step) == -1:
            return False
    return True


def number(param: str) -> int:
    """One CSI parameter; empty or unparseable means "default" (0)."""
    if not param.isdigit():
        return 0
    if len(param) > MAX_DIGITS:
        return 10 ** MAX_DIGITS
    return int(param)


def held(seq: str) -> str:
    """What to keep of ``seq``, a sequence cut by the end of a chunk, until
    the next chunk: only what decides how it ends, nothing once it is too
    long to be a sequence."""
    if seq[1:2] == "]":
        # An OSC body is dropped anyway.
        return "\x1b]\x1b" if len(seq) > 2 and seq[-1] == "\x1b" else "\x1b]"
    return "" if len(seq) > MAX_PENDING else seq
