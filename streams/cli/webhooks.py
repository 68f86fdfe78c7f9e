"""`hookstream webhooks`, `hookstream deliveries` and `hookstream event-types`: the HTTP API,
from a terminal.

HOOKSTREAM_URL (default: the API of a worker on this machine, as HOOKSTREAM_WEB_HOST and
HOOKSTREAM_WEB_PORT say) and
HOOKSTREAM_API_KEY (a workspace key; HOOKSTREAM_ADMIN_KEY is used when it is unset).
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer
from rich.json import JSON

from ..core import catalog, strictjson
from ..core.filters import parse_filter
from ..core.headers import HeaderError, check_custom_headers
from ..core.urls import UrlPolicyError, check_url, path_segment
from ..subscriptions.commands import WEBHOOK_ID_RULE, is_valid_webhook_id
from .common import CliError, JsonOption, Table, emit, group, settings

webhooks_cli = group("Manage webhooks through the HTTP API.")

def _webhook_id(value: str) -> str:
    if not is_valid_webhook_id(value):
        raise typer.BadParameter(f"a webhook id is {WEBHOOK_ID_RULE}")
    return value


IdArgument = Annotated[str, typer.Argument(help="Webhook id.", callback=_webhook_id)]


def _webhook(webhook_id: str, action: str = "") -> str:
    """The API path of a webhook, or of one of its actions."""
    return f"/v1/webhooks/{path_segment(webhook_id)}" + (f"/{action}" if action else "")


def _call(method: str, path: str, body: dict[str, Any] | None = None,
          params: dict[str, Any] | None = None) -> Any:
    s = settings()
    base = os.environ.get("HOOKSTREAM_URL", "").strip() or s.local_api_url()
    try:
        where = httpx.URL(base)
    except httpx.InvalidURL as exc:
        raise CliError(f"HOOKSTREAM_URL is not a URL: {exc}") from None
    if where.scheme not in ("http", "https") or not where.host:
        raise CliError("HOOKSTREAM_URL must be an http(s) URL with a host")
    shown_base = str(where.copy_with(username=None, password=None))  # never its password
    named = "HOOKSTREAM_API_KEY" if os.environ.get("HOOKSTREAM_API_KEY", "").strip() else (
        "HOOKSTREAM_ADMIN_KEY")
    key = (os.environ.get("HOOKSTREAM_API_KEY", "").strip() or s.admin_key or "")
    if not key:
        raise CliError("set HOOKSTREAM_API_KEY (create one with `hookstream apikeys create`)")
    if not (key.isascii() and key.isprintable()):
        raise CliError(f"{named} holds characters no key has (keys are printable ASCII)")
    try:
        response = httpx.request(method, f"{base.rstrip('/')}{path}", json=body,
                                 params={k: v for k, v in (params or {}).items() if v is not None},
                                 headers={"Authorization": f"Bearer {key}"}, timeout=60)
    except httpx.InvalidURL as exc:
        raise CliError(f"cannot make a request of that: {exc}") from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the API at {shown_base}: {exc}") from None
    if response.status_code == 204:
        return None
    try:
        payload = response.json()
    except ValueError:
        raise CliError(f"the API answered {response.status_code} without JSON") from None
    if response.status_code >= 400:
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        raise CliError(f"{response.status_code} {error.get('code', '')}: "
                       f"{error.get('message', payload)}")
    return payload


def _events(raw: str | None) -> list[str] | None:
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
    if raw is None:
        return None
    try:
        return check_url(raw, allow_insecure=True)  # the API applies the deployment's rules
    except UrlPolicyError as exc:
        raise CliError(f"--url {exc}") from None


HeaderOption = Annotated[list[str] | None, typer.Option(
    "--header", help="A custom header sent with every delivery, as 'Name: value' (curl's "
                     "form); repeat for more. Values are stored sealed and shown masked.")]
FilterOption = Annotated[str | None, typer.Option(
    "--filter", help='Payload filter as JSON, e.g. \'{"data.priority": {"$in": ["high"]}}\'.')]
RateLimitOption = Annotated[int | None, typer.Option(
    "--rate-limit", help="Deliveries per second at most (update: 0 goes back to the "
                         "deployment's default).", min=0)]


def _headers(raw: list[str] | None) -> dict[str, str] | None:
    """--header 'Name: value' options, checked as the API checks them."""
    if not raw:
        return None
    pairs: dict[str, str] = {}
    for number, item in enumerate(raw, 1):
        name, colon, value = item.partition(":")
        if not colon:
            # Not quoted back: a header's value is often a credential.
            raise CliError(f"--header number {number} has no ':'; write it as 'Name: value'")
        pairs[name.strip()] = value.lstrip(" \t")
    try:
        return check_custom_headers(pairs)
    except HeaderError as exc:
        raise CliError(f"--header {exc}") from None


def _filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = strictjson.loads(raw)
        parse_filter(value)
    except (ValueError, RecursionError) as exc:  # FilterError is a ValueError
        raise CliError(f"--filter {exc}") from None
    return dict(value)


def _controls(header: list[str] | None, filter_: str | None,
              rate_limit: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if (headers := _headers(header)) is not None:
        body["headers"] = headers
    if (parsed := _filter(filter_)) is not None:
        body["filter"] = parsed
    if rate_limit is not None:
        body["rate_limit"] = rate_limit or None
    return body


def _show(webhook: dict[str, Any], as_json: bool) -> None:
    """The API's webhook as it answered (with --json), or as a table and the secret."""
    table = Table(show_header=False)
    for key, value in webhook.items():
        if key != "secret":
            shown = (", ".join(value) if isinstance(value, list)
                     else ", ".join(f"{k}: {v}" for k, v in value.items()) if key == "headers"
                     else json.dumps(value) if isinstance(value, dict) else str(value))
            table.add_row(key, shown)
    secret = [f"secret (shown once): {webhook['secret']}"] if "secret" in webhook else []
    emit(as_json, webhook, table, *secret)


@webhooks_cli.command("list")
def list_(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace (admin).")] = None,
    limit: Annotated[int, typer.Option(help="Page size.", min=1, max=100)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List webhooks, every page."""
    webhooks: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _call("GET", "/v1/webhooks", params={"workspace_id": workspace, "limit": limit,
                                                     "cursor": cursor})
        webhooks += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    table = Table("id", "workspace", "url", "events", "active", "disabled reason")
    for w in webhooks:
        table.add_row(w["id"], w["workspace_id"], w["url"], ", ".join(w["events"]),
                      "yes" if w["active"] else "no", w["disabled_reason"] or "")
    emit(as_json, webhooks, table)


@webhooks_cli.command("show")
def show(webhook_id: IdArgument, as_json: JsonOption = False) -> None:
    """One webhook's settings (never its secret)."""
    _show(_call("GET", _webhook(webhook_id)), as_json)


@webhooks_cli.command("create")
def create(
    url: Annotated[str, typer.Option(help="Where to POST events (https).")],
    events: Annotated[str, typer.Option(help="Comma-separated types; task.* and * work.")],
    workspace: Annotated[str | None, typer.Option(help="Workspace (admin key only).")] = None,
    secret: Annotated[str | None, typer.Option(help="Signing secret (default: generated).")]
    = None,
    description: Annotated[str | None, typer.Option(help="A note for humans.")] = None,
    scheme: Annotated[str, typer.Option(help="hookstream or standard-webhooks.")]
    = "hookstream",
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it disabled.")] = False,
    header: HeaderOption = None,
    filter_: FilterOption = None,
    rate_limit: RateLimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a webhook. Its secret is printed once: store it now."""
    body: dict[str, Any] = {"url": _url(url), "events": _events(events), "active": not inactive,
                            "signature_scheme": scheme,
                            **_controls(header, filter_, rate_limit or None)}
    for name, value in (("workspace_id", workspace), ("secret", secret),
                        ("description", description)):
        if value is not None:
            body[name] = value
    _show(_call("POST", "/v1/webhooks", body), as_json)


@webhooks_cli.command("update")
def update(
    webhook_id: IdArgument,
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    events: Annotated[str | None, typer.Option(help="New comma-separated event list.")] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    header: HeaderOption = None,
    clear_headers: Annotated[bool, typer.Option(
        "--clear-headers", help="Remove every custom header.")] = False,
    filter_: FilterOption = None,
    clear_filter: Annotated[bool, typer.Option(
        "--clear-filter", help="Remove the payload filter.")] = False,
    rate_limit: RateLimitOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a webhook's URL, events, description, headers, filter or rate limit.
    --header replaces the whole set of custom headers."""
    body: dict[str, Any] = {k: v for k, v in {"url": _url(url), "events": _events(events),
                              "description": description}.items() if v is not None}
    body |= _controls(header, filter_, rate_limit)
    if clear_headers:
        body["headers"] = None
    if clear_filter:
        body["filter"] = None
    if not body:
        raise CliError("nothing to update: give --url, --events, --description, --header, "
                       "--filter or --rate-limit")
    _show(_call("PATCH", _webhook(webhook_id), body), as_json)


@webhooks_cli.command("delete")
def delete(webhook_id: IdArgument, as_json: JsonOption = False) -> None:
    """Delete a webhook."""
    _call("DELETE", _webhook(webhook_id))  # answers once the deletion is applied
    emit(as_json, {"webhook_id": webhook_id, "deleted": True},
         f"webhook {webhook_id} deleted")


@webhooks_cli.command("enable")
def enable(webhook_id: IdArgument, as_json: JsonOption = False) -> None:
    """Re-enable a webhook (after fixing and testing its endpoint)."""
    webhook = _call("POST", _webhook(webhook_id, "enable"))
    emit(as_json, {"webhook_id": webhook_id, "enabled": True, "active": webhook["active"]},
         f"webhook {webhook_id} enabled")


@webhooks_cli.command("disable")
def disable(webhook_id: IdArgument,
            reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
            as_json: JsonOption = False) -> None:
    """Disable a webhook: its events are dead-lettered (replayable), not sent."""
    webhook = _call("POST", _webhook(webhook_id, "disable"),
                    {"reason": reason} if reason else None)
    emit(as_json, {"webhook_id": webhook_id, "disabled": True, "active": webhook["active"],
                   "reason": webhook["disabled_reason"]},
         f"webhook {webhook_id} disabled")


@webhooks_cli.command("test")
def test(webhook_id: IdArgument,
         event: Annotated[str | None, typer.Option(
             help="Send this type's example (see `hookstream event-types`), not webhook.test.")]
         = None,
         as_json: JsonOption = False) -> None:
    """Send a signed webhook.test now (works on a disabled webhook); non-zero if it failed."""
    if event is not None and not catalog.is_known(event):
        raise CliError(f"--event: unknown event type {event!r} (see `hookstream event-types`)")
    result = _call("POST", _webhook(webhook_id, "test"),
                   {"event": event} if event is not None else None)
    emit(as_json, result, f"{result['status']}: {result['response_code'] or result['error']} "
                          f"in {result['response_time_ms']} ms")
    if result["status"] != "success":
        raise typer.Exit(1)


@webhooks_cli.command("rotate-secret")
def rotate_secret(webhook_id: IdArgument, as_json: JsonOption = False) -> None:
    """New secret (printed once); the old one also signs for the grace period."""
    _show(_call("POST", _webhook(webhook_id, "rotate-secret")), as_json)


def deliveries(
    webhook_id: IdArgument,
    status: Annotated[str | None, typer.Option(
        help="success, retrying, dead, disabled or failed.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=100)] = 20,
    as_json: JsonOption = False,
) -> None:
    """A webhook's recent attempts, newest first."""
    page = _call("GET", _webhook(webhook_id, "deliveries"),
                 params={"status": status, "limit": limit})
    table = Table("delivery", "event", "time", "attempt", "status", "code", "ms", "error")
    for d in page["data"]:
        table.add_row(d["id"], d["event"], d["timestamp"], str(d["attempt"]), d["status"],
                      str(d["response_code"] or ""), str(d["response_time_ms"]),
                      (d["error"] or "")[:50])
    emit(as_json, page["data"], table)


def event_types(
    event_type: Annotated[str | None, typer.Argument(
        help="One type: its data's JSON Schema and an example.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The event types webhooks can subscribe to, and what each means."""
    if event_type is not None:
        entry = _call("GET", f"/v1/event-types/{path_segment(event_type)}")
        emit(as_json, entry, f"{entry['type']}: {entry['description']}", "data schema:",
             JSON.from_data(entry["schema"]), "example data:", JSON.from_data(entry["example"]))
        return
    page = _call("GET", "/v1/event-types")
    table = Table("type", "description")
    for entry in page["data"]:
        table.add_row(entry["type"], entry["description"])
    emit(as_json, page["data"], table)
