from __future__ import annotations

import threading
import time

import pytest

from anchorline.errors import Retryable
from anchorline.stream.timelimit import DEFERRED, StageTimeout, TimeLimit


def test_a_call_within_its_limit_returns_or_raises_as_it_would() -> None:
    limiter = TimeLimit()
    assert limiter.call(lambda: 41 + 1, limit_s=5, what="sum") == 42
    with pytest.raises(KeyError):
        limiter.call(lambda: {}["missing"], limit_s=5, what="lookup")
    limiter.close()


def test_a_call_past_its_limit_is_a_retryable_timeout_and_the_next_call_runs() -> None:
    limiter = TimeLimit()
    release = threading.Event()
    started = time.monotonic()
    past = r"the handler ran past its time limit of 0\.2 s"
    with pytest.raises(StageTimeout, match=past) as info:
        limiter.call(lambda: release.wait(30), limit_s=0.2, what="the handler")
    assert isinstance(info.value, Retryable)
    assert time.monotonic() - started < 5
    assert limiter.call(lambda: "next", limit_s=5, what="next") == "next"
    release.set()
    limiter.close()


def test_no_time_left_is_a_timeout_without_running_the_call() -> None:
    ran: list[int] = []
    with pytest.raises(StageTimeout, match="no time left"):
        TimeLimit().call(lambda: ran.append(1), limit_s=0, what="call")
    assert ran == []


def test_call_each_runs_every_call_in_one_hand_over_and_keeps_each_outcome() -> None:
    limiter = TimeLimit()
    threads: list[str] = []

    def call(value: int):
        def run() -> int:
            threads.append(threading.current_thread().name)
            if value == 2:
                raise KeyError(value)
            return value * 10

        return run

    outcomes = limiter.call_each(
        [call(1), call(2), call(3)], limit_s=5, ends=time.monotonic() + 5, what="call"
    )
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], KeyError)
    assert len(set(threads)) == 1 and threads[0] != threading.current_thread().name
    assert limiter.call_each([], limit_s=5, ends=time.monotonic() + 5, what="call") == []
    limiter.close()


def test_call_each_times_out_one_call_alone_and_runs_the_rest_on_a_new_thread() -> None:
    limiter = TimeLimit()
    release = threading.Event()
    threads: list[int | None] = []

    def quick() -> str:
        threads.append(threading.current_thread().ident)
        return "done"

    started = time.monotonic()
    outcomes = limiter.call_each(
        [quick, lambda: release.wait(30), quick],
        limit_s=0.2,
        ends=time.monotonic() + 30,
        what="the handler",
    )
    assert time.monotonic() - started < 5
    assert outcomes[0] == outcomes[2] == "done"
    assert isinstance(outcomes[1], StageTimeout)
    assert "the handler ran past its time limit of 0.2 s" in str(outcomes[1])
    assert threads[0] != threads[1]  # the stuck thread was left to itself
    release.set()
    limiter.close()


def test_call_each_stops_at_the_batchs_end_and_defers_what_had_not_begun() -> None:
    limiter = TimeLimit()
    ran: list[int] = []
    ends = time.monotonic() + 0.3

    def slow() -> None:
        ran.append(1)
        time.sleep(1)

    started = time.monotonic()
    outcomes = limiter.call_each(
        [lambda: ran.append(0), slow, lambda: ran.append(2)], limit_s=5, ends=ends, what="call"
    )
    assert time.monotonic() - started < 0.9  # the call in hand is cut off at the batch's end
    assert isinstance(outcomes[1], StageTimeout)
    assert outcomes[2] is DEFERRED
    assert ran == [0, 1]
    past = limiter.call_each([lambda: ran.append(3)], limit_s=5, ends=ends, what="call")
    assert past == [DEFERRED] and ran == [0, 1]
    limiter.close()
