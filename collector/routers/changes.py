"""Detected changes: `GET /api/v1/changes` (JSON), `/changes.atom` (Atom feed,
RFC 4287) and the operators' webhook subscriptions (`/api/v1/subscriptions`)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.dashboard.alerts import Subscriptions, cell_url
from collector.dashboard.changestore import ChangeStore
from collector.dashboard.i18n import negotiate, translations
from collector.dashboard.operators import require_operator
from collector.dashboard.pages import environment
from collector.errors import ApiError
from collector.services import ServicesDep
from probe.core.errors import UserError
from probe.core.record import LinkType, Role, utcnow

router = APIRouter(tags=["changes"])

Service = Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$", max_length=64)]
Country = Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")]
Asn = Annotated[int | None, Query(ge=0, le=2**32 - 1)]
CHANGE_EXAMPLE = {"items": [{
    "service": "whatsapp", "role": "call", "cc": "MA", "asn": 36884, "operator": "AS36884",
    "as_org": "Inwi", "link_type": "cellular", "kind": "start", "at": "2016-01-07",
    "after": "2016-01-05", "confidence": 0.97, "probes": 3,
    "detected_at": "2016-01-07T10:02:11Z"}]}


def _base(request: Request, services: Any) -> str:
    return (getattr(services.settings, "public_url", None) or str(request.base_url)).rstrip("/")


async def _changes(services: Any, **filters: Any) -> list[Any]:
    store = ChangeStore(services.engine)
    await run_in_threadpool(store.refresh)
    return await run_in_threadpool(lambda: store.list(**filters))


@router.get("/api/v1/changes",
            responses={200: {"content": {"application/json": {"example": CHANGE_EXAMPLE}}}})
async def changes(request: Request, services: ServicesDep, service: Service = None,
                  role: Role | None = None, cc: Country = None, asn: Asn = None,
                  link_type: LinkType | None = None) -> Response:
    """Detected starts and ends of blocking per (service, path, operator, link
    type), newest first. `at` is the first day seen in the new state, `after`
    the last day seen in the old one: the change happened in between.
    `confidence` is the detector's posterior probability of the change."""
    found = await _changes(services, service=service, role=role and str(role), cc=cc, asn=asn,
                           link=link_type and str(link_type))
    base = _base(request, services)
    items = [dict(c.as_json(), url=cell_url(base, c.series)) for c in found]
    return Response(orjson.dumps({"items": items}), media_type="application/json")


@router.get("/changes.atom", include_in_schema=False)
async def feed(request: Request, services: ServicesDep, service: Service = None,
               cc: Country = None, asn: Asn = None,
               lang: Annotated[str | None, Query(pattern=r"^[a-z]{2}$")] = None) -> Response:
    """An Atom feed of detected changes, filtered by country, operator (ASN), service."""
    chosen = negotiate(lang, request.headers.get("accept-language"))
    found = await _changes(services, service=service, cc=cc, asn=asn, limit=100)
    base = _base(request, services)
    t = translations(chosen).gettext
    entries = []
    for change in found:
        s = change.series
        what = t("blocking started") if change.kind == "start" else t("blocking ended")
        path = t("calls") if s.role == "call" else t("messaging")
        network = f"{s.operator} {s.as_org or ''}".strip() if s.operator else t(
            "unknown network")
        entries.append({
            "id": f"{base}/changes#{s.service}/{s.role}/{s.cc}/{s.operator}/{s.link}/"
                  f"{change.kind}/{change.at.isoformat()}",
            "title": f"{s.service} {path}: {what} {change.at.isoformat()} — {network}"
                     f"{' (' + s.cc + ')' if s.cc else ''}, {t(s.link)}",
            "updated": change.detected_at, "change": change,
            "link": cell_url(base, s), "confidence": round(change.confidence * 100)})
    updated = max((e["updated"] for e in entries), default=utcnow())
    query = request.url.query
    xml = environment(chosen).get_template("changes.atom").render(
        entries=entries, updated=updated, base=base, lang=chosen,
        self_url=f"{base}/changes.atom" + (f"?{query}" if query else ""))
    return Response(xml, media_type="application/atom+xml; charset=utf-8")


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2000)
    cc: str | None = Field(None, pattern=r"^[A-Za-z]{2}$")
    asn: int | None = Field(None, ge=0, le=2**32 - 1)
    service: str | None = Field(None, pattern=r"^[a-z0-9-]+$", max_length=64)
    note: str | None = Field(None, max_length=500)


Operator = Annotated[None, Depends(require_operator)]


@router.get("/api/v1/subscriptions")
async def list_subscriptions(services: ServicesDep, _: Operator) -> Response:
    """Webhook subscriptions (operator token required)."""
    found = await run_in_threadpool(Subscriptions(services.engine).list)
    return Response(orjson.dumps({"items": [s.as_json() for s in found]}),
                    media_type="application/json")


@router.post("/api/v1/subscriptions", status_code=201)
async def add_subscription(services: ServicesDep, body: SubscriptionIn, _: Operator
                           ) -> Response:
    """A new subscription; the answer carries its HMAC secret, shown only once."""
    try:
        sub, secret = await run_in_threadpool(Subscriptions(services.engine).add, body.url,
                                              body.cc, body.asn, body.service, body.note)
    except UserError as exc:
        raise ApiError(400, "bad_url", str(exc)) from None
    return Response(orjson.dumps(dict(sub.as_json(), secret=secret)), status_code=201,
                    media_type="application/json")


@router.delete("/api/v1/subscriptions/{subscription_id}", status_code=204)
async def remove_subscription(services: ServicesDep, subscription_id: int, _: Operator
                              ) -> Response:
    if not await run_in_threadpool(Subscriptions(services.engine).remove, subscription_id):
        raise ApiError(404, "not_found", "no such subscription")
    return Response(status_code=204)
