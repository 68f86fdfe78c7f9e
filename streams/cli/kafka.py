"""`hookstream kafka` and `hookstream topics`: the local broker and our topics."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import CliError, group, out, settings

kafka_cli = group("Run a local single-node Kafka (KRaft) for development.")
topics_cli = group("Create and describe hookstream's topics.")


# -- kafka ---------------------------------------------------------------------------
@kafka_cli.command("up")
def kafka_up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
) -> None:
    """Start the local broker in the background (formats storage on first use)."""
    from ..localkafka import LocalKafka, LocalKafkaError

    try:
        status, started = LocalKafka.from_env().up(timeout=timeout)
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    out.print(("started: " if started else "already up: ") + status.detail)


@kafka_cli.command("down")
def kafka_down() -> None:
    """Stop the local broker started by `kafka up`."""
    from ..localkafka import LocalKafka, LocalKafkaError

    try:
        stopped = LocalKafka.from_env().down()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    out.print("stopped" if stopped else "not running")


@kafka_cli.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, and where."""
    from ..localkafka import LocalKafka

    status = LocalKafka.from_env().status()
    out.print(status.detail)
    if not status.running:
        raise typer.Exit(1)


# -- topics --------------------------------------------------------------------------
@topics_cli.command("create")
def topics_create() -> None:
    """Create every topic that is missing (idempotent)."""
    from ..admin import AdminError, create_topics

    try:
        states = create_topics(settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None
    table = Table("topic", "partitions", "state")
    for state in states:
        table.add_row(state.name, str(state.partitions), "created" if state.created else "exists")
    out.print(table)


