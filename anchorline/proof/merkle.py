"""Merkle batches with domain-separated leaves and inner nodes (keccak-256).

leaf  = keccak256(0x00 || salt || commitment)
inner = keccak256(0x01 || left || right)

A level with an odd node promotes it unchanged to the next level, so no node is ever
paired with itself. A proof step names the side on which its sibling sits.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class ProofStep:
    sibling: bytes
    sibling_on_left: bool

    def as_json(self) -> dict[str, str]:
        return {
            "position": "left" if self.sibling_on_left else "right",
            "hash": "0x" + self.sibling.hex(),
        }


def leaf_hash(salt: bytes, commitment: bytes) -> bytes:
    return keccak(LEAF_PREFIX + salt + commitment)


def node_hash(left: bytes, right: bytes) -> bytes:
    return keccak(NODE_PREFIX + left + right)


@dataclass(frozen=True)
class MerkleBatch:
    """A tree over leaves in the order given."""

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, leaves: list[bytes]) -> MerkleBatch:
        if not leaves:
            raise ValueError("a batch needs at least one leaf")
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            level = levels[-1]
            parents = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                parents.append(level[-1])
            levels.append(tuple(parents))
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def path(self, index: int) -> list[ProofStep]:
        steps = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                steps.append(ProofStep(level[sibling], sibling_on_left=sibling < index))
            index //= 2
        return steps


def path_sides(index: int, size: int) -> list[bool]:
    """Where each sibling sits (True: on the left) on the path of leaf `index` in a batch of
    `size` leaves: the shape of a genuine path, whatever the hashes."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a batch of {size}")
    sides = []
    while size > 1:
        sibling = index ^ 1
        if sibling < size:
            sides.append(sibling < index)
        index, size = index // 2, (size + 1) // 2
    return sides


def root_from_path(leaf: bytes, path: list[ProofStep]) -> bytes:
    """Fold a leaf up its path: equal to the batch root when the proof holds."""
    node = leaf
    for step in path:
        node = (
            node_hash(step.sibling, node) if step.sibling_on_left else node_hash(node, step.sibling)
        )
    return node
