"""Collector settings: command-line flags, then `VOIPWATCH_COLLECTOR_*` environment
variables, then a TOML file, then the defaults below (docs/collector.md lists them).

The TOML file is `--config FILE`, else `$VOIPWATCH_COLLECTOR_CONFIG`, else
`collector.toml` in the data directory when it exists.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from probe.catalogue import IceServer
from probe.core.addresses import parse_prefixes
from probe.core.errors import UserError

ENV_PREFIX = "VOIPWATCH_COLLECTOR_"
# the default catalogue's throttle ports and their neighbours (docs/throttle.md)
DEFAULT_REFLECTOR_PORTS = "3478-3481,5004,8801-8802,16384-16403,19302-19309"
DEFAULT_PORT = 8470
_TOML: ContextVar[dict[str, Any] | None] = ContextVar("collector_toml", default=None)


def default_data_dir() -> Path:
    explicit = os.environ.get(f"{ENV_PREFIX}HOME")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("voipwatch-collector", appauthor=False))


def default_workers() -> int:
    """Two API processes per core the collector may use: ingest is CPU-bound
    (signature checks, JSON), but each process also waits, for the database's
    write turn and its commit's fsync, and a second process per core works
    meanwhile (measured on 2 cores: 4 processes took 20 % more records than 2;
    docs/scale.md). At most 8: past that, run replicas (the database is the limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2 * cores, 8))


def parse_host_port(text: str, default_port: int = 53) -> tuple[str, int]:
    """`IP`, `IP:PORT` or `[IPv6]:PORT` (the `--resolver` syntax of the probe)."""
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    ipaddress.ip_address(host)
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError("port out of range")
    return host, number


def parse_ports(text: str) -> frozenset[int]:
    """`3478,8801-8810` -> the ports; ValueError names a bad part."""
    ports: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"{part!r} is not a port or a range like 8801-8810") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{part!r}: ports run from 1 to 65535")
        ports.update(range(first, last + 1))
    return frozenset(ports)


class Settings(BaseSettings):
    """Everything the collector can be told. Durations in seconds unless named otherwise."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid",
                                      validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    db: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(default_factory=lambda: default_workers(), ge=1, le=64,
                         description="API processes sharing the socket; default: one per "
                         "core, at most 8 (docs/scale.md)")
    log_level: str = "info"

    # enrichment and privacy
    geoip_asn: Path | None = None
    geoip_country: Path | None = None
    geoip_builtin: bool = True  # geoip2fast's bundled data when no .mmdb file is given
    keep_ip: bool = False
    forwarded_allow_ips: str | None = Field(
        None, description="addresses of the proxies whose X-Forwarded-For is trusted "
        "(comma list; `*` is refused: it would let any client choose its address)")

    # the collector's own catalogue: the test helper's endpoints, the reflector's ports
    catalogue: Path | None = Field(None, description="catalogue YAML the collector serves")

    # registration
    require_token: bool | None = Field(
        None, description="registration needs an enrollment token; default: yes whenever "
        "the collector listens on a non-loopback address")
    register_rate_per_hour: int = Field(
        30, ge=1, description="registrations per client address (IPv6: per /64) per hour")

    # ingest
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024,
                                description="signed ingest requests")
    max_request_bytes: int = Field(256 * 1024, ge=1024,
                                   description="every other route, and unsigned ingest")
    max_record_bytes: int = Field(64 * 1024, ge=1024, description="one record, evidence "
                                  "included (larger ones are rejected as too_large)")
    max_batch: int = Field(1000, ge=1)
    ingest_quota_per_day: int = Field(
        20_000, ge=1, description="records one key may send per day (429 beyond)")
    unsigned_rate_per_minute: int = Field(
        30, ge=1, description="unsigned ingest requests per client address (IPv6: /64)")
    max_record_age_days: float = Field(
        400.0, ge=0, description="the horizon: older records are `too_old` (probes keep them "
        "and retry); long enough for a months-long shutdown; 0: no limit")
    late_after_hours: float = Field(24.0, ge=0, description="records received longer after "
                                    "they started are marked late, with the delay; 0: never")
    transparency_log: bool = Field(True, description="append every stored record to the "
                                   "transparency log (off only to measure its cost)")
    log_head_interval_seconds: float = Field(300.0, gt=0, description="sign a tree head this "
                                             "often when the log grew")
    # the resolver's network (docs/evidence.md): a zone delegated to this collector
    whoami_zone: str | None = Field(None, description="e.g. whoami.collector.example.org, "
                                    "delegated (NS) to this host")
    whoami_listen: str | None = Field(None, description="IP[:PORT] the whoami DNS server "
                                      "listens on (UDP, default port 53)")
    max_clock_skew_seconds: float = Field(600.0, ge=0, description="0: no limit")

    # slow and greedy clients (docs/security.md): request bodies, exports, connections
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="a request body must keep coming: 408 when none of it "
        "arrives for this long")
    body_min_bytes_per_second: int = Field(
        1024, ge=0, description="after its first body_timeout_seconds a request body must "
        "average this rate (408 below): a slow 3G link sends kilobytes a second, a client "
        "holding the connection a byte now and then; 0: no minimum")
    export_concurrency: int = Field(
        2, ge=1, description="exports (GET /api/v1/export) streamed at once per API "
        "process, each holding up to about 100 MB (Parquet of the largest records: 300): "
        "503 `exports_busy` beyond")
    export_concurrency_per_client: int = Field(
        1, ge=1, description="exports at once per client address (IPv6: /64) per API "
        "process: 429 `rate_limited` beyond")
    export_stall_seconds: float = Field(
        120.0, gt=0, description="an export or proof whose client takes none of the next "
        "MiB for this long is ended and its connection closed: a client that stops "
        "reading would hold its place, a reader process and the database's snapshot "
        "(which keeps SQLite's write-ahead log from being reset) for as long as it liked")
    export_max_seconds: float = Field(
        3600.0, gt=0, description="an export or proof over HTTP still going after this "
        "long is ended: its read holds a snapshot of the database meanwhile (SQLite's "
        "write-ahead log grows with every upload, PostgreSQL's vacuum waits), and a client "
        "reading slowly but steadily chooses how long; narrow a larger export (since, "
        "until) or run `voipwatch-collector export` on the server")
    max_connections: int = Field(
        1000, ge=1, description="open connections per API process (uvicorn's "
        "limit_concurrency): new requests beyond get 503")

    # the test helper (POST /api/v1/control)
    control_enabled: bool = True
    control_allow_private: bool = False
    control_max_endpoints: int = Field(64, ge=1)
    control_denied_prefixes: str | None = Field(
        None, description="more address prefixes the test helper never reaches (comma list)")
    control_restrict_to_catalogue: bool | None = Field(
        None, description="run only the catalogue's endpoints; default: yes when `catalogue` "
        "is set")
    control_concurrency: int = Field(32, ge=1, description="checks at once, all workers")
    control_concurrency_per_key: int = Field(16, ge=1, description="checks at once per key")
    control_targets_per_hour: int = Field(
        200, ge=1, description="distinct (host, port) targets per key per hour, when the "
        "helper is not held to a catalogue")
    control_timeout_seconds: float = Field(5.0, gt=0)
    control_deadline_seconds: float = Field(12.0, gt=0)
    control_rate_per_minute: int = Field(600, ge=1, description="endpoints per key per minute")
    resolver: str | None = Field(None, description="IP[:PORT] instead of the system resolver")

    # the WebRTC reference peer (POST /api/v1/webrtc/offer, docs/webrtc.md)
    webrtc_enabled: bool = True
    webrtc_ice_servers: list[IceServer] = Field(
        default_factory=list, description="the peer's STUN/TURN servers (its own coturn), "
        "as RTCIceServer: [{urls, username, credential}]; empty: host candidates only")
    webrtc_max_sessions: int = Field(16, ge=1, description="live sessions in all")
    webrtc_sessions_per_key: int = Field(
        10, ge=1, description="live sessions per key (a pass of the default catalogue makes "
        "its 10 calls at once)")
    webrtc_max_candidates: int = Field(32, ge=1, description="candidates an offer may list")
    webrtc_allow_private: bool = Field(
        False, description="keep private, link-local and mDNS candidates (labs): by default "
        "the peer neither probes them in offers nor offers its own")
    webrtc_echo_max_messages: int = Field(200, ge=1, description="data-channel echoes per "
                                          "session")
    webrtc_session_seconds: float = Field(30.0, gt=0, le=600)

    # the throttling reflector (/api/v1/reflector/sessions, docs/throttle.md)
    reflector_enabled: bool = True
    reflector_address: str | None = Field(
        None, description="address the reflector listens on and gives probes; default: the "
        "address each session request came in on")
    reflector_max_sessions: int = Field(32, ge=1, description="open sessions, in all")
    reflector_sessions_per_key: int = Field(2, ge=1, description="open sessions per probe key")
    reflector_rate_per_minute: int = Field(60, ge=1, description="new sessions per key per minute")
    reflector_session_seconds: float = Field(30.0, gt=0, le=600, description="lifetime")
    reflector_max_bytes: int = Field(4 * 1024 * 1024, ge=1024,
                                     description="bytes received (and echoed) per session")
    reflector_echo_any_source: bool = Field(
        False, description="echo to any source with a valid token, not only to the address "
        "that opened the session")
    reflector_ports: str = Field(
        DEFAULT_REFLECTOR_PORTS, description="ports (and ranges) sessions may ask for, besides "
        "those the catalogue's throttle endpoints name")
    reflector_connections_per_listener: int = Field(16, ge=1)
    reflector_connections_per_source: int = Field(4, ge=1)
    reflector_first_frame_seconds: float = Field(3.0, gt=0)

    # the media service (reference peer + reflector in one process, collector/media.py)
    media_url: str | None = Field(
        None, description="URL of a separate `voipwatch-collector media` service the API "
        "forwards media requests to; default: in this process with one worker, a child "
        "process started by `serve` with several")
    media_proxies: str = Field(
        "127.0.0.1,::1", description="addresses (comma list) of the API processes whose "
        "X-Voipwatch-Client and X-Voipwatch-Local headers the media service believes")

    # the dashboard (collector/dashboard, docs/dashboard.md)
    public_url: str | None = Field(
        None, description="the collector's public URL, for links in the Atom feed and "
        "webhooks; default: the URL each request came in on (none in webhooks)")
    dashboard_refresh_seconds: float = Field(
        30.0, gt=0, description="how often changes are detected (once per period across "
        "all processes, at most a tenth of one core) and webhooks sent")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _no_wildcard(cls, value: str | None) -> str | None:
        if value and "*" in value:
            raise ValueError("`*` would let any client choose its address (and aim the "
                             "reflector at anyone): list the proxies' addresses")
        return value or None

    @field_validator("control_denied_prefixes")
    @classmethod
    def _prefixes(cls, value: str | None) -> str | None:
        parse_prefixes(value)
        return value

    @field_validator("reflector_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @property
    def token_required(self) -> bool:
        """An explicit `require_token`, else: yes unless listening on loopback only."""
        if self.require_token is not None:
            return self.require_token
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"

    @property
    def helper_restricted(self) -> bool:
        if self.control_restrict_to_catalogue is not None:
            return self.control_restrict_to_catalogue
        return self.catalogue is not None

    @property
    def media_proxy_set(self) -> set[str]:
        return {part.strip() for part in self.media_proxies.split(",") if part.strip()}

    @field_validator("resolver", "whoami_listen")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value:
            try:
                parse_host_port(value)
            except ValueError:
                raise ValueError("expected IP or IP:PORT, e.g. 10.0.0.53:5353") from None
        return value or None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("expected debug, info, warning or error")
        return value.lower()

    @property
    def database_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'collector.sqlite3'}"

    @property
    def resolver_address(self) -> tuple[str, int] | None:
        return parse_host_port(self.resolver) if self.resolver else None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlSource(settings_cls)


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file's table, read by `load_settings` (lowest precedence but the defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_TOML.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_TOML.get() or {})


def _config_path(overrides: dict[str, Any], config: Path | None) -> Path | None:
    if config is not None:
        if not config.is_file():
            raise UserError(f"--config {config}: no such file")
        return config
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"{ENV_PREFIX}CONFIG={explicit}: no such file")
        return path
    data_dir = overrides.get("data_dir") or os.environ.get(f"{ENV_PREFIX}DATA_DIR")
    candidate = Path(data_dir) / "collector.toml" if data_dir else (
        default_data_dir() / "collector.toml")
    return candidate if candidate.is_file() else None


def load_settings(overrides: dict[str, Any] | None = None, config: Path | None = None
                  ) -> Settings:
    """Settings from flags (`overrides`, None values ignored), environment and TOML.
    Raises UserError naming the source and the field of a bad value."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = _config_path(overrides, config)
    table: dict[str, Any] = {}
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the collector config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML: {exc}") from exc
    token = _TOML.set(table)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "settings"
        source = _source_of(field, overrides, table, path)
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        raise UserError(f"{source}: {message}") from exc
    finally:
        _TOML.reset(token)


def _source_of(field: str, overrides: dict[str, Any], table: dict[str, Any],
               path: Path | None) -> str:
    if field in overrides:
        return f"--{field.replace('_', '-')} {overrides[field]!r}"
    if f"{ENV_PREFIX}{field.upper()}" in os.environ:
        return f"{ENV_PREFIX}{field.upper()} in the environment"
    if field in table and path is not None:
        return f"{path}: {field}"
    return f"setting {field}"
