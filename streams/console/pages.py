"""The console's pages: sign-in and out, webhooks (list, create, detail, actions), dead
letters, event types, health. Secrets appear only in the one response that creates them
(create, rotate), never in a URL."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web as aioweb
from faust.web import Request

from ..core import catalog, strictjson
from ..core.timeutil import now_ms
from ..core.urls import path_segment
from ..delivery.models import STATUSES, SUCCESS
from ..telemetry import metrics
from . import session
from .base import (
    LOGOUT_APPLY_TIMEOUT_S,
    SECURITY_HEADERS,
    Page,
    Refused,
    cross_site,
    error_text,
    form_of,
    guarded,
    html_answer,
    redirect,
    when,
)
from .html import STYLE, button, e, form, login_form, page, secret_card, sparkline, table

#: Webhooks a page of the console's list shows (about; whole API pages are read), and API
#: pages read for one when a state filter skips most.
PAGE_ROWS = 50
MAX_API_PAGES = 10
FILTER_EXAMPLE = '{"data.priority": {"$in": ["high", "urgent"]}}'

log = logging.getLogger(__name__)

class Style(Page):
    async def get(self, request: Request) -> aioweb.Response:
        return aioweb.Response(text=STYLE, content_type="text/css", headers=SECURITY_HEADERS)


class Login(Page):
    async def get(self, request: Request) -> aioweb.Response:
        return html_answer(page("Sign in", login_form(), None))

    async def post(self, request: Request) -> aioweb.Response:
        if cross_site(request):
            # Login CSRF: a page elsewhere could sign a browser in to its own workspace, and
            # what the victim did next would happen there.
            return html_answer(page("Sign in", '<p class="flash">Sign in from this page.</p>'
                               + login_form(), None), 403)
        client = self.ctx.auth.client_of(request)
        wait = self.ctx.auth.retry_after(client)
        if wait > 0:
            refused = html_answer(page("Sign in", f'<p class="flash">Too many failed sign-ins '
                                  f'from your address; try again in {int(wait) + 1} s.</p>',
                                  None), 429)
            refused.headers["Retry-After"] = str(int(wait) + 1)
            return refused
        try:
            key = str((await form_of(request)).get("api_key", "")).strip()
        except Refused as refused:
            return refused.response
        if self.ctx.auth.check_key(client, key, "console") is None:
            return html_answer(page("Sign in", '<p class="flash">That key is not valid.</p>'
                              + login_form(), None), 401)
        _, cookie = self.ctx.sessions.start(key, now_ms())
        response = redirect("/console")
        response.set_cookie(session.COOKIE, cookie, max_age=session.LIFETIME_S,
                            **self.ctx.cookie_options(request))
        return response


class Logout(Page):
    async def post(self, request: Request) -> aioweb.Response:
        """End the session on every worker, not only in this browser: a copy of the cookie
        (another machine, a backup, a proxy log) stops working too."""
        try:
            ending = (await self.ctx.signed_in(request)).session
        except Refused as refused:
            return refused.response
        try:
            # force: publish now, never attached to a stream event in context.
            await (await self.ctx.logouts_topic.send(key=ending.sid.encode(),
                                               value=str(ending.expires_ms).encode(), force=True))
        except Exception:  # the broker's errors, whichever client layer raises them
            log.exception("console sign-out could not be recorded")
            response = html_answer(page(
                "Not signed out", '<p class="flash">This browser forgot the session, but the '
                "sign-out could not be recorded: a copy of the cookie still works until it "
                "expires. Sign in and out again.</p>", None), 503)
        else:
            def ended() -> bool:
                return ending.sid in self.ctx.logouts.current or ending.expires_ms <= now_ms()

            if await self.ctx.logouts.wait_for(ended, LOGOUT_APPLY_TIMEOUT_S):
                response = redirect("/console/login")
            else:
                response = html_answer(page(
                    "Signing out", '<p class="flash">Your sign-out was recorded; this worker '
                    "has not applied it yet but will shortly.</p>", None), 503)
        response.del_cookie(session.COOKIE, **self.ctx.cookie_options(request))
        return response


class Webhooks(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        workspace = request.query.get("workspace") or None
        state = request.query.get("state") or ""
        rows: list[list[str]] = []
        cursor = request.query.get("cursor") or None  # the API's: it judges it
        # A page at a time: the admin's list of every workspace's webhooks, with one
        # summary asked per row, took 4.2 s at 1,013 webhooks and grew without end.
        for _ in range(MAX_API_PAGES):
            status, body = await self.ctx.call(key, "GET", "/v1/webhooks", params={
                k: v for k, v in {"limit": PAGE_ROWS, "cursor": cursor,
                                  "workspace_id": workspace}.items() if v is not None})
            if status != 200:
                return html_answer(page("Webhooks", f'<p class="flash">{e(error_text(body))}</p>',
                                  who, csrf), status)
            for w in body["data"]:
                if (state == "active" and not w["active"]) or (state == "disabled" and w["active"]):
                    continue
                _, stats = await self.ctx.call(
                    key, "GET", f"/internal/webhooks/{path_segment(w['id'])}/summary")
                rows.append([
                    f'<a href="/console/webhooks/{e(path_segment(w["id"]))}">{e(w["id"])}</a>',
                    e(w["workspace_id"]), e(w["url"]), e(", ".join(w["events"])),
                    '<span class="ok">active</span>' if w["active"]
                    else f'<span class="bad">disabled</span> <span class="muted">'
                         f'{e(w["disabled_reason"])}</span>',
                    e((stats or {}).get("recent_failures", "—")),
                    e(when((stats or {}).get("last_success_at"))),
                    e(when((stats or {}).get("last_failure_at")))])
            cursor = body["next_cursor"]
            if cursor is None or len(rows) >= PAGE_ROWS:
                break
        following = urlencode({"workspace": workspace or "", "state": state,
                               "cursor": cursor or ""})
        more = f'<p><a href="/console?{e(following)}">Next page</a></p>' if cursor else ""
        filters = form("/console", "", (
            f'Workspace <input name=workspace value="{e(workspace or "")}" size=14> State '
            f'<select name=state>' + "".join(
                f'<option value="{v}"{" selected" if v == state else ""}>{v or "any"}</option>'
                for v in ("", "active", "disabled")) + "</select> " + button("Filter")),
            method="get")
        listing = table(["Webhook", "Workspace", "URL", "Events", "State",
                         "Failures (last 100)", "Last success", "Last failure"], rows,
                        "No webhooks match.")
        return html_answer(page("Webhooks", filters + listing + more, who, csrf))


class Create(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        return html_answer(page("Create a webhook", _create_form(csrf, who), who, csrf))

    @guarded
    async def post(self, request: Request, key: str, csrf: str, who: str,
                   form: Any) -> aioweb.Response:
        body: dict[str, Any] = {"url": str(form.get("url", "")).strip(),
                                "events": [str(v) for v in form.getall("events", [])],
                                "active": form.get("active") == "on"}
        if form.get("workspace"):
            body["workspace_id"] = str(form["workspace"]).strip()
        if form.get("description"):
            body["description"] = str(form["description"])
        body |= _controls_from(form)
        status, created = await self.ctx.call(key, "POST", "/v1/webhooks", json=body)
        if status != 201:
            flash = f'<p class="flash">{e(error_text(created))}</p>'
            return html_answer(page("Create a webhook", flash + _create_form(csrf, who), who, csrf),
                         400)
        shown = secret_card(created["id"], created["secret"], "created")
        return html_answer(page("Webhook created", shown, who, csrf), 201)


def _controls_from(form: Any) -> dict[str, Any]:
    """Headers, filter and rate limit as typed in the form; the API judges them (and its
    400 names the field), so what does not parse here is passed on as typed."""
    body: dict[str, Any] = {}
    # Lines end at a line feed only: splitlines() also split a value at U+2028 and the like.
    lines = [line.rstrip("\r") for line in str(form.get("headers") or "").split("\n")
             if line.strip()]
    if lines:
        # A line without ':' is no header: sent as null, the API's 400 names it.
        body["headers"] = {name.strip(): value.strip() if colon else None
                           for name, colon, value in (line.partition(":") for line in lines)}
    if str(form.get("filter") or "").strip():
        try:
            body["filter"] = strictjson.loads(str(form["filter"]))  # NaN is not JSON
        except (ValueError, RecursionError):
            body["filter"] = str(form["filter"])
    if str(form.get("rate_limit") or "").strip():
        raw = str(form["rate_limit"]).strip()
        # ASCII digits only ('²' is a digit to str.isdigit, not to int()), and few of them.
        body["rate_limit"] = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 \
            else raw
    return body


def _setting(name: str, value: Any) -> str:
    """One row of a webhook's settings as the detail page shows it."""
    if name == "headers":
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    if name == "filter":
        return "none (every event of its types)" if value is None else json.dumps(value)
    if name == "rate_limit":
        return "the deployment's default" if value is None else f"{value} deliveries/s"
    return ", ".join(value) if isinstance(value, list) else str(value)


def _create_form(csrf: str, who: str) -> str:
    workspace = ('<p>Workspace <input name=workspace required></p>'
                 if who.startswith("admin") else "")
    boxes = "".join(f'<label><input type=checkbox name=events value="{t}"> {t}</label> '
                    for t in ["*", *(f"{f}.*" for f in catalog.EVENT_TYPES),
                              *sorted(catalog.ALL_EVENT_TYPES)])
    return form("/console/webhooks/new", csrf, (
        f'<div class="card">{workspace}<p>URL <input name=url size=60 required '
        f'placeholder="https://your-server.com/webhooks"></p><p>Events<br>{boxes}</p>'
        f'<p>Description <input name=description size=40></p>'
        f'<p>Custom headers, one <code>Name: value</code> a line (values are stored sealed '
        f'and shown masked)<br><textarea name=headers rows=3 cols=60></textarea></p>'
        f'<p>Payload filter (JSON, e.g. <code>{e(FILTER_EXAMPLE)}</code>)<br>'
        f'<textarea name=filter rows=2 cols=60></textarea></p>'
        f'<p>Rate limit <input name=rate_limit size=6> deliveries/s (empty: the default)</p>'
        f'<p><label><input type=checkbox '
        f'name=active checked> Active</label></p><p class="muted">The secret is generated '
        f'and shown once.</p>{button("Create webhook")}</div>'), inline=False)


class Detail(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str,
                  webhook_id: str) -> aioweb.Response:
        status, w = await self.ctx.call(key, "GET", f"/v1/webhooks/{path_segment(webhook_id)}")
        if status != 200:
            return html_answer(page("Not found", f"<p>{e(error_text(w))}</p>", who, csrf), status)
        wanted = request.query.get("status") or None
        history_status, history = await self.ctx.call(
            key, "GET", f"/v1/webhooks/{path_segment(webhook_id)}/deliveries",
            params={"limit": 50, **({"status": wanted} if wanted else {})})
        flash = request.query.get("flash")
        if flash and not session.flash_ok(csrf, flash, request.query.get("mac")):
            flash = None  # not ours: words someone else put in a link
        base = f"/console/webhooks/{path_segment(webhook_id)}"
        settings_rows = [[e(k), e(_setting(k, v))] for k, v in w.items()]
        actions = " ".join([
            form(f"{base}/test", csrf, _test_choice() + " " + button("Send test")),
            form(f"{base}/disable", csrf, button("Disable", danger=True)) if w["active"]
            else form(f"{base}/enable", csrf, button("Enable")),
            form(f"{base}/rotate-secret", csrf, button("Rotate secret")),
            form(f"{base}/replay", csrf, 'since <input name=since size=22 '
                 'placeholder="2025-10-14T00:00:00Z"> ' + button("Replay dead letters")),
            form(f"{base}/delete", csrf, button("Delete", danger=True)),
        ])
        status_filter = form(base, "", "Status <select name=status>" + "".join(
            f'<option{" selected" if s == (wanted or "") else ""}>{s}</option>'
            for s in ("", *STATUSES))
            + "</select> " + button("Filter"), method="get")
        deliveries = table(
            ["Delivery", "Event", "Time", "Attempt", "Status", "Code", "ms", "Next attempt",
             "Error"],
            [[e(d["id"]), e(d["event"]), e(d["timestamp"]), e(d["attempt"]),
              f'<span class="{"ok" if d["status"] == SUCCESS else "bad"}">'
              f'{e(d["status"])}</span>', e(d["response_code"] or ""),
              e(d["response_time_ms"]), e(d["next_attempt_at"] or ""), e(d["error"] or "")]
             for d in (history or {}).get("data", [])],
            "No deliveries yet." if history_status == 200 else error_text(history))
        body = ((f'<p class="flash" id=flash>{e(flash)}</p>' if flash else "")
                + f'<div class="card">{actions}</div>'
                + table(["Setting", "Value"], settings_rows)
                + "<h2>Recent deliveries</h2>" + status_filter + deliveries)
        return html_answer(page(f"Webhook {webhook_id}", body, who, csrf))


def _test_choice() -> str:
    """What a test sends: webhook.test, or one catalog type's example."""
    return "<select name=event>" + "".join(
        f'<option value="{e(value)}">{e(label)}</option>'
        for value, label in [("", catalog.TEST_EVENT),
                             *((t, t) for t in sorted(catalog.ALL_EVENT_TYPES))]) + "</select>"


class Action(Page):
    @guarded
    async def post(self, request: Request, key: str, csrf: str, who: str, webhook_id: str,
                   action: str, form: Any) -> aioweb.Response:
        path = f"/v1/webhooks/{path_segment(webhook_id)}"
        if action == "delete":
            status, body = await self.ctx.call(key, "DELETE", path)
            return redirect("/console") if status == 204 else redirect(
                _flashed(path.replace('/v1', '/console'), error_text(body), csrf))
        if action not in ("test", "enable", "disable", "rotate-secret", "replay"):
            return html_answer(page("Not found", "<p>No such action.</p>", who, csrf), 404)
        payload: dict[str, Any] = {}
        if action == "disable":
            payload["reason"] = "disabled in the console"
        if action == "test" and str(form.get("event", "")).strip():
            payload["event"] = str(form["event"]).strip()
        if action == "replay" and str(form.get("since", "")).strip():
            payload["since"] = str(form["since"]).strip()
        status, body = await self.ctx.call(key, "POST", f"{path}/{action}", json=payload)
        if status != 200:
            message = error_text(body)
        elif action == "test":
            message = (f"Test {body['status']}: {body['response_code'] or body['error']} "
                       f"in {body['response_time_ms']} ms")
        elif action == "rotate-secret":
            return _rotated(webhook_id, body["secret"], who, csrf)
        elif action == "replay":
            message = f"Replayed {body['replayed']} dead letter(s)"
        else:
            message = f"Webhook {action}d"
        return redirect(_flashed(f"/console/webhooks/{path_segment(webhook_id)}", message, csrf))


def _flashed(page_path: str, message: str, csrf: str) -> str:
    """`page_path` showing `message` once, signed for this session (session.flash_mac)."""
    return (f"{page_path}?flash={quote(message)}"
            f"&mac={session.flash_mac(csrf, message)}")


def _rotated(webhook_id: str, secret: str, who: str, csrf: str) -> aioweb.Response:
    """The new secret in this response only: a redirect would put it in a URL (history,
    access logs, Referer); _html's no-store keeps it out of caches."""
    shown = secret_card(webhook_id, secret, "has a new secret", note=(
        "Store it now. The previous secret keeps signing alongside it for the rotation "
        "grace period."))
    return html_answer(page("Secret rotated", shown, who, csrf))


class DeadLetters(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        query = {k: v for k, v in {"webhook_id": request.query.get("webhook") or None,
                                   "reason": request.query.get("reason") or None,
                                   "cursor": request.query.get("cursor") or None}.items() if v}
        status, body = await self.ctx.call(key, "GET", "/v1/dead-letters",
                                           params={**query, "limit": 100})
        if status != 200:
            return html_answer(page("Dead letters", f"<p>{e(error_text(body))}</p>", who, csrf),
                         status)
        filters = form("/console/dead-letters", "", (
            f'Webhook <input name=webhook value="{e(query.get("webhook_id", ""))}"> Reason '
            f'<input name=reason value="{e(query.get("reason", ""))}"> ' + button("Filter")),
            method="get")
        rows = [[f'<a href="/console/webhooks/{e(path_segment(d["webhook_id"]))}">'
                 f'{e(d["webhook_id"])}</a>', e(d["delivery_id"]), e(d["event"]),
                 e(d["reason"]), e(d["attempts"]), e(d["error"] or ""), e(d["dead_at"]),
                 "yes" if d["replayed"] else ""] for d in body["data"]]  # newest first
        older = ""
        if body["next_cursor"]:
            params = urlencode({k: v for k, v in {
                "webhook": query.get("webhook_id"), "reason": query.get("reason"),
                "cursor": body["next_cursor"]}.items() if v})
            older = f'<p><a href="/console/dead-letters?{e(params)}">Older</a></p>'
        return html_answer(page("Dead letters", filters + table(
            ["Webhook", "Delivery", "Event", "Reason", "Attempts", "Last error", "Dead at",
             "Replayed"], rows, "No dead letters.") + older, who, csrf))


class EventTypes(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        status, body = await self.ctx.call(key, "GET", "/v1/event-types")
        if status != 200:
            return html_answer(page("Event types", f"<p>{e(error_text(body))}</p>", who, csrf),
                               status)
        rows = [[f"<code>{e(t['type'])}</code>", e(t["description"]),
                 f"<details><summary>example data</summary><pre>"
                 f"{e(json.dumps(t['example'], indent=2, ensure_ascii=False))}</pre></details>"]
                for t in body["data"]]
        intro = ('<p class="muted">What a webhook can subscribe to. The JSON Schema of each '
                 "type's data is in <code>GET /v1/event-types</code>.</p>")
        return html_answer(page("Event types", intro + table(
            ["Type", "Description", "Example"], rows, "No event types."), who, csrf))


class Health(Page):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        lag_rows, backlog_rows = [], []
        prefix = self.ctx.settings.topic_prefix  # the deployment's, not the reader's concern
        for metric in metrics.LAG.collect():
            for s in metric.samples:
                lag_rows.append([e(s.labels["group"].removeprefix(prefix)),
                                 e(s.labels["topic"].removeprefix(prefix)), e(int(s.value))])
        for metric in metrics.RETRY_BACKLOG.collect():
            for s in metric.samples:
                backlog_rows.append([e(s.labels["topic"].removeprefix(prefix)),
                                     e(int(s.value))])
        rates = metrics.THROUGHPUT.rates()
        charts = (sparkline([r[1] for r in rates], label="Deliveries per second (this worker)")
                  + sparkline([r[2] for r in rates], label="Success ratio"))
        body = (f'<p class="muted">Sampled every few seconds; as of '
                f'{e(time.strftime("%H:%M:%S"))}.</p>{charts}<h2>Consumer lag per stage</h2>'
                + table(["Group", "Topic", "Waiting"], lag_rows, "Measuring…")
                + "<h2>Retry backlog</h2>" + table(["Retry topic", "Jobs"], backlog_rows,
                                                   "Measuring…"))
        return html_answer(page("Pipeline health", body, who, csrf))


