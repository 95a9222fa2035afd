"""`python -m deploy.lab`: the censorship lab's command line (docs/lab.md).

    up | down | status | apply SCENARIO | run-scenario SCENARIO | accuracy [SCENARIO...] | demo

Exit status: 0 done (and, for run-scenario and accuracy, every verdict as
expected); 1 a mismatch or a failure of the lab; 2 a user error (no root, a
bad scenario, a lab that is not up), always as one sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from deploy.lab import DEFAULT_PREFIX

if TYPE_CHECKING:
    from deploy.lab.lab import Lab
    from deploy.lab.scenario import Scenario

PROG = "python -m deploy.lab"
# the probe's packaged default (configs/catalogue.yaml links to it); not imported from
# probe.catalogue so that `--help` stays free of pydantic
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[2] / "probe" / "data" / "catalogue.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The voipwatch censorship lab: network namespaces, a censoring "
        "router, reference services, scenarios and the probe's accuracy.")
    parser.add_argument("--prefix", default=os.environ.get("VOIPWATCH_LAB_PREFIX", DEFAULT_PREFIX),
                        help="name prefix of the lab's namespaces (default: %(default)s; "
                             "two labs with different prefixes coexist)")
    parser.add_argument("--workdir", type=Path, help="the lab's files (default: var/lab/PREFIX)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build the namespaces and start the reference services")
    up.add_argument("--mirror", nargs="?", type=Path, metavar="CATALOGUE",
                    const=DEFAULT_CATALOGUE,
                    help="also mirror a real catalogue's endpoints inside the lab (default: "
                         "configs/catalogue.yaml), so the probe can run it unchanged "
                         "(docs/lab.md)")
    down = sub.add_parser("down", help="remove the lab (safe to repeat, also after a crash)")
    down.add_argument("--stale", action="store_true",
                      help="instead, remove every lab whose owning process has died")
    sub.add_parser("status", help="namespaces, services, current policy")
    apply = sub.add_parser("apply", help="install a scenario's policy, run nothing")
    apply.add_argument("scenario", help="a name from deploy/lab/scenarios or a YAML file")
    sub.add_parser("clear", help="remove the censor's policy")
    one = sub.add_parser("run-scenario", help="install a scenario, run the probes, compare")
    one.add_argument("scenario", help="a name from deploy/lab/scenarios or a YAML file")
    accuracy = sub.add_parser("accuracy", help="every scenario: confusion matrix, false "
                              "positives; non-zero exit on any mismatch")
    accuracy.add_argument("scenarios", nargs="*", help="only these (default: all)")
    accuracy.add_argument("--json", type=Path, metavar="FILE", help="also write every outcome")
    demo = sub.add_parser("demo", help="replay Morocco 2016 (seeds/morocco-2016.yaml) and "
                          "upload to the lab's collector")
    demo.add_argument("--passes", type=int, default=2, metavar="N",
                      help="measurement passes per phase (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from deploy.lab.shell import LabError, NeedsRoot
    from probe.core.errors import VoipwatchError

    try:
        return _dispatch(args)
    except NeedsRoot as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_status
    except (LabError, VoipwatchError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; `{PROG} down` removes what is left", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from deploy.lab.shell import UsageError, require_root
    from deploy.lab.topology import check_prefix

    check_prefix(args.prefix)
    if args.command in ("apply", "run-scenario"):
        _scenario_or_fail(args.scenario)  # a bad file is reported before root is asked for
    if args.command == "up" and args.mirror:
        from deploy.lab import mirror

        mirror.load(args.mirror)  # likewise a catalogue the mirror cannot serve
    require_root(f"{PROG} {args.command}")
    from deploy.lab.lab import Lab

    lab = Lab(args.prefix, args.workdir, mirror_catalogue=args.mirror) \
        if args.command == "up" else Lab.existing(args.prefix, args.workdir)
    if args.command == "up":
        lab.up()
        _print_status(lab)
        return 0
    if args.command == "down":
        if args.stale:
            from deploy.lab.topology import reap_stale

            print("\n".join(f"removed stale lab {p}" for p in reap_stale()) or "no stale lab")
            return 0
        removed = lab.down()
        print(f"removed {', '.join(removed)}" if removed else f"no lab {args.prefix} to remove")
        return 0
    if args.command == "status":
        _print_status(lab)
        return 0
    if args.command == "demo":
        from deploy.lab.demo import demo_lab, run_demo

        return run_demo(demo_lab(args.prefix, args.workdir), passes=args.passes)
    if args.command == "accuracy":
        return _accuracy(lab, args)
    if not lab.topology.is_up() or not lab.services():
        raise UsageError(f"the lab {args.prefix} is not up: run `{PROG} --prefix {args.prefix} "
                         "up` first")
    if args.command == "clear":
        lab.clear()
        print("censor policy cleared")
        return 0
    scenario = _scenario_or_fail(args.scenario)
    if args.command == "apply":
        lab.apply(scenario)
        print(f"scenario {scenario.name} installed: {scenario.description.strip()}")
        return 0
    import asyncio

    from rich.console import Console

    from deploy.lab.accuracy import render, run_scenario

    outcomes = asyncio.run(run_scenario(lab, scenario))
    render(outcomes, Console())
    return 0 if all(o.ok for o in outcomes) else 1


def _scenario_or_fail(name: str) -> Scenario:
    from deploy.lab.scenario import load_scenario, scenario_path

    return load_scenario(scenario_path(name))


def _accuracy(lab: Lab, args: argparse.Namespace) -> int:
    from rich.console import Console

    from deploy.lab.accuracy import render, run_all, to_json
    from deploy.lab.addresses import LINKS
    from deploy.lab.lab import Lab
    from deploy.lab.scenario import all_scenarios
    from deploy.lab.shell import UsageError

    scenarios = [_scenario_or_fail(n) for n in args.scenarios] or all_scenarios()
    temporary = not (lab.topology.is_up() and lab.services())
    if temporary:
        lab = Lab(args.prefix, args.workdir)  # every link type
        lab.up(owner_pid=os.getpid())
    elif set(lab.links) != set(LINKS):
        raise UsageError(f"the lab {args.prefix} is up with {', '.join(map(str, lab.links))} "
                         f"only; the scenarios need every link type: `{PROG} --prefix "
                         f"{args.prefix} down` it first, or use another --prefix")
    try:
        outcomes = run_all(lab, scenarios)
    finally:
        if temporary:
            lab.down()
    render(outcomes, Console())
    if args.json:
        args.json.write_text(to_json(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


def _print_status(lab: Lab) -> None:
    status = lab.status()
    print(json.dumps(status, indent=1))
    if status["up"]:
        inet = lab.topology.inet_ns
        print(f"collector (inside the lab): {status['collector']}  e.g. "
              f"ip netns exec {inet} curl -s {status['collector']}healthz")


if __name__ == "__main__":
    raise SystemExit(main())
