"""The event catalog in the API (streams.api.event_types) and the body of /test
(streams.api.validation.event_to_test): what is published, what a test delivery carries,
and which bodies are refused with a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.api import openapi
from streams.api import validation as v
from streams.api.event_types import TEST_MESSAGE, payload_for_test, published
from streams.api.validation import ApiError
from streams.core import catalog
from streams.core.eventschema import event_types
from streams.core.payload import webhook_body

from ..support.hostile_bodies import TEST_BODIES

FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True)


# --- what GET /v1/event-types answers ---------------------------------------------------------


def test_listing_has_every_catalog_type_sorted_in_the_list_envelope() -> None:
    listing = json.loads(published().listing)
    assert set(listing) == {"data", "next_cursor"} and listing["next_cursor"] is None
    types = [entry["type"] for entry in listing["data"]]
    assert types == sorted(catalog.ALL_EVENT_TYPES)
    for entry in listing["data"]:
        assert set(entry) == {"type", "description", "schema", "example", "name", "family"}
        assert (entry["name"], entry["family"]) == (entry["type"],
                                                     catalog.family_of(entry["type"]))


def test_entries_are_the_cores_catalog_unchanged() -> None:
    """The API reshapes streams.core.eventschema; it never writes a schema of its own."""
    core = event_types()
    for entry in json.loads(published().listing)["data"]:
        source = core[entry["type"]]
        assert entry["description"] == source.description
        assert entry["schema"] == source.data_schema
        assert entry["example"] == source.example


@pytest.mark.parametrize("event_type", sorted(catalog.ALL_EVENT_TYPES))
def test_each_published_example_is_valid_against_its_published_schema(event_type: str) -> None:
    entry = json.loads(published().one[event_type])
    Draft202012Validator.check_schema(entry["schema"])
    assert not list(Draft202012Validator(entry["schema"]).iter_errors(entry["example"]))
    assert entry == json.loads(published().listing)["data"][
        sorted(catalog.ALL_EVENT_TYPES).index(event_type)]


def test_the_catalog_is_derived_once_per_process() -> None:
    assert published() is published()


def test_unknown_types_are_not_published() -> None:
    assert set(published().one) == catalog.ALL_EVENT_TYPES
    assert catalog.TEST_EVENT not in published().one


# --- what a test delivery carries ------------------------------------------------------------


def test_without_an_event_the_test_is_webhook_test_as_before() -> None:
    event_type, data_json = payload_for_test(None, "evt_test_1")
    assert event_type == catalog.TEST_EVENT
    assert json.loads(data_json) == {"id": "evt_test_1", "message": TEST_MESSAGE}


@pytest.mark.parametrize("event_type", sorted(catalog.ALL_EVENT_TYPES))
def test_with_an_event_the_test_carries_that_types_example(event_type: str) -> None:
    sent_type, data_json = payload_for_test(event_type, "evt_test_1")
    assert sent_type == event_type
    assert json.loads(data_json) == event_types()[event_type].example
    body = json.loads(webhook_body("evt_test_1", sent_type, "2025-10-14T10:30:00Z", "wh_1",
                                   data_json))
    assert body["event"] == event_type and body["data"] == event_types()[event_type].example


# --- the body of POST /v1/webhooks/{id}/test -------------------------------------------------


def _refused(body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        v.event_to_test(body)
    error = info.value
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.message.startswith(f"{error.field}: ")
    return error


def test_no_body_or_no_event_means_webhook_test() -> None:
    assert v.event_to_test({}) is None


@pytest.mark.parametrize("event_type", sorted(catalog.ALL_EVENT_TYPES))
def test_every_catalog_type_may_be_tested(event_type: str) -> None:
    assert v.event_to_test({"event": event_type}) == event_type


@pytest.mark.parametrize("value", [
    "task.exploded", "task.*", "*", "", catalog.TEST_EVENT, "TASK.CREATED", " task.created",
    None, 1, 1.5, True, [], ["task.created"], {"type": "task.created"}])
def test_anything_else_in_event_is_refused_naming_event(value: object) -> None:
    assert _refused({"event": value}).field == "event"


def test_extra_fields_are_refused_by_name() -> None:
    assert _refused({"event": "task.created", "data": {}}).field == "data"
    assert _refused({"type": "task.created"}).field == "type"


def test_a_huge_value_is_not_echoed_in_full() -> None:
    error = _refused({"event": "x" * 100_000})
    assert len(error.message) < 200


@FAST
@given(TEST_BODIES)
def test_hostile_bodies_are_accepted_exactly_when_they_ask_for_a_catalog_type(
        body: dict[str, Any]) -> None:
    event = body.get("event")
    wanted = set(body) <= {"event"} and (
        "event" not in body or (isinstance(event, str) and event in catalog.ALL_EVENT_TYPES))
    if wanted:
        assert v.event_to_test(body) == body.get("event")
    else:
        assert _refused(body).field in {*body, "event"}


@FAST
@given(st.sampled_from(sorted(catalog.ALL_EVENT_TYPES)), st.text(min_size=1, max_size=3))
def test_near_misses_of_a_type_are_refused(event_type: str, noise: str) -> None:
    for value in (event_type + noise, noise + event_type):
        if value not in catalog.ALL_EVENT_TYPES:
            assert _refused({"event": value}).field == "event"


# --- the OpenAPI document agrees ---------------------------------------------------------------


def test_openapi_describes_the_test_body_as_validation_reads_it() -> None:
    schemas = openapi.document()["components"]["schemas"]
    request = schemas["TestRequest"]
    assert set(request["properties"]) == v.TEST_FIELDS
    assert request["additionalProperties"] is False
    assert request["properties"]["event"]["enum"] == sorted(catalog.ALL_EVENT_TYPES)


def test_openapi_describes_every_published_entry() -> None:
    schemas = openapi.document()["components"]["schemas"]
    as_defs = json.loads(json.dumps(schemas).replace("#/components/schemas/", "#/$defs/"))
    validator = Draft202012Validator({"$defs": as_defs, "$ref": "#/$defs/EventTypePage"})
    validator.validate(json.loads(published().listing))
    for encoded in published().one.values():
        Draft202012Validator({"$defs": as_defs, "$ref": "#/$defs/EventType"}).validate(
            json.loads(encoded))
