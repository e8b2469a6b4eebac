"""The picking policy: weights honoured, no priority starved, first in first out inside one."""

from __future__ import annotations

import itertools

import pytest

from anchorline.events import Priority
from anchorline.stream.picking import WeightedPicker

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW


def filled(counts: dict[Priority, int]) -> WeightedPicker[tuple[Priority, int]]:
    picker: WeightedPicker[tuple[Priority, int]] = WeightedPicker()
    for priority, count in counts.items():
        for index in range(count):
            picker.add(priority, (priority, index))
    return picker


def test_with_all_three_waiting_every_ten_picks_are_six_three_and_one() -> None:
    picker = filled({HIGH: 600, NORMAL: 600, LOW: 600})
    for _ in range(60):
        ten = picker.take(10)
        assert [sum(1 for p, _ in ten if p is q) for q in (HIGH, NORMAL, LOW)] == [6, 3, 1]


def test_the_shares_hold_whatever_the_batch_size() -> None:
    for size in (1, 3, 7, 128):
        picker = filled({HIGH: 6000, NORMAL: 6000, LOW: 6000})
        taken = list(itertools.chain.from_iterable(picker.take(size) for _ in range(3000 // size)))
        shares = [sum(1 for p, _ in taken if p is q) / len(taken) for q in (HIGH, NORMAL, LOW)]
        assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.01), size


def test_low_is_never_starved_while_high_keeps_coming() -> None:
    picker = filled({LOW: 5})
    waited = 0
    for index in range(100):
        picker.add(HIGH, (HIGH, index))
        picker.add(HIGH, (HIGH, 1000 + index))
        (taken,) = picker.take(1)
        if taken[0] is LOW:
            assert waited < 7, "low waits at most its weight's turn (6 high, then 1 low)"
            waited = 0
        else:
            waited += 1
    assert picker.backlog(LOW) == 0, "every low item was taken in 100 picks"


def test_a_single_high_item_goes_in_the_next_batch_whatever_waits_before_it() -> None:
    picker = filled({LOW: 10_000, NORMAL: 10_000})
    picker.take(128)
    picker.add(HIGH, (HIGH, 0))
    assert (HIGH, 0) in picker.take(10)


def test_a_priority_with_nothing_waiting_leaves_its_share_to_the_others() -> None:
    picker = filled({LOW: 50})
    assert picker.take(20) == [(LOW, index) for index in range(20)]
    picker = filled({NORMAL: 30, LOW: 30})
    taken = picker.take(40)
    assert sum(1 for p, _ in taken if p is NORMAL) == 30, "normal first, 3 to 1, then low alone"


def test_first_in_first_out_inside_each_priority() -> None:
    picker = filled({HIGH: 100, NORMAL: 100, LOW: 100})
    taken = list(itertools.chain.from_iterable(picker.take(7) for _ in range(50)))
    for priority in Priority:
        indexes = [index for p, index in taken if p is priority]
        assert indexes == sorted(indexes) and indexes == list(range(len(indexes)))


def test_take_never_returns_more_than_asked_or_than_waits() -> None:
    picker = filled({HIGH: 3, LOW: 2})
    assert len(picker.take(4)) == 4
    assert len(picker) == 1
    assert len(picker.take(10)) == 1
    assert picker.take(10) == []


def test_drop_removes_only_what_it_is_told_and_keeps_the_order() -> None:
    picker = filled({HIGH: 4, LOW: 4})
    assert picker.drop(lambda item: item[1] % 2 == 0) == 4
    assert len(picker) == 4
    assert picker.take(10) == [(HIGH, 1), (HIGH, 3), (LOW, 1), (LOW, 3)]


@pytest.mark.parametrize("weights", [{HIGH: 6, NORMAL: 3}, {HIGH: 6, NORMAL: 0, LOW: 1}])
def test_every_priority_needs_a_positive_weight(weights: dict[Priority, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WeightedPicker(weights)


def test_other_weights_are_honoured() -> None:
    picker: WeightedPicker[Priority] = WeightedPicker({HIGH: 1, NORMAL: 1, LOW: 2})
    for priority in Priority:
        for _ in range(100):
            picker.add(priority, priority)
    taken = picker.take(40)
    assert [taken.count(p) for p in (HIGH, NORMAL, LOW)] == [10, 10, 20]
