"""Exceptions that end a command with a clear sentence instead of a traceback,
and the one function both command lines use to turn them into exit statuses.

    VoipwatchError
     +-- UserError          exit 2: bad arguments, catalogue, config, key file, paths
     +-- InternalError      exit 1: something that is our fault or the machine's
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


class VoipwatchError(Exception):
    exit_status = 1


class UserError(VoipwatchError):
    """Bad input from the user; the message names the problem and where it is."""

    exit_status = 2


class InternalError(VoipwatchError):
    exit_status = 1


def run_command(prog: str, handler: Callable[[Any], int], args: Any,
                interrupted: str = "interrupted") -> int:
    """Run a command's handler: a VoipwatchError ends with one sentence and its
    exit status, anything unexpected with status 1 and, only when
    VOIPWATCH_DEBUG is set, a traceback."""
    try:
        return handler(args)
    except VoipwatchError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: {interrupted}\n")
        return 130
    except Exception as exc:
        if os.environ.get("VOIPWATCH_DEBUG"):
            raise
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc} "
                         "(set VOIPWATCH_DEBUG=1 for a traceback)\n")
        return 1
