"""A worker's port serves hookstream's pages and none of faust's own views.

faust mounts views on every worker's port that ask for no key: /router (the cluster's
topology), /table (table contents: sealed secrets, delivery attempts), /graph, statistics
at / and /assignment/, /performance/, and an index at /. streams/app.py serves none of
them. Turning off /router must not break `@app.table_route`, which the deliveries endpoint
uses to reach the worker holding a webhook's history: two workers show it still does.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid

import pytest

from ..support.api import Answer, call
from ..support.pipeline import Deployment, wait_webhook_state
from ..support.waiting import wait_until
from .conftest import DeploymentSpec

pytestmark = pytest.mark.integration

#: Every path faust's built-in blueprints answer (faust/web/apps), with our tables' names,
#: and two near misses (/stats/, /assignments/) one might try.
FAUST_PATHS = [
    "/", "/router/", "/router/topics", "/router/subscriptions/",
    "/router/subscriptions/wh_x/", "/router/delivery-history/", "/table/",
    "/table/subscriptions/", "/table/subscriptions/wh_x/", "/table/delivery-history/",
    "/graph/", "/stats/", "/assignment/", "/assignments/", "/performance/",
]


#: faust reads these from the environment over what the App was given: the second worker
#: has them all, and still serves none of faust's views.
FAUST_SWITCHES = {f"APP_WEB_{name}_ENABLED": "1"
                  for name in ("ROUTER", "TABLES", "GRAPH", "STATS", "METRICS")}


DEPLOYMENT: DeploymentSpec = {"workers": [{}, FAUST_SWITCHES]}


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET without a key (redirects followed)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


@pytest.mark.parametrize("path", FAUST_PATHS)
def test_faust_views_are_not_served(dep: Deployment, path: str) -> None:
    for worker in dep.workers:
        status, _, body = _get(worker.port, path)
        assert status in (401, 404), f"{worker.name} {path}: {status} {body[:200]!r}"


def test_our_pages_still_answer(dep: Deployment) -> None:
    port = dep.workers[0].port
    admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
    assert _get(port, "/healthz")[0] == 200
    assert _get(port, "/readyz")[0] == 200
    status, _, metrics = _get(port, "/metrics")
    assert status == 200 and b"hookstream_" in metrics
    assert call(port, "GET", "/openapi.json").body["openapi"].startswith("3.1")
    assert call(port, "GET", "/v1/event-types").status == 401
    assert call(port, "GET", "/v1/event-types", admin).status == 200
    assert call(port, "GET", "/v1/webhooks").status == 401
    assert call(port, "GET", "/v1/webhooks", admin).status == 200
    status, content_type, page = _get(port, "/console")
    assert (status, content_type) == (200, "text/html") and b"<form" in page


def test_deliveries_are_read_through_either_worker(dep: Deployment) -> None:
    """Each worker holds the history of its own partitions only (no standby replicas), so
    whichever does not own this webhook answers only by forwarding to the one that does."""
    admin = dep.env["HOOKSTREAM_ADMIN_KEY"]
    run = uuid.uuid4().hex[:6]
    wh, ws, path = f"wh_s{run}", f"ws_s{run}", f"/surface/{run}"
    dep.create_webhook(wh, ws, path, ["task.created"])
    wait_webhook_state(dep, wh, {"active": True})
    events = {dep.publish("task.created", ws, {"id": f"task_{n}"}) for n in range(3)}
    dep.receiver.wait_for(lambda rs: sum(r.path == path for r in rs) >= 3,
                          what="three deliveries")

    last: list[Answer] = []

    def both_answer_in_full() -> list[Answer] | None:
        last[:] = [call(w.port, "GET", f"/v1/webhooks/{wh}/deliveries", admin)
                   for w in dep.workers]
        complete = all(a.status == 200 and len(a.body["data"]) == 3 for a in last)
        return list(last) if complete else None

    try:
        answers = wait_until(both_answer_in_full, what="the history from both workers")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last answers: {[(a.status, a.body) for a in last]}") \
            from None
    assert answers[0].body == answers[1].body
    assert {d["event_id"] for d in answers[0].body["data"]} == events
    assert {d["status"] for d in answers[0].body["data"]} == {"success"}
