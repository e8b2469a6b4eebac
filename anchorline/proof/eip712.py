"""EIP-712 typed data: the domain anchorline signs under, signing and recovery."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.datatypes import PrivateKey

DOMAIN_NAME = "anchorline"
DOMAIN_VERSION = "1"
TypedData = dict[str, Any]


def domain(*, chain_id: int | None = None) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The EIP712Domain fields and values: name and version, and chainId when it is known."""
    fields = [{"name": "name", "type": "string"}, {"name": "version", "type": "string"}]
    values: dict[str, Any] = {"name": DOMAIN_NAME, "version": DOMAIN_VERSION}
    if chain_id is not None:
        fields.append({"name": "chainId", "type": "uint256"})
        values["chainId"] = chain_id
    return fields, values


def typed_data(
    primary_type: str,
    fields: list[dict[str, str]],
    message: dict[str, Any],
    *,
    chain_id: int | None = None,
) -> TypedData:
    """The complete typed-data document (the JSON a wallet's eth_signTypedData_v4 takes)."""
    domain_fields, domain_values = domain(chain_id=chain_id)
    return {
        "types": {"EIP712Domain": domain_fields, primary_type: fields},
        "primaryType": primary_type,
        "domain": domain_values,
        "message": message,
    }


def sign(document: TypedData, private_key: str | PrivateKey) -> str:
    """The signature, 0x hex; a `PrivateKey` object spares deriving its public key each time."""
    signed = Account.sign_message(encode_typed_data(full_message=document), private_key)
    return "0x" + bytes(signed.signature).hex()


def recover(document: TypedData, signature: str) -> str:
    """The checksummed address that signed `document`, or ValueError."""
    try:
        signable = encode_typed_data(full_message=document)
        return str(Account.recover_message(signable, signature=signature))
    except Exception as exc:  # eth_account and eth_keys raise many unrelated types
        raise ValueError(f"typed-data signature does not recover: {exc}") from exc
