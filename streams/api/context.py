"""What the API's views share on one worker, built once by `streams.api.install`.

Writes become control commands (secrets sealed first) and the answer waits, bounded, until
this worker's copy of the subscriptions table applied them, so a read that follows sees the
write; reads first catch up with the table's end (CompactedView.sync), so that holds on any
worker. Another workspace's webhook answers 404, exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from faust.types import TopicT
from faust.web import Request, Response, View

from ..core.apikeys import Principal
from ..core.secretbox import SecretBox, SecretBoxError, is_sealed
from ..core.timeutil import iso_from_ms, now_ms
from ..core.urls import parse_target
from ..delivery.client import NOT_PUBLIC, DeliveryClient, resolves_publicly
from ..dlq.view import DeadLetterView
from ..history.table import History
from ..kafka.compacted import ExpiringView
from ..runtime.context import Runtime
from ..settings import LOOPBACK_OF_EVERY_INTERFACE
from ..subscriptions.commands import Command, over_limit
from ..subscriptions.model import Subscription
from . import validation as v
from .auth import FORWARDED_PRINCIPAL, Authenticator
from .throttle import TESTS_LIMIT, WindowLimiter, webhook_tests_limiter
from .validation import ApiError

#: Seconds a caller is told to wait when the worker holding a history cannot be reached.
FORWARD_RETRY_AFTER_S = 5
#: Hosts a worker may advertise that name no worker in particular.
_NOWHERE = (*LOOPBACK_OF_EVERY_INTERFACE, "[::]", "")
#: Seconds a write waits for this worker's table to apply it before answering 504.
APPLY_TIMEOUT_S = 10.0


@dataclass
class Api:
    rt: Runtime
    auth: Authenticator
    history: History
    dead_letters: DeadLetterView
    #: "<key id>:<Idempotency-Key>" -> the first answer, sealed (streams.api.endpoint).
    idempotency: ExpiringView[dict[str, Any]]
    answers: SecretBox
    control_topic: TopicT
    log_topic: TopicT
    idempotency_topic: TopicT
    #: The readiness checks (/readyz): views loaded, consumer groups settled.
    readiness: Callable[[], dict[str, Any]]
    _client: DeliveryClient | None = field(default=None, repr=False)
    #: workspace -> its creates' turn on this worker, and how many hold or wait for it.
    _creating: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict, repr=False)
    #: /test: the webhooks being tested on this worker, and each one's recent tests.
    _testing: set[str] = field(default_factory=set, repr=False)
    _tests: WindowLimiter = field(default_factory=webhook_tests_limiter, repr=False)

    @property
    def settings(self) -> Any:
        return self.rt.settings

    def client(self) -> DeliveryClient:
        """The client `/test` sends with: the delivery client's rules, built on first use."""
        if self._client is None:
            self._client = DeliveryClient(self.rt.settings)
        return self._client

    # -- webhooks as a caller may see them -------------------------------------------------
    def visible(self, principal: Principal, webhook_id: str) -> Subscription:
        sub = self.rt.subscriptions.index.get(webhook_id)
        if sub is None or not principal.may_see(sub.workspace_id):
            raise ApiError(404, "not_found", f"no webhook {webhook_id}")
        return sub

    async def current(self, principal: Principal, webhook_id: str) -> Subscription:
        """The webhook as of now (caught up with the table), if the caller may see it."""
        await self.rt.subscriptions.sync()
        return self.visible(principal, webhook_id)

    @contextlib.asynccontextmanager
    async def room_for_one_more(self, workspace: str) -> AsyncIterator[None]:
        """HOOKSTREAM_MAX_WEBHOOKS_PER_WORKSPACE: a tenant is bounded by settings.

        Held until the create is applied: one create at a time per workspace on this worker,
        each counting the ones before it (20 at once, with room for 9, made 11 when each
        only checked). Creates on two workers at once can still both pass; the control
        agent holds the line there."""
        lock, users = self._creating.get(workspace, (asyncio.Lock(), 0))
        self._creating[workspace] = (lock, users + 1)
        try:
            try:
                # Bounded: behind a control agent that lags, creates must not queue for ever.
                async with asyncio.timeout(APPLY_TIMEOUT_S):
                    await lock.acquire()
            except TimeoutError:
                raise ApiError(503, "busy", "this workspace's creates are queued behind "
                               "others not yet applied: retry", "workspace_id",
                               headers={"Retry-After": str(int(APPLY_TIMEOUT_S))}) from None
            try:
                await self.rt.subscriptions.sync()
                why = over_limit(workspace,
                                 self.rt.subscriptions.index.count_in_workspace(workspace),
                                 self.rt.settings.max_webhooks_per_workspace)
                if why is not None:
                    raise ApiError(409, "limit_reached", why, "workspace_id")
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._creating[workspace]
            if users == 1:
                del self._creating[workspace]
            else:
                self._creating[workspace] = (lock, users - 1)

    @contextlib.contextmanager
    def test_turn(self, webhook_id: str) -> Iterator[None]:
        """A test is a real request to the tenant's endpoint, sent now, outside the webhook's
        rate limit: one at a time per webhook on this worker (40 at once made 40 requests
        in 0.2 s), and past TESTS_LIMIT a minute the caller waits (429, Retry-After)."""
        if webhook_id in self._testing:
            # It answers within the delivery timeout.
            raise ApiError(429, "too_many_requests", "a test of this webhook is under way: "
                           "send the next one after its answer", headers={
                               "Retry-After": str(math.ceil(self.settings.delivery_timeout))})
        now = time.monotonic()
        wait = self._tests.retry_after(webhook_id, now)
        if wait > 0:
            raise ApiError(429, "too_many_requests",
                           f"{TESTS_LIMIT} tests of this webhook in a minute already; retry in "
                           f"{int(wait) + 1}s", headers={"Retry-After": str(int(wait) + 1)})
        self._tests.record(webhook_id, now)
        self._testing.add(webhook_id)
        try:
            yield
        finally:
            self._testing.discard(webhook_id)

    async def resolves_publicly(self, url: str) -> None:
        """Secure mode: every address the host resolves to must be public (checked again at
        every connection). No answer and a private answer read the same, so tenants cannot
        map internal DNS through this API."""
        if self.rt.settings.allow_insecure_targets:
            return
        target = parse_target(url)
        if target.address is None and not await resolves_publicly(target.host):
            raise v.invalid("url", f"{target.host} {NOT_PUBLIC}")

    async def command(self, op: str, sub_id: str, *, workspace_id: str | None = None,
                      fields: dict[str, Any] | None = None, reason: str | None = None) -> None:
        """Send a command and wait until this worker's table applied it."""
        command_id = f"cmd_{uuid.uuid4().hex}"
        command = Command(op=op, webhook_id=sub_id, workspace_id=workspace_id,
                          webhook=fields or {}, reason=reason,
                          requested_at=iso_from_ms(now_ms()), command_id=command_id)
        # force: never attach to a stream event that happens to be in context; publish now.
        await (await self.control_topic.send(key=sub_id.encode(), value=command.encode(),
                                             force=True))
        index = self.rt.subscriptions.index

        def applied() -> bool:
            current = index.get(sub_id)
            if op == "delete":
                return current is None
            return current is not None and current.last_command == command_id

        if not await self.rt.subscriptions.wait_for(applied, APPLY_TIMEOUT_S):
            raise ApiError(504, "not_applied", f"the {op} was sent but not applied within "
                           f"{APPLY_TIMEOUT_S:g}s; it may still take effect")

    # -- Idempotency-Key ---------------------------------------------------------------------
    async def remember(self, key: str, request: str, status: int, body: Any) -> None:
        """Kept sealed: a create or rotate answer holds the webhook's plaintext secret.
        `request` is what the key stood for (streams.api.endpoint.request_fingerprint)."""
        sealed = self.answers.seal(json.dumps(body))
        # The request's digest sealed too: a plain hash of a body holding a secret or a
        # header's credential could be tested against guesses by whoever reads the topic.
        value = json.dumps({"status": status, "sealed": sealed,
                            "request": self.answers.seal(request), "at": now_ms()}).encode()
        await (await self.idempotency_topic.send(key=key.encode(), value=value, force=True))

    def same_request(self, stored: dict[str, Any], request: str) -> bool:
        """Whether a remembered answer was given to this request (answers remembered before
        requests were kept stand for any)."""
        sealed = stored.get("request")
        if sealed is None:
            return True
        if not is_sealed(str(sealed)):  # kept in the clear by this round's first version
            return hmac.compare_digest(str(sealed).encode(), request.encode())
        try:
            return hmac.compare_digest(self.answers.open(str(sealed)).encode(), request.encode())
        except SecretBoxError:
            return False

    def opened(self, stored: dict[str, Any]) -> Any:
        if "sealed" in stored:
            return json.loads(self.answers.open(stored["sealed"]))
        return stored["body"]  # written before answers were sealed (expires within a day)

    # -- reads answered by the worker that holds the data ------------------------------------
    async def forwarded(self, view: View, request: Request, principal: Principal,
                        key: str) -> Response | None:
        """If another worker holds `key` in the history table, its answer to this request,
        asked on the caller's behalf; None if this worker holds it.

        What faust's `@app.table_route` does, except for what crosses the network: faust
        forwards the caller's request headers, Authorization included. Here the caller is
        authenticated first, and the forwarded request carries only a short-lived principal
        sealed by this worker (Authenticator.vouch), never the caller's key.
        """
        if request.headers.get(FORWARDED_PRINCIPAL) is not None:
            return None  # forwarded once already: answered here, never passed on again
        app = self.rt.app
        owner = app.router.key_store(self.history.table.name, key)
        here = app.conf.canonical_url
        if (owner.host, owner.port) == (here.host, here.port) or owner.host in _NOWHERE:
            # (A worker of an older version advertised its bind address, 0.0.0.0 in
            # containers: forwarding there reaches this worker itself.)
            return None
        url = request.url.with_host(owner.host or "").with_port(owner.port)
        try:
            async with app.http_client.request(
                    method=request.method, url=url,
                    headers={FORWARDED_PRINCIPAL: self.auth.vouch(principal)}) as answer:
                return view.text(await answer.text(), content_type=answer.content_type,
                                 status=answer.status)
        except (aiohttp.ClientError, OSError, TimeoutError):
            # The holder is restarting, or its advertised host does not resolve here
            # (HOOKSTREAM_WEB_ADVERTISED_HOST): the caller may retry; not a 500.
            raise ApiError(503, "unavailable", "the worker holding this webhook's history "
                           "cannot be reached right now: retry", headers={
                               "Retry-After": str(FORWARD_RETRY_AFTER_S)}) from None
