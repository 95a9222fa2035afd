"""What both command lines share beyond the exception tree: the exit-status
table (docs/cli.md) and the checks of the files a command is given, made
before anything heavy is imported, so that a typo answers at once."""

from __future__ import annotations

import os
from pathlib import Path

from probe.core.errors import UserError

# voipwatch-probe and voipwatch-collector alike (docs/cli.md)
EXIT_STATUS = ("Exit status: 0 done (run: the pass completed, whatever the verdicts), "
               "1 internal failure, 2 bad input, 3 verification failed, 4 collector or "
               "database unreachable or refusing (nothing lost), 5 --fail-on matched, "
               "130 interrupted.")


def output_target(path: str | None, option: str = "--output") -> Path | None:
    """Check an --output FILE before any work: None (no file), the path, or
    Path("-") for stdout. The same rules as the collector's export (--out)."""
    if not path:
        return None
    target = Path(path)
    if path == "-":
        return target
    if target.is_dir():
        raise UserError(f"cannot write {option} {path}: it is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {option} {path}: no such directory {parent}")
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise UserError(f"cannot write {option} {path}: permission denied")
    return target


def existing_file(path: str, what: str) -> Path:
    """`path`, checked to be a file: `what` names it in the error (`catalogue`...)."""
    target = Path(path)
    if not target.exists():
        raise UserError(f"{what} not found: {path} (no such file)")
    if target.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file")
    return target
