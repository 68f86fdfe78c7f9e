"""Per-webhook controls (issue 14): custom headers, payload filters, rate limits, as the API
validates them, as control commands carry them (JSON and Avro), as a subscription keeps
them, and as a delivery sends the headers. What reads show of header values: nothing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.api import validation as v
from streams.api.validation import ApiError
from streams.core.filters import parse_filter
from streams.core.headers import MASK, MAX_HEADERS, RESERVED
from streams.core.schemas import SchemaError
from streams.core.secretbox import SecretBox, generate_master_key
from streams.delivery.client import DeliveryClient
from streams.delivery.models import DeliveryJob, Outcome, delivery_id_for
from streams.delivery.sender import attempt, build_request
from streams.settings import MAX_RATE_LIMIT, Settings
from streams.subscriptions.commands import (
    Command,
    InvalidCommand,
    apply,
    decode_command,
    validate_command,
)
from streams.subscriptions.model import Subscription

T0 = 1_760_437_800_000
URL = "https://example.com/hooks"
BOX = SecretBox.from_env(generate_master_key("controls"), Path("/nonexistent"))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

TOKENS = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
                 "RSTUVWXYZ", min_size=1, max_size=20).filter(
    lambda n: n.lower() not in RESERVED and not n.lower().startswith(
        ("x-webhook-", "webhook-", "proxy-")))
VALUES = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40)
HEADER_SETS = st.dictionaries(TOKENS, VALUES, max_size=5).filter(
    lambda d: len({k.lower() for k in d}) == len(d))
FILTERS = st.sampled_from([
    {"data.priority": "high"}, {"data.priority": {"$in": ["high", "urgent"]}},
    {"$or": [{"event": "task.created"}, {"data.n": {"$gte": 3}}]},
    {"$not": {"data.name": {"$prefix": "Draft"}}}, {"data.assignee": {"$exists": True}}])


def _create(**controls: Any) -> dict[str, Any]:
    return {"op": "create", "webhook_id": "wh_1", "workspace_id": "ws_1",
            "webhook": {"url": URL, "events": ["task.*"], "secret": "whsec_controls_1",
                        **controls}}


def _made(record: dict[str, Any], current: Subscription | None = None) -> Subscription:
    op = record["op"]
    made = apply(current, validate_command(record), T0 + (op != "create"),
                 allow_insecure=False)
    assert made is not None
    return made


# -- control commands --------------------------------------------------------------------

@FAST
@given(HEADER_SETS, FILTERS, st.integers(1, MAX_RATE_LIMIT))
def test_controls_survive_json_and_avro_commands_and_the_stored_record(
        headers: dict[str, str], filter_: dict[str, Any], limit: int) -> None:
    record = _create(headers=headers, filter=filter_, rate_limit=limit)
    from_json = _made(record)
    command = decode_command(json.dumps(record).encode())
    from_avro = apply(None, decode_command(command.encode()), T0, allow_insecure=False)
    assert from_avro == from_json
    assert Subscription.decode(from_json.encode()) == from_json
    assert dict(from_json.headers) == headers
    assert from_json.filter == parse_filter(filter_).to_json()
    assert from_json.rate_limit == limit


def test_updates_replace_and_clear_each_control() -> None:
    made = _made(_create(headers={"X-A": "1", "X-B": "2"}, filter={"data.p": 1},
                         rate_limit=20))
    untouched = _made({"op": "update", "webhook_id": "wh_1", "webhook": {"description": "d"}},
                      made)
    assert (untouched.headers, untouched.filter, untouched.rate_limit) == (
        made.headers, made.filter, made.rate_limit)
    replaced = _made({"op": "update", "webhook_id": "wh_1",
                      "webhook": {"headers": {"X-C": "3"}, "rate_limit": 5}}, made)
    assert (replaced.headers, replaced.rate_limit) == ((("X-C", "3"),), 5)
    cleared = _made({"op": "update", "webhook_id": "wh_1",
                     "webhook": {"headers": {}, "filter": {}, "rate_limit": 0}}, replaced)
    assert (cleared.headers, cleared.filter, cleared.rate_limit) == ((), None, None)


@pytest.mark.parametrize(("controls", "fragment"), [
    ({"headers": {"Host": "evil"}}, "webhook.headers.Host"),
    ({"headers": {"X-Webhook-Signature": "x"}}, "webhook.headers.X-Webhook-Signature"),
    ({"headers": {"X-A": "a\r\nInjected: 1"}}, "webhook.headers.X-A"),
    ({"headers": ["X-A"]}, "webhook.headers"),
    ({"headers": {f"X-{i}": "v" for i in range(MAX_HEADERS + 1)}}, "webhook.headers"),
    ({"filter": {"data.p": {"$regex": ".*"}}}, "webhook.filter"),
    ({"filter": "data.p == 1"}, "webhook.filter"),
    ({"rate_limit": -1}, "webhook.rate_limit"),
    ({"rate_limit": MAX_RATE_LIMIT + 1}, "webhook.rate_limit"),
    ({"rate_limit": True}, "webhook.rate_limit"),
    ({"rate_limit": 2.5}, "webhook.rate_limit"),
])
def test_a_bad_control_is_an_invalid_command_naming_it(controls: dict[str, Any],
                                                       fragment: str) -> None:
    with pytest.raises(InvalidCommand, match=fragment.replace(".", r"\.")):
        validate_command(_create(**controls))


def test_sealed_header_values_pass_the_command_rules() -> None:
    """The API seals values before its command; those are judged by name only."""
    sealed = BOX.seal("Bearer " + "x" * 3000)
    made = _made(_create(headers={"Authorization": sealed}))
    assert made.headers == (("Authorization", sealed),)
    with pytest.raises(InvalidCommand, match=r"webhook\.headers\.Connection"):
        validate_command(_create(headers={"Connection": sealed}))


# -- the API -------------------------------------------------------------------------------

def _api_error(body: dict[str, Any], *, patch: bool = False) -> ApiError:
    check = v.patch_body if patch else v.create_body
    with pytest.raises(ApiError) as caught:
        check(body, allow_insecure=False)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(("controls", "field"), [
    ({"headers": {"Content-Length": "1"}}, "headers.Content-Length"),
    ({"headers": {"X-A": "\x00"}}, "headers.X-A"),
    ({"headers": "X-A: 1"}, "headers"),
    ({"filter": {"$and": [{"data.p": 1}, {"data.q": {"$gt": {}}}]}}, "filter.$and[1].data.q"),
    ({"filter": []}, "filter"),
    ({"rate_limit": 0}, "rate_limit"),
    ({"rate_limit": "10"}, "rate_limit"),
])
def test_api_400s_name_the_field_at_fault(controls: dict[str, Any], field: str) -> None:
    error = _api_error({"url": URL, "events": ["task.*"], **controls})
    assert error.field is not None and error.field.startswith(field), error.message
    assert _api_error(controls, patch=True).field == error.field


def test_api_null_clears_on_update_and_means_default_on_create() -> None:
    assert v.patch_body({"headers": None, "filter": None, "rate_limit": None},
                        allow_insecure=False) == {"headers": {}, "filter": "{}",
                                                  "rate_limit": 0}
    created = v.create_body({"url": URL, "events": ["task.*"], "headers": None,
                             "filter": None, "rate_limit": None}, allow_insecure=False)
    assert not {"headers", "filter", "rate_limit"} & set(created)


@FAST
@given(st.dictionaries(st.text(max_size=6), st.text(max_size=6) | st.integers(), max_size=4)
       | st.lists(st.integers(), max_size=3) | st.text(max_size=10) | st.none())
def test_any_headers_or_filter_value_is_accepted_or_a_400(value: Any) -> None:
    for field in ("headers", "filter"):
        try:
            v.create_body({"url": URL, "events": ["task.*"], field: value},
                          allow_insecure=False)
        except ApiError as exc:
            assert exc.status == 400 and exc.field is not None
            assert exc.field.startswith(field)


#: Names a 400 must still name whole: ": " and quotes inside, line breaks, non-ASCII, empty.
ODD_NAMES = st.sampled_from(["X-A: b", "X-A:b", ": ", '"]: x', "a\r\nX-B: c", "X A", "héllo",
                             "", "Host", "X-Webhook-Id", "X-Ok"]) | st.text(max_size=12)


@FAST
@given(ODD_NAMES, st.text(max_size=6) | st.integers())
def test_a_400_for_a_header_names_it_whole_whatever_the_name(name: str, value: Any) -> None:
    """Its field is `headers.<name>` for a token, otherwise `headers[<the name as JSON>]`,
    which reads back as the name; its message is the field, ": " and why, in printable
    ASCII (no name can break a log line). Accepted or a 400, never anything else."""
    for check, body in ((v.create_body, {"url": URL, "events": ["task.*"]}), (v.patch_body, {})):
        try:
            check({**body, "headers": {name: value}}, allow_insecure=False)
        except ApiError as exc:
            assert exc.status == 400 and exc.field is not None
            quoted = exc.field.removeprefix("headers[").removesuffix("]")
            if quoted != exc.field:
                assert json.loads(quoted) == name
            else:
                assert exc.field == f"headers.{name}"
            assert exc.message.startswith(f"{exc.field}: ")
            assert exc.message.isascii() and exc.message.isprintable()


# -- what reads show, what deliveries send -------------------------------------------------

def _sub(**controls: Any) -> Subscription:
    return replace(Subscription(id="wh_1", workspace_id="ws_1", url=URL, events=("task.*",),
                                secret=BOX.seal("whsec_controls_secret"), active=True,
                                created_at=T0, updated_at=T0), **controls)


def test_reads_show_header_names_never_values() -> None:
    sub = _sub(headers=(("X-Token", BOX.seal("tok_live_123")), ("X-Empty", BOX.seal(""))),
               filter=parse_filter({"data.p": 1}).to_json(), rate_limit=7)
    shown = sub.public()
    assert shown["headers"] == {"X-Token": MASK, "X-Empty": MASK}
    assert (shown["filter"], shown["rate_limit"]) == ({"data.p": 1}, 7)
    assert "tok_live" not in json.dumps(shown)


def test_a_delivery_sends_the_opened_header_values_beside_ours() -> None:
    sub = _sub(headers=(("X-Token", BOX.seal("tok_live_123")), ("Authorization", "plain")))
    job = DeliveryJob(delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1",
                      workspace_id="ws_1", event_id="evt_1", event_type="task.created",
                      event_timestamp="2025-10-14T10:30:00Z", data_json="{}", attempt=1,
                      created_at=T0)
    _, headers = build_request(sub, job, T0 // 1000, BOX)
    assert headers["X-Token"] == "tok_live_123"
    assert headers["Authorization"] == "plain"
    assert headers["X-Webhook-Event"] == "task.created"
    assert list(headers)[:2] == ["X-Token", "Authorization"]


def test_command_objects_encode_their_controls() -> None:
    command = Command(op="update", webhook_id="wh_1",
                      webhook={"headers": {"X-A": BOX.seal("v")}, "rate_limit": 0,
                               "filter": "{}"})
    again = decode_command(command.encode())
    assert again.webhook["rate_limit"] == 0
    assert again.webhook["filter"] == "{}"
    assert set(again.webhook["headers"]) == {"X-A"}


# -- what another writer may have put on the subscriptions topic ---------------------------

@pytest.mark.parametrize("forged", [
    {"headers": (("X-Split", "a\r\nInjected: 1"),)},
    {"headers": (("Host", "evil.example"),)},
    {"filter": '{"data.p": {"$regex": "."}}'},
    {"filter": "not json"},
    {"filter": "[" * 5000},
    {"rate_limit": 0},
    {"rate_limit": -5},
    {"rate_limit": MAX_RATE_LIMIT + 1},
])
def test_a_record_with_a_refused_control_does_not_decode(forged: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        Subscription.decode(_sub(**forged).encode())


def test_a_header_the_client_refuses_is_a_failed_attempt_not_a_crash() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise ValueError("Newline or carriage return character detected in HTTP header")

    async def main() -> Outcome:
        client = DeliveryClient(Settings(), transport=httpx.MockTransport(refuse))
        try:
            job = DeliveryJob(delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1",
                              workspace_id="ws_1", event_id="evt_1", event_type="task.created",
                              event_timestamp="2025-10-14T10:30:00Z", data_json="{}",
                              attempt=1, created_at=T0)
            return await attempt(client, _sub(), job, timeout=5, allow_insecure=False,
                                 box=BOX)
        finally:
            await client.aclose()

    outcome = asyncio.run(main())
    assert outcome.response_code is None
    assert outcome.error == ("ValueError: Newline or carriage return character detected in "
                             "HTTP header")


@FAST
@given(ODD_NAMES)
def test_a_400_for_a_filter_names_its_key_whole_whatever_the_key(key: str) -> None:
    """A refused operator under any key: the field is `filter.<key>` with the key whole
    (": " inside it too), the message that field, ": " and why. Never anything but a 400."""
    try:
        v.create_body({"url": URL, "events": ["task.*"], "filter": {key: {"$nope": 1}}},
                      allow_insecure=False)
    except ApiError as exc:
        assert exc.status == 400 and exc.field is not None
        assert exc.field.startswith("filter")
        assert exc.message.startswith(f"{exc.field}: ")
        if key and "." not in key and not key.startswith("$") and len(key) < 200:
            assert exc.field == f"filter.{key}"
    else:
        raise AssertionError("a filter with an unknown operator was accepted")
