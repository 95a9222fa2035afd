"""An export's proof (docs/evidence.md, "Complete exports"): what lets anyone
check offline that an export holds exactly the log's records for its filter.

The proof is JSON lines: first a header `{schema, collector, tree_head,
filters, format}` (the head signed by the collector key at the export's tree
size), then every leaf of the log up to that size, `{index, leaf}`. A verifier
(`voipwatch-probe verify-export`) rebuilds the root from the leaves and checks
it against the signed head, re-applies the filter to the leaves, and checks
the export's records hash to exactly the matching leaves, no more, no fewer.

Cost: the proof lists the whole log (about 330-450 bytes a leaf), whatever the
filter: O(log size) to fetch and check, which is what completeness costs
when the log is in arrival order rather than sorted by every filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from collector.identity import CollectorKey
from collector.store import Filters
from collector.translog import TransLog
from probe.core.evidence import PROOF_SCHEMA, LeafFilter


def leaf_filter(filters: Filters) -> LeafFilter:
    return LeafFilter(service=filters.service, verdict=filters.verdict,
                      link_type=filters.link_type, cc=filters.cc and filters.cc.upper(),
                      asn=filters.asn, since=filters.since, until=filters.until,
                      check=filters.check, role=filters.role, key_id=filters.key_id,
                      upstream=filters.upstream)


def header(log: TransLog, key: CollectorKey, filters: Filters, size: int,
           fmt: str, head: dict[str, Any] | None = None) -> dict[str, Any]:
    """`head`: the signed head of `size` (default: the one kept, signed now if none)."""
    return {"schema": PROOF_SCHEMA, "collector": key.public(),
            "tree_head": head if head is not None else log.head_at(size),
            "filters": leaf_filter(filters).as_json(), "format": fmt}


def proof(log: TransLog, key: CollectorKey, filters: Filters, size: int,
          fmt: str, head: dict[str, Any] | None = None) -> Iterator[bytes]:
    yield orjson.dumps(header(log, key, filters, size, fmt, head)) + b"\n"
    from collector import proof_lines  # pyarrow: imported by an export, not at start

    if proof_lines.usable(log.engine):  # a SQLite file or PostgreSQL: read natively
        yield from proof_lines.lines(log.engine, size,
                                     lambda start, stop: leaf_lines(log, start, stop))
    else:
        yield from leaf_lines(log, 0, size)


def leaf_lines(log: TransLog, start: int, stop: int) -> Iterator[bytes]:
    """The proof's lines for the log's entries [start, stop), leaf by leaf."""
    batch: list[bytes] = []
    for index, text, gone in log.leaves(start, stop):
        if text is not None:
            batch.append(b'{"index":%d,"leaf":%s}\n' % (index, text))
        else:  # deleted on request: only its leaf hash is left
            batch.append(b'{"index":%d,"redacted":"%s"}\n' % (index, (gone or b"").hex().encode()))
        if len(batch) >= 2000:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)
