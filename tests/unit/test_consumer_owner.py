"""The consumer's owner thread (streams.kafka.asyncconsumer._Owner): calls are made one at
a time in the order they came; inside a rebalance callback only those that may run there
are made, the others wait for it to end; a call whose caller gave up is not made; closing
makes what was queued first."""

from __future__ import annotations

import concurrent.futures
import threading

from streams.kafka.asyncconsumer import _Owner


def test_calls_are_made_in_order_and_close_makes_what_was_queued() -> None:
    owner = _Owner()
    made: list[int] = []
    calls = [owner.call(lambda i=i: made.append(i)) for i in range(50)]
    owner.close()
    assert made == list(range(50))
    assert all(call.done() for call in calls)


def test_a_callback_makes_only_what_may_run_inside_it_and_the_rest_after() -> None:
    owner = _Owner()
    made: list[str] = []
    listener_done: concurrent.futures.Future[None] = concurrent.futures.Future()
    inside = threading.Event()

    def callback() -> None:  # as librdkafka runs a rebalance callback, in the owner thread
        inside.set()
        owner.serve_until(listener_done)
        made.append("callback ended")

    owner.call(callback)
    assert inside.wait(10)
    closing = owner.call(lambda: made.append("close"), in_rebalance=False)
    commit = owner.call(lambda: made.append("commit"))
    assert commit.result(10) is None  # made inside the callback, though queued after
    assert not closing.done()
    listener_done.set_result(None)
    assert closing.result(10) is None
    owner.close()
    assert made == ["commit", "callback ended", "close"]


def test_a_call_its_caller_gave_up_on_is_not_made() -> None:
    owner = _Owner()
    release = threading.Event()
    owner.call(release.wait)  # keeps the thread busy
    made: list[str] = []
    given_up = owner.call(lambda: made.append("given up"))
    assert given_up.cancel()
    kept = owner.call(lambda: made.append("kept"))
    release.set()
    assert kept.result(10) is None
    owner.close()
    assert made == ["kept"]
