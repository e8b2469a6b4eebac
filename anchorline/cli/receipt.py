"""`anchorline receipt verify`: check a receipt against a chain RPC and, optionally, the content
and the installation's trust roots."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from anchorline.errors import BadInput
from anchorline.settings import Settings

if TYPE_CHECKING:
    from anchorline.proof.receipt import Check, Options

MAX_RECEIPT_BYTES = 4 << 20
MAX_TRUST_BYTES = 256 << 10
EXIT_VALID, EXIT_INVALID, EXIT_UNCHECKED, EXIT_UNPINNED = 0, 1, 2, 3


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
    verify.add_argument(
        "--trust",
        help="the installation's trust document, a file or a URL "
        "(its gateway's /.well-known/anchorline-trust.json): pins everything",
    )
    verify.add_argument("--prover", help="the prover address the attestation must be signed by")
    verify.add_argument("--registry", help="the registry contract the root must be anchored in")
    verify.add_argument(
        "--min-confirmations",
        type=int,
        default=None,
        help="blocks on top of the anchor, counted (default: the trust document's, else 1)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON document")


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return "0x" + hasher.hexdigest()


def read_source(source: str, *, max_bytes: int) -> bytes:
    """The bytes of a file, `-` (stdin) or an http(s) URL, at most `max_bytes`; OSError if not."""
    if source == "-":
        return sys.stdin.buffer.read(max_bytes + 1)
    if source.startswith(("http://", "https://")):
        try:
            with httpx.stream("GET", source, timeout=10.0) as response:
                response.raise_for_status()
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        break
                return body
        except httpx.HTTPError as exc:
            raise OSError(f"{source}: {exc}") from exc
    with Path(source).open("rb") as handle:
        return handle.read(max_bytes + 1)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from anchorline.proof.chainview import Web3ChainView
    from anchorline.proof.receipt import Options, verify_receipt
    from anchorline.proof.trust import parse_trust
    from anchorline.untrusted import parse_json

    try:
        receipt = parse_json(
            read_source(args.receipt, max_bytes=MAX_RECEIPT_BYTES),
            what="the receipt",
            max_bytes=MAX_RECEIPT_BYTES,
        )
        trust = None
        if args.trust:
            trust = parse_trust(read_source(args.trust, max_bytes=MAX_TRUST_BYTES))
        content = sha256_of(args.content) if args.content else None
    except (OSError, BadInput) as exc:
        print(f"anchorline: could not check: {exc}", file=sys.stderr)
        return EXIT_UNCHECKED
    options = Options(
        content_sha256=content,
        prover=args.prover,
        registry=args.registry,
        trust=trust,
        min_confirmations=args.min_confirmations,
    )
    chain = Web3ChainView(args.rpc or settings.rpc_url)
    checks = verify_receipt(receipt if isinstance(receipt, dict) else {}, chain, options)
    return report(checks, options, as_json=args.json)


def pins(options: Options) -> dict[str, Any]:
    """What the receipt was held against, besides itself and the chain."""
    if options.trust is not None:
        return {"trust": True, "prover": "trust document", "registry": "trust document"}
    return {"trust": False, "prover": options.prover, "registry": options.registry}


def report(checks: list[Check], options: Options, *, as_json: bool) -> int:
    """Print the checks and the verdict; the exit status says the verdict."""
    from anchorline.proof.receipt import (
        COULD_NOT_CHECK,
        FAIL,
        INVALID,
        UNCHECKED,
        UNPINNED,
        verdict,
    )

    outcome = verdict(checks, options)
    code = {INVALID: EXIT_INVALID, COULD_NOT_CHECK: EXIT_UNCHECKED, UNPINNED: EXIT_UNPINNED}.get(
        outcome, EXIT_VALID
    )
    if as_json:
        document = {
            "verdict": outcome,
            "exitCode": code,
            "pinned": pins(options),
            "checks": [{"name": c.name, "outcome": c.outcome, "detail": c.detail} for c in checks],
        }
        print(json.dumps(document, indent=2))
        return code
    width = max(len(check.name) for check in checks)
    for check in checks:
        print(f"{check.outcome:<5} {check.name:<{width}}  {check.detail}")
    failed = [check.name for check in checks if check.outcome == FAIL]
    unchecked = [check.name for check in checks if check.outcome == UNCHECKED]
    if failed:
        print(f"receipt FAILED: {', '.join(failed)}")
    elif unchecked:
        print(f"receipt NOT CHECKED: the chain did not answer for {', '.join(unchecked)}")
    elif outcome == UNPINNED:
        print(
            "receipt consistent in itself, but nothing was pinned: only self-consistency was "
            "checked; anyone can make such a receipt with keys and a registry of their own. "
            "Pass --trust (the installation's trust document), or --prover and --registry."
        )
    else:
        missing = [name for name, value in pins(options).items() if value is None]
        print("receipt OK" + (f" (not pinned: {', '.join(missing)})" if missing else ""))
    return code
