"""Text from elsewhere made inert for logs, terminals and pages. Pure."""

from __future__ import annotations


def inert(text: str) -> str:
    """`text` with every character Python does not call printable written as its escape
    (`\\x1b`, `\\u2028`, `\\x85`...): control characters, bidi overrides, line separators and
    lone surrogates cannot forge a log line, drive a terminal or reorder what is shown.
    Printable text, Unicode included, is returned as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)
