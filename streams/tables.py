"""The worker's local copies of compacted topics, shared by the stages and the API.

subscriptions  hookstream.subscriptions  webhook id -> Subscription (indexed by workspace)
api_keys       hookstream.apikeys        key id -> ApiKey (hashes only)
idempotency    hookstream.idempotency    "<key id>:<Idempotency-Key>" -> stored API response
"""

from __future__ import annotations

import json
from typing import Any

from .app import settings
from .compacted import KeyedView
from .control.apikeys import ApiKey
from .subscriptions.view import SubscriptionsView
from .timeutil import now_ms
from .topics import API_KEYS, IDEMPOTENCY, SUBSCRIPTIONS

#: How long a stored response answers repeats of its Idempotency-Key.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


class IdempotencyView(KeyedView[dict[str, Any]]):
    def __init__(self) -> None:
        super().__init__(settings.bootstrap_servers, settings.topic(IDEMPOTENCY), json.loads)

    def get(self, key: str) -> dict[str, Any] | None:
        stored = self.current.get(key)
        if stored is None or now_ms() - int(stored["at"]) > IDEMPOTENCY_TTL_MS:
            return None
        return stored


subscriptions = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))
#: key id -> ApiKey (the message key is the key id)
api_keys = KeyedView(settings.bootstrap_servers, settings.topic(API_KEYS), ApiKey.decode)
idempotency = IdempotencyView()
ALL = (subscriptions, api_keys, idempotency)
