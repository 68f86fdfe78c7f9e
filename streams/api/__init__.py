"""The REST API: validates requests, writes control commands, reads the local views.

It never imports the stages: it meets the pipeline only through topics and views.

auth, throttle  who is calling; 429 after 20 failed attempts a minute from one address
validation      request bodies and queries: parse, validate, name the field at fault
context         what the views share on one worker (the Api); forwarding to the owner
endpoint        authentication, JSON errors and Idempotency-Key around every view
webhooks        /v1/webhooks and its actions
deliveries      a webhook's attempts, on the worker that holds its history
dead_letters    /v1/dead-letters and replay
event_types     /v1/event-types: the catalog with schemas and examples; what /test sends
meta            probes, metrics, the OpenAPI document (openapi)
serverlog       requests the web server cannot parse: one warning line, not a traceback
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..core.timeutil import now_ms
from ..dlq.view import DeadLetterView
from ..history.table import History
from ..kafka.compacted import ExpiringView
from ..kafka.topics import CONTROL, DELIVERY_LOG, DLQ, DLQ_REPLAYED, IDEMPOTENCY
from ..runtime.context import Runtime
from . import serverlog
from .auth import Authenticator
from .context import Api
from .dead_letters import DeadLetters, Replay
from .deliveries import Attempts, Deliveries, Summary
from .endpoint import Endpoint, mount
from .event_types import EventType, EventTypes, published
from .meta import Health, Metrics, OpenApi, Ready, SubscriptionState
from .webhooks import Disable, Enable, RotateSecret, Test, Webhook, Webhooks

#: How long a stored answer repeats for its Idempotency-Key.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000

ROUTES: tuple[tuple[str, type[Endpoint]], ...] = (
    ("/v1/webhooks", Webhooks),
    ("/v1/webhooks/{webhook_id}", Webhook),
    ("/v1/webhooks/{webhook_id}/enable", Enable),
    ("/v1/webhooks/{webhook_id}/disable", Disable),
    ("/v1/webhooks/{webhook_id}/rotate-secret", RotateSecret),
    ("/v1/webhooks/{webhook_id}/test", Test),
    ("/v1/webhooks/{webhook_id}/replay", Replay),
    ("/v1/webhooks/{webhook_id}/deliveries", Deliveries),
    ("/v1/dead-letters", DeadLetters),
    ("/v1/event-types", EventTypes),
    ("/v1/event-types/{event_type}", EventType),
    ("/readyz", Ready),
    ("/metrics", Metrics),
    ("/internal/subscriptions/{webhook_id}", SubscriptionState),
    ("/internal/webhooks/{webhook_id}/summary", Summary),
    ("/internal/webhooks/{webhook_id}/attempts", Attempts),
)


def _answered_at(stored: dict[str, Any]) -> int:
    return int(stored["at"]) + IDEMPOTENCY_TTL_MS


def install(rt: Runtime, history: History,
            readiness: Callable[[], dict[str, Any]]) -> Api:
    """The API's views on the runtime's app; its local views join the runtime's."""
    s = rt.settings
    dead_letters = DeadLetterView(s.bootstrap_servers, s.topic(DLQ), s.topic(DLQ_REPLAYED),
                                  s.dead_letters_listed)
    idempotency: ExpiringView[dict[str, Any]] = ExpiringView(
        s.bootstrap_servers, s.topic(IDEMPOTENCY), json.loads, _answered_at, now_ms)
    published()  # the catalog, derived once: a broken schema stops the worker here
    rt.add_view(dead_letters)
    rt.add_view(idempotency)
    ctx = Api(rt=rt, auth=Authenticator(s, rt.api_keys, rt.subscriptions, rt.secrets),
              history=history, dead_letters=dead_letters, idempotency=idempotency,
              answers=rt.secrets.derive("hookstream idempotency v1"),
              control_topic=rt.topic(CONTROL),
              log_topic=rt.topic(DELIVERY_LOG),
              idempotency_topic=rt.topic(IDEMPOTENCY), readiness=readiness)
    serverlog.install()
    for path, view in ROUTES:
        mount(rt.app, path, view, ctx)
    for path, page in (("/healthz", Health), ("/openapi.json", OpenApi)):
        rt.app.page(path)(page)
    return ctx
