"""The pages around the API: health and readiness probes, Prometheus metrics, the OpenAPI
document, and one worker's view of a webhook (for probes and tests). The event catalog is
streams.api.event_types."""

from __future__ import annotations

from faust.web import Request, Response, View

from ..core.apikeys import Principal
from ..telemetry import metrics
from . import openapi
from .endpoint import Endpoint, caller


class Health(View):
    async def get(self, request: Request) -> Response:
        """Alive: the process answers."""
        return self.json({"status": "ok"})


class Ready(Endpoint):
    async def get(self, request: Request) -> Response:
        """Ready: local views loaded, consumer groups settled with partitions."""
        checks = self.ctx.readiness()
        return self.json(checks, status=200 if checks["ready"] else 503)


class Metrics(Endpoint):
    async def get(self, request: Request) -> Response:
        """Prometheus text format."""
        # Counted as subscriptions change (SubscriptionIndex), never by walking them.
        index = self.ctx.rt.subscriptions.index
        metrics.SUBSCRIPTIONS.labels(state="active").set(index.active)
        metrics.SUBSCRIPTIONS.labels(state="disabled").set(index.disabled)
        return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


class OpenApi(View):
    async def get(self, request: Request) -> Response:
        return self.json(openapi.document())


class SubscriptionState(Endpoint):
    async def get(self, request: Request, webhook_id: str) -> Response:
        """This worker's view of one webhook as an API read shows it (no secret, header
        values masked), with `last_command` (for probes and tests)."""
        principal = caller(self, request)
        if not isinstance(principal, Principal):
            return principal
        sub = self.ctx.rt.subscriptions.index.get(webhook_id)
        if sub is None or not self.ctx.auth.may_see(principal, webhook_id):
            return self.json({"error": {"code": "not_found",
                                        "message": f"no webhook {webhook_id}"}}, status=404)
        return self.json({**sub.public(), "last_command": sub.last_command})
