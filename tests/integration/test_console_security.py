"""The console's secrets and sessions, over plain HTTP against live workers.

A rotated secret never travels in a URL; sessions are sealed under a key of their own, not
the master key that seals webhook secrets; signing out ends the session on every worker;
the cookie is `Secure` when the request came over https (directly or via a trusted proxy),
or always, or never, as configured.

Three workers share one deployment (and so one master key and one logouts topic):
worker1 decides `Secure` per request (HOOKSTREAM_TRUSTED_PROXIES=127.0.0.1), worker2 always
sets it, worker3 never. Requests from 127.0.0.2 (still loopback) come from an untrusted peer.
"""

from __future__ import annotations

import base64
import html
import http.client
import json
import re
import time
from dataclasses import dataclass
from http.cookies import Morsel, SimpleCookie
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from streams.console import session
from streams.console.pages import PAGE_ROWS
from streams.core.secretbox import SecretBox, parse_keys
from streams.core.signing import verify
from streams.kafka import topics

from ..support.api import call
from ..support.pipeline import Deployment
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

UNTRUSTED = "127.0.0.2"


#: Three workers, one per Secure-cookie setting; X-Forwarded-* believed from loopback.
DEPLOYMENT: DeploymentSpec = {
    "workers": [{"HOOKSTREAM_CONSOLE_SECURE_COOKIES": secure} for secure in ("auto", "1", "0")],
    "env": {"HOOKSTREAM_TRUSTED_PROXIES": "127.0.0.1"}}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def session_cookie(self) -> Morsel[str] | None:
        """The session cookie this reply sets (or deletes), with its attributes."""
        for header in self.headers.get_all("Set-Cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            if session.COOKIE in jar:
                return jar[session.COOKIE]
        return None


def _http(port: int, method: str, path: str, *, cookie: str | None = None,
          form: dict[str, str] | None = None, headers: dict[str, str] | None = None,
          source: str = "127.0.0.1") -> Reply:
    """One request, redirects not followed, from the `source` loopback address."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    sent = dict(headers or {})
    if cookie is not None:
        # As a browser replays it: the value exactly as Set-Cookie carried it.
        sent["Cookie"] = f"{session.COOKIE}={cookie}"
    data = urlencode(form).encode() if form is not None else None
    if data is not None:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        conn.close()


def _sign_in(port: int, key: str, headers: dict[str, str] | None = None,
             source: str = "127.0.0.1") -> tuple[str, Reply]:
    """(the cookie value as a browser sends it back, the sign-in reply)."""
    reply = _http(port, "POST", "/console/login", form={"api_key": key}, headers=headers,
                  source=source)
    assert reply.status == 303 and reply.location == "/console", (reply.status, reply.body)
    morsel = reply.session_cookie()
    assert morsel is not None and morsel.value
    return morsel.coded_value, reply


def _csrf(html: str) -> str:
    found = re.search(r'name=csrf value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _signed_in_page(port: int, cookie: str, path: str = "/console") -> Reply:
    reply = _http(port, "GET", path, cookie=cookie)
    assert reply.status == 200, (reply.status, reply.location)
    return reply


def _refused(reply: Reply) -> bool:
    return reply.status == 303 and reply.location == "/console/login"


def _links(html: str) -> list[str]:
    return re.findall(r'(?:href|action|src)=(?:"([^"]*)"|\'([^\']*)\'|([^\s>]+))', html)


def _urls(html: str) -> list[str]:
    return ["".join(groups) for groups in _links(html)]


def _admin(dep: Deployment) -> str:
    return dep.env["HOOKSTREAM_ADMIN_KEY"]


# --- a rotated secret ------------------------------------------------------------------


def test_a_rotated_secret_is_shown_once_and_never_in_a_url(dep: Deployment) -> None:
    port = dep.workers[0].port
    created = call(port, "POST", "/v1/webhooks", _admin(dep), {
        "workspace_id": "ws_rotate", "url": dep.receiver.url("/rotated"), "events": ["task.*"]})
    assert created.status == 201, created.body
    webhook = created.body["id"]
    cookie, _ = _sign_in(port, _admin(dep))
    detail = f"/console/webhooks/{webhook}"
    csrf = _csrf(_signed_in_page(port, cookie, detail).body)

    rotated = _http(port, "POST", f"{detail}/rotate-secret", cookie=cookie, form={"csrf": csrf})

    assert rotated.status == 200, (rotated.status, rotated.location)
    assert rotated.location is None
    assert rotated.headers.get("Cache-Control") == "no-store"
    shown = re.search(r"<code id=secret>(whsec_[^<]+)</code>", rotated.body)
    assert shown, rotated.body
    secret = shown.group(1)
    assert secret != created.body["secret"]
    assert rotated.body.count(secret) == 1
    forms = (secret, quote(secret, safe=""), quote(secret))
    urls = _urls(rotated.body)
    assert f"/console/webhooks/{webhook}" in urls
    assert not [u for u in urls if any(f in u for f in forms)]

    # Every page it links to: none redirects to, links to or shows the secret again.
    for url in {u for u in urls if u.startswith("/console") and u != "/console/logout"}:
        reply = _http(port, "GET", url, cookie=cookie)
        assert reply.status == 200, (url, reply.status, reply.location)
        assert not any(f in reply.body for f in forms), url

    # It is the webhook's real new secret: a test delivery (sent before the API answers)
    # verifies under it.
    assert call(port, "POST", f"/v1/webhooks/{webhook}/test", _admin(dep)).status == 200
    [delivery] = dep.receiver.at("/rotated")
    assert verify(delivery.body, delivery.headers["x-webhook-signature"], secret)

    # Nor does any worker write it in its log (access log lines included).
    for worker in dep.workers:
        assert not any(f in worker.log_text() for f in forms), worker.name


# --- what a hostile browser or form sends ----------------------------------------------------


def _raw_post(port: int, path: str, cookie: str, body: bytes,
              content_type: str = "application/x-www-form-urlencoded") -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={
            "Cookie": f"{session.COOKIE}={cookie}", "Content-Type": content_type})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        conn.close()


def test_hostile_forms_and_paths_get_an_answer_not_a_500(dep: Deployment) -> None:
    """Each of these answered 500 ('Server got itself in trouble'), and an id with a '/'
    made the console act on another webhook."""
    port = dep.workers[0].port
    logged_before = {w.name: len(w.log_text()) for w in dep.workers}
    created = call(port, "POST", "/v1/webhooks", _admin(dep), {
        "workspace_id": "ws_hostile", "url": dep.receiver.url("/hostile"), "events": ["*"]})
    webhook = created.body["id"]
    cookie, _ = _sign_in(port, _admin(dep))
    csrf = _csrf(_signed_in_page(port, cookie).body)
    new = {"csrf": csrf, "workspace": "ws_hostile", "url": dep.receiver.url("/h2"),
           "events": "*"}
    for field, value in [("rate_limit", "²"), ("rate_limit", "9" * 5000),
                         ("filter", '{"data.x": NaN}'), ("filter", "[" * 100_000),
                         ("headers", "justaname"), ("headers", "X-A: 1\u2028X-B: 2")]:
        reply = _http(port, "POST", "/console/webhooks/new", cookie=cookie,
                      form={**new, field: value})
        assert reply.status == 400, (field, value[:20], reply.status)
    for path in (f"/console/webhooks/nope%2F..%2F{webhook}/disable",
                 "/console/webhooks/..%2F..%2Fv1%2Fevent-types/disable"):
        reply = _http(port, "POST", path, cookie=cookie, form={"csrf": csrf})
        assert reply.status in (303, 404) and "disabled" not in (reply.location or ""), path
    assert _webhook_state(dep, webhook)["active"] is True
    for path in ("/console/webhooks/a%2Fb", f"/console/webhooks/{webhook}%2Fdeliveries",
                 "/console/webhooks/..%2F..%2Fv1%2Fevent-types"):
        assert _http(port, "GET", path, cookie=cookie).status == 404, path
    assert _http(port, "POST", f"/console/webhooks/{webhook}/disable", cookie=cookie,
                 form={"csrf": "é" * 32}).status == 403
    detail = f"/console/webhooks/{webhook}/disable"
    assert _raw_post(port, detail, cookie, f"csrf={csrf}&x=".encode() + b"\xff\xfe"
                     ).status in (400, 403)
    assert _raw_post(port, detail, cookie, f"csrf={csrf}".encode(),
                     "application/x-www-form-urlencoded; charset=bogus").status == 400
    assert _webhook_state(dep, webhook)["active"] is True
    for worker in dep.workers:
        logged = worker.log_text()[logged_before[worker.name]:]
        assert "Traceback" not in logged, logged[-3000:]


def test_a_flash_message_is_shown_only_when_the_console_wrote_it(dep: Deployment) -> None:
    """Any link could put its words on our page: `?flash=Session expired, sign in at ...`."""
    port = dep.workers[0].port
    webhook = call(port, "POST", "/v1/webhooks", _admin(dep), {
        "workspace_id": "ws_flash", "url": dep.receiver.url("/flash"), "events": ["*"]}
                   ).body["id"]
    cookie, _ = _sign_in(port, _admin(dep))
    detail = f"/console/webhooks/{webhook}"
    phishing = "Session expired. Sign in again at https://evil.example/login"
    shown = _http(port, "GET", f"{detail}?flash={quote(phishing)}&mac={'0' * 32}",
                  cookie=cookie)
    assert shown.status == 200 and "evil.example" not in shown.body
    csrf = _csrf(shown.body)
    done = _http(port, "POST", f"{detail}/disable", cookie=cookie, form={"csrf": csrf})
    assert done.status == 303 and done.location is not None
    assert "Webhook disabled" in _http(port, "GET", done.location, cookie=cookie).body
    other, _ = _sign_in(port, _admin(dep))  # the same link in another session: not shown
    assert "Webhook disabled" not in _http(port, "GET", done.location, cookie=other).body


def test_the_webhook_list_is_shown_a_page_at_a_time(dep: Deployment) -> None:
    """The admin's list read every workspace's webhooks, with a summary asked per row: 4.2 s
    at 1,013 webhooks, and more with every one."""
    port = dep.workers[0].port
    made = {call(port, "POST", "/v1/webhooks", _admin(dep), {
        "workspace_id": "ws_paged", "url": dep.receiver.url(f"/paged/{n}"),
        "events": ["task.created"]}).body["id"] for n in range(PAGE_ROWS + 7)}
    cookie, _ = _sign_in(port, _admin(dep))
    seen: set[str] = set()
    page_path: str | None = "/console?workspace=ws_paged"
    pages = 0
    while page_path is not None:
        listed = _signed_in_page(port, cookie, page_path).body
        rows = set(re.findall(r'<a href="/console/webhooks/(wh_[0-9a-f]+)">', listed))
        assert 0 < len(rows) < 2 * PAGE_ROWS and not rows & seen, (pages, len(rows))
        seen |= rows
        pages += 1
        following = re.search(r'<a href="(/console\?[^"]+)">Next page</a>', listed)
        page_path = html.unescape(following.group(1)) if following else None
    assert seen == made and pages == 2


def test_a_sign_in_from_another_site_is_refused(dep: Deployment) -> None:
    """A page elsewhere could sign a browser in to the attacker's workspace (login CSRF)."""
    port = dep.workers[0].port
    for headers in ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
                    {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example"}):  # an older browser: no Sec-Fetch-*
        reply = _http(port, "POST", "/console/login", form={"api_key": _admin(dep)},
                      headers=headers)
        assert reply.status == 403 and reply.session_cookie() is None, headers
    # Our own page's form: Origin is null behind our Referrer-Policy, and a proxy may have
    # rewritten Host; an old browser sends no Sec-Fetch-Site at all.
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": "null"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": "https://hooks.example.com"},
                    {"Origin": "null"}, {"Origin": f"http://127.0.0.1:{port}"}, {}):
        _sign_in(port, _admin(dep), headers=headers)
    for path in ("/console/login", "/console/style.css"):
        got = _http(port, "GET", path)
        assert got.headers.get("X-Content-Type-Options") == "nosniff", path
    policy = _http(port, "GET", "/console/login").headers["Content-Security-Policy"]
    assert "form-action 'self'" in policy and "frame-ancestors 'none'" in policy


# --- the admin's sign-in, and forms whose CSRF token is present but wrong ------------------


def _webhook_state(dep: Deployment, webhook: str) -> dict[str, Any]:
    got = call(dep.workers[0].port, "GET", f"/v1/webhooks/{webhook}", _admin(dep))
    assert got.status == 200, got.body
    return dict(got.body)


def test_the_admin_signs_in_to_every_workspace_and_a_wrong_csrf_token_changes_nothing(
        dep: Deployment) -> None:
    port = dep.workers[0].port
    hooks = {}
    for ws in ("ws_admin_a", "ws_admin_b"):
        created = call(port, "POST", "/v1/webhooks", _admin(dep), {
            "workspace_id": ws, "url": dep.receiver.url(f"/{ws}"), "events": ["task.*"]})
        assert created.status == 201, created.body
        hooks[ws] = created.body["id"]

    cookie, _ = _sign_in(port, _admin(dep))
    assert "admin · all workspaces" in _signed_in_page(port, cookie).body
    for ws, webhook in hooks.items():  # by workspace: the list is paged, others' come first
        assert webhook in _signed_in_page(port, cookie, f"/console?workspace={ws}").body, ws

    target = hooks["ws_admin_a"]
    action = f"/console/webhooks/{target}/disable"
    right = _csrf(_signed_in_page(port, cookie, f"/console/webhooks/{target}").body)
    other_cookie, _ = _sign_in(port, _admin(dep))
    others = _csrf(_signed_in_page(port, other_cookie).body)
    flipped = right[:-1] + ("0" if right[-1] != "0" else "1")
    for wrong in (flipped, right.upper(), others, right + "0", right[:-1], " " + right):
        refused = _http(port, "POST", action, cookie=cookie, form={"csrf": wrong})
        assert refused.status == 403, (wrong, refused.status, refused.location)
        assert _webhook_state(dep, target)["active"] is True, wrong
    # The same form with the session's own token does what it says.
    done = _http(port, "POST", action, cookie=cookie, form={"csrf": right})
    assert done.status == 303, (done.status, done.body)
    assert _webhook_state(dep, target)["active"] is False
    assert _webhook_state(dep, hooks["ws_admin_b"])["active"] is True


# --- sessions under their own key --------------------------------------------------------


def test_a_cookie_sealed_with_the_master_key_is_refused(dep: Deployment) -> None:
    port = dep.workers[0].port
    master = SecretBox(parse_keys(dep.env["HOOKSTREAM_MASTER_KEY"]))
    genuine, _ = _sign_in(port, _admin(dep))
    assert _signed_in_page(port, genuine)  # the control: a real session works

    # Today's format until this change: the master box sealing {"key", "exp"}.
    old_payload = json.dumps({"key": _admin(dep), "exp": int(time.time()) + 3600})
    old = base64.urlsafe_b64encode(master.seal(old_payload).encode()).decode()
    assert _refused(_http(port, "GET", "/console", cookie=f'"{old}"'))

    # The genuine session's own payload, sealed with the master box instead of its own key.
    sealed = session.decode_cookie(SimpleCookie(f"{session.COOKIE}={genuine}")[
        session.COOKIE].value)
    payload = master.derive(session.LABEL).open(sealed)
    forged = session.encode_cookie(master.seal(payload))
    assert _refused(_http(port, "GET", "/console", cookie=forged))


# --- signing out -----------------------------------------------------------------------


def test_signing_out_ends_the_session_on_every_worker(dep: Deployment) -> None:
    first, second = dep.workers[0].port, dep.workers[1].port
    webhook = call(first, "POST", "/v1/webhooks", _admin(dep), {
        "workspace_id": "ws_logout", "url": dep.receiver.url("/logout"),
        "events": ["task.*"]}).body["id"]
    logouts = dep.reader(topics.CONSOLE_LOGOUTS)
    cookie, _ = _sign_in(first, _admin(dep))
    other, _ = _sign_in(first, _admin(dep))  # another session of the same key
    csrf = _csrf(_signed_in_page(first, cookie).body)
    assert _signed_in_page(second, cookie)

    out = _http(first, "POST", "/console/logout", cookie=cookie, form={"csrf": csrf})

    assert _refused(out)
    deleted = out.session_cookie()
    assert deleted is not None and deleted.value == "" and deleted["max-age"] == "0"
    # Replaying the copied cookie: refused at once by the worker that signed it out...
    assert _refused(_http(first, "GET", "/console", cookie=cookie))
    assert _refused(_http(first, "POST", f"/console/webhooks/{webhook}/disable", cookie=cookie,
                          form={"csrf": csrf}))
    # ...and by another worker, which catches up with the logouts topic before it answers.
    assert _refused(_http(second, "GET", "/console", cookie=cookie))
    assert call(first, "GET", f"/v1/webhooks/{webhook}", _admin(dep)).body["active"] is True

    # Only that session ended.
    assert _signed_in_page(first, other) and _signed_in_page(second, other)
    again, _ = _sign_in(second, _admin(dep))
    assert _signed_in_page(first, again)

    # The topic holds the session id and its expiry, nothing secret.
    box = SecretBox(parse_keys(dep.env["HOOKSTREAM_MASTER_KEY"])).derive(session.LABEL)
    sealed = session.decode_cookie(SimpleCookie(f"{session.COOKIE}={cookie}")[
        session.COOKIE].value)
    payload = json.loads(box.open(sealed))
    sid = payload["sid"].encode()
    logouts.wait_for(lambda ms: any(m.key() == sid for m in ms), what="the sign-out")
    [record] = [m for m in logouts.messages if m.key() == sid]
    assert int(record.value()) == payload["exp"]
    for message in logouts.messages:
        assert _admin(dep).encode() not in message.value() + message.key()
        assert cookie.encode() not in message.value() + message.key()


# --- Secure cookies ----------------------------------------------------------------------

HTTPS = {"X-Forwarded-Proto": "https"}


def _secure(dep: Deployment, port: int, **options: Any) -> bool:
    """Does signing in with these request options get a `Secure` session cookie?"""
    _, reply = _sign_in(port, _admin(dep), **options)
    morsel = reply.session_cookie()
    assert morsel is not None
    return bool(morsel["secure"])


def test_auto_secure_cookie_follows_https_from_a_trusted_proxy_only(dep: Deployment) -> None:
    port = dep.workers[0].port
    assert _secure(dep, port, headers=HTTPS) is True
    assert _secure(dep, port) is False
    assert _secure(dep, port, headers={"X-Forwarded-Proto": "http"}) is False
    assert _secure(dep, port, headers=HTTPS, source=UNTRUSTED) is False
    # Signing out over the same proxy deletes the cookie with the same attributes.
    cookie, _ = _sign_in(port, _admin(dep), headers=HTTPS)
    csrf = _csrf(_signed_in_page(port, cookie).body)
    out = _http(port, "POST", "/console/logout", cookie=cookie, form={"csrf": csrf},
                headers=HTTPS)
    deleted = out.session_cookie()
    assert _refused(out) and deleted is not None and deleted["secure"] is True
    assert deleted["httponly"] is True and deleted["samesite"] == "Strict"


@pytest.mark.parametrize(("worker", "expected"), [(1, True), (2, False)],
                         ids=["always (1)", "never (0)"])
def test_configured_secure_cookie_ignores_the_request(dep: Deployment, worker: int,
                                                      expected: bool) -> None:
    port = dep.workers[worker].port
    for options in ({}, {"headers": HTTPS}, {"headers": HTTPS, "source": UNTRUSTED}):
        assert _secure(dep, port, **options) is expected, options
