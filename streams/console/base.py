"""What every console page stands on: its context, sign-in and CSRF guard, HTML answers.

Each page reads or writes through this worker's own HTTP API with the signed-in key, so the
console enforces exactly the API's rules.

Sessions (streams.console.session) end on sign-out everywhere: the session id goes to
hookstream.console-logouts, which every worker tails into a local view (Console.logouts). A
signed-in request first catches up with that topic (`Console.signed_in`), so a cookie signed out on
one worker is refused by every worker from the moment the sign-out answered. Secrets appear
only in the one response that creates them (create, rotate), never in a URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, cast
from urllib.parse import urlsplit

import httpx
from aiohttp import web as aioweb
from faust.types import TopicT
from faust.web import Request, View

from ..api.auth import Authenticator
from ..core.timeutil import iso_from_ms, now_ms
from ..kafka.compacted import ExpiringView
from ..settings import Settings
from . import session
from .html import page

#: Seconds a sign-out waits for this worker's copy of the logouts topic to show it.
LOGOUT_APPLY_TIMEOUT_S = 10.0
#: Seconds a signed-in request may wait to catch up with sign-outs made on other workers.
#: If it cannot, the request is refused (503) rather than trusting a possibly ended session.
LOGOUT_SYNC_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class Refused(Exception):
    """The request cannot go on; `response` says why (usually: go and sign in)."""

    def __init__(self, response: aioweb.Response) -> None:
        super().__init__(response.status)
        self.response = response


class SignedIn(NamedTuple):
    session: session.Session
    who: str
    csrf: str
    form: Any  # the POSTed form, already checked for its CSRF token; None for GETs


@dataclass
class Console:
    """What the console's pages share on one worker, built by `streams.console.install`."""

    settings: Settings
    auth: Authenticator
    sessions: session.Sessions
    #: session id -> expiry (ms) of the sessions signed out on any worker
    logouts: ExpiringView[int]
    logouts_topic: TopicT
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def signed_in(self, request: Request) -> SignedIn:
        """The request's live session, its form checked for CSRF (POST), else Refused."""
        cookie = request.cookies.get(session.COOKIE)
        if not cookie:
            raise Refused(redirect("/console/login"))
        # Catch up with sign-outs made on other workers first (sync asks end offsets on a
        # client of its own: about half a millisecond).
        if not await self.logouts.sync(LOGOUT_SYNC_TIMEOUT_S):
            raise Refused(html_answer(page("Try again", "<p>Sessions cannot be checked right now."
                                     "</p>", None), 503))
        now = now_ms()
        found = self.sessions.open(cookie, now, self.logouts.current)
        # A sealed cookie's key that no longer authenticates was revoked, not guessed:
        # not a failed sign-in.
        principal = self.auth.principal_of_key(found.api_key) if found is not None else None
        if found is None or principal is None:
            raise Refused(redirect("/console/login"))
        who = ("admin · all workspaces" if principal.is_admin
               else f"workspace {principal.workspace_id}")
        csrf = session.csrf_token(cookie)
        form_data = None
        if request.method == "POST":
            form_data = await form_of(request, who, csrf)
            if not session.csrf_ok(cookie, str(form_data.get("csrf", ""))):
                raise Refused(html_answer(page("Forbidden", "<p>Stale form: reload and try again."
                                         "</p>", who, csrf), 403))
        return SignedIn(found, who, csrf, form_data)

    def cookie_options(self, request: Request) -> dict[str, Any]:
        """Attributes of the session cookie, alike when it is set and when it is deleted."""
        raw = cast(aioweb.Request, request)  # faust's Request type omits aiohttp's transport
        https = self.auth.proxies.is_https(raw.scheme, raw.remote,
                                           raw.headers.getall("X-Forwarded-Proto", []))
        return {"path": "/console", "httponly": True, "samesite": "Strict",
                "secure": session.cookie_secure(self.settings.console_secure_cookies, https)}

    async def call(self, key: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """This worker's own API, with the signed-in key: the console follows its rules."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.settings.local_api_url(), timeout=60)
        response = await self._client.request(
            method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:  # aiohttp's own plain-text 404 or 405, for a path no route has
            return response.status_code, {"error": {"message": response.text[:200]}}


def cross_site(request: Request) -> bool:
    """A request its browser says came from another site's page (Sec-Fetch-Site, which
    every current browser sends). Not Origin: behind our Referrer-Policy a browser sends
    `Origin: null` from our own page, and a proxy that rewrites Host would make every real
    origin look foreign. Without the header (an old browser, a client that is no browser)
    the request is not refused."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    # An older browser (Safari before 16.4): an Origin it names that is not this host. Not
    # `null`, which our own form sends behind our Referrer-Policy; behind a proxy that
    # rewrites Host, only such browsers are refused.
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return False
    host = cast(aioweb.Request, request).host  # faust's Request type omits it
    try:
        return urlsplit(origin).netloc.lower() != (host or "").lower()
    except ValueError:  # no URL at all
        return True


async def form_of(request: Request, who: str | None = None, csrf: str | None = None) -> Any:
    """The POSTed form, or Refused (400) if it cannot be read: bytes that are not UTF-8, a
    charset nobody knows (each was a 500)."""
    try:
        return await request.post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
        raise Refused(html_answer(page("Bad request", "<p>This form could not be read.</p>",
                                       who, csrf), 400)) from None


class Page(View):
    """A console page: `ctx` is set by `streams.console.install`."""

    ctx: ClassVar[Console]


def html_answer(body: str, status: int = 200) -> aioweb.Response:
    # no-store: pages can hold a secret shown once; no-referrer: no URL of ours leaves.
    return aioweb.Response(text=body, status=status, content_type="text/html",
                           headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


#: On every console answer: no framing, no scripts or forms aimed elsewhere, no sniffing,
#: no URL of ours in a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer"}


def redirect(location: str) -> aioweb.Response:
    return aioweb.Response(status=303, headers={"Location": location})


def error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


def when(ms: Any) -> str:
    return iso_from_ms(int(ms))[:19].replace("T", " ") if ms else "—"


def guarded(handler: Any) -> Any:
    """Sign-in required; POSTs must carry the form's CSRF token."""

    async def wrapped(self: Page, request: Request, **kwargs: Any) -> aioweb.Response:
        try:
            signed_in = await self.ctx.signed_in(request)
        except Refused as refused:
            return refused.response
        if signed_in.form is not None:
            kwargs["form"] = signed_in.form
        result: aioweb.Response = await handler(self, request, key=signed_in.session.api_key,
                                                csrf=signed_in.csrf, who=signed_in.who, **kwargs)
        return result

    return wrapped
