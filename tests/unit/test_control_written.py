"""streams.control.agent.Written: the control agent's own writes stand until its view shows
them, and never longer: then the view is the one source again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from streams.control import agent
from streams.control.agent import Written
from streams.subscriptions.index import SubscriptionIndex
from streams.subscriptions.model import Subscription

SUB = Subscription(id="wh_1", workspace_id="ws_1", url="https://example.com/h",
                   events=("task.*",), secret="enc:v1:k:x", active=True, created_at=0,
                   updated_at=0)


def test_a_write_stands_until_the_view_shows_it() -> None:
    view, written = SubscriptionIndex(), Written()
    newer = replace(SUB, description="newer")
    view.put(SUB)
    written.put("wh_1", newer, view)
    assert written.get("wh_1", view) == newer  # the view still shows the older one
    assert "wh_1" in written.states
    view.put(newer)
    assert written.get("wh_1", view) == newer
    assert "wh_1" not in written.states  # shown: forgotten
    assert written.get("wh_2", view) is None


def test_a_delete_stands_until_the_view_drops_the_webhook() -> None:
    view, written = SubscriptionIndex(), Written()
    view.put(SUB)
    written.put("wh_1", None, view)
    assert written.get("wh_1", view) is None and "wh_1" in written.states
    view.delete("wh_1")
    assert written.get("wh_1", view) is None and "wh_1" not in written.states


def test_past_the_bound_only_writes_the_view_shows_are_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent, "WRITTEN_PRUNE_AT", 4)
    view, written = SubscriptionIndex(), Written()
    subs = [replace(SUB, id=f"wh_{n}") for n in range(6)]
    for n, sub in enumerate(subs):
        if n % 2 == 0:
            view.put(sub)  # the view has caught up with the even ones
        written.put(sub.id, sub, view)
    assert {"wh_1", "wh_3", "wh_5"} <= set(written.states)  # never dropped unseen
    assert all(written.get(sub.id, view) == sub for sub in subs)


def test_the_workspace_count_includes_what_the_view_does_not_show_yet() -> None:
    # Back-to-back creates of one workspace, applied before the view read any of them back,
    # each counted the view alone and passed the limit together.
    view, written = SubscriptionIndex(), Written()
    shown, other = replace(SUB, id="wh_0"), replace(SUB, id="wh_x", workspace_id="ws_2")
    view.put(shown)
    view.put(other)
    assert written.unseen_change_in("ws_1", view) == 0
    for n in range(1, 4):
        written.put(f"wh_{n}", replace(SUB, id=f"wh_{n}"), view)
    written.put("wh_x", replace(other, description="an update is no new webhook"), view)
    written.put("wh_y", replace(other, id="wh_y"), view)  # another workspace's
    assert written.unseen_change_in("ws_1", view) == 3
    written.put("wh_0", None, view)  # a delete the view has not seen
    assert written.unseen_change_in("ws_1", view) == 2
    view.put(replace(SUB, id="wh_1"))
    view.delete("wh_0")
    assert written.unseen_change_in("ws_1", view) == 2  # wh_2, wh_3: the others are shown
    assert view.count_in_workspace("ws_1") + written.unseen_change_in("ws_1", view) == 3
