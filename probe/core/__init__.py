"""The core shared by the probe and the collector: what a signature and a
record depend on. Imports nothing else of `probe` (an import-linter contract
in pyproject.toml holds it to that)."""
