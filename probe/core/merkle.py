"""Merkle trees as RFC 9162 (Certificate Transparency 2.0) section 2.1 defines
them: the hashing, inclusion and consistency proofs, and their verification.

Pure functions over hashes. Proof generation takes an oracle `mth(start, end)`
giving MTH(D[start:end]); the collector answers it from the perfect subtrees
it stores (collector/translog.py), a verifier with every leaf from a list.
`perfect_pieces` says which perfect subtrees a range is made of, so a store
can fetch them in one query before a proof is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

Mth = Callable[[int, int], bytes]  # MTH(D[start:end])


def empty_root() -> bytes:
    """MTH({}) = SHA-256() (RFC 9162 2.1.1)."""
    return hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) whose right fold is MTH(D[start:end]),
    left to right: node (level, index) covers D[index*2**level:(index+1)*2**level].
    `start` must be aligned as the RFC's recursion aligns it (a multiple of the
    largest power of two not above end - start)."""
    pieces: list[tuple[int, int]] = []
    while end - start > 0:
        size = end - start
        if size & (size - 1) == 0:  # a power of two: one perfect subtree
            level = size.bit_length() - 1
            pieces.append((level, start >> level))
            break
        k = split(size)
        level = k.bit_length() - 1
        pieces.append((level, start >> level))
        start += k
    return pieces


def fold(hashes: list[bytes]) -> bytes:
    """The right fold of perfect subtree hashes, largest first: MTH of their union."""
    if not hashes:
        return empty_root()
    out = hashes[-1]
    for left in reversed(hashes[:-1]):
        out = node_hash(left, out)
    return out


def inclusion_path(index: int, size: int, mth: Mth) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index - start < k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_path(first: int, second: int, mth: Mth) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 2.1.4.1): empty when m is 0 or m == n."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first in (0, second):
        return []
    path: list[bytes] = []
    m, start, end, whole = first, 0, second, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                path.append(mth(start, end))
            break
        k = split(n)
        if m <= k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            m -= k
            start += k
            whole = False
    path.reverse()
    return path


def _lsb(value: int) -> bool:
    return bool(value & 1)


def verify_inclusion(index: int, size: int, leaf: bytes, path: Iterable[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether `leaf` (a leaf hash) is entry `index` of the tree
    of `size` entries whose root is `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of `second` entries extends the tree of
    `first` entries (an empty tree is extended by any; equal sizes need equal roots)."""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not path
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    hashes = list(path)
    if first & (first - 1) == 0:
        hashes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if sn == 0:
            return False
        if _lsb(fn) or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not _lsb(fn):
                while not _lsb(fn) and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


@dataclass
class Frontier:
    """The right edge of a growing tree: the perfect subtrees of its binary
    decomposition, largest first. Appending a leaf costs O(1) amortised and
    reports the new internal nodes (level, index, hash) for a store to keep."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def levels(self) -> list[int]:
        return [bit for bit in range(self.size.bit_length() - 1, -1, -1) if self.size >> bit & 1]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        made: list[tuple[int, int, bytes]] = []
        self.hashes.append(leaf)
        self.size += 1
        level, size = 0, self.size
        while size & 1 == 0:  # the two rightmost subtrees have the same height: merge
            right = self.hashes.pop()
            left = self.hashes.pop()
            merged = node_hash(left, right)
            self.hashes.append(merged)
            level += 1
            size >>= 1
            made.append((level, size - 1, merged))
        return made

    def root(self) -> bytes:
        return fold(self.hashes)

    def pack(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def unpack(cls, size: int, data: bytes) -> Frontier:
        count = bin(size).count("1")
        if len(data) != 32 * count:
            raise ValueError(f"a frontier of a tree of {size} has {count} hashes")
        return cls(size, [data[i:i + 32] for i in range(0, len(data), 32)])


def root_of(leaves: Iterable[bytes]) -> tuple[int, bytes]:
    """(size, MTH) of leaf hashes, in constant memory."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.size, frontier.root()


def mth_of(leaves: list[bytes]) -> Mth:
    """An oracle over a list of leaf hashes (tests and small verifiers)."""
    def mth(start: int, end: int) -> bytes:
        return fold([_perfect(leaves, level, index)
                     for level, index in perfect_pieces(start, end)])
    return mth


def _perfect(leaves: list[bytes], level: int, index: int) -> bytes:
    if level == 0:
        return leaves[index]
    return node_hash(_perfect(leaves, level - 1, 2 * index),
                     _perfect(leaves, level - 1, 2 * index + 1))
