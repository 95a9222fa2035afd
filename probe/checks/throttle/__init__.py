"""Throttling detection by differential replay (docs/throttle.md).

- `check`: the `throttle` check itself;
- `replay`: sends a profile as two interleaved flows and records what comes back;
- `client`: the collector's reflector sessions (create, report);
- `stats`: the decision rule, pure functions.

What goes on the wire is pure and lives in probe/wire: `throttle` (the
per-packet session token and the bit inversion of the control, shared with
the collector's reflector, `collector/reflector.py`) and `profiles` (each
service's call traffic: STUN checks, RTP audio, rate-probing bursts).
"""
