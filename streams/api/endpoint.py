"""What every API view does around its own work: authenticate, answer errors as JSON, honour
Idempotency-Key on POST; and how a view class is mounted with the Api it works for.

Views are classes at module level that read `self.ctx` (the worker's Api); `mount` gives
each its Api when `streams.api.install` puts it on the app, so nothing is built at import.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import faust
from aiohttp.web import HTTPRequestEntityTooLarge
from faust.web import Request, Response, View

from ..core.apikeys import Principal
from . import validation as v
from .auth import TooManyFailures
from .context import Api
from .validation import ApiError

Handler = Callable[..., Awaitable[tuple[int, Any]]]
ViewMethod = Callable[..., Awaitable[Response]]


class Endpoint(View):
    """A view of the API: `ctx` is set by `mount`."""

    ctx: ClassVar[Api]


def mount(app: faust.App, path: str, view: type[Endpoint], ctx: Api) -> None:
    app.page(path)(type(view.__name__, (view,), {"ctx": ctx}))


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer)")


def too_many(view: View, exc: TooManyFailures) -> Response:
    """429, and when to come back."""
    return view.json(ApiError(429, "too_many_requests", str(exc)).body(), status=429,
                     headers={"Retry-After": str(int(exc.retry_after_s) + 1)})


def caller(view: Endpoint, request: Request) -> Principal | Response:
    """The authenticated caller, or the answer to give instead (401, or 429)."""
    try:
        principal = view.ctx.auth.principal_of(request)
    except TooManyFailures as exc:
        return too_many(view, exc)
    if principal is None:
        return view.json(unauthorized().body(), status=401)
    return principal


def api(handler: Handler) -> ViewMethod:
    """Authenticate, turn ApiError into its JSON answer, honour Idempotency-Key on POST."""

    @functools.wraps(handler)
    async def wrapped(self: Endpoint, request: Request, **kwargs: Any) -> Response:
        ctx = self.ctx
        try:
            principal = ctx.auth.principal_of(request)
            if principal is None:
                raise unauthorized()
            key = v.idempotency_key(request.headers.get("Idempotency-Key")
                                    if request.method == "POST" else None)
            asked = await request_fingerprint(request) if key else ""
            if key:
                # The first answer was stored before it was returned: catching up with the
                # topic makes a retry on any worker find it.
                await ctx.idempotency.sync()
                stored = ctx.idempotency.get(f"{principal.key_id}:{key}")
                if stored is not None:
                    if not ctx.same_request(stored, asked):
                        # Another request under a used key (IETF's Idempotency-Key draft:
                        # 422): answering with the first one's result would tell a caller
                        # that a rotate or a disable was done when nothing was.
                        raise ApiError(422, "idempotency_key_reused",
                                       "this Idempotency-Key was used for another request "
                                       "(method, path or body): use a new key",
                                       "Idempotency-Key")
                    return self.json(ctx.opened(stored), status=stored["status"])
            status: int
            body: Any
            status, body = await handler(self, request, principal, **kwargs)
            # Only what was done is remembered (as Stripe does): a refused request may be
            # sent again, corrected, with the same key.
            if key and 200 <= status < 300:
                await ctx.remember(f"{principal.key_id}:{key}", asked, status, body)
        except ApiError as exc:
            return self.json(exc.body(), status=exc.status, headers=exc.headers)
        except TooManyFailures as exc:
            return too_many(self, exc)
        if status == 204:
            return self.bytes(b"", status=204)
        return self.json(body, status=status)

    return wrapped


async def body_of(request: Request, required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a 400 naming `body`."""
    return v.parse_json(await _raw_body(request), required=required)


async def request_fingerprint(request: Request) -> str:
    """What an Idempotency-Key stands for: method, path (and query) and body, as sent (a
    client's retry sends the same bytes)."""
    digest = hashlib.sha256(
        f"{request.method} {request.url.raw_path_qs}\n".encode(errors="backslashreplace"))
    digest.update(await _raw_body(request))
    return digest.hexdigest()


async def _raw_body(request: Request) -> bytes:
    try:
        raw: bytes = await request.read()  # read once: aiohttp keeps it for the next call
    except HTTPRequestEntityTooLarge:
        raise v.invalid("body", f"larger than {v.MAX_BODY} bytes") from None
    return raw
