"""The catalogue's placeholder for "the collector this probe reports to".

The default catalogue cannot know which collector a volunteer uses, so its
`webrtc` and `throttle` endpoints name `https://collector.example.org`, an
RFC 2606 name that stands for the run's own collector (`--collector`, or the
one saved by `register`). An operator may write a real URL instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# RFC 2606 / RFC 6761 names: a catalogue URL on one of them means "my collector"
PLACEHOLDERS = ("example.org", "example.com", "example.net", "example", "invalid")


def is_placeholder(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return any(host == name or host.endswith("." + name) for name in PLACEHOLDERS)


def substitute(url: str, collector: str | None, *, keep_path: bool) -> str | None:
    """`url` itself when it names a real host; when it is a placeholder, the
    run's collector (with `url`'s path and query when `keep_path`), or None
    when the run has no collector."""
    if not is_placeholder(url):
        return url
    if not collector:
        return None
    base = urlsplit(collector)
    if not keep_path:
        return urlunsplit((base.scheme, base.netloc, base.path, "", ""))
    parts = urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))
