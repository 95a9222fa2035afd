"""RFC 9162 Merkle trees (probe/core/merkle.py) against the RFC's recursive
definitions written out plainly here: roots, inclusion and consistency proofs
for every size up to 40, each proof verified, and altered proofs refused."""

from __future__ import annotations

import hashlib

import pytest

from probe.core import merkle


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:  # RFC 9162 2.1.1, word for word
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + leaves[0])
    k = merkle.split(n)
    return h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:  # 2.1.3.1
    n = len(leaves)
    if n == 1:
        return []
    k = merkle.split(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:  # 2.1.4.1
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = merkle.split(n)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


DATA = [f"leaf {i}".encode() for i in range(40)]
HASHES = [merkle.leaf_hash(d) for d in DATA]


def test_roots_and_frontier() -> None:
    assert merkle.root_of([]) == (0, h(b""))
    frontier = merkle.Frontier()
    stored: dict[tuple[int, int], bytes] = {}
    for n in range(1, len(DATA) + 1):
        for level, index, value in frontier.append(HASHES[n - 1]):
            stored[level, index] = value
        assert frontier.root() == mth(DATA[:n]) == merkle.root_of(HASHES[:n])[1]
        again = merkle.Frontier.unpack(n, frontier.pack())
        assert again.root() == frontier.root() and again.levels() == frontier.levels()
    # every internal node reported once, and right
    for (level, index), value in stored.items():
        size = 1 << level
        assert value == mth(DATA[index * size:(index + 1) * size])


def test_proofs_match_the_rfc_and_verify() -> None:
    for n in range(1, 34):
        oracle = merkle.mth_of(HASHES[:n])
        root = mth(DATA[:n])
        for m in range(n):
            proof = merkle.inclusion_path(m, n, oracle)
            assert proof == path(m, DATA[:n])
            assert merkle.verify_inclusion(m, n, HASHES[m], proof, root)
            assert not merkle.verify_inclusion(m, n, HASHES[(m + 1) % 40], proof, root)
            if proof:
                bad = [*proof[:-1], h(b"x")]
                assert not merkle.verify_inclusion(m, n, HASHES[m], bad, root)
                assert not merkle.verify_inclusion(m, n, HASHES[m], proof[:-1], root)
        for m in range(0, n + 1):
            proof = merkle.consistency_path(m, n, oracle)
            expected = [] if m in (0, n) else subproof(m, DATA[:n], True)
            assert proof == expected
            old = mth(DATA[:m])
            assert merkle.verify_consistency(m, n, old, root, proof)
            if 0 < m < n:
                assert not merkle.verify_consistency(m, n, h(b"forged"), root, proof)
                assert not merkle.verify_consistency(m, n, old, h(b"forged"), proof)
                assert not merkle.verify_consistency(m, n, old, root, proof[:-1])
                rewritten = list(DATA[:n])
                rewritten[m - 1] = b"rewritten history"
                assert not merkle.verify_consistency(m, n, old, mth(rewritten), proof)


def test_pieces_cover_the_range() -> None:
    assert merkle.perfect_pieces(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.perfect_pieces(8, 12) == [(2, 2)]
    assert merkle.perfect_pieces(0, 0) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_path(3, 3, merkle.mth_of(HASHES))
    with pytest.raises(ValueError, match="no consistency proof"):
        merkle.consistency_path(4, 3, merkle.mth_of(HASHES))
    with pytest.raises(ValueError, match="frontier"):
        merkle.Frontier.unpack(3, b"\x00" * 32)
    assert not merkle.verify_inclusion(5, 5, HASHES[0], [], HASHES[0])
    assert not merkle.verify_consistency(2, 1, HASHES[0], HASHES[0], [])
    assert merkle.verify_consistency(0, 5, h(b""), mth(DATA[:5]), [])
    assert not merkle.verify_consistency(3, 3, HASHES[0], HASHES[1], [])
