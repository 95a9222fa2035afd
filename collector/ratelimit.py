"""Token buckets per key (probe key, client address), in memory, per process."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, per_minute: float, burst: float | None = None,
                 max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else per_minute
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: float = 1.0) -> float:
        """0 if `cost` tokens were taken, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return (cost - tokens) / self.rate
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # crude, but bounded: better than unbounded memory
            self._buckets[key] = (tokens - cost, now)
            return 0.0
