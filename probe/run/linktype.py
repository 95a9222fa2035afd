"""The link a pass is measured on: two facts, each with how it was decided.

- the *access* link: how this machine is attached (`wifi`, `ethernet`, `usb`
  for a USB modem or a tethered phone, `wwan` for a modem seen as such);
- the *upstream* network kind behind it (`cellular`, `fixed`, `unknown`): a
  laptop on a phone's Wi-Fi hotspot is `wifi` behind `cellular`.

Each evidence source (`linktype_dbus`, `linktype_sysfs`, `linktype_dhcp`,
`linktype_os`, `linktype_asn`) returns `Finding`s; `decide` keeps, per fact,
the surest finding, the better source first when equally sure (docs/linktype.md
has the table). `--link-type` wins for the facts it states. `link_type`, the
one-word summary every record has carried since schema v1, follows the facts:
a cellular upstream is `cellular` whatever the access link.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from probe.core.record import Access, Confidence, LinkSource, LinkType, Upstream

# best evidence first: the order `decide` breaks ties in
SOURCE_ORDER = (LinkSource.USER, LinkSource.MODEM, LinkSource.NETWORKMANAGER, LinkSource.OS,
                LinkSource.DRIVER, LinkSource.HOTSPOT, LinkSource.ASN, LinkSource.NONE)
CONFIDENCE_ORDER = (Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW)
MAX_EVIDENCE = 16

Runner = Callable[[list[str], float], str | None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One thing an evidence source saw: the facts it supports (None: says
    nothing of that fact), how sure, and a short description for the record
    (`network.link_evidence`; never an address, a network name or a serial)."""

    source: LinkSource
    confidence: Confidence
    evidence: str
    access: Access | None = None
    upstream: Upstream | None = None


@dataclass(frozen=True)
class LinkFacts:
    """Two facts, each with how it was decided, and the one-word summary."""

    link_type: LinkType  # what every record has said since schema v1
    link_type_source: LinkSource
    access: Access
    access_source: LinkSource
    upstream: Upstream
    upstream_source: LinkSource
    upstream_confidence: Confidence | None = None
    evidence: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = field(default=(), compare=False, repr=False)
    user: LinkType | None = None  # --link-type, when given

    def record_fields(self) -> dict[str, object]:
        return {
            "link_type": self.link_type, "link_type_source": self.link_type_source,
            "access": self.access, "access_source": self.access_source,
            "upstream": self.upstream, "upstream_source": self.upstream_source,
            "upstream_confidence": self.upstream_confidence,
            "link_evidence": list(self.evidence),
        }


def _rank(finding: Finding) -> tuple[int, int]:
    return CONFIDENCE_ORDER.index(finding.confidence), SOURCE_ORDER.index(finding.source)


# what a user's --link-type states about each fact
_USER = {
    LinkType.CELLULAR: (None, Upstream.CELLULAR),
    LinkType.ADSL: (None, Upstream.FIXED),
    LinkType.WIFI: (Access.WIFI, None),  # a home router, or a phone's hotspot
    LinkType.ETHERNET: (Access.ETHERNET, None),
    LinkType.UNKNOWN: (None, None),
}


def user_finding(link_type: LinkType) -> Finding:
    access, upstream = _USER[link_type]
    return Finding(LinkSource.USER, Confidence.HIGH, f"--link-type {link_type}", access, upstream)


def _summary(access: Access, upstream: Upstream) -> LinkType:
    """Schema v1's one word: cellular whatever the access; a fixed line is `adsl`
    (DSL or fibre) unless reached over Wi-Fi; else the access link."""
    if upstream is Upstream.CELLULAR or access is Access.WWAN:
        return LinkType.CELLULAR
    if upstream is Upstream.FIXED and access is not Access.WIFI:
        return LinkType.ADSL
    return {Access.WIFI: LinkType.WIFI, Access.ETHERNET: LinkType.ETHERNET}.get(
        access, LinkType.UNKNOWN)


def decide(findings: Iterable[Finding], user: LinkType | None = None) -> LinkFacts:
    """The facts from every finding: per fact the surest, then the better source;
    the user's word first for the facts it states."""
    seen = sorted(findings, key=_rank)
    if user is not None:
        seen.insert(0, user_finding(user))
    best_access = next((f for f in seen if f.access is not None), None)
    best_upstream = next((f for f in seen if f.upstream is not None), None)
    access = best_access.access if best_access and best_access.access else Access.UNKNOWN
    upstream = (best_upstream.upstream if best_upstream and best_upstream.upstream
                else Upstream.UNKNOWN)
    access_source = best_access.source if best_access else LinkSource.NONE
    upstream_source = best_upstream.source if best_upstream else LinkSource.NONE
    if user is not None:
        link_type, link_source = user, LinkSource.USER
    else:
        link_type = _summary(access, upstream)
        if link_type is LinkType.UNKNOWN:
            link_source = LinkSource.NONE
        elif upstream is Upstream.CELLULAR or link_type is LinkType.ADSL:
            link_source = upstream_source
        else:
            link_source = access_source
    evidence: list[str] = []
    for finding in seen:
        if finding.evidence not in evidence:
            evidence.append(finding.evidence)
    return LinkFacts(
        link_type, link_source, access, access_source, upstream, upstream_source,
        best_upstream.confidence if best_upstream else None,
        tuple(evidence[:MAX_EVIDENCE]), tuple(f for f in seen if f.source is not LinkSource.USER),
        user)


def from_user(link_type: LinkType, detected: LinkFacts | None = None) -> LinkFacts:
    """The user's word for what it states; detection for the rest."""
    return decide(detected.findings if detected else (), user=link_type)


def with_hint(link: LinkFacts, hint: Finding | None) -> LinkFacts:
    """The facts once a late hint (the measured network's ASN) is known."""
    if hint is None:
        return link
    return decide((*link.findings, hint), user=link.user)


def run_command(command: list[str], timeout: float) -> str | None:
    """A platform tool's output, or None when it is missing, fails or is slow."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True)
class Host:
    """Where detection looks: a filesystem root (sysfs, /proc, lease files), a
    D-Bus address (None: ask nobody), a command runner and the platform.
    The tests point these at fixture trees, a test bus and captured outputs."""

    root: Path = Path("/")
    bus: str | None = "SYSTEM"
    run: Runner = run_command
    platform: str = sys.platform


def guarded(source: Callable[[], list[Finding]], name: str) -> list[Finding]:
    """One evidence source's findings; a bug in it costs its evidence, never the pass."""
    try:
        return source()
    except Exception as exc:
        log.warning("link detection: %s failed", name, exc_info=True)
        return [Finding(LinkSource.NONE, Confidence.LOW,
                        f"{name} detection failed ({type(exc).__name__})")]


def findings(host: Host) -> list[Finding]:
    """Everything the platform's evidence sources say about the default route's link."""
    if host.platform.startswith("linux"):
        from probe.run import linktype_linux

        return linktype_linux.findings(host)
    if host.platform in ("darwin", "win32"):
        from probe.run import linktype_os

        if host.platform == "darwin":
            return guarded(lambda: linktype_os.macos_findings(host.run), "macOS")
        return guarded(lambda: linktype_os.windows_findings(host.run), "Windows")
    return [Finding(LinkSource.NONE, Confidence.LOW, f"no detection on {host.platform}")]


def detect_facts(host: Host | None = None) -> LinkFacts:
    """The link as this machine's own evidence shows it; `unknown` where it shows nothing."""
    return decide(findings(host or Host()))


def describe(link: LinkFacts) -> str:
    """One line for people (`status`, logs)."""
    upstream = f"{link.upstream}" + (f", {link.upstream_confidence}" if link.upstream_confidence
                                     else "")
    return (f"{link.link_type} (access {link.access} from {link.access_source}; upstream "
            f"{upstream} from {link.upstream_source})")


