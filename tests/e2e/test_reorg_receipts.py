"""A reorg after jobs succeeded: the finality watch anchors their root again, each job moves to
a new receipt that checks (its history says why), and the old receipt's check says the anchor
was reorganised away."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from system_under_test import (
    System,
    local_settings,
    run_up,
    submit_signed,
    verify_receipt,
    wait_terminal,
)
from web3 import Web3

from anchorline.infra.postgres import PostgresServer

TRUST_PATH = "/.well-known/anchorline-trust.json"


def receipt_of(system: System, job_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{system.base_url}/v1/jobs/{job_id}/receipt", timeout=10)
    return dict(response.json()) if response.status_code == 200 else None


def verify(system: System, receipt: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(receipt))
    return verify_receipt(system, path, "--trust", system.base_url + TRUST_PATH)


def test_jobs_whose_anchor_a_reorg_took_are_anchored_again_with_new_receipts(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    settings = local_settings(
        tmp_path / "system",
        database_url=postgres.new_database("reorg"),
        batch_max_wait_s=1.0,
        finality_depth=50,  # deeper than this test ever gets: every anchor stays watched
    )
    with run_up(settings) as system:
        job_ids = [submit_signed(system, f"reorged content {n}\n".encode()) for n in range(3)]
        for job_id in job_ids:
            assert wait_terminal(system, job_id)["state"] == "succeeded"
        old = {job_id: receipt_of(system, job_id) for job_id in job_ids}
        time.sleep(6)  # the watch has seen each anchor (it checks every 2 s)
        w3 = Web3(Web3.HTTPProvider(settings.rpc_url))
        lowest = min(receipt["anchor"]["blockNumber"] for receipt in old.values() if receipt)
        reorg = w3.provider.make_request("anvil_reorg", [w3.eth.block_number - lowest + 1, []])  # type: ignore[arg-type]
        assert "error" not in reorg, reorg

        new: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while len(new) < len(job_ids) and time.monotonic() < deadline:
            for job_id in job_ids:
                found = receipt_of(system, job_id)
                if found and found["anchor"]["blockHash"] != old[job_id]["anchor"]["blockHash"]:  # type: ignore[index]
                    new[job_id] = found
            time.sleep(1)
        assert len(new) == len(job_ids), "".join(system.output[-60:])

        for job_id in job_ids:
            checked = verify(system, new[job_id], tmp_path / f"{job_id}.json")
            assert checked.returncode == 0, checked.stdout + checked.stderr
            stale = verify(system, old[job_id], tmp_path / f"{job_id}-old.json")  # type: ignore[arg-type]
            assert stale.returncode == 1, stale.stdout
            assert "the anchor was reorganised away" in stale.stdout
            history = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10).json()["history"]
            assert any("reorganised away" in (event.get("note") or "") for event in history)
