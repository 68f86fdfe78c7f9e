"""The OpenAPI 3.1 document of the API, served at /openapi.json.

Written by hand, next to the code it describes; schemathesis checks the live server
against it in the test suite (no 5xx, no response the document does not allow).
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..core import catalog
from ..core.headers import MASK, MAX_HEADERS, MAX_TOTAL_BYTES
from ..delivery.models import DEAD_LETTER_REASONS, FAILED, GONE, STATUSES, SUCCESS
from ..settings import MAX_RATE_LIMIT
from ..subscriptions.commands import MAX_DESCRIPTION, MAX_REASON, SCHEMES
from ..subscriptions.model import MIN_SECRET_LENGTH

EVENT_PATTERNS = sorted(catalog.ALL_EVENT_TYPES) + [f"{f}.*" for f in catalog.EVENT_TYPES] + ["*"]
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#: A dotted-quad IPv4 address, or a name whose last label starts with a letter (a last label
#: that is a number makes the host an IPv4 address: streams.core.urls).
_HOST = rf"({_OCTET}\.){{3}}{_OCTET}|([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*"
_URL_PATTERN = rf"^https?://({_HOST})(:{_PORT})?(/[^\s\\]*)?$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Invalid request: the error names the field", 401: "No or bad API key",
            404: "No such webhook in your workspace",
            409: "The workspace has as many webhooks as it may",
            422: "The Idempotency-Key was used for another request (method, path or body)",
            429: "Too many at once or in a minute: retry after Retry-After seconds",
            503: "Busy for a moment (a webhook's history is loading after a rebalance or its "
                 "worker cannot be reached, or a workspace's creates are queued): retry after "
                 "Retry-After",
            504: "Written but not applied in time"}
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


_WEBHOOK_ID = {"name": "webhook_id", "in": "path", "required": True,
               "schema": {"type": "string"}}
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 255},
                "description": "Repeats within 24 h return the original response; the same "
                               "key with another method, path or body is a 422."}
_NO_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False}}}}


def _action(summary: str, response: str, body: dict[str, Any] | None = None,
            errors: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "parameters": [_WEBHOOK_ID, _IDEMPOTENCY],
        "requestBody": body or _NO_BODY,
        "responses": {"200": _json(_ref(response), "Done"),
                      **_errors(400, 401, 404, 422, 504, *errors)},
    }}


def document() -> dict[str, Any]:
    optional_string = {"type": ["string", "null"]}
    webhook_props: dict[str, Any] = {
        "id": {"type": "string"}, "workspace_id": {"type": "string"},
        "url": {"type": "string"}, "events": {"type": "array", "items": {"type": "string"}},
        "active": {"type": "boolean"}, "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "disabled_reason": {**optional_string, "description": (
            f"Why it is inactive: `{GONE}` (the endpoint answered 410 Gone), `auto: delivery "
            "… dead-lettered after 4 attempts`, or the reason given when it was disabled")},
        "description": optional_string, "signature_scheme": {"enum": list(SCHEMES)},
        "headers": {"type": "object", "additionalProperties": {"const": MASK},
                    "description": "Custom header names; values are never shown"},
        "filter": {"type": ["object", "null"]},
        "rate_limit": {"type": ["integer", "null"]},
    }
    writable: dict[str, Any] = {
        "url": {"type": "string", "maxLength": 2048, "pattern": _URL_PATTERN,
                "description": "https URL with a public host"},
        "events": {"type": "array", "minItems": 1, "items": {"enum": EVENT_PATTERNS}},
        "active": {"type": "boolean"},
        "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION},
        "signature_scheme": {"enum": list(SCHEMES)},
        "headers": {
            "type": ["object", "null"], "maxProperties": MAX_HEADERS,
            "propertyNames": {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
            "additionalProperties": {"type": "string", "pattern": "^[\\x20-\\x7e]*$"},
            "description": f"Sent with every delivery; at most {MAX_HEADERS} and "
                           f"{MAX_TOTAL_BYTES} bytes. Host, Content-*, Transfer-Encoding, "
                           "Connection, User-Agent, X-Webhook-*, webhook-*, Proxy-* and "
                           "hop-by-hop names are refused. Values are stored sealed and "
                           "read back masked. null (on update) removes them all."},
        "filter": {
            "type": ["object", "null"],
            "description": "Payload filter on {event, workspace_id, data}: a dotted path "
                           "equal to a value, or $eq $ne $in $nin $gt $gte $lt $lte $exists "
                           "$prefix, combined with $and $or $not. null (on update) removes "
                           "it."},
        "rate_limit": {
            "type": ["integer", "null"], "minimum": 1, "maximum": MAX_RATE_LIMIT,
            "description": "Deliveries per second; null: the deployment's default"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "hookstream", "version": __version__,
                 "description": "Webhooks over Apache Kafka: manage endpoints, test them, "
                                "read their deliveries, replay dead letters."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                   "field": {"type": "string"}}}}},
                "Webhook": {"type": "object", "properties": webhook_props,
                            "required": list(webhook_props)},
                "WebhookWithSecret": {"allOf": [_ref("Webhook"), {
                    "type": "object", "required": ["secret"],
                    "properties": {"secret": {"type": "string"}}}]},
                "WebhookCreate": {
                    "type": "object", "additionalProperties": False, "required": ["url", "events"],
                    "properties": {**writable,
                                   "secret": {"type": "string", "minLength": MIN_SECRET_LENGTH},
                                   "workspace_id": {"type": "string",
                                                    "description": "Admin key only"}}},
                "WebhookPatch": {"type": "object", "additionalProperties": False,
                                 "minProperties": 1, "properties": writable},
                "WebhookPage": {"type": "object", "required": ["data", "next_cursor"],
                                "properties": {"data": {"type": "array", "items": _ref("Webhook")},
                                               "next_cursor": optional_string}},
                "Delivery": {"type": "object", "properties": {
                    "id": {"type": "string"}, "event": {"type": "string"},
                    "event_id": {"type": "string"}, "timestamp": {"type": "string"},
                    "status": {"enum": list(STATUSES)},
                    "response_code": {"type": ["integer", "null"]},
                    "response_time_ms": {"type": "integer"}, "attempt": {"type": "integer"},
                    "next_attempt_at": optional_string, "error": optional_string}},
                "DeliveryPage": {"type": "object", "required": ["data", "next_cursor"],
                                 "properties": {"data": {"type": "array",
                                                         "items": _ref("Delivery")},
                                                "next_cursor": optional_string}},
                "TestResult": {"type": "object", "required": ["status", "response_code",
                                                              "response_time_ms", "error"],
                               "properties": {"status": {"enum": [SUCCESS, FAILED]},
                                              "response_code": {"type": ["integer", "null"]},
                                              "response_time_ms": {"type": "integer"},
                                              "error": optional_string}},
                "TestRequest": {"type": "object", "additionalProperties": False,
                                "properties": {"event": {
                                    "enum": sorted(catalog.ALL_EVENT_TYPES),
                                    "description": "Send this type's example (default: "
                                                   f"{catalog.TEST_EVENT})"}}},
                "EventType": {"type": "object",
                              "required": ["type", "description", "schema", "example"],
                              "properties": {
                                  "type": {"enum": sorted(catalog.ALL_EVENT_TYPES)},
                                  "description": {"type": "string"},
                                  "schema": {"type": "object", "description":
                                             "JSON Schema (2020-12) of the event's data"},
                                  "example": {"type": "object",
                                              "description": "A data valid against schema"},
                                  "name": {"type": "string",
                                           "description": "The type again (older clients)"},
                                  "family": {"type": "string"}}},
                "EventTypePage": {"type": "object", "required": ["data", "next_cursor"],
                                  "properties": {"data": {"type": "array",
                                                          "items": _ref("EventType")},
                                                 "next_cursor": {"type": "null"}}},
                "ReplayResult": {"type": "object", "required": ["replayed", "already_replayed"],
                                 "properties": {"replayed": {"type": "integer"},
                                                "already_replayed": {"type": "integer"}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/webhooks": {
                "get": {"summary": "List webhooks",
                        "parameters": [
                            {"name": "limit", "in": "query",
                             "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                            {"name": "workspace_id", "in": "query",
                             "schema": {"type": "string"}}],
                        "responses": {"200": _json(_ref("WebhookPage"), "A page"),
                                      **_errors(400, 401)}},
                "post": {"summary": "Create a webhook; its secret is shown only here",
                         "parameters": [_IDEMPOTENCY],
                         "requestBody": {"required": True, "content": {"application/json": {
                             "schema": _ref("WebhookCreate")}}},
                         "responses": {"201": _json(_ref("WebhookWithSecret"), "Created"),
                                       **_errors(400, 401, 409, 422, 503, 504)}},
            },
            "/v1/webhooks/{webhook_id}": {
                "parameters": [_WEBHOOK_ID],
                "get": {"summary": "One webhook (never its secret)",
                        "responses": {"200": _json(_ref("Webhook"), "The webhook"),
                                      **_errors(401, 404)}},
                "patch": {"summary": "Change url, events, active, description, scheme, "
                                     "headers, filter or rate limit",
                          "requestBody": {"required": True, "content": {"application/json": {
                              "schema": _ref("WebhookPatch")}}},
                          "responses": {"200": _json(_ref("Webhook"), "Changed"),
                                        **_errors(400, 401, 404, 504)}},
                "delete": {"summary": "Delete a webhook",
                           "responses": {"204": {"description": "Deleted"},
                                         **_errors(401, 404, 504)}},
            },
            "/v1/webhooks/{webhook_id}/enable": _action("Re-enable", "Webhook"),
            "/v1/webhooks/{webhook_id}/disable": _action(
                "Disable: events are dead-lettered, not sent", "Webhook",
                {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"reason": {
                        "type": "string", "maxLength": MAX_REASON,
                        # One line: no control character (not an anchored pattern, whose $
                        # Python's re matches before a final newline).
                        "not": {"pattern": "[\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]"}}}}}}}),
            "/v1/webhooks/{webhook_id}/rotate-secret": _action(
                "New secret; the old one signs too for the grace period", "WebhookWithSecret"),
            "/v1/webhooks/{webhook_id}/test": _action(
                "Send a signed webhook.test now, once (works when disabled); with `event`, "
                "that type's example from /v1/event-types. One at a time per webhook, "
                "at most 60 a minute", "TestResult",
                {"required": False, "content": {"application/json": {"schema": _ref(
                    "TestRequest")}}}, errors=(429,)),
            "/v1/webhooks/{webhook_id}/replay": _action(
                "Re-queue dead letters with their original delivery ids", "ReplayResult",
                {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"since": {"type": "string", "format": "date-time"},
                                   "until": {"type": "string", "format": "date-time"}}}}}}),
            "/v1/webhooks/{webhook_id}/deliveries": {"get": {
                "summary": "Recent attempts, newest first",
                "parameters": [_WEBHOOK_ID,
                               {"name": "status", "in": "query",
                                "schema": {"enum": list(STATUSES)}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                               {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("DeliveryPage"), "A page"),
                              **_errors(400, 401, 404, 503)}}},
            "/v1/dead-letters": {"get": {
                "summary": "Dead letters of your workspace, newest first",
                "parameters": [{"name": "webhook_id", "in": "query", "schema": {"type": "string"}},
                               {"name": "reason", "in": "query", "schema": {"type": "string"},
                                "description": "One of " + ", ".join(DEAD_LETTER_REASONS)},
                               {"name": "workspace_id", "in": "query",
                                "schema": {"type": "string"}},
                               {"name": "limit", "in": "query",
                                "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                               {"name": "cursor", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "required": ["data", "next_cursor"],
                                            "properties": {
                    "next_cursor": optional_string,
                    "data": {"type": "array", "items": {"type": "object", "properties": {
                        "delivery_id": {"type": "string"}, "webhook_id": {"type": "string"},
                        "workspace_id": {"type": "string"}, "event": {"type": "string"},
                        "event_id": {"type": "string"}, "reason": {"type": "string"},
                        "error": optional_string, "attempts": {"type": "integer"},
                        "dead_at": {"type": "string"}, "replayed": {"type": "boolean"}}}}}},
                    "Dead letters"), **_errors(400, 401, 404)}}},
            "/v1/event-types": {"get": {
                "summary": "The event catalog: each type's description, data schema, example",
                "responses": {"200": _json(_ref("EventTypePage"), "Every type, by type"),
                              **_errors(401)}}},
            "/v1/event-types/{event_type}": {"get": {
                "summary": "One event type",
                "parameters": [{"name": "event_type", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("EventType"), "The event type"),
                              **_errors(401),
                              "404": _json(_ref("Error"), "No such event type")}}},
            "/healthz": {"get": {"summary": "Alive", "security": [], "responses": {
                "200": _json({"type": "object"}, "The process answers")}}},
            "/readyz": {"get": {"summary": "Tables loaded, consumer groups settled",
                                "security": [], "responses": {
                                    "200": _json({"type": "object"}, "Ready"),
                                    "503": _json({"type": "object"}, "Not ready")}}},
        },
    }
