"""streams.api.openapi: a valid OpenAPI 3.1 document, whose URL pattern agrees with the policy."""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from streams.api import openapi, validation
from streams.core import catalog
from streams.core.urls import UrlPolicyError, check_url
from streams.subscriptions.commands import SCHEMES

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
URL_RE = re.compile(openapi._URL_PATTERN)


def _doc() -> dict[str, Any]:
    return openapi.document()


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                assert isinstance(value, str)
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local refs expected: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _matches(url: str) -> bool:
    """As a JSON Schema validator applies `pattern`: a search, anchored by the pattern."""
    return URL_RE.search(url) is not None


# --- the document -----------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    doc = _doc()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_document_is_json_and_fresh_each_call() -> None:
    doc = _doc()
    assert json.loads(json.dumps(doc)) == doc
    doc["paths"].clear()
    assert _doc()["paths"]


def test_every_ref_resolves() -> None:
    doc = _doc()
    refs = set(_refs(doc))
    assert refs, "the document uses $ref"
    for ref in refs:
        target = _resolve(doc, ref)
        assert isinstance(target, dict)


def test_every_component_schema_is_used() -> None:
    doc = _doc()
    used = {ref.rsplit("/", 1)[1] for ref in _refs(doc)}
    assert set(doc["components"]["schemas"]) <= used


def test_every_operation_has_responses() -> None:
    doc = _doc()
    operations = list(_operations(doc))
    assert len(operations) >= 10
    for path, method, operation in operations:
        responses = operation.get("responses")
        assert responses, f"{method.upper()} {path} has no responses"
        for status, response in responses.items():
            assert re.fullmatch(r"[1-5]\d\d", status), (path, method, status)
            assert response.get("description"), (path, method, status)


def test_path_parameters_are_declared() -> None:
    doc = _doc()
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            params = [*item.get("parameters", []), *operation.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, (method, path)


def test_webhook_schema_requires_all_its_properties() -> None:
    webhook = _doc()["components"]["schemas"]["Webhook"]
    assert sorted(webhook["required"]) == sorted(webhook["properties"])
    assert len(webhook["required"]) == len(set(webhook["required"]))
    assert "secret" not in webhook["properties"]


def test_enums_follow_the_code() -> None:
    schemas = _doc()["components"]["schemas"]
    assert schemas["Webhook"]["properties"]["signature_scheme"]["enum"] == list(SCHEMES)
    events = schemas["WebhookCreate"]["properties"]["events"]["items"]["enum"]
    assert set(catalog.ALL_EVENT_TYPES) <= set(events)
    assert "*" in events
    assert all(catalog.is_valid_pattern(e) for e in events)


def test_create_and_patch_bodies_match_validation() -> None:
    from streams.api.validation import CREATE_FIELDS, PATCH_FIELDS
    from streams.subscriptions.model import MIN_SECRET_LENGTH

    schemas = _doc()["components"]["schemas"]
    create, patch = schemas["WebhookCreate"], schemas["WebhookPatch"]
    assert set(create["properties"]) == CREATE_FIELDS
    assert set(patch["properties"]) == PATCH_FIELDS
    assert create["additionalProperties"] is False and patch["additionalProperties"] is False
    assert create["properties"]["secret"]["minLength"] == MIN_SECRET_LENGTH
    assert create["properties"]["url"]["pattern"] == openapi._URL_PATTERN


# --- the URL pattern --------------------------------------------------------------------------


ACCEPTED = [
    "https://example.com/h",
    "http://127.0.0.1:8080/x",
    "https://example.com",
    "https://a",
    "https://api.example.com:443/v1/hooks?x=1&y=%20#frag",
    "https://example.com:1/",
    "https://example.com:65535/",
    "https://xn--bcher-kva.example/",
    "http://10.0.0.1:9/path/with/@/and/[brackets]/",
    "https://example.com/ünïcode/✓",
    "https://1.2.3.4/",
    "https://EXAMPLE.COM/H",
]

REFUSED = [
    "https://user:pw@example.com/h",
    "https://user@example.com/h",
    "ftp://x",
    "https://example.com:70000/",
    "https://example.com:65536/",
    "https://example.com:0/",
    "https://example.com:080/",
    "https://example.com:/",
    "https://",
    "https:///x",
    "https://example..com/",
    "https://.example.com/",
    "https://example.com./",
    "https://exa_mple.com/",
    "https://999.1.1.1/",
    "https://example.123/",
    "https://1.2.3/",
    "https://example.com/a\\b",
    "https://[::1]/",
    "https://example.com/with space",
    "https://example.com?x=1",
    "HTTPS://example.com/",
    "//example.com/",
    "example.com",
    " https://example.com/",
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_pattern_accepts(url: str) -> None:
    assert _matches(url)


@pytest.mark.parametrize("url", REFUSED)
def test_pattern_rejects(url: str) -> None:
    assert not _matches(url)


def _passes_and_is_stable(url: str) -> None:
    """The policy accepts it, and what it stores is a fixed point of the policy."""
    canonical = check_url(url, allow_insecure=True)
    assert check_url(canonical, allow_insecure=True) == canonical, url


@pytest.mark.parametrize("url", ACCEPTED)
def test_pattern_accepted_urls_pass_the_policy(url: str) -> None:
    _passes_and_is_stable(url)


_LABEL_CHARS = string.ascii_letters + string.digits + "-"
_PATH_CHARS = (string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?#[]%"
               + "^`{|}\"<>" + "éü✓😀")


def _random_url(rng: random.Random) -> str:
    scheme = rng.choice(["http", "https"])
    labels = [
        "".join(rng.choice(_LABEL_CHARS) for _ in range(rng.randint(1, 12)))
        for _ in range(rng.randint(1, 4))
    ]
    # A last label that is a number makes the host an IPv4 address (policy.py).
    labels[-1] = rng.choice(string.ascii_letters) + labels[-1]
    host = ".".join(labels)
    if rng.random() < 0.2:  # dotted digits: IPv4-looking hosts
        host = ".".join(str(rng.randint(0, 255)) for _ in range(4))
    port = ""
    if rng.random() < 0.5:
        port = ":" + str(rng.choice([1, 80, 443, 8080, 65535, rng.randint(1, 65535)]))
    path = ""
    if rng.random() < 0.7:
        path = "/" + "".join(rng.choice(_PATH_CHARS) for _ in range(rng.randint(0, 40)))
    return f"{scheme}://{host}{port}{path}"


@pytest.mark.parametrize("seed", range(8))
def test_random_pattern_urls_pass_the_policy(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(250):
        url = _random_url(rng)
        assert _matches(url), url
        _passes_and_is_stable(url)


@pytest.mark.parametrize("seed", range(4))
def test_random_out_of_range_ports_are_rejected_by_both(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(50):
        url = f"https://example.com:{rng.randint(65536, 999_999)}/x"
        assert not _matches(url), url
        with pytest.raises(UrlPolicyError, match=r"port|host"):
            check_url(url, allow_insecure=True)


@given(st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=600),
                 st.text(alphabet="ab\r\n\x00\x1b\x7f\x85\u2028\u2029é ", max_size=8)))
def test_the_documented_reason_is_the_one_the_api_accepts(reason: str) -> None:
    # Differential: schemathesis (and any client generated from the document) sends what
    # the schema allows; the API must take exactly that, and refuse the rest with a 400.
    schema = (_doc()["paths"]["/v1/webhooks/{webhook_id}/disable"]["post"]["requestBody"]
              ["content"]["application/json"]["schema"]["properties"]["reason"])
    documented = (len(reason) <= schema["maxLength"]
                  and re.search(schema["not"]["pattern"], reason) is None)
    try:
        validation.reason(reason)
    except validation.ApiError as exc:
        assert exc.field == "reason"
        assert not documented, reason
    else:
        assert documented, reason
