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

from ..core.apikeys import ApiKey, Principal, authenticate, key_id_of
from ..core.proxies import TrustedProxies
from ..core.secretbox import SecretBox, SecretBoxError
from ..kafka.compacted import KeyedView
from ..settings import Settings
from ..subscriptions.view import SubscriptionsView
from ..telemetry import metrics
from .throttle import WindowLimiter

log = logging.getLogger(__name__)

#: Carries a principal vouched for by the worker that forwarded the request.
FORWARDED_PRINCIPAL = "X-Hookstream-Principal"
#: Seconds a vouched principal is good for: one forwarded request, with clock skew.
VOUCHED_FOR_S = 30


class TooManyFailures(Exception):
    """This client failed to authenticate too often: answer 429 with Retry-After."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed authentications; retry in {retry_after_s:.0f}s")
        self.retry_after_s = retry_after_s


class Authenticator:
    """Who is calling, for the API and the console of one worker."""

    def __init__(self, settings: Settings, api_keys: KeyedView[ApiKey],
                 subscriptions: SubscriptionsView, secrets: SecretBox) -> None:
        self._admin_key = settings.admin_key
        self._api_keys = api_keys
        self._subscriptions = subscriptions
        self._limiter = WindowLimiter()
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self._forwarding = secrets.derive("hookstream forwarding v1")

    def client_of(self, request: Any) -> str:
        forwarded_for = request.headers.getall("X-Forwarded-For", [])
        return self.proxies.client_address(request.remote, forwarded_for) or "unknown"

    def principal_of(self, request: Any, surface: str = "api") -> Principal | None:
        """The caller, None if it offered no valid credential. Raises TooManyFailures."""
        client = self.client_of(request)
        wait = self.retry_after(client)
        if wait > 0:
            raise TooManyFailures(wait)
        vouched = request.headers.get(FORWARDED_PRINCIPAL)
        if vouched is not None:
            principal = self.unvouch(vouched, time.time())
            if principal is None:
                self._failed(client, surface, "a forwarded principal that does not open")
            return principal
        header = request.headers.get("Authorization")
        if header is None:
            return None  # no attempt, nothing to count
        scheme, _, token = header.partition(" ")
        return self.check_key(client, token.strip() if scheme.lower() == "bearer" else "",
                              surface)

    def check_key(self, client: str, key: str, surface: str) -> Principal | None:
        """The principal of `key`, counting a failure against `client` if there is none.
        (The console's sign-in form calls this after `retry_after` said it may try.)"""
        principal = (authenticate(key, self._api_keys.current, self._admin_key)
                     if key else None)
        if principal is None:
            key_id = key_id_of(key)
            self._failed(client, surface, f"key id {key_id}" if key_id else "not an API key")
        return principal

    def principal_of_key(self, key: str) -> Principal | None:
        """The principal of a key we hold already (a console session's), uncounted."""
        return authenticate(key, self._api_keys.current, self._admin_key)

    def retry_after(self, client: str) -> float:
        return self._limiter.retry_after(client, time.monotonic())

    def _failed(self, client: str, surface: str, what: str) -> None:
        self._limiter.record(client, time.monotonic())
        metrics.AUTH_FAILURES.labels(surface=surface).inc()
        # Never the key itself: the id names a key without being one.
        log.warning("authentication failed on the %s from %s: %s", surface, client, what)

    def vouch(self, principal: Principal) -> str:
        return self._forwarding.seal(json.dumps({"key_id": principal.key_id,
                                                 "workspace_id": principal.workspace_id,
                                                 "until": time.time() + VOUCHED_FOR_S}))

    def unvouch(self, sealed: str, now: float) -> Principal | None:
        try:
            claim = json.loads(self._forwarding.open(sealed))
            workspace = claim["workspace_id"]
            if claim["until"] < now or not (workspace is None or isinstance(workspace, str)):
                return None
            return Principal(str(claim["key_id"]), workspace)
        except (SecretBoxError, ValueError, KeyError, TypeError):
            return None

    def may_see(self, principal: Principal | None, webhook_id: str) -> bool:
        """A known caller whose workspace owns the webhook (or the admin). Unknown ids:
        False."""
        if principal is None:
            return False
        sub = self._subscriptions.index.get(webhook_id)
        return sub is not None and principal.may_see(sub.workspace_id)
