"""streams.subscriptions.model: a subscription survives its Avro form unchanged, and what
many subscriptions share is held once."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.subscriptions.model import Subscription

_text = st.text(max_size=40)
_ms = st.integers(-(2**40), 2**44)

subscriptions = st.builds(
    Subscription,
    id=_text, workspace_id=_text, url=_text,
    events=st.lists(_text, max_size=4).map(tuple), secret=_text, active=st.booleans(),
    created_at=_ms, updated_at=_ms,
    disabled_reason=st.none() | _text, description=st.none() | _text,
    previous_secret=st.none() | _text, previous_secret_until=st.none() | _ms,
    signature_scheme=st.sampled_from(["hookstream", "standard-webhooks"]),
    last_command=st.none() | _text,
)


@given(subscriptions)
@settings(max_examples=300, deadline=None)
def test_a_subscription_round_trips_through_avro(sub: Subscription) -> None:
    assert Subscription.decode(sub.encode()) == sub


def test_a_subscription_has_no_per_object_dict() -> None:
    sub = Subscription(id="wh_1", workspace_id="ws_1", url="https://example.com/",
                       events=("*",), secret="s", active=True, created_at=0, updated_at=0)
    assert not hasattr(sub, "__dict__")
    assert replace(sub, active=False).active is False


def test_decoded_subscriptions_share_what_they_have_in_common() -> None:
    def decoded(n: int) -> Subscription:
        # Built from fresh strings, as a decoder makes them.
        return Subscription.decode(Subscription(
            id=f"wh_{n}", workspace_id="".join(["ws_", "shared"]), url="https://example.com/",
            events=("task.created", "project.*"), secret="s", active=False, created_at=0,
            updated_at=0, disabled_reason="".join(["disabled by ", "operator"]),
            signature_scheme="standard-webhooks").encode())

    a, b = decoded(1), decoded(2)
    assert a.workspace_id is b.workspace_id
    assert a.events is b.events
    assert a.signature_scheme is b.signature_scheme
    assert a.disabled_reason is b.disabled_reason
