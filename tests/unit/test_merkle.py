from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import keccak

from anchorline.proof.merkle import (
    MerkleBatch,
    ProofStep,
    leaf_hash,
    node_hash,
    root_from_path,
)


def leaves(count: int) -> list[bytes]:
    return [leaf_hash(keccak(b"salt-%d" % i), keccak(b"job-%d" % i)) for i in range(count)]


@pytest.mark.parametrize("size", range(1, 34))
def test_every_path_leads_to_the_root(size: int) -> None:
    batch = MerkleBatch.build(leaves(size))
    for index, leaf in enumerate(leaves(size)):
        assert root_from_path(leaf, batch.path(index)) == batch.root


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13, 33])
def test_a_leaf_does_not_prove_against_another_leafs_path(size: int) -> None:
    items = leaves(size)
    batch = MerkleBatch.build(items)
    for index in range(size):
        other = (index + 1) % size
        assert root_from_path(items[index], batch.path(other)) != batch.root


@pytest.mark.parametrize("size", [2, 3, 7, 16, 33])
def test_tampered_paths_fail(size: int) -> None:
    items = leaves(size)
    batch = MerkleBatch.build(items)
    for index in range(size):
        path = batch.path(index)
        for position, step in enumerate(path):
            flipped = bytes([step.sibling[0] ^ 1]) + step.sibling[1:]
            bad_hash = [*path[:position], replace(step, sibling=flipped), *path[position + 1 :]]
            assert root_from_path(items[index], bad_hash) != batch.root
            swapped = replace(step, sibling_on_left=not step.sibling_on_left)
            bad_side = [*path[:position], swapped, *path[position + 1 :]]
            assert root_from_path(items[index], bad_side) != batch.root
        assert root_from_path(items[index], path[:-1]) != batch.root


def test_a_tampered_leaf_fails() -> None:
    items = leaves(6)
    batch = MerkleBatch.build(items)
    assert root_from_path(leaf_hash(b"s", b"forged"), batch.path(2)) != batch.root


def test_one_leaf_is_its_own_root() -> None:
    (leaf,) = leaves(1)
    batch = MerkleBatch.build([leaf])
    assert batch.root == leaf
    assert batch.path(0) == []


def test_shape_of_small_trees() -> None:
    a, b, c = leaves(3)
    assert MerkleBatch.build([a, b]).root == node_hash(a, b)
    # The odd node is promoted, never paired with itself.
    assert MerkleBatch.build([a, b, c]).root == node_hash(node_hash(a, b), c)
    assert MerkleBatch.build([a, b, c]).path(2) == [ProofStep(node_hash(a, b), True)]


def test_leaf_order_matters() -> None:
    a, b = leaves(2)
    assert MerkleBatch.build([a, b]).root != MerkleBatch.build([b, a]).root


def test_leaves_and_inner_nodes_are_domain_separated() -> None:
    left, right = leaves(2)
    assert leaf_hash(left, right) == keccak(b"\x00" + left + right)
    assert node_hash(left, right) == keccak(b"\x01" + left + right)
    assert leaf_hash(left, right) != node_hash(left, right)


def test_an_inner_node_cannot_pass_as_a_leaf() -> None:
    items = leaves(4)
    batch = MerkleBatch.build(items)
    inner = batch.levels[1][0]
    assert inner == node_hash(items[0], items[1])
    # Presenting the inner node's children as a leaf's salt and commitment gives another hash.
    forged = leaf_hash(items[0], items[1])
    assert forged != inner
    assert root_from_path(forged, batch.path(0)[1:]) != batch.root


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        MerkleBatch.build([])


def test_proof_step_json() -> None:
    step = ProofStep(b"\xab" * 32, sibling_on_left=True)
    assert step.as_json() == {"position": "left", "hash": "0x" + "ab" * 32}
    assert replace(step, sibling_on_left=False).as_json()["position"] == "right"
