"""Reads answered by the worker that holds the data: a webhook's history lives on the worker
that owns its partition of the history table.

What faust's `@app.table_route` does, except for what crosses the network: faust forwards
the caller's request headers, Authorization included, to another worker. Here the caller
is authenticated first, and the forwarded request carries only a short-lived principal
sealed by this worker (streams.api.auth.vouch), never the caller's key.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import TableT
from faust.web import Request, Response, View

from ..core.apikeys import Principal
from ..runtime.app import app
from .auth import FORWARDED_PRINCIPAL, TooManyFailures, principal_of, vouch
from .validation import ApiError

ViewFunction = Callable[..., Awaitable[Response]]

def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer)")


def too_many(view: View, exc: TooManyFailures) -> Response:
    """429, and when to come back."""
    return view.json(ApiError(429, "too_many_requests", str(exc)).body(), status=429,
                     headers={"Retry-After": str(int(exc.retry_after_s) + 1)})


def caller(web: View, request: Request) -> Principal | Response:
    """The authenticated caller, or the answer to give instead (401, or 429 with when to
    come back)."""
    try:
        principal = principal_of(request)
    except TooManyFailures as exc:
        return too_many(web, exc)
    if principal is None:
        return web.json(unauthorized().body(), status=401)
    return principal


def answered_by_owner(table: TableT[Any, Any], match_info: str) -> Callable[[ViewFunction],
                                                                            ViewFunction]:
    """Authenticate the caller (401, 429), then run the view here, given the `principal`,
    if this worker holds `match_info`'s key in `table`; else forward the request to the
    worker that does, on the caller's behalf."""

    def decorate(view: ViewFunction) -> ViewFunction:
        @functools.wraps(view)
        async def routed(web: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            principal = caller(web, request)
            if not isinstance(principal, Principal):
                return principal
            owner = app.router.key_store(table.name, request.match_info[match_info])
            here = app.conf.canonical_url
            if (owner.host, owner.port) == (here.host, here.port):
                return await view(web, request, *args, principal=principal, **kwargs)
            url = request.url.with_host(owner.host or "").with_port(owner.port)
            async with app.http_client.request(
                    method=request.method, url=url,
                    headers={FORWARDED_PRINCIPAL: vouch(principal)}) as answer:
                return web.text(await answer.text(), content_type=answer.content_type,
                                status=answer.status)

        return routed

    return decorate
