"""Run one worker from the settings it is given: the only place parts are put together."""

from __future__ import annotations

import sys

import faust
import mode.loop

from .. import api, console
from ..control import agent as control
from ..core.secretbox import SecretBoxError
from ..dlq import agent as dead_letters
from ..history.feeder import HistoryFeeder
from ..history.table import History
from ..kafka.admin import create_topics, with_replication
from ..kafka.app import DatadirError
from ..kafka.topics import INVALID
from ..pipeline.agents import Agents
from ..runtime.context import build_runtime
from ..settings import Settings
from ..telemetry.logs import logging_config
from .pipeline import Stages, readiness, service_for


def run_worker(settings: Settings) -> None:
    # The replication our topics get (from the cluster's size unless set) is settled before
    # the app exists: faust gives it to the one topic it creates itself (its assignor's).
    settings = with_replication(settings)
    # An unusable HOOKSTREAM_HOME or master key is one line and exit 1, the form of the
    # CLI's errors.
    try:
        rt = build_runtime(settings)
    except (DatadirError, SecretBoxError) as exc:
        sys.exit(f"error: {exc}")
    # uvloop: the event loop's own bookkeeping (timers, callbacks, epoll) was a fifth of a
    # loaded worker's CPU under asyncio's loop. Set before faust creates its loop.
    mode.loop.use("uvloop")
    create_topics(settings)
    agents = Agents(rt.app, settings, invalid=rt.topic(INVALID))
    history = History(rt)
    control.install(rt, agents)
    dead_letters.install(rt, agents)
    stages = Stages(history=HistoryFeeder(rt, history))
    ctx = api.install(rt, history, lambda: readiness(rt, stages))
    console.install(rt, ctx.auth)
    rt.app.service(service_for(rt, stages))
    worker = faust.Worker(
        rt.app, loglevel=settings.log_level, quiet=True,
        logging_config=(logging_config(settings.log_level) if settings.log_format == "json"
                        else None))
    # faust's terminal spinner sets the root logger to DEBUG whenever the level is WARNING
    # or above, so every library debug call built a record: ~5% of a loaded worker's CPU.
    worker.spinner = None
    worker.execute_from_commandline()
