"""Valid signed measurement records at scale, for benchmarks and load tests.

Every record is a real `voipwatch.measurement/1` record (probe/core/record.py),
signed with Ed25519 over its RFC 8785 form by one of a few probe keys derived
from a seed, so another run (or another program) can rebuild and register the
same keys. Nothing is reused: each record has its own id, time and signature.
The mix is a national campaign's: several services and checks, operators
(country, ASN, AS name, upstream kind) in the signed `network` object, link
types, dates spread over `days` days, mostly `open` with some `inconclusive`,
and blocking episodes: per operator and service, stretches of days when that
operator blocks that service (with a method fitting the check).

Signing runs in parallel over processes (`workers`, default every core) and
uses PyNaCl (libsodium), which signs the same deterministic Ed25519 signature
as the probe's `cryptography` key, faster.

    python bench/generate.py --count 1000000 --out records.jsonl [--days 730]
        [--keys 8] [--seed 1] [--batch 500] [--workers N]

writes one JSON array of `--batch` records per line (a ready ingest body) and
prints its rate (without `--out`, the rate only: `make bench` runs it so);
`--keys-out FILE` writes the keys' seeds (hex) and public keys.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from probe.core.canonical import canonical_bytes, es_number  # noqa: E402
from probe.core.ids import time_ordered_id  # noqa: E402
from probe.core.signing import ProbeKey  # noqa: E402

SCHEMA = "voipwatch.measurement/1"
CHUNK = 2000  # records per task handed to a worker
RUN = 1000  # consecutive records of one key (a batch of up to 1,000 aligned on it is one probe's)

# (service, check, host, port, transport, role)
ENDPOINTS: tuple[tuple[str, str, str, int, str, str], ...] = (
    ("whatsapp", "dns", "web.whatsapp.com", 53, "udp", "messaging"),
    ("whatsapp", "tls", "web.whatsapp.com", 443, "tls", "messaging"),
    ("whatsapp", "stun", "stun.whatsapp.net", 3478, "udp", "call"),
    ("whatsapp", "throttle", "collector.example.org", 3478, "udp", "call"),
    ("skype", "tls", "api.skype.com", 443, "tls", "messaging"),
    ("skype", "stun", "stun.skype.com", 3478, "udp", "call"),
    ("viber", "tcp", "dl-media.viber.com", 443, "tcp", "messaging"),
    ("viber", "stun", "stun.viber.com", 3478, "udp", "call"),
    ("messenger", "tls", "edge-chat.facebook.com", 443, "tls", "messaging"),
    ("messenger", "webrtc", "collector.example.org", 443, "udp", "call"),
    ("telegram", "tcp", "149.154.167.51", 443, "tcp", "messaging"),
    ("signal", "tls", "chat.signal.org", 443, "tls", "messaging"),
    ("signal", "turn", "turn.signal.org", 3478, "udp", "call"),
    ("facetime", "sip", "sip.example.net", 5060, "udp", "call"),
    ("zoom", "tls", "zoom.us", 443, "tls", "call"),
)
# what a blocking episode looks like per check
METHODS = {"dns": ("dns.nxdomain", "dns.bogon"), "tls": ("tls.reset", "tls.timeout"),
           "tcp": ("tcp.reset", "tcp.timeout"), "stun": ("stun.no_response",),
           "turn": ("turn.no_response",), "sip": ("sip.no_response",),
           "webrtc": ("webrtc.ice", "webrtc.dtls"), "throttle": ("throttle.rate",)}
# (cc, asn, as_org, upstream): operators of a few countries
OPERATORS: tuple[tuple[str, int, str, str], ...] = (
    ("MA", 36903, "Maroc Telecom", "cellular"), ("MA", 36925, "Meditelecom", "cellular"),
    ("MA", 6713, "Itissalat Al-Maghrib", "fixed"), ("AE", 5384, "Etisalat", "fixed"),
    ("AE", 15802, "du", "cellular"), ("EG", 8452, "TE Data", "fixed"),
    ("EG", 36935, "Vodafone Egypt", "cellular"), ("IR", 44244, "Irancell", "cellular"),
    ("IR", 58224, "TCI", "fixed"), ("TR", 9121, "Turk Telekom", "fixed"),
    ("PK", 45669, "Jazz", "cellular"), ("SA", 25019, "STC", "fixed"),
)
LINKS = {"cellular": (("cellular", "wwan", "modem"), ("wifi", "wifi", "hotspot")),
         "fixed": (("wifi", "wifi", "networkmanager"), ("ethernet", "ethernet", "driver"),
                   ("adsl", "ethernet", "user"))}


def probe_keys(count: int, seed: int = 1) -> list[ProbeKey]:
    """`count` probe keys, the same for the same seed."""
    return [ProbeKey(Ed25519PrivateKey.from_private_bytes(_key_seed(seed, n)))
            for n in range(count)]


def _key_seed(seed: int, n: int) -> bytes:
    return hashlib.sha256(f"voipwatch-bench-key/{seed}/{n}".encode()).digest()


@dataclass(frozen=True)
class Spec:
    """What to generate: records [first, first + count) of a data set."""

    first: int
    count: int
    keys: int = 8
    seed: int = 1
    days: float = 730.0
    end: float = 0.0  # Unix time of the newest record (0: now)


def _episodes(operator: int, service: str, seed: int, days: float) -> list[tuple[float, float]]:
    """Blocking episodes (start day, end day) of one operator for one service."""
    rng = random.Random(f"{seed}/{operator}/{service}")
    out = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        start = rng.uniform(0, days)
        out.append((start, start + rng.choice((1, 3, 7, 30, 90))))
    return out


def _record(spec: Spec, index: int, key_ids: list[str], publics: list[str],
            episodes: dict[tuple[int, str], list[tuple[float, float]]], end: float
            ) -> tuple[int, dict[str, Any]]:
    rng = random.Random(spec.seed * 1_000_003 + index)
    k = (index // RUN) % spec.keys  # a probe uploads its own records: runs of one key
    op = (k * 7 + rng.randrange(3)) % len(OPERATORS)  # a key moves among a few networks
    cc, asn, as_org, upstream = OPERATORS[op]
    link, access, source = rng.choice(LINKS[upstream])
    service, check, host, port, transport, role = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
    day = rng.uniform(0, spec.days)
    started = datetime.fromtimestamp(end - day * 86400, UTC)
    age = spec.days - day
    blocked = any(a <= age < b for a, b in episodes[(op, service)])
    roll = rng.random()
    if blocked and roll < 0.9:
        verdict, blocking = "blocked", rng.choice(METHODS[check])
        if check == "throttle":
            verdict = "throttled"
    elif roll < 0.04:
        verdict, blocking = "inconclusive", None
    else:
        verdict, blocking = "open", None
    connect = round(rng.uniform(5, 300), 3)
    # floats as their canonical text already (what collector/batch.py parses them
    # into): the record then goes to orjson as it is, no second walk
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "id": str(time_ordered_id(int(started.timestamp() * 1e9), rng.getrandbits)),
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "runtime_ms": rng.randrange(5, 5000),
        "probe": {"key_id": key_ids[k], "software_version": "0.2.0", "public_key": publics[k]},
        "network": {"link_type": link, "link_type_source": source, "access": access,
                    "access_source": source, "upstream": upstream, "upstream_source": source,
                    "upstream_confidence": "high" if source != "hotspot" else "medium",
                    "cc": cc, "asn": asn, "as_org": as_org, "resolver_asn": asn,
                    "attribution": "control"},
        "service": service,
        "endpoint": {"check": check, "host": host, "port": port, "transport": transport,
                     "role": role},
        "verdict": verdict, "blocking": blocking,
        "evidence": {"status": "ok" if verdict == "open" else "failed",
                     "failure": blocking, "rule": f"{check}.{verdict}", "check_version": "1",
                     "connect_ms": _number(connect), "bytes_sent": rng.randrange(60, 2000),
                     "bytes_received": 0 if blocking else rng.randrange(60, 6000),
                     "control": {"state": "ok", "failure": None,
                                 "evidence": {"connect_ms": _number(round(connect / 3, 3))}},
                     "connectivity": {"ok": True, "target": "collector.example.org:443"}},
    }
    return k, record


def _number(value: float) -> orjson.Fragment:
    return orjson.Fragment(es_number(value).encode())


def _chunk(spec: Spec) -> list[bytes]:
    """Records of `spec`, signed, each as its JSON text."""
    signers = [SigningKey(_key_seed(spec.seed, n)) for n in range(spec.keys)]
    publics = [base64.b64encode(bytes(s.verify_key)).decode() for s in signers]
    key_ids = [hashlib.sha256(bytes(s.verify_key)).hexdigest() for s in signers]
    episodes = {(op, e[0]): _episodes(op, e[0], spec.seed, spec.days)
                for op in range(len(OPERATORS)) for e in ENDPOINTS}
    end = spec.end or time.time()
    out = []
    for index in range(spec.first, spec.first + spec.count):
        k, record = _record(spec, index, key_ids, publics, episodes, end)
        signed = canonical_bytes(record, parsed=True)
        value = base64.b64encode(signers[k].sign(signed).signature).decode()
        record["signature"] = {"alg": "ed25519", "key_id": key_ids[k], "value": value}
        out.append(orjson.dumps(record))
    return out


def generate(count: int, *, keys: int = 8, seed: int = 1, days: float = 730.0,
             first: int = 0, end: float | None = None, workers: int | None = None
             ) -> Iterator[bytes]:
    """The JSON texts of `count` signed records, in order, signed on `workers`
    processes (default: every core; 1: in this process)."""
    end = end if end is not None else time.time()
    specs = [Spec(start, min(CHUNK, first + count - start), keys, seed, days, end)
             for start in range(first, first + count, CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(specs) == 1:
        for spec in specs:
            yield from _chunk(spec)
        return
    with ProcessPoolExecutor(workers) as pool:
        # a bounded window of chunks in flight: constant memory at any count
        pending = [pool.submit(_chunk, spec) for spec in specs[:workers * 2]]
        for n in range(len(specs)):
            texts = pending.pop(0).result()
            if n + workers * 2 < len(specs):
                pending.append(pool.submit(_chunk, specs[n + workers * 2]))
            yield from texts


def key_index(index: int, keys: int = 8) -> int:
    """Which of the `keys` keys signs record `index`."""
    return (index // RUN) % keys


def bodies(count: int, batch: int = 500, **options: Any) -> Iterator[bytes]:
    """Ingest bodies (JSON arrays of `batch` records) holding `count` records;
    with `batch` dividing 1,000 and `first` a multiple of it, one key's each."""
    texts: list[bytes] = []
    for text in generate(count, **options):
        texts.append(text)
        if len(texts) == batch:
            yield b"[" + b",".join(texts) + b"]"
            texts = []
    if texts:
        yield b"[" + b",".join(texts) + b"]"


def records(count: int, **options: Any) -> Iterator[dict[str, Any]]:
    """The same records, parsed."""
    for text in generate(count, **options):
        yield orjson.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None, help="default: 100,000 "
                        "(20,000 without --out)")
    parser.add_argument("--out", type=Path, default=Path(os.devnull), help="JSONL, one "
                        "batch per line; default: none, only the rate (as `make bench` "
                        "runs it)")
    parser.add_argument("--batch", type=int, default=500, help="records per line (1: one "
                        "record per line)")
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=float, default=730.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--keys-out", type=Path, help="write the keys (seed hex, public key)")
    args = parser.parse_args(argv)
    if args.count is None:
        args.count = 100_000 if args.out != Path(os.devnull) else 20_000
    if args.count < 1 or args.batch < 1 or args.keys < 1:
        parser.error("--count, --batch and --keys must be at least 1")
    start = time.perf_counter()
    try:
        with args.out.open("wb") as out:
            options = dict(keys=args.keys, seed=args.seed, days=args.days,
                           workers=args.workers)
            if args.batch == 1:
                for text in generate(args.count, **options):  # type: ignore[arg-type]
                    out.write(text + b"\n")
            else:
                for body in bodies(args.count, args.batch, **options):
                    out.write(body + b"\n")
        if args.keys_out:
            args.keys_out.write_bytes(orjson.dumps(
                [{"seed": _key_seed(args.seed, n).hex(), "public_key": key.public_b64,
                  "key_id": key.key_id} for n, key in enumerate(probe_keys(args.keys,
                                                                           args.seed))],
                option=orjson.OPT_INDENT_2))
    except OSError as exc:
        print(f"generate: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    print(f"generate: {args.count} signed records in {elapsed:.1f} s: "
          f"{args.count / elapsed:,.0f} records/s on {args.workers or os.cpu_count()} "
          f"processes -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
