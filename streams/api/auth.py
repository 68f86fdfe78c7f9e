"""Who is calling: the bearer key, checked against the API keys table and the admin key;
or, on a request another worker forwarded, the principal that worker vouched for.

Failed attempts are counted (hookstream_auth_failures_total), logged without the key, and a
client address with more than 20 of them a minute is answered 429 before its key is even
looked at (streams.api.throttle). The client address is the connection's peer, or what a
trusted proxy says it is (streams.core.proxies).

Forwarding: a read routed to the worker that holds a webhook's history (streams.api.
forwarding) does not carry the caller's key across the cluster. The first worker
authenticates the caller and forwards a short-lived principal sealed under a key derived
for this purpose from the master key, which only workers hold.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..core.apikeys import Principal, authenticate, key_id_of
from ..core.proxies import TrustedProxies
from ..core.secretbox import SecretBoxError
from ..runtime import metrics
from ..runtime.app import settings
from ..runtime.views import api_keys, subscriptions
from .throttle import FailureLimiter

log = logging.getLogger(__name__)

#: Carries a principal vouched for by the worker that forwarded the request.
FORWARDED_PRINCIPAL = "X-Hookstream-Principal"
#: Seconds a vouched principal is good for: one forwarded request, with clock skew.
VOUCHED_FOR_S = 30

_limiter = FailureLimiter()
_proxies = TrustedProxies(settings.trusted_proxies)
_forwarding = settings.secret_box().derive("hookstream forwarding v1")


class TooManyFailures(Exception):
    """This client failed to authenticate too often: answer 429 with Retry-After."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed authentications; retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


def client_of(request: Any) -> str:
    forwarded_for = request.headers.getall("X-Forwarded-For", [])
    return _proxies.client_address(request.remote, forwarded_for) or "unknown"


def principal_of(request: Any, surface: str = "api") -> Principal | None:
    """The caller, None if it offered no valid credential. Raises TooManyFailures."""
    client = client_of(request)
    wait = _limiter.retry_after(client, time.monotonic())
    if wait > 0:
        raise TooManyFailures(wait)
    vouched = request.headers.get(FORWARDED_PRINCIPAL)
    if vouched is not None:
        principal = _unvouch(vouched, time.time())
        if principal is None:
            _failed(client, surface, "a forwarded principal that does not open")
        return principal
    header = request.headers.get("Authorization")
    if header is None:
        return None  # no attempt, nothing to count
    scheme, _, token = header.partition(" ")
    return check_key(client, token.strip() if scheme.lower() == "bearer" else "", surface)


def check_key(client: str, key: str, surface: str) -> Principal | None:
    """The principal of `key`, counting a failure against `client` if there is none.
    (The console's sign-in form calls this after `retry_after` said the client may try.)"""
    principal = authenticate(key, api_keys.current, settings.admin_key) if key else None
    if principal is None:
        key_id = key_id_of(key)
        _failed(client, surface, f"key id {key_id}" if key_id else "not an API key")
    return principal


def retry_after(client: str) -> float:
    return _limiter.retry_after(client, time.monotonic())


def _failed(client: str, surface: str, what: str) -> None:
    _limiter.failed(client, time.monotonic())
    metrics.AUTH_FAILURES.labels(surface=surface).inc()
    # Never the key itself: the id names a key without being one.
    log.warning("authentication failed on the %s from %s: %s", surface, client, what)


def vouch(principal: Principal) -> str:
    return _forwarding.seal(json.dumps({"key_id": principal.key_id,
                                        "workspace_id": principal.workspace_id,
                                        "until": time.time() + VOUCHED_FOR_S}))


def _unvouch(sealed: str, now: float) -> Principal | None:
    try:
        claim = json.loads(_forwarding.open(sealed))
        workspace = claim["workspace_id"]
        if claim["until"] < now or not (workspace is None or isinstance(workspace, str)):
            return None
        return Principal(str(claim["key_id"]), workspace)
    except (SecretBoxError, ValueError, KeyError, TypeError):
        return None


def may_see(principal: Principal | None, webhook_id: str) -> bool:
    """A known caller whose workspace owns the webhook (or the admin). Unknown ids: False."""
    if principal is None:
        return False
    sub = subscriptions.index.get(webhook_id)
    return sub is not None and principal.may_see(sub.workspace_id)
