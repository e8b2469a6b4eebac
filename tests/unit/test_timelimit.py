from __future__ import annotations

import threading
import time

import pytest

from anchorline.errors import Retryable
from anchorline.stream.timelimit import StageTimeout, TimeLimit


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
