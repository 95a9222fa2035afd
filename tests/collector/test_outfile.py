"""The command line's output files: whole or not at all, saying how far a
long write is, and an export written beside its proof at once."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.outfile import beside, write
from probe.core.errors import UserError


def test_a_long_write_says_how_far_it_is_and_an_interrupted_one_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `export --out` writes goes through OUT.partial, renamed once whole;
    past `every` seconds a line on stderr says how much is written (an export
    of 10 million records takes minutes); Ctrl-C leaves no half file."""
    out = tmp_path / "x.parquet"
    write(out, (b"x" * 500_000 for _ in range(4)), "--out", every=0)
    assert out.read_bytes() == b"x" * 2_000_000
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1].startswith(f"voipwatch-collector: 2 MB written to {out}")

    def interrupted() -> Iterator[bytes]:
        yield b"half"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write(tmp_path / "y.parquet", interrupted(), "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]


def test_the_proof_is_written_while_the_export_is(tmp_path: Path) -> None:
    """Both files are written at once: each side waits for the other to have
    started, which a proof written after the export would never see."""
    export_started, proof_started = threading.Event(), threading.Event()

    def proof() -> Iterator[bytes]:
        yield b"leaf 0\n"
        proof_started.set()
        assert export_started.wait(10), "the export did not start beside the proof"
        yield b"leaf 1\n"

    def export() -> Iterator[bytes]:
        yield b"record 0\n"
        export_started.set()
        assert proof_started.wait(10), "the proof did not start beside the export"
        yield b"record 1\n"

    with beside(tmp_path / "x.jsonl.proof", proof(), "--proof") as failed:
        write(tmp_path / "x.jsonl", export(), "--out", stop=failed)
    assert (tmp_path / "x.jsonl").read_bytes() == b"record 0\nrecord 1\n"
    assert (tmp_path / "x.jsonl.proof").read_bytes() == b"leaf 0\nleaf 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl", "x.jsonl.proof"]


def test_a_proof_that_fails_stops_the_export(tmp_path: Path) -> None:
    """The proof's error is the command's; the export stops at once and
    neither file nor any part of one is left."""
    def proof() -> Iterator[bytes]:
        yield b"leaf 0\n"
        raise UserError("the log cannot be read")

    def export() -> Iterator[bytes]:
        for n in range(10_000):  # far longer than the proof lasts
            threading.Event().wait(0.001)
            yield b"record %d\n" % n

    with pytest.raises(UserError, match="the log cannot be read"), \
            beside(tmp_path / "x.jsonl.proof", proof(), "--proof") as failed:
        write(tmp_path / "x.jsonl", export(), "--out", stop=failed)
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_fails_stops_the_proof(tmp_path: Path) -> None:
    """Ctrl-C or the export's error: the proof is given up, its reader closed,
    nothing left behind, and the export's error is the one raised."""
    closed = threading.Event()

    def proof() -> Iterator[bytes]:
        try:
            while True:
                threading.Event().wait(0.001)
                yield b"leaf\n"
        finally:
            closed.set()

    def export() -> Iterator[bytes]:
        yield b"record 0\n"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), \
            beside(tmp_path / "x.jsonl.proof", proof(), "--proof") as failed:
        write(tmp_path / "x.jsonl", export(), "--out", stop=failed)
    assert closed.is_set() and list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_proof_finishes_leaves_no_part_of_it(tmp_path: Path) -> None:
    """The export is written and the proof still going when Ctrl-C comes: the
    proof is given up too, not left as a partial file by a thread cut off at
    exit."""
    def proof() -> Iterator[bytes]:
        while True:  # until given up
            threading.Event().wait(0.01)
            yield b"leaf\n"

    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt), \
            beside(tmp_path / "x.jsonl.proof", proof(), "--proof") as failed:
        write(tmp_path / "x.jsonl", iter([b"record\n"]), "--out", stop=failed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]


def test_an_unwritable_proof_is_said_before_the_export_starts(tmp_path: Path) -> None:
    nowhere = tmp_path / "missing" / "x.proof"
    started = False
    with pytest.raises(UserError, match=f"cannot write --proof {nowhere}"), \
            beside(nowhere, iter([b"leaf\n"]), "--proof"):
        started = True
    assert not started and list(tmp_path.iterdir()) == []
