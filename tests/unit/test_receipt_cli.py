"""`anchorline receipt verify`: its exit status and its JSON say the verdict."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from proven_jobs import CONTRACT, PROVER_KEY, prove_window

from anchorline.cli import receipt as receipt_cli
from anchorline.infra.ports import free_ports
from anchorline.proof.receipt import Options, verify_receipt
from anchorline.settings import Settings
from anchorline_gateway.receipts import build_receipt

PROVER = Account.from_key(PROVER_KEY).address


def args(receipt: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "receipt": str(receipt),
        "rpc": None,
        "content": None,
        "trust": None,
        "prover": None,
        "registry": None,
        "min_confirmations": None,
        "json": False,
    }
    return argparse.Namespace(**(values | overrides))


@pytest.fixture
def receipt_file(creator: LocalAccount, tmp_path: Path) -> Path:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(build_receipt(prove_window(creator).job("job-0"))))
    return path


def test_an_unreachable_rpc_exits_2(receipt_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (port,) = free_ports(1)  # nothing listens there
    rpc = f"http://127.0.0.1:{port}"
    assert receipt_cli.run(args(receipt_file, rpc=rpc, prover=PROVER), Settings()) == 2
    assert "receipt NOT CHECKED" in capsys.readouterr().out


def test_a_file_that_is_not_json_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "receipt.json"
    path.write_text("{not json")
    assert receipt_cli.run(args(path), Settings()) == 2


def test_nothing_pinned_exits_3_and_says_so(
    creator: LocalAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    window = prove_window(creator)
    checks = verify_receipt(build_receipt(window.job("job-0")), window.chain, Options())
    assert receipt_cli.report(checks, Options(), as_json=False) == 3
    assert "only self-consistency was checked" in capsys.readouterr().out


def test_pinned_exits_0_and_a_failure_1_with_json(
    creator: LocalAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    window = prove_window(creator)
    receipt = build_receipt(window.job("job-0"))
    pinned = Options(prover=PROVER, registry=CONTRACT)
    assert (
        receipt_cli.report(verify_receipt(receipt, window.chain, pinned), pinned, as_json=True) == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert (document["verdict"], document["exitCode"]) == ("valid", 0)
    assert {check["outcome"] for check in document["checks"]} >= {"PASS"}
    other = Options(prover=PROVER, registry="0x" + "cd" * 20)
    assert (
        receipt_cli.report(verify_receipt(receipt, window.chain, other), other, as_json=True) == 1
    )
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "invalid"
    assert [c["name"] for c in document["checks"] if c["outcome"] == "FAIL"] == ["transaction"]


def test_a_partial_pin_says_what_was_not_pinned(
    creator: LocalAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    window = prove_window(creator)
    receipt = build_receipt(window.job("job-0"))
    only_prover = Options(prover=PROVER)
    checks = verify_receipt(receipt, window.chain, only_prover)
    assert receipt_cli.report(checks, only_prover, as_json=False) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "receipt OK (not pinned: registry)"
