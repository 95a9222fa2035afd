"""`voipwatch-collector report`: the evidence report from the data, HTML and
PDF; the same data gives the same bytes; the PDF embeds its fonts; the
report's own verification steps, followed to the letter, give its dataset hash."""

from __future__ import annotations

import html
import re
import shlex
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.report import VERDICTS
from probe.core.record import rfc3339
from probe.core.signing import ProbeKey
from tests.collector.conftest import make_record, register
from tests.collector.harness import COLLECTOR, Collector
from tests.conftest import probe_command

MA = {"link_type": "cellular", "cc": "MA", "asn": 36903, "as_org": "Maroc Telecom",
      "resolver_asn": 36903, "attribution": "control"}
START = datetime(2016, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def stocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with Collector(tmp_path_factory.mktemp("report"), None,
                   ["--max-record-age-days", "0"]) as running, running.client() as http:
        keys = [ProbeKey.generate() for _ in range(3)]
        for key in keys:
            register(http, key)
        records = []
        for day in range(15):
            for n, key in enumerate(keys):
                moment = rfc3339(START + timedelta(days=day, minutes=n))
                blocked = day >= 4
                records.append(make_record(
                    key, "whatsapp", started_at=moment, network=MA,
                    verdict="blocked" if blocked else "open",
                    blocking=("stun.no_response" if n else "tcp.reset") if blocked else None))
                records.append(make_record(key, "whatsapp", started_at=moment, network=MA,
                                           endpoint={"check": "tls", "host": "web.example",
                                                     "port": 443, "transport": "tls",
                                                     "role": "messaging"}))
        elsewhere = dict(MA, cc="DZ", asn=36947)
        records.append(make_record(keys[0], "whatsapp", network=elsewhere,
                                   started_at=rfc3339(START)))
        assert http.post("/api/v1/measurements", json=records).status_code == 200
        yield running


def report(running: Collector, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return running.cli("report", "--cc", "MA", "--since", "2016-01-01", "--until",
                       "2016-01-31", "--out", str(out), *extra)


def test_html_report_says_what_the_data_says(stocked: Collector, tmp_path: Path) -> None:
    result = report(stocked, tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "whatsapp MA" not in text  # no service filter: all services
    assert "MA, AS36903" not in text and "MA (Maroc Telecom), 2016-01-01 to 2016-01-31" in text
    assert "90 measurements by 3 probes, on cellular (90)" in text
    assert "33 blocked" in text and "57 open" in text
    assert "First blocked measurement: 2016-01-09T09:00:00.000000Z" in text
    assert "last: 2016-01-19T09:02:00.000000Z" in text
    assert "stun.no_response (22)" in text and "tcp.reset (11)" in text
    assert "<svg" in page  # self-contained: nothing to run, nothing fetched
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", page)
    again = tmp_path / "again.html"
    report(stocked, again)
    assert again.read_bytes() == (tmp_path / "r.html").read_bytes()


def test_following_the_reports_steps_gives_its_hash(stocked: Collector, tmp_path: Path) -> None:
    report(stocked, tmp_path / "r.html", "--asn", "36903")
    text = html.unescape((tmp_path / "r.html").read_text())
    claimed = re.search(r"Dataset SHA-256 .*?: ([0-9a-f]{64})", text)
    command = re.search(r"(voipwatch-collector export [^\n<]+)", text)
    assert claimed and command
    argv = shlex.split(command.group(1))
    argv[0] = COLLECTOR
    subprocess.run([*argv, *stocked.db_args], cwd=tmp_path, check=True, timeout=60)
    verified = subprocess.run([*probe_command(), "verify-export", "evidence.jsonl"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"dataset sha256: {claimed.group(1)}" in verified.stdout
    assert "90 records" in verified.stdout


def test_pdf_report_is_reproducible_with_fonts_embedded(stocked: Collector,
                                                        tmp_path: Path) -> None:
    first, second = tmp_path / "a.pdf", tmp_path / "b.pdf"
    assert report(stocked, first).returncode == 0
    assert report(stocked, second).returncode == 0
    data = first.read_bytes()
    assert data.startswith(b"%PDF-") and data == second.read_bytes()
    assert b"/FontFile2" in data  # TrueType embedded
    assert b"/Helvetica" not in data  # no font left to the viewer


def test_report_errors_are_sentences(stocked: Collector, tmp_path: Path) -> None:
    for args, message in ((("--out", str(tmp_path / "r.doc")), "must end in .html or .pdf"),
                          (("--cc", "Morocco"), "two-letter country code"),
                          (("--since", "yesterday"), "expected YYYY-MM-DD"),
                          (("--tree-size", "100000"), "the log has")):
        base = {"--cc": "MA", "--since": "2016-01-01", "--until": "2016-01-31",
                "--out": str(tmp_path / "r.html")}
        base[args[0]] = args[1]
        result = stocked.cli("report", *[x for kv in base.items() for x in kv])
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_the_hash_follows_log_order_when_the_rows_do_not(tmp_path: Path) -> None:
    """Concurrent uploads to PostgreSQL can commit (and enter the log) in another
    order than they inserted; the report then reads the set's hashes again in log
    order. Simulated by swapping two rows' log indexes: the hash must follow."""
    import sqlalchemy as sa

    from collector.db.engine import make_engine
    from collector.db.schema import measurements
    from collector.identity import load_or_create
    from collector.report import facts
    from collector.store import MeasurementStore
    from collector.translog import TransLog
    from probe.core.evidence import dataset_sha256

    with Collector(tmp_path / "c", None, ["--max-record-age-days", "0"]) as running, \
            running.client() as http:
        key = ProbeKey.generate()
        register(http, key)
        records = [make_record(key, "whatsapp", network=MA,
                               started_at=rfc3339(START + timedelta(hours=n))) for n in range(6)]
        assert http.post("/api/v1/measurements", json=records).status_code == 200
    engine = make_engine(f"sqlite:///{running.data_dir}/collector.sqlite3")
    c = measurements.c
    with engine.begin() as conn:
        first, last = conn.execute(sa.select(c.seq, c.log_index).order_by(c.seq)).all()[::5]
        for seq, index in ((first.seq, -1), (last.seq, first.log_index), (first.seq,
                                                                           last.log_index)):
            conn.execute(sa.update(measurements).where(c.seq == seq).values(log_index=index))
        in_log_order, in_seq_order = ([row.record_sha256 for row in conn.execute(
            sa.select(c.record_sha256).order_by(order))] for order in (c.log_index, c.seq))
    key_ = load_or_create(running.data_dir)
    read: list[int] = []
    found = facts(MeasurementStore(engine), TransLog(engine, key_), key_, "MA", None,
                  START - timedelta(days=1), START + timedelta(days=1), progress=read.append)
    assert found.records == 6 and found.dataset_sha256 == dataset_sha256(in_log_order)
    assert read == [6]  # told after each chunk read
    from collector.report import columns
    from collector.store import Filters

    store, everything = MeasurementStore(engine), Filters(cc="MA")
    chunks = list(store.scan(everything, columns(store.dialect), chunk=4))  # keyset, oldest first
    assert [len(rows) for rows in chunks] == [4, 2]
    assert [row.seq for rows in chunks for row in rows] == \
        [row.seq for rows in store.stream(everything) for row in rows]
    assert in_log_order != in_seq_order  # the rows did stream out of log order


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_facts_count_every_stored_row(backend: str, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    """The report counts by column groups in C, not row by row: its figures must
    be those of a plain walk over every stored row (varied services, roles,
    verdicts, methods, links, orgs, attributions, mismatches, late records,
    times near midnight in other zones; chunks of 7 rows, weekly buckets)."""
    import random
    import uuid

    import sqlalchemy as sa

    from collector.db.engine import make_engine
    from collector.db.migrate import upgrade
    from collector.db.schema import measurements
    from collector.identity import load_or_create
    from collector.report import facts
    from collector.store import MeasurementStore
    from probe.core.evidence import dataset_sha256, leaf_time
    from tests.collector.conftest import database_url

    engine = make_engine(database_url(backend, request) or f"sqlite:///{tmp_path}/c.sqlite3")
    upgrade(engine)
    pick = random.Random(7).choice
    zones = [timezone(timedelta(hours=h)) for h in (-5, 0, 1, 9)]
    rows = []
    for n in range(300):
        verdict = pick(["open", "open", "blocked", "throttled", "inconclusive"])
        moment = (START + timedelta(days=pick(range(90)), hours=pick([0, 11, 23]),
                                    minutes=pick([0, 59]), microseconds=pick([0, 1, 999_999]))
                  ).astimezone(pick(zones))
        rows.append({
            "id": str(uuid.uuid4()), "key_id": pick(["k1", "k2", "k3"]),
            "service": pick(["whatsapp", "skype"]), "check_name": "tcp",
            "role": pick(["call", "messaging"]), "transport": "tcp",
            "endpoint_host": "203.0.113.7", "endpoint_port": 443, "verdict": verdict,
            "blocking": pick(["tcp.reset", "stun.no_response", None])
            if verdict in ("blocked", "throttled") else None,
            "link_type": pick(["cellular", "wifi", "fixed"]), "cc": pick(["MA", "MA", "DZ"]),
            "asn": 36903, "as_org": pick(["Maroc Telecom", "Inwi", "", None]),
            "attribution": pick(["control", "local", "collector", "none", None]),
            "attribution_mismatch": pick([True, False, None]),
            "late_seconds": pick([None, 0, 90_000]), "started_at": moment,
            "received_at": START, "record": "{}", "record_sha256": f"{n:064x}",
            "log_index": n})
    with engine.begin() as conn:
        conn.execute(sa.insert(measurements), rows)
    since, until = START - timedelta(days=4), START + timedelta(days=80)
    key = load_or_create(tmp_path)
    found = facts(MeasurementStore(engine), None, key, "ma", None, since, until, chunk=7)

    kept = [r for r in rows if r["cc"] == "MA" and since <= r["started_at"] < until]
    weeks: dict[str, Counter[str]] = defaultdict(Counter)
    methods: dict[str, Counter[str]] = defaultdict(Counter)
    lines: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    line_methods: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    blocked_at: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in kept:
        day = r["started_at"].astimezone(UTC).date()
        week = (day - timedelta(days=day.weekday())).isoformat()
        weeks[week][r["verdict"]] += 1
        lines[r["service"], r["role"]][r["verdict"]] += 1
        if r["verdict"] in ("blocked", "throttled"):
            methods[week][r["blocking"] or "unknown"] += 1
            line_methods[r["service"], r["role"]][r["blocking"] or "unknown"] += 1
        if r["verdict"] == "blocked":
            blocked_at[r["service"], r["role"]].append(leaf_time(r["started_at"]))
    assert 150 < found.records == len(kept) and found.bucket == "week"
    assert found.probes == len({r["key_id"] for r in kept})
    assert dict(found.link_types) == Counter(r["link_type"] for r in kept)
    orgs = Counter(r["as_org"] for r in kept if r["as_org"])
    assert found.as_orgs == sorted(orgs, key=lambda name: (-orgs[name], name))
    assert found.verdicts == {v: sum(r["verdict"] == v for r in kept) for v in VERDICTS}
    assert found.attribution == Counter(r["attribution"] or "none" for r in kept)
    assert found.mismatches == sum(bool(r["attribution_mismatch"]) for r in kept)
    assert found.late == sum(r["late_seconds"] is not None for r in kept)
    assert [(b, dict(+Counter(v))) for b, v in found.series] == \
        [(b, dict(weeks[b])) for b in sorted(weeks)]
    assert [(b, dict(+Counter(v))) for b, v in found.methods_series] == \
        [(b, dict(methods[b])) for b in sorted(methods)]
    assert [(line.service, line.role, dict(line.verdicts), dict(line.methods),
             line.first_blocked, line.last_blocked) for line in found.lines] == \
        [(*k, dict(lines[k]), dict(line_methods[k]), min(blocked_at[k], default=None),
          max(blocked_at[k], default=None)) for k in sorted(lines)]
    assert found.first_blocked == min(t for ts in blocked_at.values() for t in ts)
    assert found.dataset_sha256 == dataset_sha256(
        r["record_sha256"] for r in sorted(kept, key=lambda r: r["log_index"]))
