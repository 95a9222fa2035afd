"""Benchmarks (`make bench` runs every bench/*.py)."""
