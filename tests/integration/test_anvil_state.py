"""A local chain with a state file keeps its anchors across restarts; the receipt check tells a
reset chain apart from a reorg."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_ports
from anchorline.proof.chainview import Web3ChainView
from anchorline.proof.receipt import FAIL, PASS, Options, check_on_chain
from anchorline.proof.registry import deploy
from anchorline_chain_writer.chain import Web3Registry

KEY = DEV_PRIVATE_KEYS[0]


def chain_at(tmp_path: Path, state_file: Path | None) -> AnvilChain:
    (port,) = free_ports(1)
    return AnvilChain(state_dir=tmp_path / "anvil", port=port, state_file=state_file)


def outcomes(anchor: dict[str, Any], url: str) -> dict[str, tuple[str, str]]:
    checks = check_on_chain({"anchor": anchor}, Web3ChainView(url), Options())
    return {check.name: (check.outcome, check.detail) for check in checks}


def test_an_anchor_made_before_a_restart_still_checks(tmp_path: Path) -> None:
    state = tmp_path / "anvil" / "state.json"
    with chain_at(tmp_path, state) as chain:
        registry = deploy(chain.url, KEY).address
        anchor = Web3Registry(chain.url, registry, KEY).anchor(os.urandom(32)).as_result()
        assert {o for o, _ in outcomes(anchor, chain.url).values()} == {PASS}
    with chain_at(tmp_path, state) as restarted:
        assert {o for o, _ in outcomes(anchor, restarted.url).values()} == {PASS}
    with chain_at(tmp_path / "fresh", None) as reset:
        found = outcomes(anchor, reset.url)
        assert found["block"][0] == FAIL
        assert "a different or reset chain, not a reorg" in found["block"][1]
        assert "a different or reset chain, not a reorg" in found["transaction"][1]
