"""`voipwatch-probe verify-export FILE [--proof P]`: is this export exactly the
collector's records for its filter? (docs/evidence.md, "Complete exports")

With nothing but the two files (and, ideally, the collector's key obtained
independently):
1. every record's signature (as `verify`);
2. the proof's tree head, signed by the collector key;
3. the proof's leaves, in order, rebuild that head's root (RFC 9162);
4. the leaves matching the export's filter name exactly the export's records
   (by record_sha256), none missing, none extra, none twice, and each such
   leaf states the record's own signed fields.
Prints the dataset hash (SHA-256 of the matching record hashes, in log order),
the figure a report or an article can quote.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
import pickle
import sqlite3
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from probe.core import merkle
from probe.core.errors import SignatureError, UserError, VerificationFailed
from probe.core.evidence import (
    PROOF_SCHEMA,
    LeafFilter,
    dataset_sha256,
    head_hashes,
    leaf_bytes,
    leaf_problems,
    record_sha256,
    verify_object,
)
from probe.core.progress import progress_lines
from probe.core.signing import decode_public_key, key_id_of, verify_record
from probe.upload.verify import _record_and_key

try:
    import orjson
except ImportError:  # a probe installed without it: json alone
    orjson = None  # type: ignore[assignment]

PROG = "voipwatch-probe"
CHECK_CHUNK = 1000  # export records looked up in the matching leaves at once
CACHE_KIB = 8192  # the leaves' file's page cache: all the memory they take
T = TypeVar("T")
# a run of digits orjson would read otherwise than json: beyond 64 bits it
# makes an integer a float (json keeps it exact, and RFC 8785 then refuses
# it); found as 20 zeros once every digit is a zero (a regex took 15x longer)
_ZEROED = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 20


def _loads(text: str) -> Any:
    """`json.loads(text)`, read by orjson (three times faster) where the two
    read the same: not where the text has a run of 20 digits, nor where it
    could nest deeper than json reads (orjson reads 1,024 levels), nor where
    orjson refuses what json reads (NaN, 1e400, a lone surrogate: the checks
    then report them as before)."""
    if orjson is not None and text.count("[") + text.count("{") < 500:
        data = text.encode(errors="surrogatepass")
        if _LONG_RUN not in data.translate(_ZEROED):
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
    return json.loads(text)


class ExportInvalid(Exception):
    pass


def records_of(path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    """(line, record, public key) of a JSONL (ours or OONI's) or CSV export."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        number = 0  # the line being read, for the message
        reader: csv.DictReader[str] | None = None
        try:
            first = handle.read(1)
            handle.seek(0)
            if first == "{":  # our JSONL, or OONI's format (the record in test_keys)
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        yield number, *_record_and_key(_loads(line))
            else:
                reader = csv.DictReader(handle)
                for row in reader:
                    number = reader.line_num
                    record, key = _loads(row["measurement"]), row["public_key"]
                    if not isinstance(record, dict) or not isinstance(key, str):
                        raise ValueError("the measurement is not a JSON object with its "
                                         "public_key")
                    yield number, record, key
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 text (a JSONL or CSV export is expected)"
                            ) from exc
        except (ValueError, KeyError, TypeError, SignatureError, RecursionError,
                csv.Error) as exc:
            number = reader.line_num if reader is not None else number
            why = "nested too deeply" if isinstance(exc, RecursionError) else \
                f"{type(exc).__name__}: {exc}"
            where = f"{path}:{number}: not a line of" if number else f"{path} is not"
            raise UserError(f"{where} a collector export in JSONL or CSV ({why[:200]})"
                            ) from exc


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _text_lines(handle: Iterable[str], path: Path) -> Iterator[str]:
    """The lines of a text file; UserError when it is not UTF-8 text."""
    try:
        yield from handle
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (an export proof is expected)") from exc


def _key(text: str | None, proof_key: str, pinned: str | None) -> tuple[bytes, str]:
    """The collector key to check with, and how it was chosen."""
    proof_raw = decode_public_key(proof_key)
    if text:
        try:
            raw = base64.b64decode(text, validate=True)
            if len(raw) == 32:
                return raw, "the key given"
        except (binascii.Error, ValueError):
            pass
        if text.lower() == key_id_of(proof_raw):
            return proof_raw, "the key id given"
        raise ExportInvalid(f"the proof is signed by key {key_id_of(proof_raw)}, not {text}")
    if pinned is not None:
        raw = base64.b64decode(pinned)
        if raw == proof_raw:
            return raw, "the key pinned by `register`"
    return proof_raw, ("the proof's own key: check its id against the one the collector "
                       "publishes (GET /api/v1/collector)")


@dataclass
class _Found:
    leaf: dict[str, Any]
    taken: bool  # an earlier record of the export had this hash
    listed_again: bool  # another matching leaf of the proof names it too


class _Matching:
    """The proof's leaves that match the filter, in log order, in a temporary
    SQLite file: held as dicts they took ~2.5 kB each (800 MB for 300,000
    records, 25 GB for a country's ten million), here an 8 MiB page cache
    (the file: ~500 bytes a leaf, removed after; a 64 MiB cache was no faster)."""

    def __init__(self, where: str | None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix=".voipwatch-verify-", dir=where)
        self.path = Path(self._dir.name) / "leaves.sqlite3"
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
            f"PRAGMA cache_size = -{CACHE_KIB};"
            "CREATE TABLE leaf (ord INTEGER PRIMARY KEY, digest TEXT NOT NULL,"
            " text TEXT NOT NULL, taken INTEGER NOT NULL DEFAULT 0); BEGIN")
        self._pending: list[tuple[str, str]] = []
        self._indexed = False
        self._repeated = False  # some digest has more than one leaf
        self.count = 0  # leaves added
        self._taken = 0  # of them, leaves some record took

    def __enter__(self) -> _Matching:
        return self

    def __exit__(self, *_: object) -> None:
        self._db.close()
        self._dir.cleanup()

    def add(self, digest: str, text: bytes) -> None:
        # as text: orjson's bytes (canonical.dumps) keep a 4-8 KiB buffer each
        self._pending.append((digest, text.decode()))
        self.count += 1
        if len(self._pending) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO leaf (digest, text) VALUES (?, ?)", self._pending)
        self._pending = []

    def _ready(self) -> None:
        if not self._indexed:
            self._flush()
            self._db.execute("CREATE INDEX leaf_digest ON leaf (digest)")
            self._db.execute("CREATE INDEX leaf_untaken ON leaf (digest) WHERE taken = 0")
            self._repeated = self._db.execute(
                "SELECT 1 FROM leaf GROUP BY digest HAVING count(*) > 1 LIMIT 1"
            ).fetchone() is not None
            self._indexed = True

    def take(self, digests: list[str]) -> dict[str, _Found]:
        """The last leaf naming each of `digests`, and whether another names it
        too; every leaf naming them is taken from now on."""
        self._ready()
        # one leaf a digest (a sound log): one query a chunk, 18.5 µs a record
        # where reading them one by one (below) took 25-28
        if not self._repeated:
            marks = ",".join("?" * len(digests))
            found = {digest: _Found(_loads(text), bool(taken), False) for digest, text, taken in
                     self._db.execute(f"SELECT digest, text, taken FROM leaf WHERE digest IN "
                                      f"({marks})", digests)}
            self._taken += self._db.execute(f"UPDATE leaf SET taken = 1 WHERE taken = 0 AND "
                                            f"digest IN ({marks})", digests).rowcount
            return found
        # two rows read and the untaken ones marked, per digest: a proof naming one
        # record in a million leaves is marked once, not read again for every chunk
        found = {}
        for digest in dict.fromkeys(digests):
            rows = self._db.execute("SELECT text, taken FROM leaf WHERE digest = ? "
                                    "ORDER BY ord DESC LIMIT 2", (digest,)).fetchall()
            if rows:
                found[digest] = _Found(_loads(rows[0][0]), bool(rows[0][1]), len(rows) > 1)
        self._taken += self._db.executemany(
            "UPDATE leaf SET taken = 1 WHERE taken = 0 AND digest = ?",
            [(digest,) for digest in found]).rowcount
        return found

    def untaken(self) -> tuple[int, dict[str, Any]]:
        """How many matching leaves no record took, and the first of them (read
        only then: the counts are kept as leaves are added and taken)."""
        missing = self.count - self._taken
        if not missing:
            return 0, {}
        self._ready()
        first = self._db.execute("SELECT text FROM leaf WHERE taken = 0 ORDER BY ord LIMIT 1"
                                 ).fetchone()
        return missing, json.loads(first[0])

    def digests(self) -> Iterator[str]:
        self._ready()
        for (digest,) in self._db.execute("SELECT digest FROM leaf ORDER BY ord"):
            yield digest


class _Problems:
    """The first ten problems word for word, the rest counted: an export of
    millions of records that all fail must not hold millions of sentences."""

    def __init__(self) -> None:
        self.first: list[str] = []
        self.more = 0

    def add(self, problem: str) -> None:
        if len(self.first) < 10:
            self.first.append(problem)
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.first)

    def __str__(self) -> str:
        return "; ".join(self.first) + (f"; ... {self.more} more" if self.more else "")


Record = tuple[int, dict[str, Any], str]  # (line, record, public key) of an export
Checked = tuple[str, str | None]  # (record_sha256, or "" and why its signature fails)


def _checked(chunk: list[Record]) -> list[Checked]:
    """Each record's signature checked and its hash: most of verify-export's
    time, run in worker processes (`_signed`)."""
    out: list[Checked] = []
    for _, record, key in chunk:
        try:
            verify_record(record, decode_public_key(key))
        except SignatureError as exc:
            out.append(("", str(exc)))
            continue
        out.append((record_sha256(record), None))
    return out


def workers() -> int:
    """Processes checking signatures: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def _signed(chunks: Iterator[list[Record]]) -> Iterator[tuple[list[Record], list[Checked]]]:
    """(chunk, its records checked), in order, the chunks checked on every
    core: at most two per worker read ahead (memory stays bounded), an error
    of a worker raised here, the workers ended when the caller stops."""
    count = workers()
    if count < 2:
        for chunk in chunks:
            yield chunk, _checked(chunk)
        return
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    def result(chunk: list[Record], future: Any) -> list[Checked]:
        try:
            return future.result()  # type: ignore[no-any-return]
        except (RecursionError, pickle.PicklingError):  # a record too deep to send
            return _checked(chunk)

    pending: deque[tuple[list[Record], Any]] = deque()
    with ProcessPoolExecutor(max_workers=count) as pool:
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(_checked, chunk)))
                if len(pending) > 2 * count:
                    done, future = pending.popleft()
                    yield done, result(done, future)
            while pending:
                done, future = pending.popleft()
                yield done, result(done, future)
        finally:
            for _, future in pending:
                future.cancel()


def verify(path: Path, proof_path: Path, collector_key: str | None,
           pinned: str | None) -> list[str]:
    where = _scratch(path)
    try:
        matching = _Matching(where)
    except (OSError, sqlite3.Error) as exc:
        raise UserError(f"cannot make a temporary file for the proof's leaves in "
                        f"{where or tempfile.gettempdir()}: {exc}") from exc
    with matching:
        try:
            return _verify(path, proof_path, collector_key, pinned, matching)
        except sqlite3.Error as exc:  # e.g. the disk is full
            raise UserError(f"cannot keep the proof's leaves in {matching.path}: {exc} (about "
                            "500 bytes a record of the export; set TMPDIR to a directory "
                            "with room)") from exc


def _scratch(export: Path) -> str | None:
    """Where the matching leaves' file goes: $TMPDIR when set, else beside the
    export (a drive that holds the export holds less than half as much again;
    /tmp may be memory, a tmpfs), else the system's temporary directory."""
    if os.environ.get("TMPDIR"):
        return None
    parent = export.resolve().parent
    return str(parent) if os.access(parent, os.W_OK) else None


def _verify(path: Path, proof_path: Path, collector_key: str | None, pinned: str | None,
            matching: _Matching) -> list[str]:
    try:
        handle = proof_path.open(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the proof {proof_path}: {exc.strerror}") from exc
    with handle:
        try:
            header = json.loads(handle.readline())
            if header.get("schema") != PROOF_SCHEMA:
                raise ValueError(f"schema is not {PROOF_SCHEMA}")
            head = header["tree_head"]
            chosen, how = _key(collector_key, header["collector"]["public_key"], pinned)
            leaf_filter = LeafFilter.from_json(header.get("filters") or {})
        except (ValueError, KeyError, TypeError, AttributeError, SignatureError) as exc:
            raise UserError(f"{proof_path} is not an export proof ({exc})") from exc
        except RecursionError as exc:
            raise UserError(f"{proof_path} is not an export proof (nested too deeply)"
                            ) from exc
        try:
            verify_object(head, chosen, "tree head")
            size, root = head_hashes(head)
        except SignatureError as exc:
            raise ExportInvalid(str(exc)) from exc
        except (ValueError, RecursionError) as exc:
            raise ExportInvalid(f"{proof_path}:1: the tree head is malformed") from exc
        frontier = merkle.Frontier()
        redacted = 0
        read = progress_lines(PROG, None, f"leaves of {proof_path} read")
        for number, line in enumerate(_text_lines(handle, proof_path), start=2):
            read(number - 1)
            try:
                entry = _loads(line)
                index, leaf = entry["index"], entry.get("leaf")
                gone = bytes.fromhex(entry["redacted"]) if leaf is None else None
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                raise ExportInvalid(f"{proof_path}:{number}: not a leaf line") from exc
            if index != frontier.size:
                raise ExportInvalid(f"{proof_path}:{number}: leaf {index} where "
                                    f"{frontier.size} was due")
            if gone is not None:  # deleted on request: counts in the tree, not in any set
                frontier.append(gone)
                redacted += 1
                continue
            if not isinstance(leaf, dict):
                raise ExportInvalid(f"{proof_path}:{number}: the leaf is not a JSON object")
            try:
                text = leaf_bytes(leaf)
            except (ValueError, TypeError, RecursionError) as exc:  # CanonicalizationError
                raise ExportInvalid(f"{proof_path}:{number}: the leaf cannot be "
                                    "canonicalised (RFC 8785)") from exc
            frontier.append(merkle.leaf_hash(text))
            if leaf_filter.matches(leaf):
                matching.add(str(leaf.get("record_sha256")), text)
    if (frontier.size, frontier.root()) != (size, root):
        raise ExportInvalid(f"the proof's {frontier.size} leaves do not rebuild the signed "
                            f"head of {size} entries")
    problems = _Problems()
    checked = progress_lines(PROG, matching.count, f"records of {path} checked")
    done = 0
    for chunk, digests in _signed(_chunks(records_of(path), CHECK_CHUNK)):
        signed: list[tuple[int, dict[str, Any], str]] = []
        for (number, record, _), (digest, unsigned) in zip(chunk, digests, strict=True):
            done += 1
            checked(done)
            if unsigned is not None:
                problems.add(f"{path}:{number}: {unsigned}")
            else:
                signed.append((number, record, digest))
        found = matching.take([digest for _, _, digest in signed])
        seen: set[str] = set()  # in this chunk (`taken`: in those before)
        for number, record, digest in signed:
            leaf = found.get(digest)
            if leaf is None:
                problems.add(f"{path}:{number}: record {record.get('id')} is not among the "
                             "log's records for this filter")
            elif leaf.taken or digest in seen:
                problems.add(f"{path}:{number}: record {record.get('id')} appears twice")
            elif leaf.listed_again:
                problems.add(f"{path}:{number}: record {record.get('id')} is in more than "
                             "one entry of the log")
            else:
                wrong = leaf_problems(leaf.leaf, record)
                if wrong:
                    problems.add(f"{path}:{number}: the log misstates record "
                                 f"{record.get('id')}: {'; '.join(wrong)}")
            seen.add(digest)
    missing, first_missing = matching.untaken()
    if missing:
        problems.add(f"{missing} records of the log match the filter but are not in "
                     f"the export (first: {first_missing.get('id')})")
    if problems:
        raise ExportInvalid(str(problems))
    count, dataset = matching.count, dataset_sha256(matching.digests())
    filters = ", ".join(f"{k}={v}" for k, v in leaf_filter.as_json().items()) or "none"
    return [f"{count} records, all signatures valid",
            f"complete: exactly the log's records for filters {filters} among its first "
            f"{size} entries",
            f"tree head: {size} entries, root {root.hex()}, signed {head.get('timestamp')} by "
            f"collector key {key_id_of(chosen)} ({how})",
            f"dataset sha256: {dataset}"] + (
                [f"{redacted} log entries were redacted (deleted on request, only their hash "
                 "is left): they could not be checked against the filter"] if redacted else [])


def main(path: Path, proof: Path | None, collector_key: str | None, required: bool) -> int:
    proof_path = proof or path.with_name(path.name + ".proof")
    if not proof_path.exists():
        if required:
            raise UserError(f"no proof for {path}: expected {proof_path} (export it with "
                            "`voipwatch-collector export`, or GET /api/v1/export/proof)")
        return 0
    from probe.store.state import load_config

    try:
        lines = verify(path, proof_path, collector_key, load_config().collector_key)
    except ExportInvalid as exc:  # exit status 3: a finding about the data
        raise VerificationFailed(f"EXPORT NOT VERIFIED: {exc}") from exc
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
