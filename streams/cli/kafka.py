"""`hookstream kafka` and `hookstream topics`: the local broker and our topics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import CliError, JsonOption, Table, emit, group, settings

if TYPE_CHECKING:
    from localdev.kafka import KafkaStatus

kafka_cli = group("Run a local Kafka (KRaft) for development: one broker, or a cluster.")
topics_cli = group("Create and describe hookstream's topics.")


# -- kafka ---------------------------------------------------------------------------
def _state(status: KafkaStatus, verdict: str | None = None) -> dict[str, Any]:
    """`kafka up`, `down` and `status` answer with the same fields; up and down add what
    they did as `status`. `running`: every node runs; `pid`: the single broker's."""
    state: dict[str, Any] = {"status": verdict} if verdict else {}
    nodes = [{"id": n.id, "pid": n.pid, "bootstrap": n.bootstrap, "running": n.running}
             for n in status.nodes]
    return {**state, "running": status.running, "pid": status.pid,
            "bootstrap": status.bootstrap, "detail": status.detail, "nodes": nodes}


@kafka_cli.command("up")
def kafka_up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
    brokers: Annotated[int | None, typer.Option(
        min=1, help="Run a cluster of this many KRaft nodes on 127.0.0.1 (node i on port "
                    "9192 + 100*(i-1)). Default: the cluster this HOOKSTREAM_HOME runs, "
                    "else one broker on 9092.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Start the local broker, or cluster, in the background (formats storage on first use)."""
    from localdev.kafka import LocalKafka, LocalKafkaError

    try:
        status, started = LocalKafka.from_env(brokers).up(timeout=timeout)
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    emit(as_json, _state(status, "started" if started else "already_running"),
         ("started: " if started else "already up: ") + status.detail)


@kafka_cli.command("down")
def kafka_down(as_json: JsonOption = False) -> None:
    """Stop the local broker, or every node of the cluster, started by `kafka up`."""
    from localdev.kafka import LocalKafka, LocalKafkaError

    try:
        kafka = LocalKafka.from_env()
        stopped = kafka.down()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    emit(as_json, _state(kafka.status(), "stopped" if stopped else "not_running"),
         "stopped" if stopped else "not running")


@kafka_cli.command("status")
def kafka_status(as_json: JsonOption = False) -> None:
    """Say whether the local broker (every node of the cluster) runs, and where (exit 1
    when it, or any node, does not)."""
    from localdev.kafka import LocalKafka, LocalKafkaError

    try:
        status = LocalKafka.from_env().status()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    emit(as_json, _state(status), status.detail)
    if not status.running:
        raise typer.Exit(1)


# -- topics --------------------------------------------------------------------------
@topics_cli.command("create")
def topics_create(as_json: JsonOption = False) -> None:
    """Create every topic that is missing (idempotent)."""
    from ..kafka.admin import AdminError, create_topics

    try:
        states = create_topics(settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None
    table = Table("topic", "partitions", "state")
    for state in states:
        table.add_row(state.name, str(state.partitions), "created" if state.created else "exists")
    emit(as_json, [{"topic": t.name, "partitions": t.partitions, "created": t.created}
                   for t in states], table)


@topics_cli.command("describe")
def topics_describe(as_json: JsonOption = False) -> None:
    """Every topic: whether it exists, partitions, records held, cleanup policy."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from ..kafka.admin import admin_client
    from ..kafka.topics import all_topics

    current = settings()
    try:
        existing = admin_client(current).list_topics(timeout=15).topics
    except KafkaException as exc:
        raise CliError(f"cannot reach Kafka at {current.bootstrap_servers}: {exc}") from None
    consumer = Consumer({"bootstrap.servers": current.bootstrap_servers,
                         "group.id": "hookstream-describe", "enable.auto.commit": False})
    rows: list[dict[str, Any]] = []
    try:
        for spec in all_topics(current):
            found = existing.get(spec.name)
            records = None
            if found is not None:
                records = 0
                for p in found.partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(spec.name, p),
                                                               timeout=10)
                    records += high - low
            rows.append({"topic": spec.name, "exists": found is not None,
                         "partitions": len(found.partitions) if found else spec.partitions,
                         "records": records,
                         "cleanup_policy": spec.config.get("cleanup.policy", "delete")})
    finally:
        consumer.close()
    table = Table("topic", "exists", "partitions", "records", "cleanup")
    for r in rows:
        table.add_row(r["topic"], "yes" if r["exists"] else "NO", str(r["partitions"]),
                      "" if r["records"] is None else str(r["records"]), r["cleanup_policy"])
    emit(as_json, rows, table)
