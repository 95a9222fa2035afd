"""`voipwatch-probe setup`: collector, token, link type and schedule, from flags or,
on a terminal, from questions for the missing ones; then the config is written,
the key created if needed and registered, and the schedule shown (applied too
when `--schedule` is given and the systemd timers are installed).

Everything typed is checked before anything heavy is imported or sent.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from probe.core.errors import InternalError, UserError
from probe.ui.cli import LINK_TYPES

if TYPE_CHECKING:
    from probe.core.signing import ProbeKey
    from probe.store.state import ProbeConfig


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ask(question: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
    hint = f" ({'/'.join(choices)})" if choices else ""
    shown = f" [{default}]" if default else ""
    while True:
        try:
            answer = input(f"{question}{hint}{shown}: ").strip()
        except EOFError:
            raise UserError("setup cancelled: no answer on the terminal") from None
        answer = answer or (default or "")
        if not choices or answer in choices:
            return answer
        _say(f"  please answer one of: {', '.join(choices)}")


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"collector {url!r}: expected an http:// or https:// URL, "
                        "e.g. https://collector.example.org")
    return url.rstrip("/")


def main(args: argparse.Namespace) -> int:
    interactive = not args.no_input and sys.stdin.isatty()
    if not interactive:  # flags only: check them before reading anything
        if not args.collector:
            raise UserError("no collector: pass --collector URL (there is no terminal to "
                            "ask on)")
        check_url(args.collector)
    from probe.store.state import load_config
    from probe.ui.schedule import SCHEDULES

    config = load_config()
    collector = args.collector
    while collector is None and interactive:
        answer = ask("Collector URL (from the collector's operator)", config.collector)
        try:
            collector = check_url(answer)
        except UserError as exc:
            _say(f"  {exc}")
    collector = check_url(collector or "")
    token = args.token
    if token is None and interactive:
        token = ask("Enrollment token (Enter if the collector needs none)") or None
    link_type = args.link_type
    if link_type is None and interactive:
        link_type = ask("How is this machine connected? (auto detects modems, USB dongles "
                        "and tethered phones; a home line behind a router cannot be told: say "
                        "adsl; a phone's hotspot or a 4G box over Wi-Fi: say cellular)",
                        config.link_type or "auto", LINK_TYPES)
    schedule = args.schedule
    if schedule is None and interactive:
        schedule = ask("When to measure: hourly (a light pass every hour and a full one a "
                       "day), daily (one full pass a day) or off", "hourly",
                       tuple(SCHEDULES))

    from probe.store.state import check_key_file, require_secure, save_config

    insecure = getattr(args, "insecure", False)
    require_secure(collector, insecure or config.insecure == "true")
    check_key_file(config)  # before anything is written
    if insecure:
        config.insecure = "true"
    if link_type is not None:
        config.link_type = None if link_type == "auto" else link_type
    path = save_config(config)
    _say(f"config: {path}")
    key = _key(config)
    from probe.upload.uploader import register

    register(collector, key, token, config)

    from probe.store.state import home
    from probe.ui.schedule import apply, describe

    if schedule is not None:
        applied = apply(schedule)
        for line in applied.done:
            _say(f"schedule: {line}")
        if applied.failed:  # the machine's doing, not the input's: exit status 1
            raise InternalError("could not apply the schedule: " + "; ".join(applied.failed))
    for line in describe(home(), schedule):
        _say(f"schedule: {line}")
    _say("check it any time with `voipwatch-probe status`")
    return 0


def _key(config: ProbeConfig) -> ProbeKey:
    """This probe's key, created on first use (the default one only: a key_file
    that probe.toml names must exist)."""
    from probe.core.signing import ProbeKey, load_key, write_key
    from probe.store.state import check_key_file, ensure_home, key_path

    check_key_file(config)
    path = key_path(config)
    if not path.exists():
        ensure_home()
        write_key(ProbeKey.generate(), path)
        _say(f"created a new probe key at {path}")
    return load_key(path)
