"""What `anchorline up` publishes as its trust roots, run after run, on a real anvil."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from web3 import Web3

from anchorline.cli.up import publish_trust
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_ports
from anchorline.proof.trust import ROTATION_GRACE_BLOCKS, parse_trust
from anchorline.settings import Settings

CHAIN_KEY, PROVER_KEY, NEXT_PROVER_KEY = DEV_PRIVATE_KEYS


def settings_of(url: str, prover_key: str) -> Settings:
    return Settings(
        rpc_url=url, chain_id=31337, chain_private_key=CHAIN_KEY, prover_private_key=prover_key
    )


def test_runs_keep_their_registry_and_every_prover_they_used(
    anvil: AnvilChain, tmp_path: Path
) -> None:
    trust_file = tmp_path / "trust.json"
    first = publish_trust(settings_of(anvil.url, PROVER_KEY), trust_file)
    before = parse_trust(trust_file.read_bytes())
    head = int(Web3(Web3.HTTPProvider(anvil.url)).eth.block_number)

    again = publish_trust(settings_of(anvil.url, PROVER_KEY), trust_file)
    assert again.registry_address == first.registry_address
    assert parse_trust(trust_file.read_bytes()) == before

    rotated = publish_trust(settings_of(anvil.url, NEXT_PROVER_KEY), trust_file)
    after = parse_trust(trust_file.read_bytes())
    old, new = (Account.from_key(k).address for k in (PROVER_KEY, NEXT_PROVER_KEY))
    assert rotated.registry_address == first.registry_address
    assert [(p.address, p.until_block) for p in after.provers] == [
        (old, head + ROTATION_GRACE_BLOCKS),
        (new, None),
    ]
    assert after.prover_ok(old, head) and after.prover_ok(new, head + 1)
    assert after.chain_writers == before.chain_writers
    assert after.registry == first.registry_address


def fresh_chain(tmp_path: Path, name: str) -> AnvilChain:
    (port,) = free_ports(1)
    return AnvilChain(state_dir=tmp_path / name, port=port)


def test_a_reset_chain_gets_a_new_registry_and_a_new_document(
    anvil: AnvilChain, tmp_path: Path
) -> None:
    # `anvil` (the shared one) only makes this skip, or fail in CI, where anvil is missing.
    trust_file = tmp_path / "trust.json"
    with fresh_chain(tmp_path, "first") as first:
        before = publish_trust(settings_of(first.url, PROVER_KEY), trust_file)
    with fresh_chain(tmp_path, "reset") as reset:
        # The same deployer on an empty chain deploys at the same address: still a new registry.
        after = publish_trust(settings_of(reset.url, NEXT_PROVER_KEY), trust_file)
        document = parse_trust(trust_file.read_bytes())
    assert after.registry_address == before.registry_address
    assert document.registry == after.registry_address
    assert [p.address for p in document.provers] == [Account.from_key(NEXT_PROVER_KEY).address]
