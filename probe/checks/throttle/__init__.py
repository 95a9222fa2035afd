"""Throttling detection by differential replay (docs/throttle.md).

- `wire`: the per-packet session token and the bit inversion of the control;
- `profiles`: each service's call traffic (STUN checks, RTP audio, rate-probing bursts);
- `replay`: sends a profile as two interleaved flows and records what comes back;
- `client`: the collector's reflector sessions (create, report);
- `stats`: the decision rule, pure functions.

The collector's reflector (`collector/reflector.py`) shares `wire` with the probe.
"""
