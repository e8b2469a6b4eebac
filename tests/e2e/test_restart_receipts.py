"""Restarting `anchorline up` keeps its local chain, registry and trust roots: a receipt made
before the restart still checks after it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
from eth_account import Account
from system_under_test import System, local_settings, run_up, wait_terminal

from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign_eip191

TRUST_PATH = "/.well-known/anchorline-trust.json"


def anchored_receipt(system: System) -> dict[str, object]:
    creator = Account.create()
    content = b"anchored before a restart\n"
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
    }
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={
            "kind": "anchor",
            "manifest": json.dumps(document),
            "signature": sign_eip191(document, creator.key.hex()),
        },
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = wait_terminal(system, response.json()["job_id"])
    assert job["state"] == "succeeded", job
    receipt = httpx.get(f"{system.base_url}/v1/jobs/{job['job_id']}/receipt", timeout=10)
    assert receipt.status_code == 200, receipt.text
    return dict(receipt.json())


def verify(system: System, receipt: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "anchorline"), "receipt", "verify", str(receipt)]
    command += ["--rpc", system.settings.rpc_url, "--trust", system.base_url + TRUST_PATH]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


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
        checked = verify(after, receipt_file)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "receipt OK"
