"""`voipwatch-probe audit`: does the collector's log hold this probe's records,
and did it only grow since the last audit? (docs/evidence.md)

1. The current tree head, signed by the collector key pinned at `register`.
2. Consistency (RFC 9162 2.1.4) from the last head this probe verified (kept in
   `audit.json` in the state directory) to that one: the log was only appended to.
3. For each receipt not audited yet: the inclusion proof (RFC 9162 2.1.3) of
   its log index in that head, and the leaf there names the record's hash and
   its own fields (service, verdict, network...) as the record signed them.

A failure is evidence: the conflicting signed heads are written to
`audit-evidence-*.json` beside the state, and the last good head is kept.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from probe.core import merkle
from probe.core.errors import SignatureError, Unreachable, UserError, VerificationFailed
from probe.core.evidence import head_hashes, hexes, leaf_bytes, leaf_problems, verify_object
from probe.store.spool import Spool
from probe.store.state import ProbeConfig, audit_path, home, spool_path
from probe.upload import client as httpc


class AuditFailed(Exception):
    """The collector's log contradicts what it signed earlier."""


def _get(http: httpc.Client, url: str, **params: Any) -> Any:
    try:
        response = http.get(url, params=params)
    except httpc.HttpError as exc:
        raise Unreachable(f"cannot reach {url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise Unreachable(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError as exc:
        raise Unreachable(f"{url} answered with something that is not JSON") from exc


def load_last(collector: str) -> dict[str, Any] | None:
    try:
        data = json.loads(audit_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    head = data.get(collector) if isinstance(data, dict) else None
    return head if isinstance(head, dict) else None


def save_last(collector: str, head: dict[str, Any]) -> None:
    path = audit_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data[collector] = head
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def keep_evidence(collector: str, what: str, **documents: Any) -> Path:
    path = home() / f"audit-evidence-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps({"collector": collector, "problem": what, **documents},
                               indent=1) + "\n", encoding="utf-8")
    return path


def audit(collector: str, public_raw: bytes, http: httpc.Client) -> list[str]:
    """Lines to print; raises AuditFailed when the log contradicts itself or a receipt."""
    base = collector.rstrip("/")
    head = _get(http, base + "/api/v1/log/head")
    try:
        verify_object(head, public_raw, "tree head")
        size, root = head_hashes(head)
    except (SignatureError, ValueError) as exc:
        raise AuditFailed(f"the log head does not verify: {exc}") from exc
    lines = [f"log head: {size} entries, root {root.hex()[:16]}..., signed {head.get('timestamp')}"]
    last = load_last(base)
    if last is not None:
        old_size, old_root = head_hashes(last)
        if size < old_size:
            where = keep_evidence(base, "the log shrank", earlier=last, now=head)
            raise AuditFailed(f"the log shrank from {old_size} to {size} entries "
                              f"(both heads signed; kept in {where})")
        proof = _get(http, base + "/api/v1/log/consistency", first=old_size, second=size)
        try:
            path = hexes(proof.get("consistency_path"))
        except (ValueError, AttributeError) as exc:
            raise AuditFailed("the consistency proof is malformed") from exc
        if not merkle.verify_consistency(old_size, size, old_root, root, path):
            where = keep_evidence(base, "the log was rewritten", earlier=last, now=head,
                                  proof=proof)
            raise AuditFailed(f"the log of {size} entries does not extend the one of "
                              f"{old_size} this probe saw on {last.get('timestamp')}: it was "
                              f"rewritten (both heads signed; kept in {where})")
        lines.append(f"the log only grew since {last.get('timestamp')} ({old_size} -> {size} "
                     "entries, consistency proof valid)")
    else:
        lines.append("first audit: this head is the reference from now on")

    checked, later, unlogged, problems, redacted = [], 0, 0, [], []
    with Spool(spool_path()) as spool:
        for record_id, receipt, claims in spool.receipts(base):
            index = receipt.get("log_index")
            if index is None:
                unlogged += 1
                continue
            if index >= size:
                later += 1
                continue
            proof = _get(http, base + "/api/v1/log/inclusion", index=index, tree_size=size)
            leaf = proof.get("leaf")
            if leaf is None and proof.get("redacted"):
                redacted.append(record_id)  # deleted: only an inclusion of its hash is left
                continue
            try:
                leaf_hash = merkle.leaf_hash(leaf_bytes(leaf))
                included = merkle.verify_inclusion(index, size, leaf_hash,
                                                   hexes(proof.get("audit_path")), root)
            except (ValueError, TypeError, AttributeError):
                included = False
            if not included:
                problems.append(f"record {record_id}: no valid inclusion proof at index {index}")
                continue
            if "upstream" not in (claims.get("network") or {}):
                # kept by an earlier release, which left the record's upstream out:
                # nothing to compare the leaf's with
                leaf = {**leaf, "upstream": None}
            wrong = leaf_problems(leaf, claims)
            if leaf.get("record_sha256") != receipt.get("record_sha256"):
                wrong.insert(0, "the log holds another record at its index")
            if wrong:
                problems.append(f"record {record_id} at index {index}: {'; '.join(wrong)}")
                continue
            checked.append(record_id)
        spool.audited(checked, size)
    if problems:
        where = keep_evidence(base, "receipts not matched by the log", head=head,
                              problems=problems)
        raise AuditFailed(f"{len(problems)} of this probe's records are not in the log as "
                          f"receipted (kept in {where}): " + "; ".join(problems[:5]))
    save_last(base, head)
    lines.append(f"{len(checked)} records checked: each in the log, as signed")
    if later:
        lines.append(f"{later} records are beyond this head; the next audit checks them")
    if unlogged:
        lines.append(f"{unlogged} receipts carry no log index (the collector's log was off)")
    if redacted:
        lines.append(f"WARNING: {len(redacted)} of this probe's records were deleted by the "
                     "collector (redacted; did you ask?), first "
                     f"{redacted[0]}; their receipts are kept")
    return lines


def main(collector: str, config: ProbeConfig, timeout: float) -> int:
    if not config.collector_key or config.collector != collector.rstrip("/"):
        raise UserError(f"no pinned key for {collector}: run `voipwatch-probe register "
                        f"--collector {collector}` first")
    public_raw = base64.b64decode(config.collector_key)
    with httpc.Client(timeout=timeout) as http:
        try:
            lines = audit(collector, public_raw, http)
        except AuditFailed as exc:  # exit status 3: a finding about the collector
            raise VerificationFailed(f"AUDIT FAILED: {exc}") from exc
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
