"""streams.core.timeutil: epoch milliseconds survive every form they travel in."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from streams.core.timeutil import to_ms
from streams.delivery.models import DeliveryJob, delivery_id_for

#: Up to the year 3000, either side of 1970.
MILLIS = st.integers(-(2**40), 32_503_680_000_000)
JOB = DeliveryJob(
    delivery_id=delivery_id_for("evt_1", "wh_1"), webhook_id="wh_1", workspace_id="ws_1",
    event_id="evt_1", event_type="task.created", event_timestamp="2025-10-14T10:30:00Z",
    data_json="{}", attempt=1, created_at=0)


@given(MILLIS)
def test_milliseconds_survive_avro_exactly(ms: int) -> None:
    """A job's created_at names its instance (streams.delivery.guard): one millisecond off
    and a duplicate would be taken for another job."""
    job = replace(JOB, created_at=ms, due_at=ms)
    again = DeliveryJob.decode(job.encode())
    assert (again.created_at, again.due_at) == (ms, ms)


@given(MILLIS)
def test_an_int_is_taken_as_it_is(ms: int) -> None:
    assert to_ms(ms) == ms
