"""Writing the command line's output files: whole or not at all, saying how
far a long write is, and an export beside its proof at once."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from probe.core.errors import UserError

PROG = "voipwatch-collector"


class Stopped(Exception):
    """The other file of a pair failed: this one is given up."""


def write(out: Path, chunks: Iterable[bytes], flag: str, every: float = 5.0,
          stop: threading.Event | None = None) -> None:
    """`chunks` into `out` through `OUT.partial`, renamed once complete; a long
    write (an export of millions of records) says every `every` seconds how far
    it is. `stop` set: given up (Stopped), no part of it left."""
    fill(start(out, flag), chunks, every, stop)


def start(out: Path, flag: str) -> tuple[BinaryIO, Path, str]:
    """`OUT.partial` opened: a file that cannot be written is said before any work."""
    try:
        return open(out.with_name(out.name + ".partial"), "wb"), out, flag
    except OSError as exc:
        raise UserError(f"cannot write {flag} {out}: {exc.strerror}") from exc


def fill(target: tuple[BinaryIO, Path, str], chunks: Iterable[bytes], every: float = 5.0,
         stop: threading.Event | None = None) -> None:
    handle, out, flag = target
    partial = Path(handle.name)
    started = last = time.monotonic()
    written = 0
    try:
        with handle:
            for data in chunks:
                if stop is not None and stop.is_set():
                    raise Stopped
                handle.write(data)
                written += len(data)
                if time.monotonic() - last >= every:
                    last = time.monotonic()
                    sys.stderr.write(f"{PROG}: {written / 1e6:,.0f} MB written to {partial} "
                                     f"({written / 1e6 / (last - started):,.1f} MB/s)\n")
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write {flag} {out}: {exc.strerror}") from exc
    except BaseException:  # interrupted: no half file left behind
        partial.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def beside(out: Path | None, chunks: Iterator[bytes] | None,
           flag: str) -> Iterator[threading.Event]:
    """`chunks` written to `out` in a thread while the body writes its own file
    (an export and its proof: every leaf of the log, as long to read and
    format as the export itself at millions of records, from another table,
    and mostly in pyarrow and the database's driver, which let go of the
    GIL). The event it gives is set when this write fails: the body's own
    `write(..., stop=event)` then gives up, and this write's error is raised.
    If the body fails, this write is given up and the body's error raised."""
    stop = threading.Event()
    if out is None or chunks is None:
        yield stop
        return
    target = start(out, flag)  # in the caller: an unwritable file stops all before work
    failure: list[BaseException] = []

    done = threading.Event()  # waited on, not join(): an interrupted join() of
    # Python 3.11 marks the thread ended while it runs on (bpo-45274)

    def run() -> None:
        try:
            fill(target, chunks, stop=stop)
        except BaseException as exc:  # raised in the caller's thread
            failure.append(exc)
            stop.set()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # its reader threads end now, not at collection
                close()
            done.set()

    threading.Thread(target=run, name=f"write {flag}", daemon=True).start()
    try:
        yield stop
    except BaseException as exc:
        stop.set()
        done.wait()
        if isinstance(exc, Stopped) and failure:
            raise failure[0] from None
        raise
    try:
        done.wait()
    except BaseException:  # Ctrl-C while the proof is finishing: given up too
        stop.set()
        done.wait()
        raise
    if failure and not isinstance(failure[0], Stopped):
        raise failure[0]
