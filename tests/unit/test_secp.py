"""anchorline.proof.secp and eip712's flat digest give what eth_account gives, on every input."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_defunct, encode_typed_data
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from anchorline.proof import eip712, secp
from anchorline.proof.attestation import AttestedFacts, Attester, typed_attestation
from anchorline.proof.manifest import recover_eip191

KEYS = st.binary(min_size=32, max_size=32).filter(
    lambda key: 0 < int.from_bytes(key, "big") < secp.coincurve.utils.GROUP_ORDER_INT
)
HASHES = st.binary(min_size=32, max_size=32).map(lambda raw: "0x" + raw.hex())
ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())


@given(ADDRESSES, st.sampled_from([str.lower, str.upper, lambda text: text]))
def test_checksums_are_eth_utils_checksums(address: str, case) -> None:
    written = "0x" + case(address[2:])
    assert secp.checksum_address(written) == to_checksum_address(written)


@pytest.mark.parametrize(
    "bad", ["", "0x", "0x" + "g" * 40, "0x" + "a" * 39, "a" * 42, "0x" + "a" * 41]
)
def test_a_checksum_of_anything_but_an_address_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        secp.checksum_address(bad)


@settings(max_examples=40, deadline=None)
@given(KEYS, st.binary(max_size=300))
def test_eip191_recovery_is_eth_accounts(key: bytes, message: bytes) -> None:
    signable = encode_defunct(primitive=message)
    signature = bytes(Account.sign_message(signable, key).signature)
    assert secp.eip191_digest(message) == _hash_eip191_message(signable)
    expected = Account.recover_message(signable, signature=signature)
    assert secp.recover(secp.eip191_digest(message), signature) == expected
    assert recover_eip191(message, "0x" + signature.hex()) == expected


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=65, max_size=65), st.binary(max_size=64))
def test_any_65_bytes_recover_as_eth_account_recovers_them(
    signature: bytes, message: bytes
) -> None:
    """Every v, r and s: the same address, or a ValueError where eth_account raises."""
    try:
        expected = str(
            Account.recover_message(encode_defunct(primitive=message), signature=signature)
        )
    except Exception:
        expected = None
    try:
        got = recover_eip191(message, "0x" + signature.hex())
    except ValueError:
        got = None
    assert got == expected


@pytest.mark.parametrize("v", [0, 1, 35, 36])
def test_other_v_values_go_to_eth_account(v: int) -> None:
    key = bytes(range(1, 33))
    signable = encode_defunct(primitive=b"manifest")
    signature = bytearray(Account.sign_message(signable, key).signature)
    assert secp.recover(secp.eip191_digest(b"manifest"), bytes(signature)) is not None
    signature[64] = v + (signature[64] - 27 if v in (0, 35) else signature[64] - 28)
    assert secp.recover(secp.eip191_digest(b"manifest"), bytes(signature)) is None
    try:
        expected = str(Account.recover_message(signable, signature=bytes(signature)))
    except Exception:
        expected = None
    try:
        got = recover_eip191(b"manifest", "0x" + bytes(signature).hex())
    except ValueError:
        got = None
    assert got == expected


FACTS = st.builds(
    AttestedFacts,
    job_id=st.text(max_size=40),
    content_sha256=HASHES,
    manifest_sha256=HASHES,
    signer=ADDRESSES.map(to_checksum_address),
    commitment=HASHES,
    leaf=HASHES,
)


@settings(max_examples=40, deadline=None)
@given(KEYS, FACTS, st.one_of(st.none(), st.integers(0, 2**64)))
def test_attestations_sign_and_recover_as_eth_account(key: bytes, facts, chain_id) -> None:
    attester = Attester("0x" + key.hex(), chain_id=chain_id)
    document = typed_attestation(facts, chain_id=chain_id)
    signable = encode_typed_data(full_message=document)
    expected = "0x" + bytes(Account.sign_message(signable, key).signature).hex()
    assert eip712.flat_digest(document) is not None
    assert attester.attest(facts).signature == expected
    assert attester.address == Account.from_key(key).address
    assert eip712.recover(document, expected) == attester.address


def _document(**message) -> eip712.TypedData:
    fields = [{"name": "a", "type": "bytes32"}, {"name": "b", "type": "address"}]
    return eip712.typed_data("T", fields, message)


@pytest.mark.parametrize(
    "document",
    [
        _document(a="0x12", b="0x" + "ab" * 20),  # a short bytes32
        _document(a="0x" + "ab" * 32, b="0x" + "aB" * 20),  # a wrong EIP-55 checksum
        _document(a="0x" + "ab" * 32, b="0x" + "ab" * 20, extra=1),  # a field of no type
        {**_document(a="0x" + "ab" * 32, b="0x" + "ab" * 20), "types": {"EIP712Domain": []}},
    ],
)
def test_documents_not_written_exactly_are_signed_by_eth_account(document) -> None:
    key = bytes(range(1, 33))
    assert eip712.flat_digest(document) is None
    try:
        expected = (
            "0x"
            + bytes(
                Account.sign_message(encode_typed_data(full_message=document), key).signature
            ).hex()
        )
    except Exception as exc:
        with pytest.raises(type(exc)):
            eip712.sign(document, secp.Signer(key))
        return
    assert eip712.sign(document, secp.Signer(key)) == expected


def _variant(change) -> eip712.TypedData:
    fields = [{"name": "a", "type": "string"}, {"name": "b", "type": "bytes32"}]
    document = eip712.typed_data("T", fields, {"a": "x", "b": "0x" + "ab" * 32}, chain_id=5)
    change(document)
    return document


DOMAIN_FIELD = {"name": "foo", "type": "string"}


@pytest.mark.parametrize(
    "document",
    [
        _variant(lambda d: None),
        _variant(lambda d: d["types"]["T"].reverse()),  # the message's order is its own
        _variant(lambda d: d["types"]["EIP712Domain"].reverse()),  # eth_account reorders it
        _variant(
            lambda d: (d["types"]["EIP712Domain"].append(DOMAIN_FIELD), d["domain"].update(foo="x"))
        ),
        _variant(lambda d: d["types"]["EIP712Domain"][0].update(type="bytes32")),
        _variant(lambda d: d["domain"].update(chainId=True)),
        _variant(lambda d: d["types"]["EIP712Domain"].pop()),  # a chainId value of no type
        _variant(lambda d: d.update(primaryType="EIP712Domain")),
    ],
)
def test_a_digest_computed_here_is_eth_accounts_or_none(document) -> None:
    """The domain's type is derived by eth_account from its values: any other than the two
    anchorline writes is left to eth_account."""
    fast = eip712.flat_digest(document)
    try:
        signable = encode_typed_data(full_message=document)
        expected = secp.keccak256(
            b"\x19" + bytes(signable.version) + signable.header + signable.body
        )
    except Exception:
        expected = None
    assert fast is None or fast == expected


@pytest.mark.parametrize("after", ["\n", " ", "00"])
def test_a_signature_with_anything_after_its_130_digits_does_not_recover(after: str) -> None:
    """eth_account refuses it (`bytes.fromhex` would skip the whitespace): so does the fast path."""
    key = bytes(range(1, 33))
    written = (
        "0x" + bytes(Account.sign_message(encode_defunct(primitive=b"m"), key).signature).hex()
    )
    with pytest.raises(ValueError):
        recover_eip191(b"m", written + after)
    signer = Account.from_key(key).address
    facts = AttestedFacts("job", *["0x" + "ab" * 32] * 2, signer, *["0x" + "cd" * 32] * 2)
    document = typed_attestation(facts)
    signed = eip712.sign(document, secp.Signer(key))
    assert eip712.recover(document, signed) == signer
    with pytest.raises(ValueError):
        eip712.recover(document, signed + after)
