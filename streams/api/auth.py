"""Who is calling: the bearer key, checked against the API keys table and the admin key."""

from __future__ import annotations

from typing import Any

from ..app import settings
from ..control.apikeys import Principal, authenticate
from ..tables import api_keys, subscriptions


def principal_of(request: Any) -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return authenticate(token.strip(), api_keys.current, settings.admin_key)


def may_see(principal: Principal | None, webhook_id: str) -> bool:
    """A known caller whose workspace owns the webhook (or the admin). Unknown ids: False."""
    if principal is None:
        return False
    sub = subscriptions.index.get(webhook_id)
    return sub is not None and principal.may_see(sub.workspace_id)
