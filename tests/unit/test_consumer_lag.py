"""Consumer lag from librdkafka's statistics: assigned partitions only, stale clients left out."""

from __future__ import annotations

import json

from anchorline.stream.lag import STALE_S, ConsumerLag, partition_lags


def statistics(name: str, **partitions: dict[str, object]) -> str:
    return json.dumps({"name": name, "topics": {"t": {"partitions": partitions}}})


def test_lag_is_the_stable_end_less_the_position_of_assigned_partitions() -> None:
    raw = statistics(
        "c1",
        **{
            "0": {"desired": True, "ls_offset": 10, "app_offset": 7},
            "1": {"desired": True, "ls_offset": 5, "app_offset": -1001, "committed_offset": 5},
            "2": {"desired": False, "ls_offset": 9, "app_offset": 0},  # not ours
            "-1": {"desired": False, "ls_offset": -1, "app_offset": -1},  # librdkafka's own
            "3": {"desired": True, "ls_offset": 4, "app_offset": -1001},  # nothing known yet
            # never read nor committed, fetched: it starts at the earliest offset
            "4": {
                "desired": True,
                "fetch_state": "active",
                "ls_offset": 0,
                "lo_offset": 0,
                "app_offset": -1001,
                "committed_offset": -1001,
            },
            "5": {
                "desired": True,
                "fetch_state": "active",
                "ls_offset": 6,
                "lo_offset": 2,
                "app_offset": -1001,
                "committed_offset": -1001,
            },
            "6": {
                "desired": True,
                "fetch_state": "offset-query",
                "ls_offset": 6,
                "lo_offset": 2,
                "app_offset": -1001,
                "committed_offset": -1001,
            },
        },
    )
    assert partition_lags(json.loads(raw)) == {("t", 0): 3, ("t", 1): 0, ("t", 4): 0, ("t", 5): 4}


def test_a_client_silent_too_long_is_left_out() -> None:
    now = [0.0]
    lag = ConsumerLag(clock=lambda: now[0])
    lag.reporter("g")(statistics("c1", **{"0": {"desired": True, "ls_offset": 2, "app_offset": 1}}))
    (family,) = lag.collect()
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"group": "g", "topic": "t", "partition": "0"}, 1)
    ]
    now[0] = STALE_S + 1
    (family,) = lag.collect()
    assert family.samples == []
