"""A schedule re-verifies one content through `anchorline up` while its registration on chain
changes between occurrences: the schedule's record shows both outcomes over time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from system_under_test import System
from web3 import Web3

from anchorline.infra.anvil import DEV_PRIVATE_KEYS
from anchorline.proof.manifest import sign_eip191
from anchorline.proof.registry import load_artifact

CREATOR_KEY = DEV_PRIVATE_KEYS[2]  # funded; `up` sends from key 0 and signs with key 1


def register(system: System, content_hash: bytes) -> None:
    """registerContent from the creator's account, mined."""
    w3 = Web3(Web3.HTTPProvider(system.settings.rpc_url))
    account = Account.from_key(CREATOR_KEY)
    contract = w3.eth.contract(address=system.registry_address, abi=load_artifact().abi)
    tx = contract.functions.registerContent(content_hash, "ipfs://manifest").build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)["status"] == 1


def schedule_of(system: System, schedule_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{system.base_url}/v1/schedules/{schedule_id}?occurrences=100", timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def verified(system: System, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's occurrences whose job ended, oldest first."""
    occurrences = schedule_of(system, schedule_id)["occurrences"]
    ended = [o for o in occurrences if o["job"] and o["job"]["state"] == "succeeded"]
    return sorted(ended, key=lambda o: str(o["scheduled_for"]))


def wait_until(check: Any, *, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def registered(occurrence: dict[str, Any]) -> bool:
    return bool(occurrence["job"]["result"]["verify"]["onchain"]["registered"])


def test_a_recurring_verification_shows_the_content_registered_on_chain_between_occurrences(
    system: System,
) -> None:
    content = b"re-verified every two seconds " + str(time.time()).encode()
    content_hash = hashlib.sha256(content).digest()
    uploaded = httpx.post(f"{system.base_url}/v1/blobs", content=content, timeout=30)
    creator = Account.from_key(CREATOR_KEY)
    document = {"content_hash": "0x" + content_hash.hex(), "creator": creator.address}
    body = {
        "kind": "verify",
        "content_uri": uploaded.json()["content_uri"],
        "manifest": json.dumps(document),
        "signature": sign_eip191(document, CREATOR_KEY),
        "cron": "*/2 * * * * *",
    }
    answer = httpx.post(f"{system.base_url}/v1/schedules", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    schedule_id = answer.json()["schedule_id"]

    before = wait_until(lambda: verified(system, schedule_id))[0]
    assert not registered(before)
    assert before["job"]["result"]["verify"]["status"] == "WARN"
    register(system, content_hash)
    after = wait_until(lambda: [o for o in verified(system, schedule_id) if registered(o)])[0]
    assert after["job"]["result"]["verify"]["status"] == "OK"
    assert after["job"]["result"]["verify"]["onchain"]["creator"] == creator.address
    assert after["scheduled_for"] > before["scheduled_for"]

    assert httpx.post(f"{system.base_url}/v1/schedules/{schedule_id}/pause", timeout=10).is_success
    record = schedule_of(system, schedule_id)
    assert record["state"] == "paused" and record["fired"] >= 2
    shown = [o["job_id"] for o in record["occurrences"]]
    assert before["job_id"] in shown and after["job_id"] in shown
    job = httpx.get(f"{system.base_url}/v1/jobs/{after['job_id']}", timeout=10).json()
    assert job["schedule_id"] == schedule_id and job["state"] == "succeeded"
    deleted = httpx.delete(f"{system.base_url}/v1/schedules/{schedule_id}", timeout=10)
    assert deleted.json() == {"schedule_id": schedule_id, "state": "deleted"}


def anchorline(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "anchorline"), *args]
    env = os.environ | {"ANCHORLINE_GATEWAY_URL": system.base_url}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_a_one_time_schedule_made_with_the_command_line_fires_once(
    system: System, tmp_path: Path
) -> None:
    content = tmp_path / "once.txt"
    content.write_bytes(b"verified once " + str(time.time()).encode())
    signed = anchorline(system, "sign", str(content), "--out", str(tmp_path / "signed"))
    assert signed.returncode == 0, signed.stderr
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    created = anchorline(
        system,
        "schedules",
        "create",
        str(content),
        "--manifest",
        str(tmp_path / "signed" / "manifest.json"),
        "--signature",
        str(tmp_path / "signed" / "manifest.sig"),
        "--at",
        at,
        "--json",
    )
    assert created.returncode == 0, created.stderr
    schedule_id = json.loads(created.stdout)["schedule_id"]
    (occurrence,) = wait_until(lambda: verified(system, schedule_id))
    record = schedule_of(system, schedule_id)
    assert (record["state"], record["fired"], len(record["occurrences"])) == ("done", 1, 1)
    shown = anchorline(system, "schedules", "get", schedule_id)
    assert shown.returncode == 0, shown.stderr
    assert f"{occurrence['job_id']}  succeeded  WARN" in shown.stdout
    refused = anchorline(system, "schedules", "pause", schedule_id)
    assert refused.returncode == 1 and "is done, not active" in refused.stderr
    assert anchorline(system, "schedules", "delete", schedule_id).returncode == 0
    listed = anchorline(system, "schedules", "list", "--json")
    assert schedule_id not in listed.stdout
