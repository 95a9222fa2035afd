"""Country and network (ASN) of the address a batch came from.

Sources, in order: the operator's MaxMind-format files (`--geoip-country`,
`--geoip-asn`); with neither, geoip2fast's bundled offline data (country and AS
name, no AS number). The source and its date go into every stored record.
Loopback, private and other non-global addresses get nothing. The address itself
is kept only with `keep_ip`.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.settings import Settings
from probe.core.errors import UserError

BUILTIN_FILE = "geoip2fast-asn-ipv6.dat.gz"


@dataclass(frozen=True)
class Enrichment:
    cc: str | None = None
    asn: int | None = None
    as_org: str | None = None
    source: str | None = None
    date: str | None = None


NOTHING = Enrichment()


def is_public(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


class _Mmdb:
    def __init__(self, path: Path, flag: str) -> None:
        import maxminddb

        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
        try:
            self.reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise UserError(f"{flag} {path}: not a readable MaxMind .mmdb file ({exc})") from exc
        meta = self.reader.metadata()
        self.source = f"mmdb:{meta.database_type}"
        self.date = datetime.fromtimestamp(meta.build_epoch, UTC).date().isoformat()

    def get(self, address: str) -> dict[str, Any]:
        try:
            found = self.reader.get(address)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}

    def close(self) -> None:
        self.reader.close()


class Enricher:
    def __init__(self, country: Path | None = None, asn: Path | None = None,
                 builtin: bool = True) -> None:
        self.country = _Mmdb(country, "--geoip-country") if country else None
        self.asn = _Mmdb(asn, "--geoip-asn") if asn else None
        self.builtin = builtin and not (country or asn)
        self._fast: Any = None
        self._fast_meta: tuple[str, str | None] = ("geoip2fast", None)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Enricher:
        return cls(settings.geoip_country, settings.geoip_asn, settings.geoip_builtin)

    def lookup(self, address: str | None) -> Enrichment:
        if not is_public(address):
            return NOTHING
        assert address is not None
        if self.country or self.asn:
            return self._from_mmdb(address)
        if self.builtin:
            return self._from_builtin(address)
        return NOTHING

    def _from_mmdb(self, address: str) -> Enrichment:
        cc = asn = org = None
        sources, dates = [], []
        if self.country:
            found = self.country.get(address)
            country = found.get("country") or found.get("registered_country") or {}
            cc = country.get("iso_code") if isinstance(country, dict) else None
            sources.append(self.country.source)
            dates.append(self.country.date)
        if self.asn:
            found = self.asn.get(address)
            number = found.get("autonomous_system_number")
            asn = number if isinstance(number, int) else None
            org = found.get("autonomous_system_organization")
            sources.append(self.asn.source)
            dates.append(self.asn.date)
        return Enrichment(cc if isinstance(cc, str) and len(cc) == 2 else None, asn,
                          org if isinstance(org, str) else None,
                          "+".join(sources), "+".join(sorted(set(dates))))

    def _builtin(self) -> Any:
        with self._lock:
            if self._fast is None:
                from geoip2fast import GeoIP2Fast

                self._fast = GeoIP2Fast(verbose=False, geoip2fast_data_file=BUILTIN_FILE)
                info = str(self._fast.get_database_info().get("source_info", ""))
                stamp = re.search(r"(\d{4})(\d{2})(\d{2})$", info)
                date = "-".join(stamp.groups()) if stamp else None
                self._fast_meta = (f"geoip2fast:{info}" if info else "geoip2fast", date)
            return self._fast

    def _from_builtin(self, address: str) -> Enrichment:
        found = self._builtin().lookup(address)
        cc = getattr(found, "country_code", "") or ""
        org = getattr(found, "asn_name", "") or None
        source, date = self._fast_meta
        return Enrichment(cc if re.fullmatch(r"[A-Z]{2}", cc) else None, None, org,
                          source, date)

    def close(self) -> None:
        for db in (self.country, self.asn):
            if db is not None:
                db.close()
