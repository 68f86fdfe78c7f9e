"""The `hookstream` command. Errors are one line on stderr and a non-zero exit.

kafka, topics, publish, status, dlq, apikeys, worker and dev talk to Kafka;
webhooks, deliveries and event-types talk to the HTTP API (HOOKSTREAM_URL, HOOKSTREAM_API_KEY).
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from .common import CliError, shown
from .kafka import kafka_cli, topics_cli
from .operators import apikeys_cli, dlq_cli, status
from .processes import register
from .webhooks import deliveries, event_types, webhooks_cli

cli = typer.Typer(
    name="hookstream", help="Webhook delivery on Apache Kafka.", no_args_is_help=True,
    pretty_exceptions_enable=False, add_completion=False,
)
cli.add_typer(kafka_cli, name="kafka")
cli.add_typer(topics_cli, name="topics")
cli.add_typer(webhooks_cli, name="webhooks")
cli.command("deliveries")(deliveries)
cli.command("event-types")(event_types)
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(apikeys_cli, name="apikeys")
cli.command("status")(status)
register(cli)

def main() -> None:
    # Library logs (librdkafka's retries while a broker is down, hundreds of lines) are not
    # for a terminal: errors reach the commands as exceptions. A worker's logging still
    # gets them (its handlers are on the root logger).
    logging.getLogger("hookstream").addHandler(logging.NullHandler())
    try:
        code = cli(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: typer vendors click's under it
        message = " ".join(exc.format_message().split())
        if message:  # no command at all: the help was printed, and says it
            _error(message)
        sys.exit(exc.exit_code or 2)
    except CliError as exc:
        _error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        # A bug, or an input no command foresaw: still one line, and a way to see more.
        if os.environ.get("HOOKSTREAM_DEBUG"):
            raise
        _error(f"{type(exc).__name__}: {exc} (HOOKSTREAM_DEBUG=1 prints where)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str) -> None:
    """One line; a message that brings more (a local broker's last log lines, when it did
    not start) has them after it, each line inert too."""
    first, *more = message.split("\n")
    sys.stderr.write(f"error: {shown(first)}\n" + "".join(f"  {shown(m)}\n" for m in more))
