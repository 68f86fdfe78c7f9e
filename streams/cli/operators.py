"""`hookstream dlq` and `hookstream apikeys`: read and write Kafka directly."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import (
    CliError,
    JsonOption,
    Table,
    emit,
    group,
    progress,
    quiet_kafka_logger,
    settings,
)

dlq_cli = group("Inspect and replay dead letters.")
apikeys_cli = group("API keys of workspaces (stored as hashes).")


# -- dead letters --------------------------------------------------------------------
def _time_ms(raw: str | None, option: str) -> int | None:
    from ..core.timeutil import parse_iso

    if raw is None:
        return None
    try:
        return int(parse_iso(raw).timestamp() * 1000)
    except ValueError as exc:
        raise CliError(f"{option} must be an ISO 8601 time with a zone: {exc}") from None


def _letters(webhook: str | None, since: str | None, until: str | None) -> list[Any]:
    from ..dlq.replay import list_dead_letters

    try:
        return list_dead_letters(settings(), webhook, _time_ms(since, "--since"),
                                 _time_ms(until, "--until"))
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


@dlq_cli.command("list")
def dlq_list(
    webhook: Annotated[str | None, typer.Option(help="Only this webhook's dead letters.")]
    = None,
    since: Annotated[str | None, typer.Option(help="Dead at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Dead at or before (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters: delivery id, event, reason, last error, time."""
    from ..core.timeutil import iso_from_ms

    letters = _letters(webhook, since, until)
    rows = [{"delivery_id": s.letter.job.delivery_id, "webhook_id": s.letter.job.webhook_id,
             "event": s.letter.job.event_type, "event_id": s.letter.job.event_id,
             "reason": s.letter.reason, "error": s.letter.error,
             "dead_at": iso_from_ms(s.letter.dead_at), "replayed": s.replayed}
            for s in letters]
    table = Table("delivery", "webhook", "event", "reason", "last error", "dead at", "replayed")
    for r in rows:
        table.add_row(r["delivery_id"], r["webhook_id"], r["event"], r["reason"],
                      (r["error"] or "")[:60], r["dead_at"], "yes" if r["replayed"] else "")
    emit(as_json, rows, table, f"{len(rows)} dead letter(s)")


@dlq_cli.command("replay")
def dlq_replay(
    webhook: Annotated[str, typer.Option(help="The webhook whose dead letters to replay.")],
    since: Annotated[str | None, typer.Option(help="Dead at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Dead at or before (ISO 8601).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-queue dead letters with their original delivery ids (each letter only once)."""
    from ..dlq.replay import replay
    from ..kafka.producer import PublishError

    letters = _letters(webhook, since, until)
    todo = [s for s in letters if not s.replayed]
    with progress(as_json) as bar:
        task = bar.add_task("replaying", total=len(todo))
        try:
            count = replay(settings(), todo, lambda n: bar.advance(task, n))
        except PublishError as exc:
            raise CliError(str(exc)) from None
    skipped = len(letters) - len(todo)
    # The names the API's POST /v1/webhooks/{id}/replay answers with, and the ids replayed.
    emit(as_json, {"webhook_id": webhook, "replayed": count, "already_replayed": skipped,
                   "delivery_ids": [s.letter.job.delivery_id for s in todo]},
         f"replayed {count} dead letter(s) of webhook {webhook} ({skipped} already replayed)")


# -- API keys ------------------------------------------------------------------------
def _stored_keys() -> dict[str, Any]:
    from ..core.apikeys import ApiKey
    from ..kafka.reader import read_topic
    from ..kafka.topics import API_KEYS

    keys: dict[str, Any] = {}
    try:
        for _, _, key, value in read_topic(settings(), API_KEYS):
            if key is not None:
                if value is None:
                    keys.pop(key.decode(), None)
                else:
                    keys[key.decode()] = ApiKey.decode(value)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    return keys


def _store_key(record: Any) -> None:
    from ..core.schemas import SchemaError
    from ..kafka.producer import Publisher, PublishError
    from ..kafka.topics import API_KEYS

    current = settings()
    try:
        value = record.encode()
    except SchemaError as exc:  # a lone surrogate in --workspace, say
        raise CliError(f"cannot store this key: {exc}") from None
    publisher = Publisher(current, logger=quiet_kafka_logger())
    try:
        publisher.publish_raw(current.topic(API_KEYS), record.key_id, value)
        publisher.flush()
    except PublishError as exc:
        raise CliError(str(exc)) from None


@apikeys_cli.command("create")
def apikeys_create(
    workspace: Annotated[str, typer.Option(help="The workspace the key acts for.")],
    description: Annotated[str | None, typer.Option(help="A note for humans.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key. It is printed once: only its hash is stored."""
    from ..core.apikeys import new_key
    from ..core.timeutil import iso_from_ms, now_ms

    if not workspace.strip():
        raise CliError("--workspace must not be empty")
    key, record = new_key(workspace, now_ms(), description)
    _store_key(record)
    emit(as_json, {"key_id": record.key_id, "workspace_id": record.workspace_id,
                   "description": record.description,
                   "created_at": iso_from_ms(record.created_at), "key": key},
         f"api key {record.key_id} created for workspace {workspace}",
         f"key (shown once): {key}")


@apikeys_cli.command("list")
def apikeys_list(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys (ids and workspaces, never the keys)."""
    from ..core.timeutil import iso_from_ms

    rows = [{"key_id": k.key_id, "workspace_id": k.workspace_id, "description": k.description,
             "created_at": iso_from_ms(k.created_at),
             "revoked_at": iso_from_ms(k.revoked_at) if k.revoked_at else None}
            for k in _stored_keys().values() if workspace in (None, k.workspace_id)]
    table = Table("key id", "workspace", "description", "created", "revoked")
    for r in rows:
        table.add_row(r["key_id"], r["workspace_id"], r["description"] or "",
                      r["created_at"], r["revoked_at"] or "")
    emit(as_json, rows, table)


@apikeys_cli.command("revoke")
def apikeys_revoke(key_id: Annotated[str, typer.Argument(help="The key id to revoke.")],
                   as_json: JsonOption = False) -> None:
    """Revoke an API key: it stops working on every worker within a moment."""
    from dataclasses import replace

    from ..core.timeutil import iso_from_ms, now_ms

    record = _stored_keys().get(key_id)
    if record is None:
        raise CliError(f"no API key {key_id}")
    revoked_at = now_ms()
    _store_key(replace(record, revoked_at=revoked_at))
    emit(as_json, {"key_id": key_id, "workspace_id": record.workspace_id, "revoked": True,
                   "revoked_at": iso_from_ms(revoked_at)},
         f"api key {key_id} revoked")


# -- status --------------------------------------------------------------------------
def status(as_json: JsonOption = False) -> None:
    """Lag and backlog per stage, and the disabled webhooks, read from Kafka."""
    from ..core.schemas import SchemaError
    from ..history.feeder import HistoryFeeder
    from ..kafka.app import APP_ID
    from ..kafka.reader import read_topic
    from ..kafka.topics import (
        CONTROL,
        DELIVERIES,
        DELIVERY_LOG,
        DLQ,
        RETRY_TOPICS,
        SUBSCRIPTIONS,
        domain_topic,
    )
    from ..subscriptions.model import Subscription
    from ..telemetry.metrics import measure_lag

    s = settings()
    p = s.topic_prefix
    stages = {
        "fan-out": (f"{p}hookstream-fanout", [s.topic(domain_topic(f)) for f in s.families]),
        "delivery": (f"{p}hookstream-delivery", [s.topic(DELIVERIES)]),
        **{t.rsplit(".", 1)[-1] + " retry": (f"{p}hookstream-delivery", [s.topic(t)])
           for t in RETRY_TOPICS},
        "control": (f"{p}{APP_ID}", [s.topic(CONTROL)]),
        "dead letters": (f"{p}{APP_ID}", [s.topic(DLQ)]),
        "history": (f"{p}{HistoryFeeder.group}", [s.topic(DELIVERY_LOG)]),
    }
    try:
        lag = {name: sum(per_topic.values())
               for name, per_topic in measure_lag(s.bootstrap_servers, stages).items()}
    except Exception as exc:
        raise CliError(f"cannot read consumer lag from {s.bootstrap_servers}: {exc}") from None
    current: dict[str, Subscription | None] = {}
    try:
        for _, _, key, record in read_topic(s, SUBSCRIPTIONS):
            if key is not None:
                current[key.decode()] = Subscription.decode(record) if record else None
    except (RuntimeError, SchemaError) as exc:
        raise CliError(f"reading {s.topic(SUBSCRIPTIONS)}: {exc}") from None
    disabled = [sub for sub in current.values() if sub is not None and not sub.active]
    lag_table = Table("stage", "waiting")
    for name, waiting in lag.items():
        lag_table.add_row(name, str(waiting))
    disabled_table = Table("disabled webhook", "workspace", "reason")
    for d in disabled:
        disabled_table.add_row(d.id, d.workspace_id, d.disabled_reason or "")
    emit(as_json, {"lag": lag, "disabled": [
        {"id": d.id, "workspace_id": d.workspace_id, "reason": d.disabled_reason}
        for d in disabled]}, lag_table, disabled_table if disabled else "no disabled webhooks")
