"""Where the probe keeps its state: key, config, spool.

`$VOIPWATCH_HOME` when set, else the platform's user data directory. Two probes
with different homes never share anything.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.core.errors import UserError


def home() -> Path:
    explicit = os.environ.get("VOIPWATCH_HOME")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("voipwatch", appauthor=False))


def ensure_home() -> Path:
    path = home()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UserError(f"cannot create the state directory {path}: {exc.strerror}") from exc
    return path


@dataclass
class ProbeConfig:
    """`probe.toml` in the state directory; every key optional."""

    collector: str | None = None
    control: str | None = None
    key_file: Path | None = None
    token: str | None = None
    link_type: str | None = None
    # the collector's Ed25519 public key (base64), pinned at `register`: receipts
    # and tree heads must verify with it (docs/evidence.md)
    collector_key: str | None = None
    insecure: str | None = None  # "true": plain http:// to a non-loopback collector is allowed
    geoip_country: str | None = None  # local .mmdb files: attribution `local`
    geoip_asn: str | None = None

    @property
    def path(self) -> Path:
        return home() / "probe.toml"


CONFIG_KEYS = ("collector", "control", "key_file", "token", "link_type", "collector_key",
               "insecure", "geoip_country", "geoip_asn")


def load_config() -> ProbeConfig:
    path = home() / "probe.toml"
    if not path.exists():
        return ProbeConfig()
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the probe config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(CONFIG_KEYS)})")
    for key, value in data.items():
        if not isinstance(value, str):
            raise UserError(f"{path}: {key} must be a string")
    config = ProbeConfig(**{k: v for k, v in data.items() if k != "key_file"})
    if config.collector_key is not None and pinned_key(config.collector_key) is None:
        # a key that decodes to nothing would leave receipts checked against
        # whatever key the collector presents: refuse it before anything runs
        raise UserError(f"{path}: collector_key is not a base64 Ed25519 public key (correct "
                        "it, or delete the line and run `voipwatch-probe register` again to "
                        "pin the collector's key)")
    if "key_file" in data:
        config.key_file = Path(data["key_file"]).expanduser()
    return config


def pinned_key(text: str) -> bytes | None:
    """The raw 32 bytes of a collector key as probe.toml pins it (strict
    base64), or None when `text` is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def save_config(config: ProbeConfig) -> Path:
    """Write the config atomically (small TOML subset: string values only);
    UserError when it cannot be written (the previous config stays as it was)."""
    path = ensure_home() / "probe.toml"
    lines = []
    for key in CONFIG_KEYS:
        value = getattr(config, key)
        if value is not None:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    tmp = path.with_suffix(".toml.tmp")
    try:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write the probe config {path}: {exc.strerror or exc}"
                        ) from exc
    return path


def key_path(config: ProbeConfig | None = None) -> Path:
    config = config or load_config()
    return config.key_file or home() / "probe.key"


def check_key_file(config: ProbeConfig) -> None:
    """A key file that probe.toml names must exist: only the default one
    (probe.key in the state directory) is created on first use. A missing
    configured one is an unmounted disk or a typo, and a new key there would be
    a new, unregistered identity; `keygen` creates it on purpose."""
    if config.key_file is not None and not config.key_file.exists():
        raise UserError(f"{config.path}: key_file {config.key_file} does not exist (create it "
                        "with `voipwatch-probe keygen`, or delete the line to use the default "
                        "key)")


def spool_path() -> Path:
    return home() / "spool.sqlite3"


def audit_path() -> Path:
    """The last tree head `voipwatch-probe audit` verified, per collector."""
    return home() / "audit.json"


def require_secure(url: str, insecure: bool, flag: str = "--collector") -> None:
    """Refuse what is not an http(s) URL, and a plain http:// URL to anything but
    this machine unless the user insists: an on-path box could read it and
    answer for the collector (receipts still protect the spool, but test-helper
    answers and attribution would not be the collector's)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError as exc:
        raise UserError(f"{flag} {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UserError(f"{flag} {url!r}: use an http:// or https:// URL")
    if not parts.hostname:
        raise UserError(f"{flag} {url!r} is not a valid URL: no host")
    if parts.scheme != "http" or insecure:
        return
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise UserError(f"{flag} {url}: plain http:// to another machine can be read and answered "
                    "by anyone on the path; use https://, or add --insecure if you must")
