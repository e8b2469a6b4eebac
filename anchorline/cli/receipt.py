"""`anchorline receipt verify`: check a receipt against a chain RPC and, optionally, the content."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from anchorline.settings import Settings


def add_parser(commands: Any) -> None:
    receipt = commands.add_parser(
        "receipt", help="check a job's receipt without trusting anchorline"
    )
    actions = receipt.add_subparsers(dest="receipt_command", required=True)
    verify = actions.add_parser("verify", help="check every link from the content to the chain")
    verify.add_argument("receipt", help="the receipt JSON (GET /v1/jobs/{id}/receipt), - for stdin")
    verify.add_argument(
        "--rpc", help="any JSON-RPC endpoint of the chain (default: ANCHORLINE_RPC_URL)"
    )
    verify.add_argument("--content", type=Path, help="the content, to check its sha256 too")
    verify.add_argument("--prover", help="the prover address the attestation must be signed by")
    verify.add_argument(
        "--min-confirmations", type=int, default=1, help="blocks on top of the anchor, counted"
    )
    verify.add_argument(
        "--json", action="store_true", help="one JSON document: ok and each check's outcome"
    )


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return "0x" + hasher.hexdigest()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from anchorline.proof.chainview import Web3ChainView
    from anchorline.proof.receipt import FAIL, Options, verify_receipt

    text = sys.stdin.read() if args.receipt == "-" else Path(args.receipt).read_text()
    try:
        receipt = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"anchorline: {args.receipt} is not JSON: {exc}", file=sys.stderr)
        return 2
    options = Options(
        content_sha256=sha256_of(args.content) if args.content else None,
        prover=args.prover,
        min_confirmations=args.min_confirmations,
    )
    chain = Web3ChainView(args.rpc or settings.rpc_url)
    checks = verify_receipt(receipt if isinstance(receipt, dict) else {}, chain, options)
    failed = [check.name for check in checks if check.outcome == FAIL]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [check.__dict__ for check in checks]}))
        return 1 if failed else 0
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{check.outcome}  {check.name:<{width}}  {check.detail}")
    if failed:
        print(f"receipt FAILED: {', '.join(failed)}")
        return 1
    print("receipt OK")
    return 0
