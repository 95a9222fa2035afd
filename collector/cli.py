"""`voipwatch-collector`: serve, export, probes list|revoke, token create, migrate,
operator create|revoke-all, subscription add|list|remove, dashboard rebuild.

User errors end with exit status 2 and one sentence; see collector.settings for
where each setting can come from."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector import __version__
from probe.core.commands import EXIT_STATUS, output_target
from probe.core.errors import Unreachable, UserError, run_command

PROG = "voipwatch-collector"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR", help="state directory (default: "
                        "$VOIPWATCH_COLLECTOR_HOME, else the user data directory)")
    parser.add_argument("--db", metavar="URL", help="database URL (default: SQLite in the "
                        "data directory; postgresql://USER@HOST/DB works too)")
    parser.add_argument("--config", metavar="FILE", help="TOML settings file")


def _flag(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    parser.add_argument(name, action=argparse.BooleanOptionalAction, default=None, help=help)


def _filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters")
    for name, meta in (("service", "ID"), ("verdict", "V"), ("link-type", "T"),
                       ("cc", "CC"), ("asn", "N"), ("since", "TIME"), ("until", "TIME"),
                       ("check", "NAME"), ("role", "ROLE"), ("key-id", "HEX"),
                       ("upstream", "KIND")):
        group.add_argument(f"--{name}", metavar=meta)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The voipwatch collector: registration, signed ingest, "
        "the test helper, exports and the results page.",
        epilog="Settings: flags, then VOIPWATCH_COLLECTOR_* variables, then the TOML file "
               f"(docs/collector.md). {EXIT_STATUS}")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    _common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8470; 0 picks a free one)")
    serve.add_argument("--workers", type=int,
                       help="API processes (default: one per core, at most 8)")
    serve.add_argument("--geoip-asn", metavar="FILE.mmdb", help="MaxMind-format ASN database")
    serve.add_argument("--geoip-country", metavar="FILE.mmdb",
                       help="MaxMind-format country database")
    _flag(serve, "--geoip-builtin", "use geoip2fast's bundled offline data when no .mmdb "
          "file is given (default: on)")
    _flag(serve, "--keep-ip", "store the submitting address with each record (default: off)")
    _flag(serve, "--require-token", "registration needs an enrollment token (default: on "
          "when listening on a non-loopback address)")
    serve.add_argument("--forwarded-allow-ips", metavar="IPS",
                       help="proxies trusted to set X-Forwarded-For (comma list)")
    serve.add_argument("--max-record-age-days", type=float, metavar="DAYS",
                       help="the horizon: reject records that started longer ago (default "
                            "400; probes keep them and retry; 0: no limit)")
    serve.add_argument("--late-after-hours", type=float, metavar="H",
                       help="mark records received longer after they started as late "
                            "(default 24; 0: never)")
    _flag(serve, "--transparency-log", "append every stored record to the transparency "
          "log (default: on; off only to measure its cost)")
    serve.add_argument("--max-clock-skew-seconds", type=float, metavar="S",
                       help="reject records dated further ahead (default 600; 0: no limit)")
    serve.add_argument("--max-batch", type=int, metavar="N", help="records per request "
                       "(default 1000)")
    serve.add_argument("--catalogue", metavar="FILE.yaml", help="the catalogue this collector "
                       "serves: the test helper runs only its endpoints, the reflector opens "
                       "its throttle ports")
    serve.add_argument("--resolver", metavar="IP[:PORT]",
                       help="DNS resolver for the test helper (default: the system's)")
    serve.add_argument("--whoami-zone", metavar="ZONE", help="a DNS zone delegated to this "
                       "host: its names are answered with the asking resolver's address, so "
                       "probes learn their resolver's network (docs/evidence.md)")
    serve.add_argument("--whoami-listen", metavar="IP[:PORT]",
                       help="where the whoami DNS server listens (UDP, default port 53)")
    _flag(serve, "--control", "run the test helper (default: on)")
    _flag(serve, "--control-allow-private", "let the test helper reach loopback and private "
          "addresses (labs and tests only; default: off)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    media = sub.add_parser("media", help="run the media service (WebRTC reference peer "
                           "and throttling reflector) on its own; `serve --workers N` "
                           "starts one itself")
    _common(media)
    media.add_argument("--host", default="127.0.0.1",
                       help="address for the API processes to reach it (default 127.0.0.1)")
    media.add_argument("--port", type=int, default=8471, help="port (default 8471)")
    media.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket bound by `serve`
    media.add_argument("--log-level", choices=("debug", "info", "warning", "error"))

    export = sub.add_parser("export", help="write stored records to a file")
    _common(export)
    export.add_argument("--format", choices=("jsonl", "csv", "parquet", "ooni"), required=True,
                        help="ooni: OONI's measurement data format, one per line (docs/export.md)")
    export.add_argument("--out", "--output", metavar="FILE", required=True,
                        help="output file, replaced whole once complete ('-': stdout)")
    export.add_argument("--include-ip", action="store_true", help="add the submitting "
                        "addresses, where --keep-ip stored them (never in public exports)")
    export.add_argument("--proof", metavar="FILE", help="where to write the proof that the "
                        "export is complete (default: FILE.proof beside --out; none for -)")
    export.add_argument("--no-proof", action="store_true", help="write no proof")
    export.add_argument("--partition", choices=("day",), help="parquet only: write a "
                        "dataset, --out DIR (a new directory) holding DIR/day=YYYY-MM-DD/"
                        "part-N.parquet (Hive layout, docs/export.md)")
    export.add_argument("--tree-size", type=int, metavar="N", help="export as of the log's "
                        "first N entries (default: its size now): the same set every time")
    _filters(export)

    report = sub.add_parser("report", help="the evidence report of one country (and AS, "
                            "service) over a period, HTML or PDF, reproducible")
    _common(report)
    report.add_argument("--cc", required=True, metavar="CC", help="ISO country code")
    report.add_argument("--asn", metavar="N", help="one network only")
    report.add_argument("--service", metavar="ID", help="one service only")
    report.add_argument("--since", required=True, metavar="DATE",
                        help="first day (YYYY-MM-DD, UTC) or an RFC 3339 time")
    report.add_argument("--until", required=True, metavar="DATE",
                        help="last day, included (YYYY-MM-DD), or an RFC 3339 time (excluded)")
    report.add_argument("--out", required=True, metavar="FILE.html|FILE.pdf")
    report.add_argument("--tree-size", type=int, metavar="N",
                        help="as of the log's first N entries (default: its size now)")

    redact = sub.add_parser("redact", help="delete a probe's records (its volunteer asked); "
                            "the transparency log keeps their leaf hashes, so proofs hold")
    _common(redact)
    redact.add_argument("--key-id", required=True, metavar="HEX")
    redact.add_argument("--reason", metavar="TEXT", help="kept with the redaction")

    probes = sub.add_parser("probes", help="registered probe keys")
    probes_sub = probes.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = probes_sub.add_parser("list", help="list registered keys")
    _common(listing)
    revoke = probes_sub.add_parser("revoke", help="revoke a key: its records are rejected "
                                   "from now on, earlier ones stay, marked")
    _common(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID")

    token = sub.add_parser("token", help="enrollment tokens")
    token_sub = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_sub.add_parser("create", help="create an enrollment token (shown once)")
    _common(create)
    create.add_argument("--uses", type=int, metavar="N", help="how many registrations "
                        "(default: unlimited)")
    create.add_argument("--valid-days", type=float, metavar="D", help="expiry (default: none)")
    create.add_argument("--note", help="a label for your own records")

    operator = sub.add_parser("operator", help="operator tokens (the fleet page, subscriptions)")
    operator_sub = operator.add_subparsers(dest="action", metavar="ACTION", required=True)
    create_operator = operator_sub.add_parser("create", help="a new operator token (shown "
                                              "once)")
    _common(create_operator)
    create_operator.add_argument("--note", help="a label for your own records")
    revoke_operator = operator_sub.add_parser("revoke-all", help="revoke every operator token")
    _common(revoke_operator)

    subscription = sub.add_parser("subscription", help="webhook subscriptions to detected "
                                  "changes (docs/dashboard.md)")
    subscription_sub = subscription.add_subparsers(dest="action", metavar="ACTION",
                                                   required=True)
    add = subscription_sub.add_parser("add", help="subscribe a URL (its HMAC secret is "
                                      "shown once)")
    _common(add)
    add.add_argument("url", help="where to POST each change (http:// or https://)")
    add.add_argument("--cc", metavar="CC", help="only changes in this country")
    add.add_argument("--asn", metavar="N", help="only changes on this operator (AS number)")
    add.add_argument("--service", metavar="ID", help="only changes of this service")
    add.add_argument("--note", help="a label for your own records")
    listing = subscription_sub.add_parser("list", help="list subscriptions")
    _common(listing)
    remove = subscription_sub.add_parser("remove", help="remove a subscription")
    _common(remove)
    remove.add_argument("id", type=int, metavar="ID")

    dashboard = sub.add_parser("dashboard", help="the dashboard's rollups")
    dashboard_sub = dashboard.add_subparsers(dest="action", metavar="ACTION", required=True)
    rebuild = dashboard_sub.add_parser("rebuild", help="recompute the rollups from the "
                                       "stored measurements")
    _common(rebuild)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    _common(migrate)
    return parser


# modules of the `collector` extra (pyproject.toml) that every command needs
EXTRA_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings")


def check_extra() -> None:
    """Installed without the `collector` extra: say how to install it, in one sentence."""
    from importlib.util import find_spec

    missing = [name for name in EXTRA_MODULES if find_spec(name) is None]
    if missing:
        raise UserError(f"the collector's dependencies are not installed ({', '.join(missing)} "
                        "missing): pip install 'voipwatch[collector]'")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_extra()
    except UserError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return exc.exit_status
    handler = {"serve": cmd_serve, "export": cmd_export, "probes": cmd_probes,
               "token": cmd_token, "migrate": cmd_migrate, "media": cmd_media,
               "report": cmd_report, "redact": cmd_redact,
               "operator": cmd_operator, "subscription": cmd_subscription,
               "dashboard": cmd_dashboard}[args.command]
    return run_command(PROG, _said_when_locked(handler), args)


LOCKED = ("the database stayed locked by another writer (a dashboard rebuild, a backup, a "
          "busy collector): try again when it is done")


def _said_when_locked(handler: Callable[[argparse.Namespace], int]
                      ) -> Callable[[argparse.Namespace], int]:
    """SQLite held past its busy timeout by another writer: one sentence, not an
    internal error."""
    def run(args: argparse.Namespace) -> int:
        import sqlalchemy as sa

        from collector.db.busy import locked

        try:
            return handler(args)
        except sa.exc.OperationalError as exc:
            if not locked(exc):
                raise
            raise Unreachable(LOCKED) from exc

    return run


SERVE_SETTINGS = ("data_dir", "db", "host", "port", "workers", "geoip_asn", "geoip_country",
                  "geoip_builtin", "keep_ip", "require_token", "forwarded_allow_ips",
                  "max_record_age_days", "max_clock_skew_seconds", "max_batch", "resolver",
                  "control_allow_private", "log_level", "late_after_hours",
                  "transparency_log", "whoami_zone", "whoami_listen", "catalogue")


def _settings(args: argparse.Namespace, names: tuple[str, ...] = ("data_dir", "db")) -> Any:
    from collector.settings import load_settings

    overrides = {name: getattr(args, name, None) for name in names}
    if getattr(args, "control", None) is not None:
        overrides["control_enabled"] = args.control
    return load_settings(overrides, Path(args.config) if args.config else None)


def open_database(settings: Any) -> Any:
    """An engine on a migrated database, or a UserError saying why not."""
    import sqlalchemy as sa

    from collector.db.busy import locked
    from collector.db.engine import describe, make_engine
    from collector.db.migrate import upgrade

    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    except sa.exc.OperationalError as exc:
        if locked(exc):
            raise Unreachable(LOCKED) from exc
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        # a database server that does not answer is not bad input (a bad path is)
        problem = Unreachable if engine.dialect.name != "sqlite" else UserError
        raise problem(f"cannot open the database {describe(engine)}: {reason}") from exc
    return engine


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args, SERVE_SETTINGS)
    from collector import logs

    logs.configure(settings.log_level)
    open_database(settings).dispose()
    from collector.geoip import Enricher
    from collector.server import serve

    Enricher.from_settings(settings).close()  # bad .mmdb files: an error now, not at startup
    from collector.identity import load_or_create

    load_or_create(settings.data_dir)  # made once, before the workers read it

    flags = {name: getattr(args, name, None) for name in SERVE_SETTINGS}
    flags["control_enabled"] = args.control
    if args.config:  # worker processes read the same file
        os.environ["VOIPWATCH_COLLECTOR_CONFIG"] = str(Path(args.config).resolve())
    serve(settings, flags)
    return 0


def cmd_media(args: argparse.Namespace) -> int:
    settings = _settings(args, ("data_dir", "db", "log_level"))
    from collector import logs
    from collector.media import run

    logs.configure(settings.log_level)
    open_database(settings).dispose()
    run(settings, args.host, args.port, args.fd)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.partition:
        _dataset_target(args)
    else:
        output_target(args.out, "--out")  # the probe's --output rules, before the database
    from collector.export import export
    from collector.store import MeasurementStore

    settings = _settings(args)
    filters = _parse_filters(args)
    engine = open_database(settings)
    proof_path = None if args.no_proof else (
        Path(args.proof) if args.proof else None if args.out == "-" else
        Path(args.out).with_name(Path(args.out).name + ".proof"))
    proof = None
    if settings.transparency_log and (proof_path is not None or args.tree_size is not None):
        import dataclasses

        from collector import export_proof
        from collector.identity import load_or_create
        from collector.translog import TransLog

        identity = load_or_create(settings.data_dir)
        log = TransLog(engine, identity)
        _catch_up(log)
        current = log.size()
        size = current if args.tree_size is None else args.tree_size
        if not 0 <= size <= current:
            raise UserError(f"--tree-size {size}: the log has {current} entries")
        filters = dataclasses.replace(filters, log_size=size)
        proof = export_proof.proof(log, identity, filters, size, args.format)
    from collector import outfile

    with outfile.beside(proof_path, proof, "--proof") as failed:  # both at once
        if args.partition:
            from collector import export_dataset

            try:
                export_dataset.write(MeasurementStore(engine), filters, Path(args.out),
                                     args.include_ip, _progress(None, "records written"),
                                     failed)
            except OSError as exc:
                raise UserError(f"cannot write --out {args.out}: "
                                f"{exc.strerror or exc}") from exc
            return 0
        writer = export(MeasurementStore(engine), filters, args.format, args.include_ip)
        if args.out == "-":
            for data in writer:
                if failed.is_set():
                    raise outfile.Stopped
                sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            outfile.write(Path(args.out), writer, "--out", stop=failed)
    return 0


def _dataset_target(args: argparse.Namespace) -> None:
    """`--partition`: Parquet only, into a directory that does not exist yet."""
    if args.format != "parquet":
        raise UserError(f"--partition {args.partition}: only with --format parquet")
    target = Path(args.out)
    if args.out == "-":
        raise UserError("--partition writes a directory: give --out DIR, not -")
    if target.exists():
        raise UserError(f"cannot write --out {args.out}: it exists (a partitioned export "
                        "goes to a new directory)")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"cannot write --out {args.out}: {parent} is not a writable directory")


def _parse_filters(args: argparse.Namespace) -> Any:
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from collector.store import Filters
    from probe.core.record import CheckName, LinkType, Role, Upstream, Verdict

    values: dict[str, Any] = {}
    for name, kind in (("verdict", Verdict), ("link_type", LinkType), ("check", CheckName),
                       ("role", Role), ("upstream", Upstream)):
        value = getattr(args, name)
        if value is not None:
            try:
                values[name] = str(kind(value))
            except ValueError:
                raise UserError(f"--{name.replace('_', '-')} {value!r}: expected one of "
                                f"{', '.join(kind)}") from None
    for name in ("since", "until"):
        value = getattr(args, name)
        if value is not None:
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise UserError(f"--{name} {value!r}: expected an RFC 3339 time, e.g. "
                                "2016-01-07T00:00:00Z") from None
            if moment.tzinfo is None:
                raise UserError(f"--{name} {value!r}: give a time zone, e.g. a trailing Z")
            try:
                values[name] = moment.astimezone(UTC)
            except OverflowError:
                raise UserError(f"--{name} {value!r}: out of range once in UTC") from None
    if args.asn is not None:
        text = args.asn.upper().removeprefix("AS")
        if not text.isdigit():
            raise UserError(f"--asn {args.asn!r}: expected a number, e.g. 36903")
        values["asn"] = int(text)
    try:
        return Filters(service=args.service, cc=args.cc, key_id=args.key_id, **values)
    except ValidationError as exc:  # pragma: no cover - Filters is a plain dataclass
        raise UserError(str(exc)) from exc


def _report_time(flag: str, text: str, end: bool) -> Any:
    from datetime import UTC, datetime, timedelta

    try:
        if len(text) == 10:  # a day: from its start; an `until` day is included
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected YYYY-MM-DD or an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise UserError(f"{flag} {text!r}: give a time zone, e.g. a trailing Z")
    return moment


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("html", "pdf"):
        raise UserError(f"--out {out}: the name must end in .html or .pdf")
    if len(args.cc) != 2 or not args.cc.isalpha():
        raise UserError(f"--cc {args.cc!r}: expected a two-letter country code, e.g. MA")
    asn = None
    if args.asn is not None:
        text = args.asn.upper().removeprefix("AS")
        if not text.isdigit():
            raise UserError(f"--asn {args.asn!r}: expected a number, e.g. 36903")
        asn = int(text)
    since = _report_time("--since", args.since, end=False)
    until = _report_time("--until", args.until, end=True)
    if until <= since:
        raise UserError("--until is before --since")
    settings = _settings(args)
    engine = open_database(settings)
    from collector.identity import load_or_create
    from collector.report import facts
    from collector.store import MeasurementStore
    from collector.translog import TransLog

    identity = load_or_create(settings.data_dir)
    log = TransLog(engine, identity) if settings.transparency_log else None
    if log is not None:
        _catch_up(log)
    try:
        found = facts(MeasurementStore(engine), log, identity, args.cc, asn, since, until,
                      args.service, args.tree_size, _progress(None, "records read"))
    except ValueError as exc:
        raise UserError(f"--tree-size: {exc}") from exc
    if kind == "html":
        from collector.report.html import render
    else:
        from collector.report.pdf import render
    from collector.outfile import write

    write(out, [render(found)], "--out")
    print(f"{out}: {found.records} records, dataset sha256 {found.dataset_sha256}")
    return 0


def cmd_redact(args: argparse.Namespace) -> int:
    from collector.identity import load_or_create
    from collector.keys import KeyStore
    from collector.redaction import redact
    from collector.store import Filters, MeasurementStore
    from collector.translog import TransLog

    settings = _settings(args)
    engine = open_database(settings)
    key_id = args.key_id.strip().lower()
    stored = MeasurementStore(engine).count(Filters(key_id=key_id))
    if not stored:
        raise UserError(f"no records of key {args.key_id!r} (see `{PROG} probes list`)")
    log = TransLog(engine, load_or_create(settings.data_dir))
    _catch_up(log)  # every record in the log first: its hash must be kept
    sys.stderr.write(f"{PROG}: deleting {stored:,} records of {key_id} and their share of "
                     f"the dashboard, in one transaction: {_uploads_wait(engine)}\n")
    deleted = redact(engine, log, key_id, args.reason, _progress(stored, "records deleted"))
    print(f"deleted {deleted} records of {key_id}; the log keeps their leaf hashes, "
          "the dashboard no longer counts them")
    probe = KeyStore(engine).get(key_id)
    if probe is not None and not probe.revoked:
        sys.stderr.write(f"{PROG}: the key is not revoked: records it sends from now on are "
                         f"stored (`{PROG} probes revoke {key_id}`)\n")
    return 0


def cmd_probes(args: argparse.Namespace) -> int:
    from collector.keys import KeyStore
    from probe.core.record import rfc3339

    keys = KeyStore(open_database(_settings(args)))
    if args.action == "list":
        rows = keys.list()
        if not rows:
            print("no probes registered")
        for row in rows:
            state = f"revoked {rfc3339(row.revoked_at)}" if row.revoked_at else "active"
            seen = rfc3339(row.last_seen_at) if row.last_seen_at else "never"
            print(f"{row.key_id}  registered {rfc3339(row.registered_at)}  last seen {seen}  "
                  f"{state}")
        return 0
    key_id = args.key_id.strip().lower()
    row = keys.revoke(key_id)
    if row is None:
        raise UserError(f"no probe with key id {args.key_id!r} (see `{PROG} probes list`)")
    assert row.revoked_at is not None  # revoke() stamps it
    print(f"revoked {row.key_id} at {rfc3339(row.revoked_at)}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from collector.keys import KeyStore

    if args.uses is not None and args.uses < 1:
        raise UserError(f"--uses {args.uses}: must be at least 1")
    if args.valid_days is not None and args.valid_days <= 0:
        raise UserError(f"--valid-days {args.valid_days:g}: must be greater than 0")
    keys = KeyStore(open_database(_settings(args)))
    print(keys.create_token(max_uses=args.uses, valid_days=args.valid_days, note=args.note))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from collector.dashboard.operators import OperatorTokens

    tokens = OperatorTokens(open_database(_settings(args)))
    if args.action == "create":
        print(tokens.create(args.note))
    else:
        print(f"revoked {tokens.revoke_all()} operator tokens")
    return 0


def cmd_subscription(args: argparse.Namespace) -> int:
    import re

    from collector.dashboard.alerts import Subscriptions

    subs = Subscriptions(open_database(_settings(args)))
    if args.action == "add":
        if args.cc and not re.fullmatch(r"[A-Za-z]{2}", args.cc):
            raise UserError(f"--cc {args.cc!r}: expected a two-letter country code")
        asn = None
        if args.asn:
            text = args.asn.upper().removeprefix("AS")
            if not text.isdigit():
                raise UserError(f"--asn {args.asn!r}: expected a number, e.g. 36903")
            asn = int(text)
        sub, secret = subs.add(args.url, args.cc, asn, args.service, args.note)
        print(f"subscription {sub.id}: {sub.url}")
        print(f"secret (HMAC-SHA256 key, shown once): {secret}")
        return 0
    if args.action == "list":
        found = subs.list()
        if not found:
            print("no subscriptions")
        for item in found:
            filters = " ".join(f"{k}={v}" for k, v in (("cc", item.cc), ("asn", item.asn),
                                                        ("service", item.service)) if v)
            print(f"{item.id}  {item.url}  {filters or 'all changes'}"
                  f"{'  ' + item.note if item.note else ''}")
        return 0
    if not subs.remove(args.id):
        raise UserError(f"no subscription {args.id} (see `{PROG} subscription list`)")
    print(f"removed subscription {args.id}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from collector.dashboard.rollup import rebuild_on
    from collector.db.engine import write_options
    from collector.db.schema import measurements

    engine = open_database(_settings(args))
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(measurements)).scalar_one()
    # one transaction (the rollups are never seen half rebuilt), which uploads wait for
    sys.stderr.write(f"{PROG}: rolling up {stored:,} measurements again, in one transaction: "
                     f"{_uploads_wait(engine)} (probes keep their records and send them "
                     "again)\n")
    with engine.connect().execution_options(**write_options(engine, patient=True)) as conn, \
            conn.begin():
        count = rebuild_on(conn, progress=_progress(stored, "measurements read"))
    print(f"rolled up {count} measurements")
    return 0


def _uploads_wait(engine: Any) -> str:
    """What uploads meet while an operator's command holds the database."""
    if engine.dialect.name == "sqlite":
        return "uploads wait for it, and past 30 s are answered 503 database_busy"
    return "uploads wait for it"


def _catch_up(log: Any) -> None:
    """The stored records missing from the transparency log (stored with it off)
    entered first, saying so when it takes a while (minutes at millions)."""
    log.catch_up(_progress(None, "stored records entered in the transparency log first"))


def _progress(total: int | None, what: str) -> Callable[[int], None]:
    from probe.core.progress import progress_lines

    return progress_lines(PROG, total, what)


def cmd_migrate(args: argparse.Namespace) -> int:
    from collector.db.engine import describe
    from collector.db.migrate import current_revision

    engine = open_database(_settings(args))
    print(f"{describe(engine)}: schema at revision {current_revision(engine)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
