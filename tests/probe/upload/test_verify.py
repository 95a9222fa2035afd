"""`voipwatch-probe verify` and `verify-export` (probe/upload/verify.py,
probe/upload/verify_export.py) on hostile files, from the real console script:
a bad line is named with its file and line, never a traceback; 3 when the data
does not verify, 2 when the input cannot be read as what it should be."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probe.core import merkle
from probe.core.errors import UserError
from probe.core.evidence import PROOF_SCHEMA, leaf_bytes, leaf_of, record_sha256, sign_object
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record
from tests.conftest import probe_command

DEEP = "[" * 100_000 + "\n"  # deeper than any parser's recursion


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*probe_command(), *args], capture_output=True, text=True,
                          timeout=120)


def clean(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr + result.stdout, result


def export(tmp_path: Path, n: int = 3, logged: list[int] | None = None
           ) -> tuple[Path, Path, list[str], list[str]]:
    """A collector export of `n` records and its proof, signed by a collector
    key of the test's own: (export, proof, export lines, proof lines). The log
    holds the records in order, or those of `logged` (indexes, repeats allowed)."""
    probe, collector = ProbeKey.generate(), ProbeKey.generate()
    records = [make_record(probe) for _ in range(n)]
    leaves = [leaf_of(r, record_sha256(r), None, None, "none") for r in records]
    if logged is not None:
        leaves = [leaves[i] for i in logged]
        n = len(leaves)
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.append(merkle.leaf_hash(leaf_bytes(leaf)))
    head = sign_object({"tree_size": n, "root_hash": frontier.root().hex(),
                        "timestamp": "2026-01-01T00:00:00Z"}, collector.key_id,
                       collector.private.sign)
    header = {"schema": PROOF_SCHEMA, "collector": {"public_key": collector.public_b64,
                                                    "key_id": collector.key_id},
              "tree_head": head, "filters": {}}
    lines = [json.dumps({"measurement": r, "public_key": probe.public_b64}) for r in records]
    proof = [json.dumps(header)] + [json.dumps({"index": i, "leaf": leaf})
                                    for i, leaf in enumerate(leaves)]
    path, proof_path = tmp_path / "exp.jsonl", tmp_path / "exp.jsonl.proof"
    path.write_text("".join(line + "\n" for line in lines))
    proof_path.write_text("".join(line + "\n" for line in proof))
    return path, proof_path, lines, proof


def test_a_sound_export_verifies(tmp_path: Path) -> None:
    path, _, _, _ = export(tmp_path)
    clean(cli("verify-export", str(path)), 0, "3 records, all signatures valid", "complete")
    clean(cli("verify", str(path)), 0, "complete")


def test_a_deeply_nested_line_is_a_bad_record(tmp_path: Path) -> None:
    deep = tmp_path / "deep.jsonl"
    deep.write_text(DEEP)
    clean(cli("verify", str(deep)), 3, f"{deep}:1: not_json: nested too deeply",
          "1 of 1 records failed verification")
    path, _, lines, _ = export(tmp_path)
    path.write_text("".join(line + "\n" for line in [lines[0], DEEP.strip(), *lines[1:]]))
    clean(cli("verify", str(path)), 3, f"{path}:2: not_json: nested too deeply")
    clean(cli("verify-export", str(path)), 2,
          f"{path}:2: not a line of a collector export in JSONL or CSV (nested too deeply)")


def test_a_deeply_nested_proof_is_not_a_proof(tmp_path: Path) -> None:
    path, proof, _, lines = export(tmp_path)
    deep = tmp_path / "deep.proof"
    deep.write_text(DEEP)
    clean(cli("verify", str(path), "--proof", str(deep)), 2,
          f"{deep} is not an export proof (nested too deeply)")
    proof.write_text("".join(line + "\n" for line in [lines[0], DEEP.strip(), *lines[2:]]))
    clean(cli("verify-export", str(path)), 3, f"{proof}:2: not a leaf line")


def test_a_corrupted_export_line_is_named(tmp_path: Path) -> None:
    path, _, lines, _ = export(tmp_path)
    lines[2] = lines[2][:40]
    path.write_text("".join(line + "\n" for line in lines))
    clean(cli("verify-export", str(path)), 2,
          f"{path}:3: not a line of a collector export in JSONL or CSV (JSONDecodeError")


def test_binary_input_is_not_a_traceback(tmp_path: Path) -> None:
    path, proof, _, lines = export(tmp_path)
    good = path.read_bytes()
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    clean(cli("verify-export", str(path)), 2, f"{path} is not UTF-8 text")
    path.write_bytes(good)
    proof.write_bytes(b"\xff" + "".join(line + "\n" for line in lines).encode())
    clean(cli("verify-export", str(path)), 2, f"{proof} is not an export proof ('utf-8' codec")
    # past the first read's buffer: the leaf lines are read as they come
    padded = json.loads(lines[1])
    padded["leaf"]["pad"] = "x" * 65536
    proof.write_bytes((lines[0] + "\n" + json.dumps(padded) + "\n").encode()
                      + b'{"index": 1, "leaf": "\xff\xfe"}\n')
    clean(cli("verify-export", str(path)), 2, f"{proof} is not UTF-8 text")


@pytest.mark.parametrize(("leaf", "problem"), [
    ("-1", "the leaf is not a JSON object"),
    ('"x"', "the leaf is not a JSON object"),
    ("[1]", "the leaf is not a JSON object"),
    (str(10**30), "the leaf is not a JSON object"),
    ('{"asn": ' + str(10**30) + "}", "the leaf cannot be canonicalised"),
    ('{"asn": 1e999}', "the leaf cannot be canonicalised"),
])
def test_a_malformed_leaf_is_named(tmp_path: Path, leaf: str, problem: str) -> None:
    path, proof, _, lines = export(tmp_path)
    lines[1] = '{"index": 0, "leaf": ' + leaf + "}"
    proof.write_text("".join(line + "\n" for line in lines))
    clean(cli("verify-export", str(path), "--proof", str(proof)), 3,
          f"EXPORT NOT VERIFIED: {proof}:2: {problem}")


@pytest.mark.parametrize("public_key", ["!!!", "AAAA", 5, None])
def test_a_bad_collector_key_in_the_proof(tmp_path: Path, public_key: Any) -> None:
    path, proof, _, lines = export(tmp_path)
    header = json.loads(lines[0])
    header["collector"]["public_key"] = public_key
    lines[0] = json.dumps(header)
    proof.write_text("".join(line + "\n" for line in lines))
    clean(cli("verify-export", str(path)), 2, f"{proof} is not an export proof")


def test_a_malformed_tree_head_signed_all_the_same(tmp_path: Path) -> None:
    """A head whose signature holds (the key given on the command line) but whose
    root is not hex: a finding, not a crash."""
    path, proof, _, lines = export(tmp_path)
    signer = ProbeKey.generate()
    header = json.loads(lines[0])
    header["tree_head"] = sign_object({"tree_size": 3, "root_hash": "not hex",
                                       "timestamp": "2026-01-01T00:00:00Z"}, signer.key_id,
                                      signer.private.sign)
    header["collector"]["public_key"] = signer.public_b64
    lines[0] = json.dumps(header)
    proof.write_text("".join(line + "\n" for line in lines))
    clean(cli("verify-export", str(path), "--collector-key", signer.public_b64), 3,
          f"{proof}:1: the tree head is malformed")


def test_odd_shapes_are_bad_records(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"probe": 5}\n'
                   '{"test_keys": {"voipwatch_record": {"probe": 3}, "voipwatch_collector": 7}}\n')
    clean(cli("verify", str(odd)), 3, f"{odd}:1: no_public_key", f"{odd}:2: no_public_key")
    csv = tmp_path / "odd.csv"
    _, proof, _, _ = export(tmp_path)
    csv.write_text('measurement,public_key\n"[1]",abc\n')
    clean(cli("verify-export", str(csv), "--proof", str(proof)), 2,
          f"{csv}:2: not a line of a collector export")


def test_twice_and_many_problems_at_any_size(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The export's records are looked up in chunks (here of 3) among matching
    leaves kept on disk: a record repeated in its chunk or in a later one is
    named; problems past ten are counted, not held; the leaves' file goes."""
    import tempfile

    from probe.upload import verify_export

    path, proof, lines, _ = export(tmp_path, n=5)
    monkeypatch.setattr(verify_export, "CHECK_CHUNK", 3)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
    path.write_text("".join(lines[i] + "\n" for i in (0, 1, 2, 3, 4, 3, 0)))
    with pytest.raises(verify_export.ExportInvalid) as found:
        verify_export.verify(path, proof, None, None)
    assert str(found.value).count("appears twice") == 2
    assert f"{path}:6: record" in str(found.value) and f"{path}:7: record" in str(found.value)
    assert "match the filter but are not in" not in str(found.value)
    strangers = [json.dumps({"measurement": make_record(key), "public_key": key.public_b64})
                 for key in [ProbeKey.generate()] for _ in range(13)]
    path.write_text("".join(line + "\n" for line in lines + strangers))
    with pytest.raises(verify_export.ExportInvalid) as found:
        verify_export.verify(path, proof, None, None)
    assert str(found.value).count("is not among the log's records") == 10
    assert str(found.value).endswith("; ... 3 more")
    path.write_text("".join(line + "\n" for line in lines))
    assert verify_export.verify(path, proof, None, None)[0] == "5 records, all signatures valid"
    assert list(scratch.iterdir()) == []


def test_a_record_in_several_entries_of_the_log_is_named(tmp_path: Path) -> None:
    """A log naming one record twice (or 5,000 times, which once had every
    chunk of the export read all of them again) is not a complete export of
    it: the record is named, and the count is not claimed."""
    from probe.upload import verify_export

    for logged in ([0, 1, 1, 2], [0] + [1] * 5000 + [2]):
        path, proof, lines, _ = export(tmp_path, n=3, logged=logged)
        record = json.loads(lines[1])["measurement"]["id"]
        with pytest.raises(verify_export.ExportInvalid) as found:
            verify_export.verify(path, proof, None, None)
        assert str(found.value) == (f"{path}:2: record {record} is in more than one entry "
                                    "of the log")
    path, proof, _, _ = export(tmp_path, n=3, logged=[0, 1, 2])
    assert verify_export.verify(path, proof, None, None)[0] == "3 records, all signatures valid"


def test_the_leaves_file_goes_beside_the_export_and_a_full_disk_is_a_sentence(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $TMPDIR the matching leaves' file goes beside the export (/tmp
    may be memory); a disk too small for it is one sentence naming where, and
    nothing left behind (a real 64 KiB tmpfs; a 64 KiB page cache, so that
    300 leaves reach the disk)."""
    import os
    import tempfile

    from probe.core.errors import UserError
    from probe.upload import verify_export

    path, proof, _, _ = export(tmp_path, n=300)
    environ = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    sound = subprocess.run([*probe_command(), "verify-export", str(path)], env=environ,
                           capture_output=True, text=True, timeout=120)
    assert sound.returncode == 0, sound.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.jsonl", "exp.jsonl.proof"]
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"a tmpfs is needed (root): {mounted.stderr}")
    try:
        monkeypatch.setenv("TMPDIR", str(small))
        monkeypatch.setattr(tempfile, "tempdir", None)  # read $TMPDIR again
        monkeypatch.setattr(verify_export, "CACHE_KIB", 64)
        with pytest.raises(UserError) as full:
            verify_export.verify(path, proof, None, None)
        assert f"cannot keep the proof's leaves in {small}" in str(full.value)
        assert "set TMPDIR" in str(full.value) and list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_signatures_checked_on_every_core_keep_the_files_order(
        tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 2 records checked by worker processes: the problems name the
    lines in the export's order, as one process names them; a record nested
    too deeply to send to a worker (500 levels) is checked here, one nested
    beyond what json reads (990) is not a line of an export, as before."""
    from probe.upload import verify_export

    monkeypatch.setattr(verify_export, "workers", lambda: workers)
    monkeypatch.setattr(verify_export, "CHECK_CHUNK", 2)
    path, proof, lines, _ = export(tmp_path, n=9)
    forged = [json.loads(line) for line in lines]
    for n in (1, 4, 5, 8):
        forged[n]["measurement"]["service"] = f"forged-{n}"
    path.write_text("".join(json.dumps(line) + "\n" for line in forged))
    with pytest.raises(verify_export.ExportInvalid) as found:
        verify_export.verify(path, proof, None, None)
    named = [part.split(":")[1] for part in str(found.value).split("; ")
             if "bad_signature" in part]
    assert named == ["2", "5", "6", "9"]
    assert "4 records of the log match the filter but are not in" in str(found.value)
    for depth, said in ((500, ":2: bad_signature: record cannot be canonicalised"),
                        (990, ":2: not a line of a collector export in JSONL or CSV (nested "
                              "too deeply)")):
        deep = "[" * depth + "]" * depth
        nested = lines[1].replace('"measurement": {', f'"measurement": {{"deep": {deep}, ', 1)
        path.write_text("".join((nested if n == 1 else line) + "\n"
                                for n, line in enumerate(lines)))
        with pytest.raises((verify_export.ExportInvalid, UserError)) as found:
            verify_export.verify(path, proof, None, None)
        assert f"{path}{said}" in str(found.value)


@pytest.mark.parametrize("text", [
    '{"a":1,"a":2}', "[18446744073709551616]", "[12345678901234567890.5]", "[1e400]",
    "[NaN]", '["\\ud800"]', "[-0.0, 0.1, 1e-7, 9007199254740993, 1.5e300]",
    '{"é":"\\u00e9\\n","k":[true,false,null,{}]}', '"x"', "[]"])
def test_an_export_line_is_read_as_json_reads_it(text: str) -> None:
    from probe.upload.verify_export import _loads

    expected = json.loads(text)
    assert repr(_loads(text)) == repr(expected)  # the same types and values (NaN too)
