from __future__ import annotations

from pathlib import Path

import pytest
from web3.exceptions import Web3RPCError

from anchorline.errors import ConfigurationError
from anchorline.settings import Settings
from anchorline_chain_writer.fees import FeePolicy, gwei
from anchorline_chain_writer.main import fee_policy, registry, shared_registry
from anchorline_chain_writer.wallet import Broadcast, rejection


def rpc_error(message: str) -> Web3RPCError:
    return Web3RPCError(str({"code": -32003, "message": message}))


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("already known", Broadcast.KNOWN),  # geth
        ("transaction already imported", Broadcast.KNOWN),  # anvil
        ("nonce too low", Broadcast.NONCE_TOO_LOW),
        ("nonce too low: next nonce 5, tx nonce 4", Broadcast.NONCE_TOO_LOW),
        ("replacement transaction underpriced", Broadcast.UNDERPRICED),
        ("insufficient funds for gas * price + value", None),
        ("transaction underpriced", None),  # below the node's minimum: no nonce clash
    ],
)
def test_node_rejections_are_classified(message: str, outcome: Broadcast | None) -> None:
    assert rejection(rpc_error(message)) is outcome


def test_fee_policy_from_settings() -> None:
    settings = Settings(max_fee_gwei=80.5, priority_fee_gwei=0.5, fee_bump_percent=20)
    assert fee_policy(settings) == FeePolicy(cap=gwei(80.5), min_tip=gwei(0.5), bump_percent=20)


def test_a_bump_nodes_would_refuse_is_a_configuration_error(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        registry_address="0x" + "11" * 20,
        chain_private_key="0x" + "22" * 32,
        fee_bump_percent=5,
    )
    with pytest.raises(ConfigurationError, match="FEE_BUMP_PERCENT"):
        registry(settings)


def test_the_registry_is_built_from_settings_without_touching_the_node(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        rpc_url="http://127.0.0.1:1",
        registry_address="0x" + "11" * 20,
        chain_private_key="0x" + "22" * 32,
        confirmations=4,
        breaker_failures=7,
        breaker_cooldown_s=3.0,
        stuck_tx_timeout_s=9.0,
    )
    built = registry(settings)
    assert built.confirmations == 4
    assert (built.breaker.failure_threshold, built.breaker.cooldown_s) == (7, 3.0)
    assert built.wallet.stuck_after_s == 9.0
    assert built.provider.requests_made == 0


def test_workers_of_one_process_share_one_wallet(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        rpc_url="http://127.0.0.1:1",
        registry_address="0x" + "11" * 20,
        chain_private_key="0x" + "33" * 32,
        concurrency=4,
    )
    assert shared_registry(settings) is shared_registry(settings)
    assert registry(settings) is not registry(settings)
