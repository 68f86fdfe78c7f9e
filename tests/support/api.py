"""A small HTTP client for the worker's API in tests (urllib: no extra dependency)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(port: int, method: str, path: str, key: str | None = None, body: Any = None,
         raw: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            content = response.read()
            return Answer(response.status, json.loads(content) if content else None,
                          dict(response.headers))
    except urllib.error.HTTPError as exc:
        content = exc.read()
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content.decode(errors="replace")
        return Answer(exc.code, parsed, dict(exc.headers))
