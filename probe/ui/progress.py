"""Progress while a pass runs: a bar on a terminal, one line per record otherwise
(so logs from a Pi's systemd unit say what happened). rich is imported for the
bar only: a Pi's timer run has no terminal, and rich weighs 2 MiB of its memory."""

from __future__ import annotations

import sys
from typing import Any

from probe.catalogue import Catalogue
from probe.run.connectivity import Connectivity


class RunProgress:
    def __init__(self, catalogue: Catalogue) -> None:
        self.total = sum(len(s.endpoints) for s in catalogue.services)
        self.done = 0
        self.interactive = sys.stderr.isatty()
        self.console: Any = None
        self.bar: Any = None
        self.task_id: Any = None

    def __enter__(self) -> RunProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.console = Console(stderr=True)
            self.bar = Progress(TextColumn("[bold]measuring"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.start()
            self.task_id = self.bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def started(self, connectivity: Connectivity) -> None:
        if not connectivity.ok:
            message = (f"no connectivity to {connectivity.target} (collector/control "
                       "unreachable): endpoints that work stay open, failures without a "
                       "control are inconclusive; records wait in the spool")
            if self.console is not None:
                self.console.print(f"[yellow]{message}[/]")
            else:
                sys.stderr.write(message + "\n")

    def record(self, task: Any, record: dict[str, Any]) -> None:
        self.done += 1
        endpoint = record["endpoint"]
        label = f"{record['service']} {endpoint['check']} {endpoint['host']}:{endpoint['port']}"
        if self.bar is not None:
            self.bar.update(self.task_id, advance=1, description=label)
        else:
            how = f" ({record['blocking']})" if record.get("blocking") else ""
            sys.stderr.write(f"[{self.done}/{self.total}] {label}/{endpoint['transport']}: "
                             f"{record['verdict']}{how}\n")
            sys.stderr.flush()
