"""What every command shares: the console, one-line errors, settings, and the output rule.

The output rule, `emit`: with `--json` a command prints its result as one JSON document on
stdout and nothing else there (no progress bars, no notes); without it, text for humans.
A command that fails prints nothing on stdout, with or without `--json`: one line
`error: ...` on stderr and a non-zero exit (streams.cli.main). An answer that is a "no"
(`kafka status` of a stopped broker, a failed `webhooks test`) is still a result: it is
printed like any other, and the exit status is 1.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console, RenderableType
from rich.progress import Progress
from rich.table import Table as RichTable

from ..core.text import inert
from ..settings import Settings, SettingsError

#: What we print holds text anyone may have set (a webhook's description, a workspace id, a
#: receiver's error): never read as rich markup or emoji codes (a `[/bold]` in a disable
#: reason made `webhooks list` and `status` fail for every webhook).
out = Console(markup=False, emoji=False, highlight=False)

#: Characters of one value shown in a table or message (--json gives them all): rich lays
#: out long cells in time that grows with the square of their length.
SHOWN_CHARS = 1000


def shown(text: str) -> str:
    """`text` as a terminal may show it: one line, its control characters escaped."""
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "…"
    return inert(text)  # stored text cannot drive the terminal or reorder a line


class Table(RichTable):
    """rich's Table, whose text cells are `shown`."""

    def add_row(self, *renderables: RenderableType | None, **kwargs: Any) -> None:
        super().add_row(*(shown(r) if isinstance(r, str) else r for r in renderables),
                        **kwargs)

#: The one `--json` flag: every command that answers has it (worker and dev run until
#: stopped; the worker's output is JSON lines already).
JsonOption = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON document on stdout, nothing else.")]


class CliError(Exception):
    """A failure to report as one line."""


def quiet_kafka_logger() -> logging.Logger:
    """librdkafka's own retries are noise on a terminal; failures reach us as errors."""
    logger = logging.getLogger("hookstream.cli.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def emit(as_json: bool, result: Any, *human: RenderableType) -> None:
    """Print a command's result: `result` as JSON, or the `human` renderings in order."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    for part in human:
        out.print(shown(part) if isinstance(part, str) else part)


def progress(as_json: bool, hidden: bool = False) -> Progress:
    """A transient progress bar for humans; never with --json (stdout holds the result)."""
    return Progress(console=out, transient=True, disable=as_json or hidden)


def group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True)
