"""The operators' web console at /console: server-rendered pages over the HTTP API.

It signs in with an API key (a workspace's, or the admin key), keeps it in an HttpOnly,
SameSite=Strict cookie (Secure over https) sealed under a key for sessions only, and calls
this worker's own API with it, so tenant rules, validation and routing are the API's, not a
copy. Signing out ends the session on every worker. No CDN: styles are served from here.
"""

from __future__ import annotations

from ..api.auth import Authenticator
from ..core.timeutil import now_ms
from ..kafka.compacted import ExpiringView
from ..kafka.topics import CONSOLE_LOGOUTS
from ..runtime.context import Runtime
from .base import Console, Page
from .pages import (
    Action,
    Create,
    DeadLetters,
    Detail,
    EventTypes,
    Health,
    Login,
    Logout,
    Style,
    Webhooks,
)
from .session import Sessions

ROUTES: tuple[tuple[str, type[Page]], ...] = (
    ("/console", Webhooks),
    ("/console/style.css", Style),
    ("/console/login", Login),
    ("/console/logout", Logout),
    ("/console/webhooks/new", Create),
    ("/console/webhooks/{webhook_id}", Detail),
    ("/console/webhooks/{webhook_id}/{action}", Action),
    ("/console/dead-letters", DeadLetters),
    ("/console/event-types", EventTypes),
    ("/console/health", Health),
)


def _expiry(value: bytes) -> int:
    return int(value)


def install(rt: Runtime, auth: Authenticator) -> Console:
    """The console's pages on the runtime's app; its view of sign-outs joins the runtime's."""
    s = rt.settings
    logouts: ExpiringView[int] = ExpiringView(
        s.bootstrap_servers, s.topic(CONSOLE_LOGOUTS), _expiry, expires_at=lambda ms: ms,
        now=now_ms)
    rt.add_view(logouts)
    ctx = Console(settings=s, auth=auth, sessions=Sessions(rt.secrets), logouts=logouts,
                  logouts_topic=rt.topic(CONSOLE_LOGOUTS))
    for path, page in ROUTES:
        rt.app.page(path)(type(page.__name__, (page,), {"ctx": ctx}))
    return ctx
