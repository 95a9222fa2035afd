"""`voipwatch-probe`: the command line. Only argparse is imported up front so
that `--help` and argument errors answer at once; everything else is imported
by the command that needs it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from probe import __version__
from probe.core.commands import EXIT_STATUS, existing_file, output_target
from probe.core.errors import FindingsFound, UserError, VerificationFailed, run_command

PROG = "voipwatch-probe"
LINK_TYPES = ("auto", "cellular", "wifi", "ethernet", "adsl")


# the largest --timeout (a day): the socket layer refuses some 1e10 s, and a check
# that may wait longer than this never ends in practice
MAX_TIMEOUT = 86_400.0
MAX_BUDGET_MB = 1e9  # a petabyte: beyond, `int(MB * 1e6)` is no longer a byte count


def _positive(kind: type, maximum: float | None = None) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):  # nan, inf, 1e400
            raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, "
                                             f"not {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, not {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Measure whether VoIP services (calls and messaging) are reachable "
                    "from this network, and produce signed evidence.",
        epilog="State (key, config, spool) lives in $VOIPWATCH_HOME, else the user data "
               f"directory. {EXIT_STATUS}",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output on stderr (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run one measurement pass over the catalogue",
                         description="Run every check of the catalogue, classify, sign, spool, "
                                     "print a results table and upload.")
    run.add_argument("--catalogue", metavar="FILE", help="catalogue YAML (default: the one shipped "
                     "with the probe, also at configs/catalogue.yaml)")
    run.add_argument("--services", metavar="ID,ID", help="only these service ids")
    run.add_argument("--skip", metavar="CHECK,CHECK",
                     help="leave out these checks, e.g. `--skip throttle` on a metered link "
                          "(each throttle test costs up to 1 MB)")
    run.add_argument("--link-type", choices=LINK_TYPES, default=None,
                     help="how this machine is connected (default: auto-detect)")
    run.add_argument("--output", "--out", metavar="FILE.jsonl",
                     help="also append the signed records to this file ('-': stdout, as "
                          "--json); a file collects pass after pass")
    run.add_argument("--fail-on", metavar="VERDICT,...",
                     help="exit with status 5 when the pass found any of these verdicts "
                          f"({', '.join(FAIL_ON)}), for scripts and monitors")
    run.add_argument("--collector", metavar="URL", help="collector to upload to "
                     "(default: the one saved by `register`)")
    run.add_argument("--control", metavar="URL", help="test helper for an uncensored view of "
                     "the same endpoints (default: the collector)")
    run.add_argument("--resolver", metavar="IP[:PORT]",
                     help="DNS resolver to use instead of the system's")
    run.add_argument("--no-upload", action="store_true", help="keep the records in the spool")
    run.add_argument("--json", action="store_true",
                     help="print the signed records (JSON lines) on stdout instead of the table")
    run.add_argument("--budget-mb", type=_positive(float, MAX_BUDGET_MB), metavar="N",
                     help="stop measuring once this many megabytes were sent and received")
    run.add_argument("--timeout", type=_positive(float, MAX_TIMEOUT), metavar="SECONDS",
                     help="per-check timeout (default: each check's own)")
    run.add_argument("--concurrency", type=_positive(int), default=16, metavar="N",
                     help="checks running at once (default: 16)")
    run.add_argument("--geoip-country", metavar="FILE.mmdb", help="look up this network's "
                     "country locally (attribution `local`) instead of asking the test helper")
    run.add_argument("--geoip-asn", metavar="FILE.mmdb", help="look up this network's AS "
                     "locally (attribution `local`)")
    _insecure(run)

    keygen = sub.add_parser("keygen", help="create this probe's Ed25519 signing key")
    keygen.add_argument("--key-file", metavar="PATH", help="where to store it "
                        "(default: probe.key in the state directory)")
    keygen.add_argument("--force", action="store_true",
                        help="replace an existing key (the old one is kept as a backup)")

    register = sub.add_parser("register", help="register this probe's key with a collector")
    register.add_argument("--collector", metavar="URL", required=True)
    register.add_argument("--token", metavar="T", help="enrollment token, if the collector "
                          "requires one")
    register.add_argument("--accept-new-collector-key", action="store_true",
                          help="the collector's key changed and its operator confirmed it: "
                               "pin the new one")
    _insecure(register)

    upload = sub.add_parser("upload", help="upload the spooled records")
    upload.add_argument("--collector", metavar="URL",
                        help="collector (default: the one saved by `register`)")
    _insecure(upload)

    audit = sub.add_parser("audit", help="check that the collector's log holds this probe's "
                           "records and only grew since the last audit")
    audit.add_argument("--collector", metavar="URL",
                       help="collector (default: the one saved by `register`)")
    audit.add_argument("--timeout", type=_positive(float, MAX_TIMEOUT), default=30.0,
                       metavar="SECONDS",
                       help="per request (default: 30)")
    _insecure(audit)

    verify = sub.add_parser("verify", help="check every signature in a JSONL file "
                            "(probe output or collector export)")
    verify.add_argument("file", metavar="FILE.jsonl")
    verify.add_argument("--proof", metavar="FILE", help="the export's proof file (default: "
                        "FILE.jsonl.proof when it exists): also check the set is complete")
    verify.add_argument("--collector-key", metavar="BASE64|KEY_ID",
                        help="the collector key the proof must be signed with (default: the "
                             "one pinned by `register`, else the proof's own, reported)")

    verify_export = sub.add_parser(
        "verify-export", help="check a collector export against its proof: every signature, "
        "the signed tree head, and that the set is exactly the log's records for its filter")
    verify_export.add_argument("file", metavar="FILE.jsonl|FILE.csv")
    verify_export.add_argument("--proof", metavar="FILE",
                               help="the proof file (default: FILE.proof)")
    verify_export.add_argument("--collector-key", metavar="BASE64|KEY_ID",
                               help="the collector key the proof must be signed with")

    status = sub.add_parser("status", help="show the last pass, the spool, the collector "
                            "and the schedule")
    status.add_argument("--offline", action="store_true", help="do not ask the collector")
    status.add_argument("--timeout", type=_positive(float, MAX_TIMEOUT), default=3.0,
                        metavar="SECONDS",
                        help="how long to wait for the collector (default: 3)")

    services = sub.add_parser("services", help="list the catalogue's services and their "
                              "checks, per role")
    services.add_argument("--catalogue", metavar="FILE", help="another catalogue (validated)")
    services.add_argument("--services", metavar="ID,ID", help="only these service ids")
    services.add_argument("--endpoints", action="store_true", help="one line per endpoint")

    setup = sub.add_parser("setup", help="configure this probe: collector, token, link "
                           "type, schedule (asks on a terminal for what flags leave out)")
    setup.add_argument("--collector", metavar="URL")
    setup.add_argument("--token", metavar="T", help="enrollment token, if the collector "
                       "requires one")
    setup.add_argument("--link-type", choices=LINK_TYPES)
    setup.add_argument("--schedule", choices=("hourly", "daily", "off"),
                       help="enable the systemd timers for hourly light passes plus a daily "
                            "full one, a daily full pass only, or none")
    setup.add_argument("--no-input", action="store_true", help="never ask; use the flags")
    _insecure(setup)
    return parser


def _insecure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure", action="store_true",
                        help="allow a plain http:// collector or control on another machine "
                             "(receipts still protect the spool)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "services", "status", "verify"):
        _setup_logging(args.verbose)  # `run` does it after checking its input
    handler = {"run": cmd_run, "keygen": cmd_keygen, "register": cmd_register,
               "upload": cmd_upload, "verify": cmd_verify, "status": cmd_status,
               "services": cmd_services, "setup": cmd_setup, "audit": cmd_audit,
               "verify-export": cmd_verify_export}[args.command]
    return run_command(PROG, handler, args,
                       interrupted="interrupted; every finished measurement is in the spool")


def _setup_logging(verbosity: int) -> None:
    import logging

    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(levelname)s: %(message)s")


def parse_resolver(text: str | None) -> tuple[str, int] | None:
    import ipaddress

    if not text:
        return None
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise UserError(f"--resolver {text!r}: expected IP or IP:PORT, e.g. 9.9.9.9 or "
                        "10.0.0.53:5353") from None
    return host, number


def append_lines(target: Path, lines: list[str]) -> None:
    """Append whole lines, or nothing: a failed write to a file is cut back to where
    it began (a device or a pipe, e.g. /dev/full or a FIFO, cannot be cut back)."""
    import contextlib
    import os
    import stat

    data = "".join(line + "\n" for line in lines).encode()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write --output {target}: {exc.strerror}") from exc
    start = None  # where a regular file ended: cut back there on a failure
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        while view:  # a full disk first writes what fits, then fails
            view = view[os.write(fd, view):]
        if start is not None:  # a device or a pipe cannot be fsync'd, and need not be
            os.fsync(fd)
    except OSError as exc:
        if start is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
        raise UserError(f"cannot write --output {target}: {exc.strerror or exc} (the "
                        "records are in the spool)") from exc
    finally:
        os.close(fd)


def parse_names(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


FAIL_ON = ("blocked", "throttled", "inconclusive")


def parse_fail_on(text: str | None) -> frozenset[str]:
    names = parse_names(text) or []
    unknown = [n for n in names if n not in FAIL_ON]
    if unknown:
        raise UserError(f"--fail-on {text!r}: expected verdicts among {', '.join(FAIL_ON)}")
    return frozenset(names)


def load_or_create_key(config: Any, *, create: bool) -> Any:
    from probe.core.signing import ProbeKey, load_key, write_key
    from probe.store.state import check_key_file, ensure_home, key_path

    path = key_path(config)
    if not path.exists() and create:
        check_key_file(config)  # only the default key is made on first use
        ensure_home()
        write_key(ProbeKey.generate(), path)
        print(f"{PROG}: created a new probe key at {path}", file=sys.stderr)
    return load_key(path)


def cmd_run(args: argparse.Namespace) -> int:
    # everything a typo can break is checked before anything heavy is imported
    # (bench/startup.py): the catalogue file, the resolver, the output, --fail-on
    catalogue_path = existing_file(args.catalogue, "catalogue") if args.catalogue else None
    resolver = parse_resolver(args.resolver)
    output = output_target(args.output)
    fail_on = parse_fail_on(args.fail_on)
    _setup_logging(args.verbose)

    import asyncio

    from probe.catalogue import load_catalogue
    from probe.store.state import load_config

    config = load_config()
    catalogue = load_catalogue(catalogue_path).select(parse_names(args.services))
    if args.skip:
        catalogue = catalogue.without_checks(parse_names(args.skip) or [])
    link_choice = args.link_type or config.link_type or "auto"
    if link_choice not in LINK_TYPES:
        raise UserError(f"link_type {link_choice!r} in the probe config: expected one of "
                        f"{', '.join(LINK_TYPES)}")
    key = load_or_create_key(config, create=True)

    from probe.run.runner import RunOptions, SpoolFailed, run_pass, tasks_of
    from probe.store.spool import Spool
    from probe.store.state import spool_path

    collector = args.collector or config.collector
    control = args.control or config.control or collector
    insecure = args.insecure or config.insecure == "true"
    from probe.store.state import require_secure

    if collector:
        require_secure(collector, insecure)
    if control:
        require_secure(control, insecure, "--control")
    options = RunOptions(
        catalogue=catalogue, link_type=link_choice, resolver=resolver, timeout=args.timeout,
        budget_bytes=int(args.budget_mb * 1_000_000) if args.budget_mb else None,
        concurrency=args.concurrency, control_url=control,
        collector_url=collector,
        geoip=_local_geoip(args.geoip_country or config.geoip_country,
                           args.geoip_asn or config.geoip_asn),
    )
    import time

    from probe.run.memory import limit_arenas
    from probe.ui.progress import RunProgress
    from probe.ui.status import save_last_pass

    limit_arenas()  # before the pass starts its threads
    started = time.time()
    with Spool(spool_path()) as spool:
        # a spool that cannot take the pass's records is refused before measuring
        spool.check_writable(len(tasks_of(catalogue)))
        _took_back(spool)
        with RunProgress(catalogue) as progress:
            try:
                records = asyncio.run(run_pass(options, key, spool, on_record=progress.record,
                                               on_start=progress.started))
            except SpoolFailed as exc:  # the spool failed mid-pass: no output, no upload
                save_last_pass(exc.records, started, link_choice)
                raise
    # the link the pass said it measured (its records' signed network.link_type)
    measured = records[0]["network"]["link_type"] if records else link_choice
    save_last_pass(records, started, str(measured))
    import json

    lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
    to_stdout = args.json or output == Path("-")
    if output is not None and output != Path("-"):
        append_lines(output, lines)
    try:
        if to_stdout:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        else:
            from rich.console import Console

            from probe.ui.report import render

            class Table(Console):
                def on_broken_pipe(self) -> None:  # rich's own would exit at once, with 1
                    raise BrokenPipeError

            # a pipe or a log file gets a wide table rather than rich's 80 columns
            render(records, Table() if sys.stdout.isatty() else Table(width=150))
    except BrokenPipeError:
        _stdout_closed()
    from collections import Counter

    found = Counter(str(r["verdict"]) for r in records if r["verdict"] in fail_on)
    if collector and not args.no_upload:
        from probe.run.memory import release_memory
        from probe.upload.uploader import upload_and_report

        # the records are in the spool: the upload reads them from there, and the
        # memory they and the pass held goes back first, for the upload to reuse
        del records, lines
        release_memory()
        upload_and_report(collector, key)
    if found:
        raise FindingsFound("the pass completed and found " + ", ".join(
            f"{n} {verdict}" for verdict, n in sorted(found.items())) + " (--fail-on)")
    return 0


def _took_back(spool: Any) -> None:
    """Spool the records an earlier pass signed but could not spool (its spool
    failed: probe.run.runner.SpoolFailed), and say so."""
    taken = spool.take_back()
    if taken:
        print(f"{PROG}: {taken} records an earlier pass could not spool are in the spool "
              "now", file=sys.stderr)


def _stdout_closed() -> None:
    """The reader of stdout went away (`run | head -1`): like any Unix tool, stop
    writing there, quietly but for one line; the records are in the spool, and the
    upload and the exit status go on as if it had read everything."""
    import os

    try:  # what is still buffered for stdout, and the exit's flush, go nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no stdout at all: nothing to redirect
        pass
    print(f"{PROG}: standard output was closed before the results were all written "
          "(the records are in the spool)", file=sys.stderr)


def _local_geoip(country: str | None, asn: str | None) -> Any:
    if not (country or asn):
        return None
    from probe.run.attribution import LocalGeoip

    return LocalGeoip.open(Path(country) if country else None, Path(asn) if asn else None)


def cmd_keygen(args: argparse.Namespace) -> int:
    from probe.core.signing import ProbeKey, write_key
    from probe.store.state import ensure_home, key_path, load_config

    config = load_config()
    path = Path(args.key_file).expanduser() if args.key_file else key_path(config)
    if not args.key_file:
        ensure_home()
    key = ProbeKey.generate()
    backup = write_key(key, path, force=args.force)
    if backup:
        print(f"previous key kept as {backup}", file=sys.stderr)
    if args.key_file and config.key_file != path:
        from probe.store.state import save_config

        config.key_file = path.resolve()
        save_config(config)
    print(f"key file:   {path}\nkey id:     {key.key_id}\npublic key: {key.public_b64}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from probe.store.state import load_config, require_secure
    from probe.upload.uploader import register

    config = load_config()
    require_secure(args.collector, args.insecure)
    key = load_or_create_key(config, create=True)
    register(args.collector, key, args.token, config,
             accept_new_key=args.accept_new_collector_key)
    if args.insecure and config.insecure != "true":
        from probe.store.state import save_config

        config.insecure = "true"  # the scheduled passes use the same URL
        save_config(config)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from probe.store.state import load_config

    config = load_config()
    collector = args.collector or config.collector
    if not collector:
        raise UserError("no collector: pass --collector URL or run `voipwatch-probe register "
                        "--collector URL` first")
    from probe.store.state import require_secure
    from probe.upload.uploader import upload_and_report

    require_secure(collector, args.insecure or config.insecure == "true")
    key = load_or_create_key(config, create=False)
    from probe.store.spool import Spool
    from probe.store.state import spool_path

    if spool_path().exists():
        with Spool(spool_path()) as spool:
            _took_back(spool)
    upload_and_report(collector, key, strict=True)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from probe.store.state import load_config, require_secure
    from probe.upload.audit import main as audit

    config = load_config()
    collector = args.collector or config.collector
    if not collector:
        raise UserError("no collector: pass --collector URL or run `voipwatch-probe register "
                        "--collector URL` first")
    require_secure(collector, args.insecure or config.insecure == "true")
    return audit(collector, config, args.timeout)


def cmd_verify_export(args: argparse.Namespace) -> int:
    from probe.upload.verify_export import main as verify_export

    return verify_export(Path(args.file), Path(args.proof) if args.proof else None,
                         args.collector_key, required=True)


def cmd_verify(args: argparse.Namespace) -> int:
    path = existing_file(args.file, "file to verify")
    from probe.upload.verify import verify_lines

    good = bad = 0
    for number, problem in verify_lines(path):
        if problem is None:
            good += 1
        else:
            bad += 1
            print(f"{path}:{number}: {problem}")
    if bad:
        raise VerificationFailed(f"{bad} of {good + bad} records failed verification")
    if good == 0:
        raise UserError(f"{path} holds no records")
    proof = Path(args.proof) if args.proof else path.with_name(path.name + ".proof")
    if args.proof or proof.exists():  # a collector export with its proof: completeness too
        from probe.upload.verify_export import main as verify_export

        return verify_export(path, proof, args.collector_key, required=True)
    print(f"{good} records, all signatures valid")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from probe.ui.status import main as status

    return status(args)


def cmd_services(args: argparse.Namespace) -> int:
    from probe.ui.services_list import main as services

    return services(args)


def cmd_setup(args: argparse.Namespace) -> int:
    from probe.ui.setup import main as setup

    return setup(args)


if __name__ == "__main__":
    raise SystemExit(main())
