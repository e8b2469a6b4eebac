"""Restarting `anchorline up` keeps its local chain, registry and trust roots: a receipt made
before the restart still checks after it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from system_under_test import (
    System,
    local_settings,
    run_up,
    submit_signed,
    verify_receipt,
    wait_terminal,
)

from anchorline.infra.postgres import PostgresServer

TRUST_PATH = "/.well-known/anchorline-trust.json"


def anchored_receipt(system: System) -> dict[str, object]:
    content = b"anchored before a restart\n"
    job_id = submit_signed(system, content)
    job = wait_terminal(system, job_id)
    assert job["state"] == "succeeded", job
    receipt = httpx.get(f"{system.base_url}/v1/jobs/{job['job_id']}/receipt", timeout=10)
    assert receipt.status_code == 200, receipt.text
    return dict(receipt.json())


def test_a_receipt_made_before_a_restart_checks_after_it(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    settings = local_settings(
        tmp_path / "system", database_url=postgres.new_database("restart"), batch_max_wait_s=0.5
    )
    receipt_file = tmp_path / "receipt.json"
    with run_up(settings) as before:
        receipt_file.write_text(json.dumps(anchored_receipt(before)))
        trust_before = httpx.get(before.base_url + TRUST_PATH, timeout=10).json()
    with run_up(settings) as after:
        assert after.registry_address == before.registry_address
        assert httpx.get(after.base_url + TRUST_PATH, timeout=10).json() == trust_before
        checked = verify_receipt(after, receipt_file, "--trust", after.base_url + TRUST_PATH)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "receipt OK"
