from __future__ import annotations

from itertools import pairwise

import pytest

from anchorline.errors import Retryable
from anchorline_chain_writer.fees import (
    GWEI,
    FeeCapExceeded,
    FeePolicy,
    FeeQuote,
    Fees,
    bumped,
    gwei,
    quote_from_history,
)


@pytest.mark.parametrize(
    ("value", "percent", "expected"),
    [
        (100, 12.5, 113),  # 112.5 rounds up
        (800, 12.5, 900),
        (1_000_000_007, 12.5, 1_125_000_008),
        (0, 12.5, 1),  # a replacement must offer strictly more
        (7, 0, 8),
        (10**30, 12.5, 1125 * 10**27),  # no float rounding on large values
    ],
)
def test_bumped_rounds_up_and_always_raises(value: int, percent: float, expected: int) -> None:
    assert bumped(value, percent) == expected


def test_gwei_is_exact_for_decimals() -> None:
    assert gwei(1.5) == 1_500_000_000
    assert gwei(0.1) == 100_000_000
    assert gwei(500) == 500 * GWEI


def test_a_quote_takes_the_next_base_fee_and_the_median_tip() -> None:
    history = {
        "baseFeePerGas": [10, 11, 12, 13],
        "reward": [[3 * GWEI], [5 * GWEI], [4 * GWEI]],
    }
    assert quote_from_history(history, min_tip=GWEI) == FeeQuote(base_fee=13, tip=4 * GWEI)


def test_a_quote_never_tips_below_the_minimum() -> None:
    empty_blocks = {"baseFeePerGas": [7, 7], "reward": [[0]]}
    assert quote_from_history(empty_blocks, min_tip=GWEI) == FeeQuote(7, GWEI)
    no_rewards = {"baseFeePerGas": [7], "reward": []}
    assert quote_from_history(no_rewards, min_tip=2) == FeeQuote(7, 2)


def test_an_offer_is_twice_the_base_fee_plus_the_tip() -> None:
    policy = FeePolicy(cap=gwei(500))
    assert policy.offer(FeeQuote(gwei(30), gwei(2))) == Fees(gwei(62), gwei(2))


def test_an_offer_is_clamped_to_the_cap_while_the_cap_covers_base_fee_and_tip() -> None:
    policy = FeePolicy(cap=gwei(100))
    assert policy.offer(FeeQuote(gwei(90), gwei(2))) == Fees(gwei(100), gwei(2))


def test_a_base_fee_over_the_cap_is_retryable_and_sends_nothing() -> None:
    policy = FeePolicy(cap=gwei(100))
    with pytest.raises(FeeCapExceeded, match="over the cap") as raised:
        policy.offer(FeeQuote(gwei(99), gwei(2)))
    assert isinstance(raised.value, Retryable)


def test_a_replacement_raises_both_fields_by_the_bump() -> None:
    policy = FeePolicy(bump_percent=12.5)
    previous = Fees(max_fee=gwei(40), priority_fee=gwei(2))
    calm = FeeQuote(base_fee=gwei(5), tip=gwei(1))
    assert policy.replacement(previous, calm) == Fees(gwei(45), gwei(2.25))


def test_a_replacement_follows_the_market_when_it_rose_more_than_the_bump() -> None:
    policy = FeePolicy(bump_percent=12.5)
    previous = Fees(max_fee=gwei(40), priority_fee=gwei(2))
    busy = FeeQuote(base_fee=gwei(100), tip=gwei(5))
    assert policy.replacement(previous, busy) == Fees(gwei(205), gwei(5))


def test_a_replacement_is_clamped_to_the_cap_if_that_is_still_a_valid_bump() -> None:
    policy = FeePolicy(cap=gwei(50), bump_percent=12.5)
    previous = Fees(max_fee=gwei(40), priority_fee=gwei(2))
    busy = FeeQuote(base_fee=gwei(100), tip=gwei(5))
    assert policy.replacement(previous, busy) == Fees(gwei(50), gwei(5))


def test_no_replacement_when_the_cap_leaves_no_room_for_the_bump() -> None:
    policy = FeePolicy(cap=gwei(44), bump_percent=12.5)
    previous = Fees(max_fee=gwei(40), priority_fee=gwei(2))
    assert policy.replacement(previous, FeeQuote(gwei(1), gwei(1))) is None


def test_repeated_replacements_grow_geometrically_until_the_cap() -> None:
    policy = FeePolicy(cap=gwei(60), bump_percent=12.5)
    fees: Fees | None = Fees(gwei(40), gwei(2))
    offered = []
    while fees is not None:
        offered.append(fees)
        fees = policy.replacement(fees, FeeQuote(gwei(1), gwei(1)))
    assert [f.max_fee for f in offered] == [gwei(40), gwei(45), gwei(50.625), gwei(56.953125)]
    for older, newer in pairwise(offered):
        assert newer.max_fee * 1000 >= older.max_fee * 1125
        assert newer.priority_fee * 1000 >= older.priority_fee * 1125
        assert newer.priority_fee <= newer.max_fee


def test_fees_as_transaction_fields() -> None:
    assert Fees(10, 2).as_tx() == {"maxFeePerGas": 10, "maxPriorityFeePerGas": 2}
