"""A webhook's recent attempts, read on the worker that holds its history (streams.history):
/v1/webhooks/{id}/deliveries for callers, and /internal/webhooks/{id}/summary and /attempts
for the console and the tests. A worker that does not hold it forwards the request, on the
caller's behalf (Api.forwarded)."""

from __future__ import annotations

from faust.web import Request, Response

from ..core.apikeys import Principal
from ..core.timeutil import iso_from_ms
from ..delivery.models import STATUSES
from ..history.table import KEPT, History, Page
from . import validation as v
from .endpoint import Endpoint, caller
from .validation import ApiError


class HistoryLoading(ApiError):
    """A rebalance moved the webhook's history here and faust is still reading it back: a
    page now would lack attempts that were recorded. Asked after the caller may see the
    webhook, so it tells nothing of one they may not."""

    def __init__(self) -> None:
        super().__init__(503, "history_loading", "this webhook's history is being loaded "
                         "after a rebalance of the workers; retry in a second",
                         headers={"Retry-After": "1"})


def _history(endpoint: Endpoint, webhook_id: str) -> History:
    """The history table, once it holds the webhook's partition in full (else 503)."""
    history = endpoint.ctx.history
    if not history.serves(webhook_id):
        raise HistoryLoading()
    return history


def _page(endpoint: Endpoint, request: Request, webhook_id: str, maximum: int) -> Page:
    """The page the query asks for (limit, status, cursor), or a 400 naming the field."""
    limit = v.limit(request.query.get("limit"), maximum=maximum)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise v.invalid("status", f"must be one of {', '.join(STATUSES)}")
    raw_cursor = request.query.get("cursor")
    try:
        cursor = int(raw_cursor) if raw_cursor else None
    except ValueError:
        raise v.invalid("cursor", "is not a cursor from this API") from None
    return _history(endpoint, webhook_id).page(webhook_id, status=status, limit=limit,
                                               cursor=cursor)


class _OnOwner(Endpoint):
    """Authenticated, then answered here or by the worker holding the webhook's history."""

    async def get(self, request: Request, webhook_id: str) -> Response:
        principal = caller(self, request)
        if not isinstance(principal, Principal):
            return principal
        try:
            forwarded = await self.ctx.forwarded(self, request, principal, webhook_id)
            if forwarded is not None:
                return forwarded
            return await self.answer(request, principal, webhook_id)
        except ApiError as exc:
            return self.json(exc.body(), status=exc.status, headers=exc.headers)

    async def answer(self, request: Request, principal: Principal,
                     webhook_id: str) -> Response:
        raise NotImplementedError


class Deliveries(_OnOwner):
    async def answer(self, request: Request, principal: Principal,
                     webhook_id: str) -> Response:
        """Recent attempts, newest first."""
        await self.ctx.current(principal, webhook_id)
        page = _page(self, request, webhook_id, maximum=100)
        return self.json({
            "data": [{
                "id": r.delivery_id, "event": r.event_type, "event_id": r.event_id,
                "timestamp": iso_from_ms(r.attempted_at), "status": r.status,
                "response_code": r.response_code, "response_time_ms": r.response_time_ms,
                "attempt": r.attempt, "error": r.error,
                "next_attempt_at": (iso_from_ms(r.next_attempt_at) if r.next_attempt_at
                                    else None),
            } for r in page.records],
            "next_cursor": str(page.next_cursor) if page.next_cursor else None,
        })


class Summary(_OnOwner):
    async def answer(self, request: Request, principal: Principal,
                     webhook_id: str) -> Response:
        """Last success, last failure, failures in the last 100: the console's list."""
        if not self.ctx.auth.may_see(principal, webhook_id):
            raise ApiError(404, "not_found", f"no webhook {webhook_id}")
        return self.json(_history(self, webhook_id).summary(webhook_id))


class Attempts(_OnOwner):
    async def answer(self, request: Request, principal: Principal,
                     webhook_id: str) -> Response:
        """The history as stored (attempt records), up to all it keeps: for tests."""
        if not self.ctx.auth.may_see(principal, webhook_id):
            raise ApiError(404, "not_found", f"no webhook {webhook_id}")
        page = _page(self, request, webhook_id, maximum=KEPT)
        return self.json({"data": [r.to_record() for r in page.records],
                          "next_cursor": page.next_cursor})
