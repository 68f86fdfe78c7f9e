"""The `hookstream` command. Errors are one line on stderr and a non-zero exit.

kafka, topics, publish, status, dlq, apikeys, worker and dev talk to Kafka;
webhooks, deliveries and event-types talk to the HTTP API (HOOKSTREAM_URL, HOOKSTREAM_API_KEY).
"""

from __future__ import annotations

import sys

import typer

from .common import CliError
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
    try:
        code = cli(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: typer vendors click's under it
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}\n")
        sys.exit(exc.exit_code or 2)
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
