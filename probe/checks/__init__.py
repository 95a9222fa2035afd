"""The checks, one module each (their properties: probe.core.checks). Modules
are imported on first use, so a run that has no `webrtc` endpoint never pays
for importing aiortc."""

from __future__ import annotations

import importlib
from types import ModuleType

from probe.core.checks import spec


def get(name: str) -> ModuleType:
    """The module of check `name` (LookupError for an unknown name)."""
    return importlib.import_module(spec(name).module)
