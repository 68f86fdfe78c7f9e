"""Tiny HTML helpers for the console: escaping by default, one layout, no JavaScript."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from ..core.urls import path_segment

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:18px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header .who{margin-left:auto;opacity:.8}
main{padding:20px 24px;max-width:1200px}h1{font-size:20px;margin:4px 0 14px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 18px}
th,td{border-bottom:1px solid #e3e6eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}.ok{color:#16794c}.bad{color:#b3261e}.muted{color:#6b7280}
form.inline{display:inline}button,input,select{font:inherit;padding:4px 8px}
button{background:#2f5bd3;color:#fff;border:0;border-radius:4px;cursor:pointer}
button.danger{background:#b3261e}.card{background:#fff;padding:12px 16px;margin:10px 0;
border:1px solid #e3e6eb;border-radius:6px}.flash{background:#fff7d6;border:1px solid #f0d36b;
padding:8px 12px;margin:8px 0}code{background:#eef1f5;padding:1px 4px;border-radius:3px}
svg{background:#fff;border:1px solid #e3e6eb}
"""


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def page(title: str, body: str, who: str | None, csrf: str | None = None) -> str:
    nav = ""
    if who is not None:
        nav = (f'<a href="/console">Webhooks</a><a href="/console/webhooks/new">Create</a>'
               f'<a href="/console/dead-letters">Dead letters</a>'
               f'<a href="/console/event-types">Event types</a>'
               f'<a href="/console/health">Health</a><span class="who">{e(who)}</span>'
               f'{form("/console/logout", csrf or "", button("Sign out"))}')
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)} · hookstream"
            f"</title><link rel=stylesheet href=/console/style.css></head><body><header>"
            f"<strong>hookstream</strong>{nav}</header><main><h1>{e(title)}</h1>{body}"
            f"</main></body></html>")


def login_form() -> str:
    return ('<div class="card"><p>Sign in with your workspace\'s API key, or the admin key.'
            '</p><form method=post action="/console/login"><input type=password name=api_key '
            'size=60 placeholder="hsk_…" autocomplete=off autofocus> <button>Sign in</button>'
            '</form></div>')


def secret_card(webhook_id: str, secret: str, what: str, note: str = "") -> str:
    """A webhook's secret, shown once in the page body. Never put a secret in a URL (a flash
    redirect, a link): URLs end up in history, access logs and Referer headers."""
    link = f"/console/webhooks/{path_segment(webhook_id)}"
    return (f'<div class="card"><p>Webhook <a href="{e(link)}">{e(webhook_id)}</a> {e(what)}.'
            f'</p><p>Its signing secret, shown only now: <code id=secret>{e(secret)}</code></p>'
            + (f'<p class="muted">{e(note)}</p>' if note else "") + "</div>")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str = "Nothing yet.",
          ) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def form(action: str, csrf: str, inner: str, method: str = "post", inline: bool = True) -> str:
    token = f'<input type=hidden name=csrf value="{e(csrf)}">' if method == "post" else ""
    cls = ' class="inline"' if inline else ""
    return f'<form{cls} method={method} action="{e(action)}">{token}{inner}</form>'


def button(label: str, danger: bool = False) -> str:
    return f'<button{" class=danger" if danger else ""}>{e(label)}</button>'


def sparkline(values: list[float | None], width: int = 480, height: int = 80,
              label: str = "") -> str:
    """An inline SVG line chart: no library, no JavaScript."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return f'<p class="muted">{e(label)}: collecting samples…</p>'
    top = max(v for _, v in points) or 1.0
    step = width / max(len(values) - 1, 1)
    path = " ".join(f"{i * step:.1f},{height - 4 - (v / top) * (height - 8):.1f}"
                    for i, v in points)
    return (f'<div><strong>{e(label)}</strong> <span class="muted">now {points[-1][1]:.2f},'
            f' max {top:.2f}</span><br><svg width={width} height={height} role=img '
            f'aria-label="{e(label)}"><polyline fill=none stroke="#2f5bd3" stroke-width=2 '
            f'points="{path}"/></svg></div>')
