"""The worker's local copies of compacted topics, shared by the stages and the API.

subscriptions  hookstream.subscriptions  webhook id -> Subscription (indexed by workspace)
api_keys       hookstream.apikeys        key id -> ApiKey (hashes only)
idempotency    hookstream.idempotency    "<key id>:<Idempotency-Key>" -> stored API response
console_logouts hookstream.console-logouts session id -> its expiry (ms): signed out
dead_letters   hookstream.dlq (+ -replayed) each workspace's dead letters, listed (streams.dlq)
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from ..core.apikeys import ApiKey
from ..core.timeutil import now_ms
from ..dlq.view import DeadLetterView
from ..kafka.compacted import KeyedView, Record
from ..kafka.topics import API_KEYS, CONSOLE_LOGOUTS, DLQ, DLQ_REPLAYED, IDEMPOTENCY, SUBSCRIPTIONS
from ..subscriptions.view import SubscriptionsView
from .app import settings

#: How long a stored response answers repeats of its Idempotency-Key.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


class IdempotencyView(KeyedView[dict[str, Any]]):
    """Stored responses, forgotten once expired: memory holds one day of them, not all.

    Records arrive in about the order they were written, so the oldest sit at the front
    of `current` (kept in arrival order) and eviction only ever looks there.
    """

    def __init__(self) -> None:
        super().__init__(settings.bootstrap_servers, settings.topic(IDEMPOTENCY), json.loads)
        self.current: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _put(self, record: Record) -> None:
        super()._put(record)
        if record.key is not None and record.value is not None:
            self.current.move_to_end(record.key.decode())
        self.evict(now_ms())

    def evict(self, now: int) -> None:
        while self.current:
            oldest_key, oldest = next(iter(self.current.items()))
            if now - int(oldest["at"]) <= IDEMPOTENCY_TTL_MS:
                return
            del self.current[oldest_key]

    def get(self, key: str) -> dict[str, Any] | None:
        self.evict(now_ms())
        stored = self.current.get(key)
        if stored is None or now_ms() - int(stored["at"]) > IDEMPOTENCY_TTL_MS:
            return None
        return stored


def _expiry(value: bytes) -> int:
    return int(value)


subscriptions = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))
#: key id -> ApiKey (the message key is the key id)
api_keys = KeyedView(settings.bootstrap_servers, settings.topic(API_KEYS), ApiKey.decode)
idempotency = IdempotencyView()
#: session id -> expiry (ms) of a console session that was signed out
console_logouts = KeyedView(settings.bootstrap_servers, settings.topic(CONSOLE_LOGOUTS), _expiry)
dead_letters = DeadLetterView(settings.bootstrap_servers, settings.topic(DLQ),
                              settings.topic(DLQ_REPLAYED), settings.dead_letters_listed)
ALL = (subscriptions, api_keys, idempotency, console_logouts, dead_letters)
