"""The worker's local copies of compacted topics, shared by the stages and the API.

subscriptions  hookstream.subscriptions  webhook id -> Subscription (indexed by workspace)
api_keys       hookstream.apikeys        key id -> ApiKey (hashes only)
idempotency    hookstream.idempotency    "<key id>:<Idempotency-Key>" -> stored API response
"""

from __future__ import annotations

import json
from typing import Any

from .app import settings
from .compacted import CompactedView
from .control.apikeys import ApiKey
from .subscriptions.view import SubscriptionsView
from .timeutil import now_ms
from .topics import API_KEYS, IDEMPOTENCY, SUBSCRIPTIONS

#: How long a stored response answers repeats of its Idempotency-Key.
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


class ApiKeysView(CompactedView):
    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        super().__init__(settings.bootstrap_servers, settings.topic(API_KEYS), self._put)

    def _put(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self.keys.pop(key.decode(), None)
        else:
            record = ApiKey.decode(value)
            self.keys[record.key_id] = record


class IdempotencyView(CompactedView):
    def __init__(self) -> None:
        self.responses: dict[str, dict[str, Any]] = {}
        super().__init__(settings.bootstrap_servers, settings.topic(IDEMPOTENCY), self._put)

    def _put(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self.responses.pop(key.decode(), None)
        else:
            self.responses[key.decode()] = json.loads(value)

    def get(self, key: str) -> dict[str, Any] | None:
        stored = self.responses.get(key)
        if stored is None or now_ms() - int(stored["at"]) > IDEMPOTENCY_TTL_MS:
            return None
        return stored


subscriptions = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))
api_keys = ApiKeysView()
idempotency = IdempotencyView()
ALL = (subscriptions, api_keys, idempotency)
