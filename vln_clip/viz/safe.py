"""Text from data files made safe to show: control characters become visible escapes.

Instructions come from files anyone can edit. An ESC starts a terminal control sequence (it
can recolour, move the cursor or retitle the window), BEL rings, NUL truncates, and a
right-to-left override (U+202E) reverses what follows on screen and in a browser. Every
renderer of the terminal and the HTML report passes data text through :func:`printable`,
which keeps ordinary text (any script, spaces) and writes each control or bidi-format
character as its escape (``\\x1b``, ``\\u202e``), so the reader sees that it is there.
"""

from __future__ import annotations

import unicodedata

# Unicode categories shown as escapes: controls (C0, C1, DEL), format characters (bidi
# overrides and isolates, zero-width joiners and marks), line/paragraph separators.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control/format character replaced by its visible escape."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in HIDDEN_CATEGORIES else ch for ch in text)
