from __future__ import annotations

import pytest

from anchorline.stream.deliveries import Delivery, DeliveryCounter, _delivery, _place

P0 = ("t.jobs.requested", 0)
P1 = ("t.jobs.requested", 1)


def test_a_head_delivered_again_uncommitted_counts_up_and_a_new_head_starts_at_one() -> None:
    counter = DeliveryCounter()
    assert counter.begin(P0, 10).count == 1
    assert counter.begin(P0, 10).count == 2  # the process ended before committing
    assert counter.begin(P1, 10).count == 1  # partitions count apart
    assert counter.begin(P0, 12).count == 1  # 10 and 11 were committed
    assert counter.heads == {P0: Delivery(12, 1), P1: Delivery(10, 1)}


def test_keys_name_the_topic_and_partition() -> None:
    assert _place(b"t.jobs.requested:2") == ("t.jobs.requested", 2)
    assert _place(b"no-partition") is None
    assert _place(None) is None


@pytest.mark.parametrize(
    "value",
    [b"", b"[", b'{"offset": -1, "count": 1}', b'{"offset": 1, "count": 10000}', b"[1]", None],
)
def test_a_forged_or_broken_count_is_ignored(value: bytes | None) -> None:
    assert _delivery(value) is None


def test_a_count_reads_back() -> None:
    assert _delivery(b'{"offset":7,"count":2}') == Delivery(7, 2)


def test_a_rolled_back_batch_is_not_counted_as_a_death() -> None:
    counter = DeliveryCounter()
    counter.begin(P0, 10)
    counter.retract(P0)  # its transaction was aborted; the process lives on
    assert counter.begin(P0, 10).count == 1
    assert counter.begin(P0, 10).count == 2  # this time the process had ended
