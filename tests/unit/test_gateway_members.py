"""What the gateway remembers of a consumer group's members: who is live, since when, who left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from anchorline_gateway.members import GroupWatch

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def test_a_member_replaced_by_another_counts_as_one_that_left() -> None:
    watch = GroupWatch()
    watch.update(["a", "b"], T0)
    watch.update(["a", "b"], T0 + timedelta(seconds=5))
    assert (watch.left, watch.seen["a"].first, watch.seen["a"].last) == (
        0,
        T0,
        T0 + timedelta(seconds=5),
    )
    watch.update(["a", "c"], T0 + timedelta(seconds=10))  # b restarted as c
    assert watch.left == 1
    assert set(watch.seen) == {"a", "c"}
    assert watch.seen["c"].first == T0 + timedelta(seconds=10)
    watch.update([], T0 + timedelta(seconds=15))
    assert (watch.left, watch.seen) == (3, {})
