"""streams.cli.common: what the CLI prints of stored text is the text, one line, inert."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from streams.cli.common import SHOWN_CHARS, Table, shown


@given(st.text(st.characters(exclude_categories=())))
def test_shown_text_cannot_drive_a_terminal(text: str) -> None:
    line = shown(text)
    assert line.isprintable()
    assert len(line) <= 12 * (SHOWN_CHARS + 1)
    if text.isprintable() and len(text) <= SHOWN_CHARS:
        assert line == text  # ordinary text, Unicode included, is left alone


def test_markup_and_escapes_in_a_table_are_printed_literally() -> None:
    table = Table("reason")
    table.add_row("[/bold] \x1b]0;pwned\x07 :warning:")
    console = Console(file=io.StringIO(), width=200, markup=False, emoji=False)
    console.print(table)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/bold] \\x1b]0;pwned\\x07 :warning:" in printed
    assert "\x1b" not in printed
