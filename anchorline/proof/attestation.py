"""The prover's attestation: EIP-712 typed data over a job's verified facts, checkable offline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anchorline.proof import eip712, secp

ATTESTATION_TYPE = "Attestation"
ATTESTATION_FIELDS = [
    {"name": "jobId", "type": "string"},
    {"name": "contentSha256", "type": "bytes32"},
    {"name": "manifestSha256", "type": "bytes32"},
    {"name": "signer", "type": "address"},
    {"name": "commitment", "type": "bytes32"},
    {"name": "leaf", "type": "bytes32"},
]


@dataclass(frozen=True)
class AttestedFacts:
    """What the prover vouches for: the verifier's facts and the leaf they were committed to."""

    job_id: str
    content_sha256: str
    manifest_sha256: str
    signer: str
    commitment: str
    leaf: str

    def message(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "contentSha256": self.content_sha256,
            "manifestSha256": self.manifest_sha256,
            "signer": self.signer,
            "commitment": self.commitment,
            "leaf": self.leaf,
        }


@dataclass(frozen=True)
class Attestation:
    typed_data: eip712.TypedData
    signature: str
    prover: str

    def as_result(self) -> dict[str, Any]:
        return {"typedData": self.typed_data, "signature": self.signature, "prover": self.prover}


def typed_attestation(facts: AttestedFacts, *, chain_id: int | None = None) -> eip712.TypedData:
    return eip712.typed_data(
        ATTESTATION_TYPE, ATTESTATION_FIELDS, facts.message(), chain_id=chain_id
    )


class Attester:
    """Signs attestations with the prover's key; chainId joins the domain when it is known."""

    def __init__(self, private_key: str, *, chain_id: int | None = None) -> None:
        # Parsed once: from hex, every signature derived the public key again (~40 % of it).
        self._key = secp.Signer(bytes.fromhex(private_key.removeprefix("0x")))
        self.address = self._key.address
        self.chain_id = chain_id

    def attest(self, facts: AttestedFacts) -> Attestation:
        document = typed_attestation(facts, chain_id=self.chain_id)
        return Attestation(document, eip712.sign(document, self._key), self.address)


def recover_prover(document: dict[str, Any]) -> str:
    """The address that signed an attestation's `typedData`, from its JSON form; or ValueError."""
    typed, signature = document.get("typedData"), document.get("signature")
    if not isinstance(typed, dict) or not isinstance(signature, str):
        raise ValueError("an attestation has typedData (an object) and signature (a string)")
    if typed.get("primaryType") != ATTESTATION_TYPE:
        raise ValueError(f"attestation primaryType is {typed.get('primaryType')!r}")
    if typed.get("types", {}).get(ATTESTATION_TYPE) != ATTESTATION_FIELDS:
        raise ValueError("attestation type is not anchorline's Attestation")
    domain = typed.get("domain", {})
    if (domain.get("name"), domain.get("version")) != (eip712.DOMAIN_NAME, eip712.DOMAIN_VERSION):
        raise ValueError(f"attestation domain is {domain!r}")
    return eip712.recover(typed, signature)
