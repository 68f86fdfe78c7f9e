"""The `hookstream` command. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .settings import Settings, SettingsError

cli = typer.Typer(
    name="hookstream", help="Webhook delivery on Apache Kafka.", no_args_is_help=True,
    pretty_exceptions_enable=False, add_completion=False,
)
kafka_cli = typer.Typer(help="Run a local single-node Kafka (KRaft) for development.",
                        no_args_is_help=True)
topics_cli = typer.Typer(help="Create and describe hookstream's topics.", no_args_is_help=True)
webhooks_cli = typer.Typer(help="Manage webhooks through control-plane commands.",
                           no_args_is_help=True)
cli.add_typer(kafka_cli, name="kafka")
cli.add_typer(topics_cli, name="topics")
dlq_cli = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
apikeys_cli = typer.Typer(help="API keys of workspaces (stored as hashes).",
                          no_args_is_help=True)
cli.add_typer(apikeys_cli, name="apikeys")
cli.add_typer(webhooks_cli, name="webhooks")
cli.add_typer(dlq_cli, name="dlq")

out = Console()

#: Typer vendors click; its usage errors derive from this class (public via BadParameter).
_ClickException: type[Exception] = typer.BadParameter.__mro__[2]


class CliError(Exception):
    """A failure to report as one line."""


def _quiet_kafka_logger() -> logging.Logger:
    """librdkafka's own retries are noise on a terminal; failures reach us as errors."""
    logger = logging.getLogger("hookstream.cli.kafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


# -- kafka ---------------------------------------------------------------------------
@kafka_cli.command("up")
def kafka_up(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 90.0,
) -> None:
    """Start the local broker in the background (formats storage on first use)."""
    from .localkafka import LocalKafka, LocalKafkaError

    try:
        status, started = LocalKafka.from_env().up(timeout=timeout)
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    out.print(("started: " if started else "already up: ") + status.detail)


@kafka_cli.command("down")
def kafka_down() -> None:
    """Stop the local broker started by `kafka up`."""
    from .localkafka import LocalKafka, LocalKafkaError

    try:
        stopped = LocalKafka.from_env().down()
    except LocalKafkaError as exc:
        raise CliError(str(exc)) from None
    out.print("stopped" if stopped else "not running")


@kafka_cli.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, and where."""
    from .localkafka import LocalKafka

    status = LocalKafka.from_env().status()
    out.print(status.detail)
    if not status.running:
        raise typer.Exit(1)


# -- topics --------------------------------------------------------------------------
@topics_cli.command("create")
def topics_create() -> None:
    """Create every topic that is missing (idempotent)."""
    from .admin import AdminError, create_topics

    try:
        states = create_topics(_settings())
    except AdminError as exc:
        raise CliError(str(exc)) from None
    table = Table("topic", "partitions", "state")
    for state in states:
        table.add_row(state.name, str(state.partitions), "created" if state.created else "exists")
    out.print(table)


# -- publish -------------------------------------------------------------------------
@cli.command("publish")
def publish(
    event: Annotated[str, typer.Argument(help="Event type, e.g. task.created.")],
    workspace: Annotated[str, typer.Option(help="Workspace id (the message key).")],
    data: Annotated[str, typer.Option(help="The event's data as a JSON object.")] = "{}",
    event_id: Annotated[str | None, typer.Option("--id", help="Event id (default: new).")]
    = None,
    timestamp: Annotated[str | None, typer.Option(help="ISO 8601 time (default: now).")]
    = None,
) -> None:
    """Validate and publish one domain event (Avro) to its family's topic."""
    from .events import InvalidEvent, validate_event
    from .producer import Publisher, PublishError
    from .timeutil import iso_from_ms, now_ms

    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise CliError(f"--data is not JSON: {exc}") from None
    record = {"id": event_id or f"evt_{uuid.uuid4().hex}", "event": event,
              "workspace_id": workspace, "timestamp": timestamp or iso_from_ms(now_ms()),
              "data": payload}
    try:
        validate_event(record)  # refuse bad input before touching Kafka
    except InvalidEvent as exc:
        raise CliError(str(exc)) from None
    publisher = Publisher(_settings(), logger=_quiet_kafka_logger())
    try:
        published = publisher.publish_event(record)
        publisher.flush()
    except (InvalidEvent, PublishError) as exc:
        raise CliError(str(exc)) from None
    out.print(f"published {published.type} {published.id} for workspace {workspace}")


# -- webhooks ------------------------------------------------------------------------
def _send(command: Any) -> None:
    from .producer import Publisher, PublishError

    publisher = Publisher(_settings(), logger=_quiet_kafka_logger())
    try:
        publisher.send_command(command)
        publisher.flush()
    except PublishError as exc:
        raise CliError(str(exc)) from None


def _events(raw: str | None) -> list[str] | None:
    from . import catalog

    if raw is None:
        return None
    events = [e.strip() for e in raw.split(",") if e.strip()]
    if not events:
        raise CliError("--events needs at least one event type")
    for pattern in events:
        if not catalog.is_valid_pattern(pattern):
            raise CliError(f"--events: unknown event type {pattern!r}")
    return events


def _url(raw: str | None) -> str | None:
    from .policy import UrlPolicyError, check_url

    if raw is None:
        return None
    try:
        return check_url(raw, allow_insecure=_settings().allow_insecure_targets)
    except UrlPolicyError as exc:
        raise CliError(f"--url {exc}") from None


@webhooks_cli.command("create")
def webhooks_create(
    workspace: Annotated[str, typer.Option(help="Workspace the webhook belongs to.")],
    url: Annotated[str, typer.Option(help="Where to POST events (https).")],
    events: Annotated[str, typer.Option(help="Comma-separated types; task.* and * work.")],
    secret: Annotated[str | None, typer.Option(help="Signing secret (default: generated).")]
    = None,
    description: Annotated[str | None, typer.Option(help="A note for humans.")] = None,
    webhook_id: Annotated[str | None, typer.Option("--id", help="Webhook id (default: new).")]
    = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it disabled.")] = False,
) -> None:
    """Create a webhook. A generated secret is printed once: store it now."""
    from .control.commands import Command, generate_secret

    wid = webhook_id or f"wh_{uuid.uuid4().hex[:16]}"
    fields: dict[str, Any] = {"url": _url(url), "events": _events(events),
                              "secret": secret or generate_secret(), "active": not inactive}
    if description is not None:
        fields["description"] = description
    _send(Command(op="create", webhook_id=wid, workspace_id=workspace, webhook=fields))
    out.print(f"webhook {wid} created for workspace {workspace}")
    if secret is None:
        out.print(f"secret (shown once): {fields['secret']}")


@webhooks_cli.command("update")
def webhooks_update(
    webhook_id: Annotated[str, typer.Argument(help="Webhook id.")],
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    events: Annotated[str | None, typer.Option(help="New comma-separated event list.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
) -> None:
    """Change a webhook's URL, events or description."""
    from .control.commands import Command

    fields = {k: v for k, v in {"url": _url(url), "events": _events(events),
                                "description": description}.items() if v is not None}
    if not fields:
        raise CliError("nothing to update: give --url, --events or --description")
    _send(Command(op="update", webhook_id=webhook_id, webhook=fields))
    out.print(f"webhook {webhook_id}: update sent")


def _simple(op: str, help_text: str) -> None:
    from .control.commands import Command

    def command(
        webhook_id: Annotated[str, typer.Argument(help="Webhook id.")],
        reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    ) -> None:
        _send(Command(op=op, webhook_id=webhook_id, reason=reason))
        out.print(f"webhook {webhook_id}: {op} sent")

    command.__doc__ = help_text
    webhooks_cli.command(op.replace("_", "-"))(command)


_simple("delete", "Delete a webhook.")
_simple("enable", "Re-enable a webhook (after fixing its endpoint).")
_simple("disable", "Disable a webhook: its events are held, not sent.")


# -- dead letters --------------------------------------------------------------------
def _time_ms(raw: str | None, option: str) -> int | None:
    from .timeutil import parse_iso

    if raw is None:
        return None
    try:
        return int(parse_iso(raw).timestamp() * 1000)
    except ValueError as exc:
        raise CliError(f"{option} must be an ISO 8601 time with a zone: {exc}") from None


def _letters(webhook: str | None, since: str | None, until: str | None) -> list[Any]:
    from .replay import list_dead_letters

    try:
        return list_dead_letters(_settings(), webhook, _time_ms(since, "--since"),
                                 _time_ms(until, "--until"))
    except RuntimeError as exc:
        raise CliError(str(exc)) from None


@dlq_cli.command("list")
def dlq_list(
    webhook: Annotated[str | None, typer.Option(help="Only this webhook's dead letters.")]
    = None,
    since: Annotated[str | None, typer.Option(help="Dead at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Dead at or before (ISO 8601).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts.")] = False,
) -> None:
    """List dead letters: delivery id, event, reason, last error, time."""
    from .timeutil import iso_from_ms

    letters = _letters(webhook, since, until)
    rows = [{"delivery_id": s.letter.job.delivery_id, "webhook_id": s.letter.job.webhook_id,
             "event": s.letter.job.event_type, "event_id": s.letter.job.event_id,
             "reason": s.letter.reason, "error": s.letter.error,
             "dead_at": iso_from_ms(s.letter.dead_at), "replayed": s.replayed}
            for s in letters]
    if as_json:
        _print_json(rows)
        return
    table = Table("delivery", "webhook", "event", "reason", "last error", "dead at", "replayed")
    for r in rows:
        table.add_row(r["delivery_id"], r["webhook_id"], r["event"], r["reason"],
                      (r["error"] or "")[:60], r["dead_at"], "yes" if r["replayed"] else "")
    out.print(table)
    out.print(f"{len(rows)} dead letter(s)")


@dlq_cli.command("replay")
def dlq_replay(
    webhook: Annotated[str, typer.Option(help="The webhook whose dead letters to replay.")],
    since: Annotated[str | None, typer.Option(help="Dead at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Dead at or before (ISO 8601).")] = None,
) -> None:
    """Re-queue dead letters with their original delivery ids (each letter only once)."""
    from rich.progress import Progress

    from .producer import PublishError
    from .replay import replay

    letters = _letters(webhook, since, until)
    todo = [s for s in letters if not s.replayed]
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("replaying", total=len(todo))
        try:
            count = replay(_settings(), todo, lambda n: progress.advance(task, n))
        except PublishError as exc:
            raise CliError(str(exc)) from None
    out.print(f"replayed {count} dead letter(s) of webhook {webhook}"
              f" ({len(letters) - len(todo)} already replayed)")


# -- API keys ------------------------------------------------------------------------
def _stored_keys() -> dict[str, Any]:
    from .control.apikeys import ApiKey
    from .reader import read_topic
    from .topics import API_KEYS

    keys: dict[str, Any] = {}
    try:
        for _, _, key, value in read_topic(_settings(), API_KEYS):
            if key is not None:
                if value is None:
                    keys.pop(key.decode(), None)
                else:
                    keys[key.decode()] = ApiKey.decode(value)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    return keys


def _store_key(record: Any) -> None:
    from .producer import Publisher, PublishError
    from .topics import API_KEYS

    settings = _settings()
    publisher = Publisher(settings, logger=_quiet_kafka_logger())
    try:
        publisher.publish_raw(settings.topic(API_KEYS), record.key_id, record.encode())
        publisher.flush()
    except PublishError as exc:
        raise CliError(str(exc)) from None


@apikeys_cli.command("create")
def apikeys_create(
    workspace: Annotated[str, typer.Option(help="The workspace the key acts for.")],
    description: Annotated[str | None, typer.Option(help="A note for humans.")] = None,
) -> None:
    """Create an API key. It is printed once: only its hash is stored."""
    from .control.apikeys import new_key
    from .timeutil import now_ms

    if not workspace.strip():
        raise CliError("--workspace must not be empty")
    key, record = new_key(workspace, now_ms(), description)
    _store_key(record)
    out.print(f"api key {record.key_id} created for workspace {workspace}")
    out.print(f"key (shown once): {key}")


@apikeys_cli.command("list")
def apikeys_list(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """List API keys (ids and workspaces, never the keys)."""
    from .timeutil import iso_from_ms

    rows = [{"key_id": k.key_id, "workspace_id": k.workspace_id, "description": k.description,
             "created_at": iso_from_ms(k.created_at),
             "revoked_at": iso_from_ms(k.revoked_at) if k.revoked_at else None}
            for k in _stored_keys().values() if workspace in (None, k.workspace_id)]
    if as_json:
        _print_json(rows)
        return
    table = Table("key id", "workspace", "description", "created", "revoked")
    for r in rows:
        table.add_row(r["key_id"], r["workspace_id"], r["description"] or "",
                      r["created_at"], r["revoked_at"] or "")
    out.print(table)


@apikeys_cli.command("revoke")
def apikeys_revoke(key_id: Annotated[str, typer.Argument(help="The key id to revoke.")]) -> None:
    """Revoke an API key: it stops working on every worker within a moment."""
    from dataclasses import replace

    from .timeutil import now_ms

    record = _stored_keys().get(key_id)
    if record is None:
        raise CliError(f"no API key {key_id}")
    _store_key(replace(record, revoked_at=now_ms()))
    out.print(f"api key {key_id} revoked")


# -- processes -----------------------------------------------------------------------
@cli.command("worker")
def worker() -> None:
    """Run a worker: fan-out, control, delivery and the web server (settings from env)."""
    _settings()
    from .admin import AdminError
    from .worker import run_worker

    try:
        run_worker()
    except AdminError as exc:
        raise CliError(str(exc)) from None


@cli.command("dev")
def dev(
    receiver_port: Annotated[int, typer.Option(help="Port of the demo receiver.")] = 8787,
    events: Annotated[int, typer.Option(help="How many demo events to publish.")] = 5,
) -> None:
    """Local Kafka + worker + a verifying demo receiver + a demo webhook and events."""
    from .demo.run import run_demo

    run_demo(receiver_port=receiver_port, events=events)


def main() -> None:
    try:
        code = cli(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except _ClickException as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        sys.stderr.write(f"error: {' '.join(message.split())}\n")
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
