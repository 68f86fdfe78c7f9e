"""streams.kafka.app: the faust app's settings that hold a rule of ours."""

from __future__ import annotations

from streams.kafka.app import FAUST_FETCH_S, build_app
from streams.settings import Settings


def test_table_recovery_waits_out_a_fetch_of_the_generation_before() -> None:
    """Else a fetch still under way could read a changelog past recovery's seek, and the
    history would wait for ever for records already read (streams.kafka.app)."""
    app = build_app(Settings.from_env({}))
    assert app.conf.stream_recovery_delay > FAUST_FETCH_S
