"""EIP-1559 fees: what to offer for a new transaction, and for the replacement of a stuck one."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from anchorline.errors import Retryable

GWEI = 10**9


def gwei(amount: float) -> int:
    """Wei in `amount` gwei, exactly for decimal inputs such as 1.5."""
    return int(Decimal(str(amount)) * GWEI)


class FeeCapExceeded(Retryable):
    """The chain asks more per gas than the wallet may pay: wait for the base fee to fall."""


@dataclass(frozen=True)
class Fees:
    """The two EIP-1559 fee fields of a transaction, in wei per gas."""

    max_fee: int
    priority_fee: int

    def as_tx(self) -> dict[str, int]:
        return {"maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": self.priority_fee}


@dataclass(frozen=True)
class FeeQuote:
    """What the chain asks now: the next block's base fee and the tips recent blocks paid."""

    base_fee: int
    tip: int


def bumped(value: int, percent: float) -> int:
    """`value` raised by `percent`, rounded up, and by at least 1 wei."""
    raised = Fraction(value) * (100 + Fraction(str(percent))) / 100
    return max(value + 1, math.ceil(raised))


def quote_from_history(history: Any, *, min_tip: int) -> FeeQuote:
    """A quote from an eth_feeHistory answer asked for one reward percentile.

    Its last `baseFeePerGas` entry is the base fee of the block after the newest one.
    """
    tips: Sequence[int] = [int(rewards[0]) for rewards in history["reward"] or [] if rewards]
    tip = int(statistics.median(tips)) if tips else 0
    return FeeQuote(base_fee=int(history["baseFeePerGas"][-1]), tip=max(min_tip, tip))


@dataclass(frozen=True)
class FeePolicy:
    """How the hot wallet prices its transactions.

    A new transaction offers `base_fee_multiplier` times the next base fee plus the tip,
    which survives several full blocks of rising base fee; never more than `cap` per gas.
    A replacement offers at least `bump_percent` more on both fields (nodes refuse less).
    """

    cap: int = gwei(500)
    min_tip: int = gwei(1)
    bump_percent: float = 12.5
    base_fee_multiplier: int = 2
    history_blocks: int = 5
    reward_percentile: float = 50.0

    def offer(self, quote: FeeQuote) -> Fees:
        if quote.base_fee + quote.tip > self.cap:
            asked = quote.base_fee + quote.tip
            raise FeeCapExceeded(f"the chain asks {asked} wei per gas, over the cap of {self.cap}")
        max_fee = min(self.cap, self._target(quote))
        return Fees(max_fee=max_fee, priority_fee=min(quote.tip, max_fee))

    def replacement(self, previous: Fees, quote: FeeQuote) -> Fees | None:
        """Fees that replace a transaction sent with `previous`; None if the cap forbids it."""
        least_max_fee = bumped(previous.max_fee, self.bump_percent)
        least_tip = bumped(previous.priority_fee, self.bump_percent)
        max_fee = min(self.cap, max(least_max_fee, self._target(quote)))
        tip = min(max_fee, max(least_tip, quote.tip))
        if max_fee < least_max_fee or tip < least_tip:
            return None
        return Fees(max_fee=max_fee, priority_fee=tip)

    def _target(self, quote: FeeQuote) -> int:
        return quote.base_fee * self.base_fee_multiplier + quote.tip
