"""Two chain-writer processes in one group, sending from one hot wallet, on a chain that mines
a block a second (so their transactions meet in the mempool, nonce against nonce)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kafka_helpers import publish, read_topic
from web3 import Web3

from anchorline.events import AnchorRequested, JobStatus, Stage, StageState, new_id, utcnow
from anchorline.infra.anvil import DEV_ADDRESSES, DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.ports import free_port
from anchorline.proof.registry import deploy_registry, load_artifact
from anchorline.settings import Settings
from anchorline.stream import codec

ROOTS = 40


@pytest.fixture
def mining_chain(tmp_path: Path) -> Iterator[AnvilChain]:
    with AnvilChain(state_dir=tmp_path / "anvil", port=free_port(), block_time=1) as chain:
        yield chain


def start_writer(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | settings.as_env()
    command = [sys.executable, "-m", "anchorline.cli", "run", "chain-writer"]
    with log.open("wb") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def anchored(messages: list[object]) -> Counter[str]:
    done: Counter[str] = Counter()
    for message in messages:
        status = codec.decode(message.value(), JobStatus)  # type: ignore[attr-defined]
        if status.stage is Stage.ANCHOR and status.state is StageState.SUCCEEDED:
            done[status.job_id] += 1
    return done


def test_two_writers_on_one_wallet_anchor_every_root_once(
    settings: Settings, mining_chain: AnvilChain, tmp_path: Path
) -> None:
    registry = deploy_registry(mining_chain.url, DEV_PRIVATE_KEYS[0], writers=DEV_ADDRESSES)
    settings = replace(
        settings,
        partitions=4,
        rpc_url=mining_chain.url,
        registry_address=registry,
        chain_private_key=DEV_PRIVATE_KEYS[2],  # the one wallet both processes send from
        batch_max_jobs=1,  # one root per transaction: as many transactions as can be
        send_rate_per_s=50,
    )
    requests = [
        AnchorRequested(new_id(), "0x" + os.urandom(32).hex(), [new_id()], utcnow())
        for _ in range(ROOTS)
    ]
    jobs = {job_id: request.root for request in requests for job_id in request.job_ids}
    writers = [start_writer(settings, tmp_path / f"writer{n}.log") for n in range(2)]
    try:
        publish(settings, *requests)
        statuses = read_topic(
            settings,
            settings.topics.job_status,
            until=lambda m: len(anchored(m)) >= ROOTS,
            timeout=240,
        )
        alive = [writer.poll() is None for writer in writers]
    finally:
        for writer in writers:
            writer.terminate()
        for writer in writers:
            writer.wait(40)
    logs = "\n".join(
        f"--- writer{n} ---\n" + (tmp_path / f"writer{n}.log").read_text()[-3000:] for n in range(2)
    )
    done = anchored(statuses)
    assert set(done) == set(jobs), logs
    assert max(done.values()) == 1, f"a job was anchored twice\n{logs}"
    assert alive == [True, True], logs

    # Each root is in the registry once, all sent from the one wallet.
    w3 = Web3(Web3.HTTPProvider(mining_chain.url))
    contract = w3.eth.contract(address=registry, abi=list(load_artifact().abi))
    events = contract.events.Anchored().get_logs(from_block=0)
    roots = Counter("0x" + bytes(event["args"]["root"]).hex() for event in events)
    assert set(roots) == set(jobs.values())
    assert max(roots.values()) == 1
    senders = Counter(w3.eth.get_transaction(event["transactionHash"])["from"] for event in events)
    assert list(senders) == [w3.eth.account.from_key(DEV_PRIVATE_KEYS[2]).address]
    print(f"{ROOTS} roots from 2 writers on one wallet: {len(events)} anchor transactions")
