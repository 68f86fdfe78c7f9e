"""What a worker builds from its settings, built once, here, and handed to whatever needs it.

No module builds settings, clients, secret boxes or local views when it is imported: the
worker's main reads the settings once, calls `build_runtime`, and each part installs its
agents, pages and views onto the Runtime it is given (`install(rt)`), adding the local
views it owns (`add_view`) so that the worker starts, readies and stops them together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import faust
from faust.types import TopicT

from ..core.apikeys import ApiKey
from ..core.secretbox import SecretBox
from ..kafka.app import build_app, prepare_datadir, raw_topic
from ..kafka.compacted import KeyedView
from ..kafka.topics import API_KEYS, SUBSCRIPTIONS
from ..settings import Settings
from ..subscriptions.view import SubscriptionsView


class LocalView(Protocol):
    """A local copy of a topic that the worker starts, waits for, and stops."""

    ready: asyncio.Event

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Runtime:
    settings: Settings
    app: faust.App
    #: Opens and seals webhook secrets (the master keys; derive() for other purposes).
    secrets: SecretBox
    #: webhook id -> Subscription, indexed by workspace: fan-out, delivery, control, API.
    subscriptions: SubscriptionsView
    #: key id -> ApiKey (hashes only): the API and the console.
    api_keys: KeyedView[ApiKey]
    views: list[LocalView] = field(default_factory=list)
    _topics: dict[str, TopicT] = field(default_factory=dict)

    def add_view(self, view: LocalView) -> None:
        self.views.append(view)

    def topic(self, name: str) -> TopicT:
        """Our topic `name` (unprefixed) as a faust topic of raw bytes: declared once here,
        whichever agents, pages and views read or write it."""
        if name not in self._topics:
            self._topics[name] = raw_topic(self.app, self.settings, name)
        return self._topics[name]


def build_runtime(settings: Settings) -> Runtime:
    """The runtime of one worker; DatadirError if HOOKSTREAM_HOME cannot be used."""
    subscriptions = SubscriptionsView(settings.bootstrap_servers, settings.topic(SUBSCRIPTIONS))
    api_keys = KeyedView(settings.bootstrap_servers, settings.topic(API_KEYS), ApiKey.decode)
    app = build_app(settings)
    # Before anything is written there (the master key file, faust's data): an unusable
    # HOOKSTREAM_HOME is DatadirError, one line, not a traceback from deeper down.
    prepare_datadir(app, settings)
    return Runtime(settings=settings, app=app, secrets=settings.secret_box(),
                   subscriptions=subscriptions, api_keys=api_keys,
                   views=[subscriptions, api_keys])
