"""Console pages. Each reads or writes through this worker's own HTTP API with the signed-in
key, so the console enforces exactly the API's rules."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
from aiohttp import web as aioweb
from faust.web import Request, View

from .. import catalog, metrics
from ..app import app, settings
from ..control.apikeys import authenticate
from ..tables import api_keys
from ..timeutil import iso_from_ms
from . import session
from .html import STYLE, button, e, form, page, sparkline, table

box = settings.secret_box()
_client: httpx.AsyncClient | None = None


class Signin(Exception):
    """No valid session: go to the sign-in page."""


def _session(request: Request) -> tuple[str, str, str]:
    """(api key, cookie, who) of a signed-in request, else Signin."""
    cookie = request.cookies.get(session.COOKIE)
    key = session.open_session(box, cookie)
    principal = authenticate(key, api_keys.current, settings.admin_key) if key else None
    if principal is None or cookie is None or key is None:
        raise Signin
    who = "admin · all workspaces" if principal.is_admin else f"workspace {principal.workspace_id}"
    return key, cookie, who


async def _api(key: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.web_port}",
                                    timeout=60)
    response = await _client.request(method, path, headers={"Authorization": f"Bearer {key}"},
                                     **kwargs)
    return response.status_code, (response.json() if response.content else None)


def _html(body: str, status: int = 200) -> aioweb.Response:
    return aioweb.Response(text=body, status=status, content_type="text/html",
                           headers={"Content-Security-Policy": "default-src 'self'",
                                    "X-Frame-Options": "DENY", "Cache-Control": "no-store"})


def _redirect(location: str) -> aioweb.Response:
    return aioweb.Response(status=303, headers={"Location": location})


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


def _when(ms: Any) -> str:
    return iso_from_ms(int(ms))[:19].replace("T", " ") if ms else "—"


def guarded(handler: Any) -> Any:
    """Sign-in required; POSTs must carry the form's CSRF token."""

    async def wrapped(self: View, request: Request, **kwargs: Any) -> aioweb.Response:
        try:
            key, cookie, who = _session(request)
        except Signin:
            return _redirect("/console/login")
        if request.method == "POST":
            form_data = await request.post()
            if not session.csrf_ok(cookie, str(form_data.get("csrf", ""))):
                return _html(page("Forbidden", "<p>Stale form: reload and try again.</p>",
                                  who, session.csrf_token(cookie)), 403)
            kwargs["form"] = form_data
        result: aioweb.Response = await handler(self, request, key=key, csrf=session.csrf_token(
            cookie), who=who, **kwargs)
        return result

    return wrapped


@app.page("/console/style.css")
class Style(View):
    async def get(self, request: Request) -> aioweb.Response:
        return aioweb.Response(text=STYLE, content_type="text/css")


@app.page("/console/login")
class Login(View):
    async def get(self, request: Request) -> aioweb.Response:
        return _html(page("Sign in", _login_form(), None))

    async def post(self, request: Request) -> aioweb.Response:
        key = str((await request.post()).get("api_key", "")).strip()
        if authenticate(key, api_keys.current, settings.admin_key) is None:
            return _html(page("Sign in", '<p class="flash">That key is not valid.</p>'
                              + _login_form(), None), 401)
        response = _redirect("/console")
        response.set_cookie(session.COOKIE, session.seal(box, key), httponly=True,
                            samesite="Strict", path="/console", max_age=session.LIFETIME_S)
        return response


def _login_form() -> str:
    return ('<div class="card"><p>Sign in with your workspace\'s API key, or the admin key.'
            '</p><form method=post action="/console/login"><input type=password name=api_key '
            'size=60 placeholder="hsk_…" autocomplete=off autofocus> <button>Sign in</button>'
            '</form></div>')


@app.page("/console/logout")
class Logout(View):
    @guarded
    async def post(self, request: Request, **_: Any) -> aioweb.Response:
        response = _redirect("/console/login")
        response.del_cookie(session.COOKIE, path="/console")
        return response


@app.page("/console")
class Webhooks(View):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        workspace = request.query.get("workspace") or None
        state = request.query.get("state") or ""
        rows: list[list[str]] = []
        cursor = None
        while True:
            status, body = await _api(key, "GET", "/v1/webhooks", params={
                k: v for k, v in {"limit": 100, "cursor": cursor,
                                  "workspace_id": workspace}.items() if v is not None})
            if status != 200:
                return _html(page("Webhooks", f'<p class="flash">{e(_error_text(body))}</p>',
                                  who, csrf), status)
            for w in body["data"]:
                if (state == "active" and not w["active"]) or (state == "disabled" and w["active"]):
                    continue
                _, stats = await _api(key, "GET", f"/internal/webhooks/{quote(w['id'])}/summary")
                rows.append([
                    f'<a href="/console/webhooks/{e(quote(w["id"]))}">{e(w["id"])}</a>',
                    e(w["workspace_id"]), e(w["url"]), e(", ".join(w["events"])),
                    '<span class="ok">active</span>' if w["active"]
                    else f'<span class="bad">disabled</span> <span class="muted">'
                         f'{e(w["disabled_reason"])}</span>',
                    e((stats or {}).get("recent_failures", "—")),
                    e(_when((stats or {}).get("last_success_at"))),
                    e(_when((stats or {}).get("last_failure_at")))])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        filters = form("/console", "", (
            f'Workspace <input name=workspace value="{e(workspace or "")}" size=14> State '
            f'<select name=state>' + "".join(
                f'<option value="{v}"{" selected" if v == state else ""}>{v or "any"}</option>'
                for v in ("", "active", "disabled")) + "</select> " + button("Filter")),
            method="get")
        listing = table(["Webhook", "Workspace", "URL", "Events", "State",
                         "Failures (last 100)", "Last success", "Last failure"], rows,
                        "No webhooks match.")
        return _html(page("Webhooks", filters + listing, who, csrf))


@app.page("/console/webhooks/new")
class Create(View):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        return _html(page("Create a webhook", _create_form(csrf, who), who, csrf))

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
        status, created = await _api(key, "POST", "/v1/webhooks", json=body)
        if status != 201:
            flash = f'<p class="flash">{e(_error_text(created))}</p>'
            return _html(page("Create a webhook", flash + _create_form(csrf, who), who, csrf),
                         400)
        shown = (f'<div class="card"><p>Webhook <a href="/console/webhooks/{e(created["id"])}">'
                 f'{e(created["id"])}</a> created.</p><p>Its signing secret, shown only now: '
                 f'<code id=secret>{e(created["secret"])}</code></p></div>')
        return _html(page("Webhook created", shown, who, csrf), 201)


def _create_form(csrf: str, who: str) -> str:
    workspace = ('<p>Workspace <input name=workspace required></p>'
                 if who.startswith("admin") else "")
    boxes = "".join(f'<label><input type=checkbox name=events value="{t}"> {t}</label> '
                    for t in ["*", *(f"{f}.*" for f in catalog.EVENT_TYPES),
                              *sorted(catalog.ALL_EVENT_TYPES)])
    return form("/console/webhooks/new", csrf, (
        f'<div class="card">{workspace}<p>URL <input name=url size=60 required '
        f'placeholder="https://your-server.com/webhooks"></p><p>Events<br>{boxes}</p>'
        f'<p>Description <input name=description size=40></p><p><label><input type=checkbox '
        f'name=active checked> Active</label></p><p class="muted">The secret is generated '
        f'and shown once.</p>{button("Create webhook")}</div>'), inline=False)


@app.page("/console/webhooks/{webhook_id}")
class Detail(View):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str,
                  webhook_id: str) -> aioweb.Response:
        status, w = await _api(key, "GET", f"/v1/webhooks/{quote(webhook_id)}")
        if status != 200:
            return _html(page("Not found", f"<p>{e(_error_text(w))}</p>", who, csrf), status)
        wanted = request.query.get("status") or None
        _, history = await _api(key, "GET", f"/v1/webhooks/{quote(webhook_id)}/deliveries",
                                params={"limit": 50, **({"status": wanted} if wanted else {})})
        flash = request.query.get("flash")
        base = f"/console/webhooks/{quote(webhook_id)}"
        settings_rows = [[e(k), e(", ".join(v) if isinstance(v, list) else v)]
                         for k, v in w.items()]
        actions = " ".join([
            form(f"{base}/test", csrf, button("Send test")),
            form(f"{base}/disable", csrf, button("Disable", danger=True)) if w["active"]
            else form(f"{base}/enable", csrf, button("Enable")),
            form(f"{base}/rotate-secret", csrf, button("Rotate secret")),
            form(f"{base}/replay", csrf, 'since <input name=since size=22 '
                 'placeholder="2025-10-14T00:00:00Z"> ' + button("Replay dead letters")),
            form(f"{base}/delete", csrf, button("Delete", danger=True)),
        ])
        status_filter = form(base, "", "Status <select name=status>" + "".join(
            f'<option{" selected" if s == (wanted or "") else ""}>{s}</option>'
            for s in ("", "success", "retrying", "dead", "disabled", "failed"))
            + "</select> " + button("Filter"), method="get")
        deliveries = table(
            ["Delivery", "Event", "Time", "Attempt", "Status", "Code", "ms", "Next attempt",
             "Error"],
            [[e(d["id"]), e(d["event"]), e(d["timestamp"]), e(d["attempt"]),
              f'<span class="{"ok" if d["status"] == "success" else "bad"}">'
              f'{e(d["status"])}</span>', e(d["response_code"] or ""),
              e(d["response_time_ms"]), e(d["next_attempt_at"] or ""), e(d["error"] or "")]
             for d in (history or {}).get("data", [])], "No deliveries yet.")
        body = ((f'<p class="flash" id=flash>{e(flash)}</p>' if flash else "")
                + f'<div class="card">{actions}</div>'
                + table(["Setting", "Value"], settings_rows)
                + "<h2>Recent deliveries</h2>" + status_filter + deliveries)
        return _html(page(f"Webhook {webhook_id}", body, who, csrf))


@app.page("/console/webhooks/{webhook_id}/{action}")
class Action(View):
    @guarded
    async def post(self, request: Request, key: str, csrf: str, who: str, webhook_id: str,
                   action: str, form: Any) -> aioweb.Response:
        path = f"/v1/webhooks/{quote(webhook_id)}"
        if action == "delete":
            status, body = await _api(key, "DELETE", path)
            return _redirect("/console") if status == 204 else _redirect(
                f"{path.replace('/v1', '/console')}?flash={quote(_error_text(body))}")
        if action not in ("test", "enable", "disable", "rotate-secret", "replay"):
            return _html(page("Not found", "<p>No such action.</p>", who, csrf), 404)
        payload: dict[str, Any] = {}
        if action == "disable":
            payload["reason"] = "disabled in the console"
        if action == "replay" and str(form.get("since", "")).strip():
            payload["since"] = str(form["since"]).strip()
        status, body = await _api(key, "POST", f"{path}/{action}", json=payload)
        if status != 200:
            message = _error_text(body)
        elif action == "test":
            message = (f"Test {body['status']}: {body['response_code'] or body['error']} "
                       f"in {body['response_time_ms']} ms")
        elif action == "rotate-secret":
            message = f"New secret, shown only now: {body['secret']}"
        elif action == "replay":
            message = f"Replayed {body['replayed']} dead letter(s)"
        else:
            message = f"Webhook {action}d"
        return _redirect(f"/console/webhooks/{quote(webhook_id)}?flash={quote(message)}")


@app.page("/console/dead-letters")
class DeadLetters(View):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        query = {k: v for k, v in {"webhook_id": request.query.get("webhook") or None,
                                   "reason": request.query.get("reason") or None}.items() if v}
        status, body = await _api(key, "GET", "/v1/dead-letters", params=query)
        if status != 200:
            return _html(page("Dead letters", f"<p>{e(_error_text(body))}</p>", who, csrf),
                         status)
        filters = form("/console/dead-letters", "", (
            f'Webhook <input name=webhook value="{e(query.get("webhook_id", ""))}"> Reason '
            f'<input name=reason value="{e(query.get("reason", ""))}"> ' + button("Filter")),
            method="get")
        rows = [[f'<a href="/console/webhooks/{e(quote(d["webhook_id"]))}">'
                 f'{e(d["webhook_id"])}</a>', e(d["delivery_id"]), e(d["event"]),
                 e(d["reason"]), e(d["attempts"]), e(d["error"] or ""), e(d["dead_at"]),
                 "yes" if d["replayed"] else ""] for d in reversed(body["data"])]
        return _html(page("Dead letters", filters + table(
            ["Webhook", "Delivery", "Event", "Reason", "Attempts", "Last error", "Dead at",
             "Replayed"], rows, "No dead letters."), who, csrf))


@app.page("/console/health")
class Health(View):
    @guarded
    async def get(self, request: Request, key: str, csrf: str, who: str) -> aioweb.Response:
        lag_rows, backlog_rows = [], []
        for metric in metrics.LAG.collect():
            for s in metric.samples:
                topic = s.labels["topic"].removeprefix(settings.topic_prefix)
                lag_rows.append([e(s.labels["group"].removeprefix(settings.topic_prefix)),
                                 e(topic), e(int(s.value))])
        for metric in metrics.RETRY_BACKLOG.collect():
            for s in metric.samples:
                backlog_rows.append([e(s.labels["topic"]), e(int(s.value))])
        rates = metrics.THROUGHPUT.rates()
        charts = (sparkline([r[1] for r in rates], label="Deliveries per second (this worker)")
                  + sparkline([r[2] for r in rates], label="Success ratio"))
        body = (f'<p class="muted">Sampled every few seconds; as of '
                f'{e(time.strftime("%H:%M:%S"))}.</p>{charts}<h2>Consumer lag per stage</h2>'
                + table(["Group", "Topic", "Waiting"], lag_rows, "Measuring…")
                + "<h2>Retry backlog</h2>" + table(["Retry topic", "Jobs"], backlog_rows,
                                                   "Measuring…"))
        return _html(page("Pipeline health", body, who, csrf))


