"""Signature recovery runs on eth-keys' C backend (coincurve), not its pure-Python fallback."""

from __future__ import annotations

from eth_keys.backends import get_backend
from eth_keys.backends.coincurve import CoinCurveECCBackend


def test_eth_keys_uses_coincurve() -> None:
    assert isinstance(get_backend(), CoinCurveECCBackend)
