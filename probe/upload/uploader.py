"""Registration with a collector, and upload of the spool.

A record leaves the spool only when the collector answered `accepted` or
`duplicate` for it with a valid receipt (probe/upload/receipts.py); `rejected`
ones are kept aside with the reason, and so is a record the collector refuses
even alone (found by bisection of the batch); those refused for a reason that
can pass (too old for the collector's horizon, a key it does not know yet)
wait and are sent again with a growing delay. Batches go out one at a time and
each is retried with exponential backoff and jitter, so a dead collector or a
killed probe at any moment loses nothing and, since the collector is
idempotent by record id, stores nothing twice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from probe.core.auth import sign_request
from probe.core.errors import (
    CollectorUnavailable,
    SignatureError,
    Unreachable,
    UserError,
)
from probe.core.signing import ProbeKey, key_id_of
from probe.store.spool import RETRYABLE, Spool, Spooled
from probe.store.state import ProbeConfig, load_config, pinned_key, save_config, spool_path
from probe.upload import client as httpc
from probe.upload.receipts import ReceiptCheck, claims_of, fetch_collector_key

log = logging.getLogger(__name__)

REGISTER_PATH = "/api/v1/probes"
INGEST_PATH = "/api/v1/measurements"
BATCH = 500
TIMEOUT = 60.0
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
WAIT_FIRST, WAIT_CAP = 900.0, 86400.0  # a refused record waits 15 min, doubling up to a day


def wait_delay(attempts: int) -> float:
    """How long a record refused `attempts` times waits before the next try."""
    delay: float = min(WAIT_CAP, WAIT_FIRST * 2.0 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.0)


@dataclass
class Backoff:
    """Exponential backoff with full jitter (delays in seconds)."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))


@dataclass
class Summary:
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    left: int = 0
    error: str | None = None

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def line(self, collector: str) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.rejected.items()))
        waits = ", ".join(f"{n} {r}" for r, n in sorted(self.waiting.items()))
        text = (f"upload to {collector}: {self.accepted} accepted, {self.duplicate} duplicate, "
                f"{self.rejected_total} rejected" + (f" ({reasons})" if reasons else "")
                + (f", {sum(self.waiting.values())} to retry later ({waits})" if waits else "")
                + f"; {self.left} left in the spool")
        return text + (f"; stopped: {self.error}" if self.error else "")


def _base(url: str) -> str:
    return url.rstrip("/")


def _explain(exc: httpc.HttpError) -> str:
    if isinstance(exc, httpc.NotHttp):
        return "it answered with something that is not HTTP (is the URL right?)"
    if isinstance(exc, httpc.ConnectError):
        return "connection failed (is the collector running and the URL right?)"
    if isinstance(exc, httpc.WriteTimeout):
        return "timed out while sending (a slow or throttled link?)"
    if isinstance(exc, httpc.Timeout):
        return "timed out"
    return type(exc).__name__


def _error_detail(response: httpc.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("detail"):
            return str(body["detail"])[:300]
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase


def register(collector_url: str, key: ProbeKey, token: str | None, config: ProbeConfig,
             client: httpc.Client | None = None, accept_new_key: bool = False) -> None:
    """POST /api/v1/probes with this probe's public key, then remember the
    collector in the probe config and pin its key (a changed key is refused
    unless the user confirms it: `accept_new_key`)."""
    body: dict[str, Any] = {"public_key": key.public_b64}
    if token:
        body["token"] = token
    url = _base(collector_url) + REGISTER_PATH
    http = client or httpc.Client(timeout=TIMEOUT)
    try:
        response = http.post(url, json=body)
        if response.status_code in (200, 201):
            pinned = _pin(collector_url, config, http, accept_new_key)
    except httpc.InvalidURL as exc:
        raise UserError(f"--collector {collector_url!r} is not a valid URL") from exc
    except httpc.UnsupportedProtocol as exc:
        raise UserError(f"--collector {collector_url!r}: use an http:// or https:// URL"
                        ) from exc
    except httpc.HttpError as exc:
        raise Unreachable(f"cannot reach the collector at {collector_url}: {_explain(exc)}"
                          ) from exc
    finally:
        if client is None:
            http.close()
    if response.status_code not in (200, 201):
        # the collector's 4xx is about what we sent (a token, a key); a 5xx is its
        # own, and so is a 429 (too many registrations for now) or a 408
        status = response.status_code
        refused = UserError if 400 <= status < 500 and status not in RETRY_STATUS \
            else Unreachable
        raise refused(f"the collector at {collector_url} refused the registration "
                      f"(HTTP {status}): {_error_detail(response)}{_retry_after(response)}")
    try:
        key_id = response.json()["key_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{collector_url} answered the registration with something that is "
                        "not a voipwatch collector's answer") from exc
    if key_id != key.key_id:
        raise UserError(f"the collector at {collector_url} registered key {key_id}, "
                        f"not this probe's {key.key_id}")
    config.collector = _base(collector_url)
    config.collector_key = pinned
    save_config(config)
    with Spool(spool_path()) as spool:  # records refused as from an unknown key: try now
        spool.release("unknown_key")
    sys.stdout.write(f"{key_id}\n")
    _say(f"registered with {config.collector} (collector key {_key_id(pinned)[:16]}... pinned)")


def _retry_after(response: httpc.Response) -> str:
    """`; try again in N s` when the answer says when (RFC 9110 10.2.3), else nothing."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return f"; try again in {int(value)} s"
    if value and len(value) <= 64 and value.isprintable():
        return f"; try again after {value}"
    return "; try again later" if response.status_code in RETRY_STATUS else ""


def _key_id(public_b64: str) -> str:
    import base64

    return key_id_of(base64.b64decode(public_b64))


def _pin(collector_url: str, config: ProbeConfig, http: httpc.Client,
         accept_new_key: bool) -> str:
    """The collector's key to pin (base64); UserError if it changed unconfirmed."""
    import base64

    try:
        raw = fetch_collector_key(collector_url, http)
    except CollectorUnavailable as exc:
        raise UserError(str(exc)) from exc
    found = base64.b64encode(raw).decode()
    same_collector = config.collector == _base(collector_url)
    if same_collector and config.collector_key and config.collector_key != found \
            and not accept_new_key:
        raise UserError(f"the collector at {collector_url} now signs with another key "
                        f"({key_id_of(raw)[:16]}..., pinned {_key_id(config.collector_key)[:16]}"
                        "...); if its operator confirms the change, run register again with "
                        "--accept-new-collector-key")
    return found


class Refused(CollectorUnavailable):
    """The collector refused a whole request body (400, 413, 422): something in
    this batch, not the collector's state; `code` is its error string."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


BISECT_STATUS = frozenset({400, 413, 422})


SLOW_FLOOR = 40  # records: a batch this small (~50 kB) is not halved on a timeout


class TooSlow(Exception):
    """The batch could not be sent within the client's timeout: over a slow or
    throttled uplink, a smaller one can (a batch of 500 records is ~600 kB, a
    minute's worth at 10 kB/s)."""


class Uploader:
    """Sends the spool in batches, each request signed (probe/core/auth.py) so
    the collector checks it before parsing the body. A batch the collector
    refuses whole is cut in halves until the record that causes it stands
    alone: that one is kept aside in the spool (never lost), the rest goes."""

    def __init__(self, collector_url: str, spool: Spool, client: httpc.Client,
                 backoff: Backoff | None = None, batch: int = BATCH,
                 progress: Callable[[int, int], None] | None = None,
                 collector_key: bytes | None = None,
                 signer: ProbeKey | None = None) -> None:
        self.url = _base(collector_url) + INGEST_PATH
        self.path = urlsplit(self.url).path
        self.collector = collector_url
        self.spool = spool
        self.client = client
        self.backoff = backoff or Backoff()
        self.batch = batch
        self.progress = progress
        self.collector_key = collector_key  # None: asked of the collector (trust on first use)
        self.receipts: ReceiptCheck | None = None
        self.signer = signer

    def run(self) -> Summary:
        """Upload until the spool holds only rejected records, or the collector
        cannot be reached (then `error` says why and the rest stays)."""
        summary = Summary()
        total = self.spool.due()  # counted: a months-long spool is not loaded at once
        done = 0
        while True:
            records = self.spool.pending_bodies(self.batch)
            if not records:
                break
            try:
                self._upload(records, summary)
            except CollectorUnavailable as exc:
                summary.error = str(exc)
                break
            done += len(records)
            if self.progress and total > self.batch:
                self.progress(min(done, total), total)
        summary.left = self.spool.counts()["pending"]
        return summary

    def _receipts(self) -> ReceiptCheck:
        if self.receipts is None:
            key = self.collector_key or fetch_collector_key(self.collector, self.client)
            self.receipts = ReceiptCheck(key)
        return self.receipts

    def _upload(self, records: list[Spooled], summary: Summary) -> None:
        """Send `records`; on a refusal of the whole body, each half on its own
        (the batch size learnt from a 413 is kept for the next batches)."""
        try:
            results = self._send(records)
        except TooSlow:
            log.info("a batch of %d records took too long to send: halved", len(records))
            self._halves(records, summary, smaller=True)
            return
        except Refused as exc:
            if len(records) == 1:
                self.spool.reject(records[0].id, f"refused:{exc.code}"[:64])
                summary.rejected[exc.code] = summary.rejected.get(exc.code, 0) + 1
                log.info("record %s refused alone (%s): kept aside", records[0].id, exc)
                return
            self._halves(records, summary,
                         smaller=exc.code in ("body_too_large", "batch_too_large"))
            return
        if self._settle(records, results, summary) < len(records):
            raise CollectorUnavailable(f"{self.collector} answered without a status for "
                                       "some records")

    def _halves(self, records: list[Spooled], summary: Summary, smaller: bool) -> None:
        """Each half of `records` on its own; `smaller`: the next batches too."""
        half = (len(records) + 1) // 2
        if smaller:
            self.batch = max(1, min(self.batch, half))
        self._upload(records[:half], summary)
        self._upload(records[half:], summary)

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.signer is not None:
            headers.update(sign_request(self.signer, "POST", self.path, body))
        return headers

    def _send(self, records: list[Spooled]) -> list[dict[str, Any]]:
        body = _json_array([r.body for r in records])
        self.spool.count_attempt([r.id for r in records])
        problem = "no attempt made"
        for attempt in range(self.backoff.attempts):
            if attempt:
                self.backoff.sleep(self.backoff.delay(attempt))
            try:
                response = self.client.post(self.url, content=body, headers=self._headers(body))
            except httpc.Timeout as exc:
                # the body may still be crossing a slow uplink (the kernel took it
                # whole): a smaller batch may pass; a hung collector costs a few
                # halvings more before the records wait for the next upload
                if len(records) > SLOW_FLOOR and not isinstance(exc, httpc.ConnectTimeout):
                    raise TooSlow() from exc
                problem = _explain(exc)
                log.info("upload attempt %d failed: %s", attempt + 1, problem)
                continue
            except httpc.HttpError as exc:
                problem = _explain(exc)
                log.info("upload attempt %d failed: %s", attempt + 1, problem)
                continue
            if response.status_code == 200:
                return self._results(response, records)
            code = _error_code(response)
            if response.status_code == 413 or (response.status_code in BISECT_STATUS and code):
                raise Refused(code or "body_too_large", _error_detail(response))
            if response.status_code in (401, 403) and code in ("unknown_key", "revoked_key"):
                # the signed request's key is unknown (a registration mishap: the
                # records wait and retry) or revoked (kept aside): as each record
                # would be told
                return [{"id": r.id, "status": "rejected", "reason": code} for r in records]
            problem = f"HTTP {response.status_code}: {_error_detail(response)}"
            if response.status_code not in RETRY_STATUS:
                break  # the collector will not change its mind
            log.info("upload attempt %d failed: %s", attempt + 1, problem)
        raise CollectorUnavailable(f"cannot upload to {self.collector}: {problem}")

    def _results(self, response: httpc.Response, records: list[Spooled]
                 ) -> list[dict[str, Any]]:
        try:
            results = response.json()["results"]
        except (ValueError, KeyError, TypeError):
            results = None
        if (not isinstance(results, list) or len(results) != len(records)
                or not all(isinstance(r, dict) for r in results)):
            raise CollectorUnavailable(f"{self.collector} answered with something that is not "
                                       "a voipwatch collector's answer")
        return results

    def _settle(self, records: list[Spooled], results: list[dict[str, Any]],
                summary: Summary) -> int:
        """Apply the collector's answers to the spool; how many records were settled."""
        done: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        rejected = 0
        unreceipted: list[str] = []
        check = self._receipts()
        for spooled, result in zip(records, results, strict=True):
            status = result.get("status")
            if result.get("id") not in (None, spooled.id):
                continue  # not an answer about this record: keep it for next time
            if status in ("accepted", "duplicate"):
                record = json.loads(spooled.body)  # one at a time, for its hash
                try:
                    receipt = check.check(record, result)
                except SignatureError as exc:
                    unreceipted.append(str(exc))
                    continue  # stays in the spool: nothing proves the collector has it
                done.append((spooled.id, receipt, claims_of(record)))
                if status == "accepted":
                    summary.accepted += 1
                else:
                    summary.duplicate += 1
            elif status == "rejected":
                reason = str(result.get("reason") or "unknown")[:64]
                if reason in RETRYABLE:  # it can pass: wait, never set aside for good
                    self.spool.defer(spooled.id, reason,
                                     wait_delay(self.spool.attempts(spooled.id)))
                    summary.waiting[reason] = summary.waiting.get(reason, 0) + 1
                else:
                    self.spool.reject(spooled.id, reason)
                    summary.rejected[reason] = summary.rejected.get(reason, 0) + 1
                rejected += 1
        self.spool.settle(_base(self.collector), done)
        if unreceipted:
            raise CollectorUnavailable(f"{len(unreceipted)} records were answered as stored "
                                       f"without a valid receipt ({unreceipted[0]}); they "
                                       "stay in the spool")
        return len(done) + rejected


def _json_array(items: list[bytes]) -> bytes:
    """A JSON array of the items (the records as the spool keeps them: compact
    JSON, never parsed to be sent) built in one copy: `b"[" + ... + b"]"` made
    two more of a batch's MB, all alive at once."""
    parts = [b"["]
    for index, item in enumerate(items):
        if index:
            parts.append(b",")
        parts.append(item)
    parts.append(b"]")
    return b"".join(parts)


def _error_code(response: httpc.Response) -> str | None:
    """The collector's stable error string, if this is a collector's error body."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return str(code)[:48] if isinstance(code, str) else None


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\ruploading: {done}/{total} records" + ("" if done < total else "\n"))
    sys.stderr.flush()


def upload_and_report(collector_url: str, key: ProbeKey, strict: bool = False,
                      client: httpc.Client | None = None, backoff: Backoff | None = None
                      ) -> None:
    """Upload the spool to the collector and print a one-line summary on stderr.
    `strict` (the `upload` command): a UserError when the collector could not be
    reached or rejected records. After `run`, problems are reported, not raised:
    the records wait in the spool for the next upload."""
    if not spool_path().exists():
        _say(f"upload to {collector_url}: the spool is empty")
        return
    if backoff is None and not strict:
        backoff = Backoff(attempts=3)  # after a run: do not keep the user waiting long
    config = load_config()
    pinned = None
    if config.collector == _base(collector_url) and config.collector_key:
        pinned = pinned_key(config.collector_key)  # load_config refused a malformed one
    own_client = client is None
    http = client or httpc.Client(timeout=TIMEOUT)
    with Spool(spool_path()) as spool, contextlib.closing(http) if own_client else \
            contextlib.nullcontext(http):
        if strict:  # the user asks now: records waiting for a later try go too
            spool.release()
        uploader = Uploader(collector_url, spool, http, backoff,
                            progress=_progress if sys.stderr.isatty() else None,
                            collector_key=pinned, signer=key)
        summary = uploader.run()
        kept = spool.counts()["rejected"]
        if pinned is None and uploader.receipts is not None and \
                config.collector == _base(collector_url):
            # a probe registered before collectors had keys: pin the first one seen
            config.collector_key = base64.b64encode(uploader.receipts.collector_key).decode()
            save_config(config)
    _say(summary.line(collector_url))
    if kept:
        _say(f"{kept} rejected records are kept aside in the spool "
             "(`voipwatch-probe status` lists them)")
    if strict and summary.error:
        raise Unreachable(f"{summary.error}; {summary.left} records stay in the spool")
    if strict and summary.rejected_total:
        raise Unreachable(f"the collector rejected {summary.rejected_total} records "
                          "(kept aside in the spool; `voipwatch-probe status` lists them)")
    if strict and summary.waiting:
        raise Unreachable(f"the collector refused {sum(summary.waiting.values())} records for "
                          "now; they stay in the spool and are sent again later "
                          "(`voipwatch-probe status` says why)")
