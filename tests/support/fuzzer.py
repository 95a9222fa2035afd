"""A small mutation fuzzer (no coverage feedback): seeds mutated by bit flips,
byte changes, interesting values, cuts, duplications and splices between
seeds, plus plain random bytes. Deterministic for a given seed; used where
atheris is not installed, and by the suite's short run."""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00", b"\xff\xff", b"\x21\x12\xa4\x42",
               b"\r\n", b"\r\n\r\n", b":", b";", b",", b"[", b"]", b"{", b"}", b'"', b"\\u0000",
               b"\xc0", b"\xed\xa0\x80", b"1e999", b"-0", b"9007199254740993", b"NaN",
               b" typ host", b".local", b"a=candidate:", b"Content-Length: 99999\r\n"]


@dataclass
class Finding:
    data: bytes
    error: str


@dataclass
class Stats:
    inputs: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    if rng.random() < 0.05:
        return rng.randbytes(rng.randrange(0, 256))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 6)):
        choice = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            index = rng.randrange(len(data))
            data[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 2:
            data[at:at] = rng.choice(INTERESTING)
        elif choice == 3 and data:
            end = min(len(data), at + rng.randrange(1, 32))
            del data[at:end]
        elif choice == 4 and data:
            end = min(len(data), at + rng.randrange(1, 64))
            data[at:at] = data[at:end] * rng.randrange(1, 4)
        elif choice == 5:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            data = data[:at] + bytearray(other[cut:])
        else:
            data[at:at] = rng.randbytes(rng.randrange(1, 8))
    return bytes(data[:65536])


def run(target: Callable[[bytes], None], seeds: list[bytes], inputs: int,
        seed: int = 13) -> Stats:
    """Feed `inputs` inputs to `target`; every exception that escapes is a finding."""
    rng = random.Random(seed)
    stats = Stats()
    start = time.perf_counter()
    for data in seeds:
        _one(target, data, stats)
    while stats.inputs < inputs:
        _one(target, mutate(rng, seeds), stats)
    stats.seconds = time.perf_counter() - start
    return stats


def _one(target: Callable[[bytes], None], data: bytes, stats: Stats) -> None:
    stats.inputs += 1
    try:
        target(data)
    except Exception:
        if len(stats.findings) < 20:
            stats.findings.append(Finding(data, traceback.format_exc(limit=6)))
