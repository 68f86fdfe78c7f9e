"""`hookstream worker`: one process running fan-out, control, delivery and the web server.

Start as many as you like with the same settings: they form consumer groups and share the
partitions (fan-out and control through faust's group, delivery through its own).
"""

from __future__ import annotations

import logging

import faust
import mode

from .admin import create_topics
from .app import app, settings
from .control import agent as _control_agent  # noqa: F401 - registers the agent
from .delivery.worker import DeliveryWorker
from .fanout import view

log = logging.getLogger(__name__)


@app.service
class Pipeline(mode.Service):
    """Starts the subscriptions view and the delivery stage with the faust worker."""

    delivery: DeliveryWorker | None = None

    async def on_start(self) -> None:
        await view.start()
        self.delivery = DeliveryWorker(settings, view)
        await self.delivery.start()

    async def on_stop(self) -> None:
        if self.delivery is not None:
            await self.delivery.stop()
        await view.stop()


@app.page("/healthz")
async def healthz(_web, request):  # type: ignore[no-untyped-def]
    return _web.json({"status": "ok"})


def run_worker() -> None:
    create_topics(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
