"""Cancel and retry through the API on a running system (real Kafka, PostgreSQL, anvil).

The prover holds its batches for BATCH_WINDOW_S, so a verified anchor job waits there long
enough to be cancelled before any stage after the verifier has handled it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from system_under_test import System, running_system, wait_terminal

from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign

BATCH_WINDOW_S = 12.0


@pytest.fixture(scope="module")
def slow_batches(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[System]:
    with running_system(
        state_dir=tmp_path_factory.mktemp("cancel-retry"),
        database_url=postgres.new_database("cancel_retry"),
        batch_max_wait_s=BATCH_WINDOW_S,
    ) as running:
        yield running


def submit(system: System, content: bytes, *, signer: Any = None) -> str:
    creator = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
        "created_at": "2026-11-30T03:00:00Z",
    }
    key = "0x" + bytes((signer or creator).key).hex()
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={"kind": "anchor", "manifest": json.dumps(document), "signature": sign(document, key)},
        files={"content": ("c.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_for(
    system: System, job_id: str, holds: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10)
        if response.status_code == 200 and holds(response.json()):
            return dict(response.json())
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never got there\n" + "".join(system.output[-40:]))


def post(system: System, job_id: str, action: str) -> httpx.Response:
    return httpx.post(f"{system.base_url}/v1/jobs/{job_id}/{action}", timeout=30)


def test_a_cancelled_job_is_skipped_by_the_next_stage_and_runs_again_on_retry(
    slow_batches: System,
) -> None:
    job_id = submit(slow_batches, b"cancel me while the prover waits")
    wait_for(slow_batches, job_id, lambda j: "verify" in j["result"])
    cancelled = post(slow_batches, job_id, "cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert wait_terminal(slow_batches, job_id)["state"] == "cancelled"
    # the prover's window closes: it skips the job instead of proving it
    skipped = wait_for(
        slow_batches,
        job_id,
        lambda j: any("skipped by the prove stage" in (e["note"] or "") for e in j["history"]),
    )
    assert skipped["state"] == "cancelled"
    assert "prove" not in skipped["result"]
    assert post(slow_batches, job_id, "cancel").status_code == 409

    retried = post(slow_batches, job_id, "retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["run"] == 1
    done = wait_for(slow_batches, job_id, lambda j: j["state"] == "succeeded")
    assert {"verify", "prove", "anchor"} <= set(done["result"])
    notes = [(e["generation"], e["note"]) for e in done["history"] if e["note"]]
    assert (0, "cancelled through the API") in notes
    assert (1, "retried through the API as run 1") in notes


def test_a_failed_job_is_retried_as_a_new_run_and_fails_again_with_its_reason(
    slow_batches: System,
) -> None:
    job_id = submit(slow_batches, b"signed by someone else", signer=Account.create())
    first = wait_terminal(slow_batches, job_id)
    assert first["state"] == "failed"
    assert post(slow_batches, job_id, "retry").status_code == 202
    again = wait_for(
        slow_batches,
        job_id,
        lambda j: j["state"] == "failed" and any(e["generation"] == 1 for e in j["history"]),
    )
    failures = [e for e in again["history"] if e["state"] == "failed"]
    assert [e["generation"] for e in failures] == [0, 1]
    assert again["result"]["verify"]["checks"]["creatorOk"] is False
