"""Which country and network a record is filed under (docs/evidence.md).

The record's own signed attribution (`network.attribution` `control` or
`local`: learnt on the measured link when it was measured) wins when it names
a country or an AS. A record without one (older probes, `none`, or a helper
that knew nothing) is filed under the look-up of the address its upload came
from, marked `collector`, as the dashboard does (collector/dashboard/rollup.py).
That look-up is always kept apart (`upload_*`) as a cross-check: when both are
known and disagree, the row says so (`attribution_mismatch`), and nothing is
overwritten.
"""

from __future__ import annotations

from typing import Any

from collector.geoip import Enrichment
from probe.core.record import NetworkInfo

SIGNED = ("control", "local")


def filed(network: NetworkInfo, upload: Enrichment) -> dict[str, Any]:
    """The attribution columns of a measurements row."""
    source = str(network.attribution) if network.attribution is not None else None
    org = upload.as_org[:255] if upload.as_org else None
    columns: dict[str, Any] = {"upload_cc": upload.cc, "upload_asn": upload.asn,
                               "upload_as_org": org, "attribution_mismatch": None}
    if source in SIGNED and (network.cc or network.asn is not None):  # signed, and known
        signed_org = network.as_org[:255] if network.as_org else None
        columns.update(cc=network.cc, asn=network.asn, as_org=signed_org, attribution=source)
        differs = ((upload.cc is not None and network.cc is not None and upload.cc != network.cc)
                   or (upload.asn is not None and network.asn is not None
                       and upload.asn != network.asn))
        known = (upload.cc or upload.asn is not None) and (network.cc or network.asn is not None)
        columns["attribution_mismatch"] = bool(differs) if known else None
    else:
        columns.update(cc=upload.cc, asn=upload.asn, as_org=org,
                       attribution="collector" if upload.cc or upload.asn is not None
                       else "none")
    return columns
