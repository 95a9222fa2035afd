"""`voipwatch-probe status`: the last pass, the spool, the collector, the schedule.

Answers in well under a tenth of a second (no pydantic, rich or httpx): the
last pass is a small JSON summary that `run` writes (`last-pass.json` in the
state directory), the key id comes from the key file through PyNaCl, and the
collector is asked `/healthz` with the standard library and a short timeout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LAST_PASS = "last-pass.json"
PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")  # RFC 8410 §7


def last_pass_path() -> Path:
    from probe.store.state import home

    return home() / LAST_PASS


def save_last_pass(records: list[dict[str, Any]], started: float, link_type: str) -> None:
    """Keep a summary of the pass that just ended (atomically: a crash leaves the
    previous one)."""
    verdicts = Counter(str(r.get("verdict")) for r in records)
    summary = {
        "started_at": _iso(started), "finished_at": _iso(time.time()),
        "records": len(records), "verdicts": dict(sorted(verdicts.items())),
        "services": sorted({str(r.get("service")) for r in records}),
        "link_type": link_type,
    }
    path = last_pass_path()
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # the records are spooled; a missing summary is no loss
        sys.stderr.write(f"voipwatch-probe: cannot write {path}: {exc.strerror}\n")


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


def _ago(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int(time.time() - then.timestamp()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def key_id(path: Path) -> str | None:
    """The key id (hex SHA-256 of the raw public key) of a PKCS#8 PEM Ed25519
    key file, or None when the file is not one."""
    try:
        text = path.read_text(encoding="ascii")
        body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)
    except (OSError, ValueError):
        return None
    if len(der) != 48 or not der.startswith(PKCS8_ED25519_PREFIX):
        return None
    from nacl.signing import SigningKey

    return hashlib.sha256(bytes(SigningKey(der[16:]).verify_key)).hexdigest()


def reach(url: str, timeout: float) -> str:
    """`reachable (...)` or `unreachable: why`, asking GET /healthz."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request

    started = time.monotonic()
    try:
        context = ssl.create_default_context()  # the system store, or $SSL_CERT_FILE
        with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=timeout,
                                    context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"answers, but /healthz says HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"unreachable: no answer in {timeout:g} s"
        return f"unreachable: {getattr(reason, 'strerror', None) or reason}"
    except TimeoutError:
        return f"unreachable: no answer in {timeout:g} s"
    except OSError as exc:
        return f"unreachable: {exc.strerror or exc}"
    except (ValueError, http.client.InvalidURL):
        return "not a valid URL"
    except http.client.HTTPException:  # bytes that are not an HTTP answer, or cut short
        return "unreachable (not an HTTP server)"
    millis = (time.monotonic() - started) * 1000
    return f"reachable (HTTP {status} in {millis:.0f} ms)"


def lines(timeout: float, network: bool) -> list[str]:
    from probe.store.state import home, key_path, load_config, spool_path
    from probe.ui.schedule import describe

    config = load_config()
    out = [f"state directory: {home()}"]
    path = key_path(config)
    if path.exists():
        found = key_id(path)
        out.append(f"key:             {path}" + (f" ({found})" if found else ""))
    else:
        out.append(f"key:             none yet at {path} (voipwatch-probe keygen)")

    summary = _read_last_pass()
    if summary is None:
        out.append("last pass:       none yet (voipwatch-probe run)")
    else:
        verdicts = ", ".join(f"{n} {v}" for v, n in summary.get("verdicts", {}).items())
        out.append(f"last pass:       {summary.get('finished_at')} "
                   f"({_ago(str(summary.get('finished_at', '')))}), "
                   f"{summary.get('records', 0)} records: {verdicts or 'none'}; "
                   f"link type {summary.get('link_type', '?')}")

    if spool_path().exists():
        from probe.store.spool import Spool

        with Spool(spool_path()) as spool:
            counts = spool.counts()
            waiting = spool.waiting()
            out.append(f"spool:           {counts['pending']} pending"
                       + (f" ({len(waiting)} waiting to be sent again)" if waiting else "")
                       + f", {counts['rejected']} rejected")
            out.extend(_waiting_lines(waiting))
            rejected = spool.rejected()
            out.extend(f"  rejected {record_id}: {reason}" for record_id, reason in rejected[:20])
            if len(rejected) > 20:
                out.append(f"  ... and {len(rejected) - 20} more")
            receipts = spool.receipt_counts()
            if receipts["receipts"]:
                out.append(f"receipts:        {receipts['receipts']} records stored by the "
                           f"collector, {receipts['audited']} of them audited in its log")
    else:
        out.append("spool:           empty")

    audited = _last_audit(config.collector)
    if audited:
        out.append(f"log audit:       {audited}")
    if not config.collector:
        out.append("collector:       not registered (voipwatch-probe setup)")
    else:
        state = reach(config.collector, timeout) if network else "not asked (--offline)"
        out.append(f"collector:       {config.collector}: {state}")
    out.extend(f"schedule:        {line}" if i == 0 else f"                 {line}"
               for i, line in enumerate(describe(home())))
    return out


WHY = {
    "too_old": "older than the collector accepts (its horizon); kept, sent again in case "
               "its operator extends it",
    "unknown_key": "the collector does not know this probe's key; `voipwatch-probe register` "
                   "sends them at once",
    "from_future": "dated ahead of the collector's clock; check this machine's clock",
}


def _waiting_lines(waiting: list[tuple[str, str, float, int]]) -> list[str]:
    """Why records wait, grouped by reason, with when the next is sent."""
    out = []
    by_reason: dict[str, list[tuple[str, float, int]]] = {}
    for record_id, reason, not_before, attempts in waiting:
        by_reason.setdefault(reason, []).append((record_id, not_before, attempts))
    for reason, items in sorted(by_reason.items()):
        soonest = min(not_before or 0 for _, not_before, _ in items)
        wait = max(0, int(soonest - time.time()))
        when = "now" if wait == 0 else f"in {wait // 60} min" if wait < 7200 \
            else f"in {wait // 3600} h"
        out.append(f"  waiting {len(items)}: {reason}: {WHY.get(reason, 'refused for now')}; "
                   f"next try {when}")
        out.extend(f"    {record_id} ({attempts} attempts)" for record_id, _, attempts
                   in items[:5])
        if len(items) > 5:
            out.append(f"    ... and {len(items) - 5} more")
    return out


def _last_audit(collector: str | None) -> str | None:
    """The last tree head `audit` verified for this collector, in words."""
    from probe.store.state import audit_path

    try:
        data = json.loads(audit_path().read_text(encoding="utf-8"))
        head = data.get((collector or "").rstrip("/")) if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    if not isinstance(head, dict):
        return None
    return (f"the collector's log verified at {head.get('tree_size')} entries, "
            f"{head.get('timestamp')} (voipwatch-probe audit)")


def _read_last_pass() -> dict[str, Any] | None:
    try:
        data = json.loads(last_pass_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main(args: argparse.Namespace) -> int:
    sys.stdout.write("\n".join(lines(args.timeout, not args.offline)) + "\n")
    return 0
