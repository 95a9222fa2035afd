"""Exceptions that end a command with a clear sentence instead of a traceback.

    VoipwatchError
     +-- UserError          exit 2: bad arguments, catalogue, config, key file, paths
     +-- InternalError      exit 1: something that is our fault or the machine's
"""


class VoipwatchError(Exception):
    exit_status = 1


class UserError(VoipwatchError):
    """Bad input from the user; the message names the problem and where it is."""

    exit_status = 2


class InternalError(VoipwatchError):
    exit_status = 1
