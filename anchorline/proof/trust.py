"""The installation's trust roots: what a receipt's checker pins instead of trusting the receipt.

The gateway serves this document at WELL_KNOWN_PATH; docs/receipts.md specifies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address

from anchorline.errors import BadInput
from anchorline.untrusted import parse_json

TRUST_FORMAT = "anchorline-trust/1"
WELL_KNOWN_PATH = "/.well-known/anchorline-trust.json"
MAX_BYTES = 256 * 1024
FINALITY_RULE = (
    "a job succeeds once its anchor's block is `confirmations` deep (counting its own) on the "
    "canonical chain; a receipt's check asks for at least that depth"
)


@dataclass(frozen=True)
class KeyPeriod:
    """An address and the blocks in which it acted for the installation (until None: still)."""

    address: str
    from_block: int
    until_block: int | None = None

    def covers(self, block: int) -> bool:
        return self.from_block <= block and (self.until_block is None or block <= self.until_block)

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "fromBlock": self.from_block,
            "untilBlock": self.until_block,
        }


@dataclass(frozen=True)
class TrustRoots:
    """One installation's chain, registry, prover keys and chain-writer keys."""

    chain_id: int
    registry: str
    deployment_block: int
    provers: tuple[KeyPeriod, ...]
    chain_writers: tuple[KeyPeriod, ...]
    confirmations: int = 1
    receipt_formats: tuple[str, ...] = ("anchorline-receipt/1",)

    def prover_ok(self, address: str, block: int | None) -> bool:
        """`address` signed for the installation: in the block given, or ever without one."""
        return _listed(self.provers, address, block)

    def writer_ok(self, address: str, block: int) -> bool:
        return _listed(self.chain_writers, address, block)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": TRUST_FORMAT,
            "chainId": self.chain_id,
            "registry": {"address": self.registry, "deploymentBlock": self.deployment_block},
            "provers": [period.as_json() for period in self.provers],
            "chainWriters": [period.as_json() for period in self.chain_writers],
            "receiptFormats": list(self.receipt_formats),
            "finality": {"confirmations": self.confirmations, "rule": FINALITY_RULE},
        }


def _listed(periods: tuple[KeyPeriod, ...], address: str, block: int | None) -> bool:
    mine = [p for p in periods if isinstance(address, str) and p.address.lower() == address.lower()]
    return any(block is None or period.covers(block) for period in mine)


def parse_trust(text: str | bytes) -> TrustRoots:
    """A trust document from outside (a file, a URL), or BadInput saying what is wrong."""
    document = parse_json(text, what="trust document", max_bytes=MAX_BYTES)
    try:
        return _roots(document)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadInput(f"not an anchorline trust document: {type(exc).__name__}: {exc}") from exc


def _roots(document: Any) -> TrustRoots:
    if document.get("format") != TRUST_FORMAT:
        raise ValueError(f"format is {document.get('format')!r}, not {TRUST_FORMAT}")
    registry = document["registry"]
    formats = document["receiptFormats"]
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise ValueError("receiptFormats is a list of strings")
    return TrustRoots(
        chain_id=_integer(document["chainId"], "chainId"),
        registry=_address(registry["address"], "registry.address"),
        deployment_block=_integer(registry["deploymentBlock"], "registry.deploymentBlock"),
        provers=_periods(document["provers"], "provers"),
        chain_writers=_periods(document["chainWriters"], "chainWriters"),
        confirmations=_integer(document["finality"]["confirmations"], "finality.confirmations"),
        receipt_formats=tuple(formats),
    )


def _periods(entries: Any, name: str) -> tuple[KeyPeriod, ...]:
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{name} is a list of at least one address")
    periods = []
    for index, entry in enumerate(entries):
        until = entry.get("untilBlock")
        periods.append(
            KeyPeriod(
                address=_address(entry["address"], f"{name}[{index}].address"),
                from_block=_integer(entry["fromBlock"], f"{name}[{index}].fromBlock"),
                until_block=None
                if until is None
                else _integer(until, f"{name}[{index}].untilBlock"),
            )
        )
    return tuple(periods)


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is an integer of 0 or more")
    return value


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"{name} is an Ethereum address")
    return to_checksum_address(value)


ROTATION_GRACE_BLOCKS = 100  # a retired key's work still in flight lands within these


def rotated(
    previous: TrustRoots | None,
    current: TrustRoots,
    *,
    head: int,
    grace: int = ROTATION_GRACE_BLOCKS,
) -> TrustRoots:
    """`current` (one open period per role) joined to `previous` of the same chain and registry:
    an address no longer in use is closed at `head + grace`, the new one opens at `head + 1`,
    and every retired one stays listed, so receipts made under it still check."""
    if previous is None or (previous.chain_id, previous.registry) != (
        current.chain_id,
        current.registry,
    ):
        return current
    return TrustRoots(
        chain_id=current.chain_id,
        registry=current.registry,
        deployment_block=previous.deployment_block,
        provers=_rotate(previous.provers, current.provers[0].address, head=head, grace=grace),
        chain_writers=_rotate(
            previous.chain_writers, current.chain_writers[0].address, head=head, grace=grace
        ),
        confirmations=current.confirmations,
        receipt_formats=current.receipt_formats,
    )


def _rotate(
    periods: tuple[KeyPeriod, ...], address: str, *, head: int, grace: int
) -> tuple[KeyPeriod, ...]:
    if any(p.address == address and p.until_block is None for p in periods):
        return periods
    closed = tuple(
        p if p.until_block is not None else KeyPeriod(p.address, p.from_block, head + grace)
        for p in periods
    )
    return (*closed, KeyPeriod(address, head + 1))
