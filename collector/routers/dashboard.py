"""The dashboard's pages (collector/dashboard): `/` the matrix, `/cell` one
cell's timeline, `/timeline` a service on one operator, `/changes`, the
drill-down `/measurements` and `/measurements/{id}`, the operators' `/fleet`
(behind `/login`). Every page is server-rendered and works without
JavaScript; every filter is in the URL."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from collector.cursor import MAX_SEQ
from collector.dashboard import fleet as fleet_view
from collector.dashboard.cells import Cell, DashboardReader, Period, Series, Where, column_order
from collector.dashboard.changestore import ChangeStore, StoredChange, as_points
from collector.dashboard.i18n import translations
from collector.dashboard.matrixview import cell_view
from collector.dashboard.operators import COOKIE, OperatorTokens, is_operator
from collector.dashboard.pages import Page, check_cc, check_text, period_of, shift
from collector.dashboard.rollup import VERDICTS, dims_of
from collector.dashboard.svg import Marker, timeline
from collector.db.schema import measurements, probes
from collector.errors import ApiError
from collector.services import ServicesDep
from collector.store import EXPORT_COLUMNS
from probe.core.comparison import flow_pairs
from probe.core.errors import SignatureError
from probe.core.record import utcnow
from probe.core.signing import decode_public_key, verify_record

router = APIRouter(tags=["dashboard"])

Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$")]
Day = Annotated[str | None, Query(max_length=10)]
From = Annotated[str | None, Query(alias="from", max_length=10)]
Text = Annotated[str | None, Query(max_length=80)]
ROLES = ("call", "messaging")


def _reader(services: Any) -> DashboardReader:
    return DashboardReader(services.engine)


async def _period(services: Any, start: str | None, end: str | None) -> Period:
    data = None
    if not (start and end):
        data = await run_in_threadpool(_reader(services).data_range)
    return period_of(start, end, data)


async def _refresh(services: Any) -> ChangeStore:
    """Detected changes, brought up to date with what ingest touched since the
    background loop last looked (cheap when nothing did)."""
    store = ChangeStore(services.engine)
    await run_in_threadpool(store.refresh)
    return store


def _markers(page: Page, changes: list[StoredChange]) -> list[Marker]:
    out = []
    for change in changes:
        s = change.series
        href = page.url("/measurements", service=s.service, role=s.role, cc=s.cc,
                        operator=s.operator, link=s.link, from_=change.after, to=change.at)
        out.append(Marker(as_points([change])[0], href, _change_label(page, change)))
    return out


def _change_label(page: Page, change: StoredChange) -> str:
    t = page_gettext(page)
    word = t("blocking started") if change.kind == "start" else t("blocking ended")
    return t("%(what)s on %(day)s (last seen otherwise %(after)s), confidence %(conf)s") % {
        "what": word, "day": page.fmt.date(change.at), "after": page.fmt.date(change.after),
        "conf": page.fmt.percent(change.confidence)}


def page_gettext(page: Page) -> Any:
    return translations(page.lang).gettext


def _words(page: Page) -> Any:
    """Verdicts in the page's language (the msgids are the templates' words)."""
    gettext = page_gettext(page)
    return lambda verdict: gettext(verdict)


def _svg(page: Page, period: Period, daily: dict[date, dict[str, int]],
         changes: list[StoredChange], title: str) -> str:
    fmt = page.fmt
    return timeline(period, daily, _markers(page, changes), title,
                    lambda d: fmt.date(d, "MMM yyyy"), fmt.percent)


@router.get("/", response_class=HTMLResponse)
async def matrix(request: Request, services: ServicesDep, lang: Lang = None,
                 start: From = None, to: Day = None, cc: Text = None,
                 service: Text = None) -> HTMLResponse:
    page = Page.of(request, lang)
    period = await _period(services, start, to)
    where = Where(cc=check_cc(cc), service=check_text("service", service))
    cells = await run_in_threadpool(_reader(services).cells, period, where)
    store = await _refresh(services)
    changes = await run_in_threadpool(lambda: store.list(cc=where.cc, service=where.service,
                                                         since=period.start,
                                                         until=period.end, limit=500))
    columns = column_order(cells)
    grid: dict[tuple[str, str], dict[tuple[str, str, str], Cell]] = {}
    for cell in cells:
        s = cell.series
        grid.setdefault((s.service, s.role), {})[(s.cc, s.operator, s.link)] = cell
    rows = sorted(grid, key=lambda k: (k[0], ROLES.index(k[1]) if k[1] in ROLES else 9))
    operators: list[tuple[str, str, str | None, int]] = []
    for cc_, operator, _link, as_org in columns:
        if operators and operators[-1][:2] == (cc_, operator):
            operators[-1] = (cc_, operator, operators[-1][2] or as_org, operators[-1][3] + 1)
        else:
            operators.append((cc_, operator, as_org, 1))
    countries = await run_in_threadpool(lambda: sorted(
        {s.cc for s in _reader(services).series() if s.cc}))
    latest: dict[int, StoredChange] = {}
    for change in sorted(changes, key=lambda c: c.at):  # the newest change per cell
        latest[change.series.id] = change
    translation = translations(page.lang)
    fmt, words = page.fmt, _words(page)
    views = {key: {column: cell_view(
        cell, latest.get(cell.series.id), fmt, translation.gettext, translation.ngettext,
        page.url("/cell", service=cell.series.service, role=cell.series.role,
                 cc=cell.series.cc, operator=cell.series.operator, link=cell.series.link,
                 from_=period.start, to=period.end), words)
        for column, cell in row.items()} for key, row in grid.items()}
    return page.render("matrix.html", period=period, cells=views, rows=rows, columns=columns,
                       operators=operators, cc=where.cc, service=where.service,
                       countries=countries, changes=changes, verdicts=VERDICTS,
                       total=sum(c.measurements for c in cells))


def _series_where(service: str | None, role: str | None, cc: str | None,
                  operator: str | None, link: str | None) -> Where:
    if role is not None and role not in ROLES:
        raise ApiError(400, "bad_filter", f"role={role!r}: expected call or messaging")
    return Where(cc=(check_cc(cc) or "") if cc is not None else None,
                 service=check_text("service", service), role=role,
                 operator=check_text("operator", operator), link=check_text("link", link))


@router.get("/cell", response_class=HTMLResponse)
async def cell(request: Request, services: ServicesDep, service: Text, role: Text,
               operator: Text = "", link: Text = None, cc: Text = "", lang: Lang = None,
               start: From = None, to: Day = None) -> HTMLResponse:
    page = Page.of(request, lang)
    if not service or not role or not link:
        raise ApiError(400, "bad_filter", "a cell needs service, role, link (and cc, operator)")
    where = _series_where(service, role, cc or "", operator or "", link)
    period = await _period(services, start, to)
    reader = _reader(services)
    found = await run_in_threadpool(reader.series, where)
    cells = await run_in_threadpool(reader.cells, period, where) if found else []
    daily = await run_in_threadpool(reader.daily, [s.id for s in found], period)
    store = await _refresh(services)
    changes = await run_in_threadpool(lambda: store.list(
        service=service, role=role, cc=where.cc, operator=where.operator, link=link))
    series = found[0] if found else Series(0, service, role, where.cc or "",
                                           where.operator or "", link, None)
    title = _cell_title(page, series)
    return page.render("cell.html", status=200 if found else 404, series=series,
                       cell=cells[0] if cells else None, period=period, daily=daily,
                       changes=changes, title=title,
                       svg=_svg(page, period, daily, changes, title))


def _cell_title(page: Page, series: Series) -> str:
    t = page_gettext(page)
    role = t("calls") if series.role == "call" else t("messaging")
    return f"{series.service} · {role} · {_operator_name(page, series)} · {t(series.link)}"


def _operator_name(page: Page, series: Series) -> str:
    t = page_gettext(page)
    if not series.operator:
        return t("unknown network") + (f" ({series.cc})" if series.cc else "")
    name = series.operator.removeprefix("org:")
    if series.as_org and series.operator.startswith("AS"):
        name = f"{series.operator} {series.as_org}"
    return f"{name} ({series.cc})" if series.cc else name


@router.get("/timeline", response_class=HTMLResponse)
async def service_timeline(request: Request, services: ServicesDep, service: Text,
                           operator: Text = "", cc: Text = "", lang: Lang = None,
                           start: From = None, to: Day = None) -> HTMLResponse:
    """One service on one operator: a timeline per path, every link type together."""
    page = Page.of(request, lang)
    if not service:
        raise ApiError(400, "bad_filter", "a timeline needs a service (and cc, operator)")
    period = await _period(services, start, to)
    reader = _reader(services)
    store = await _refresh(services)
    charts = []
    for role in ROLES:
        where = _series_where(service, role, cc or "", operator or "", None)
        found = await run_in_threadpool(reader.series, where)
        if not found:
            continue
        daily = await run_in_threadpool(reader.daily, [s.id for s in found], period)
        changes = await run_in_threadpool(lambda w=where: store.list(
            service=service, role=w.role, cc=w.cc, operator=w.operator))
        title = _cell_title(page, found[0]).rsplit(" · ", 1)[0]
        charts.append({"role": role, "series": found, "daily": daily, "changes": changes,
                       "title": title, "svg": _svg(page, period, daily, changes, title)})
    name = _operator_name(page, Series(0, service, "call", cc or "", operator or "", "",
                                       charts[0]["series"][0].as_org if charts else None))
    return page.render("timeline.html", status=200 if charts else 404, service=service,
                       operator=operator or "", cc=cc or "", name=name, charts=charts,
                       period=period)


@router.get("/changes", response_class=HTMLResponse)
async def changes_page(request: Request, services: ServicesDep, lang: Lang = None,
                       cc: Text = None, service: Text = None, start: From = None,
                       to: Day = None) -> HTMLResponse:
    page = Page.of(request, lang)
    store = await _refresh(services)
    since, until = (period_of(start, to, None).start if start else None), \
        (period_of(start, to, None).end if to else None)
    found = await run_in_threadpool(lambda: store.list(cc=check_cc(cc), service=service,
                                                       since=since, until=until))
    return page.render("changes.html", changes=found, cc=check_cc(cc), service=service,
                       start=start, to=to, feed=page.url("/changes.atom", cc=check_cc(cc),
                                                         service=service))


# ---- drill-down: a cell's measurements, one measurement -------------------------------

SCAN = 5000  # rows looked at per page at most while matching a cell's operator and link
PAGE = 100
READ_BYTES = 4 << 20  # record text read at once while matching, at most (about)
CHUNK = 100  # rows read at once, at most
CURSOR_SEQ = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Listed:
    """A measurement as the drill-down lists it: a few columns and its
    endpoint's label, never its record's text (records can be large)."""

    seq: int
    id: str
    key_id: str
    started_at: datetime
    check_name: str
    endpoint_host: str
    endpoint_port: int
    transport: str
    role: str
    verdict: str
    blocking: str | None
    label: Any  # the record's endpoint.label, if any


_LISTED = [measurements.c[name] for name in Listed.__dataclass_fields__ if name != "label"]
# what rollup.dims_of reads of a row besides the record
_DIMS = [measurements.c[name] for name in ("service", "cc", "asn", "as_org", "link_type")]


def chunk_rows(max_record_bytes: int) -> int:
    """How many rows (with their records' text) to read at once: about
    READ_BYTES of records at most, however large they are allowed to be."""
    return max(1, min(CHUNK, READ_BYTES // max(max_record_bytes, 1)))


def _cell_rows(engine: sa.Engine, where: Where, period: Period, cursor: tuple[datetime, int]
               | None, chunk: int = CHUNK) -> tuple[list[Listed], tuple[datetime, int] | None]:
    """The measurements of a series in the period, oldest first. Operator and
    link come from the signed record (or the upload lookup), so they are matched
    here, as at ingest (rollup.dims_of). Up to SCAN rows are looked at, `chunk`
    rows read at a time, and only what the page shows of each is kept: the
    memory a page takes is bounded whatever the records' size."""
    c = measurements.c
    start = datetime.combine(period.start, time(), tzinfo=UTC)
    end = datetime.combine(period.end + timedelta(days=1), time(), tzinfo=UTC)
    query = (sa.select(*_LISTED, *_DIMS, c.record)
             .select_from(measurements.join(probes, probes.c.key_id == c.key_id))
             .where(c.service == where.service, c.started_at >= start, c.started_at < end)
             .order_by(c.started_at, c.seq))
    if where.role:
        query = query.where(c.role == where.role)
    matched: list[Listed] = []
    scanned, after, done = 0, cursor, False
    with engine.connect() as conn:
        while not done and scanned < SCAN:
            limit = min(chunk, SCAN - scanned)
            part = query.limit(limit)
            if after is not None:  # (started_at, seq) > after, as a range of the time index
                part = part.where(c.started_at >= after[0],
                                  sa.or_(c.started_at > after[0], c.seq > after[1]))
            rows = conn.execute(part).all()
            done = len(rows) < limit  # the period's last rows: no page after this one
            for row in rows:
                scanned += 1
                after = (row.started_at, row.seq)
                record = orjson.loads(row.record)
                dims = dims_of(row, record)
                if (where.cc is None or dims.cc == where.cc) and \
                        (where.operator is None or dims.operator == where.operator) and \
                        (where.link is None or dims.link == where.link):
                    endpoint = record.get("endpoint")
                    label = endpoint.get("label") if isinstance(endpoint, dict) else None
                    matched.append(Listed(**{col.name: row._mapping[col.name]
                                             for col in _LISTED}, label=label))
                    if len(matched) == PAGE:
                        return matched, after
            del rows  # before the next chunk's are read
    return matched, None if done else after


def _parse_cursor(text: str) -> tuple[datetime, int]:
    """A drill-down link's cursor, `started_at~seq` (an aware ISO time, then
    a seq SQLite's 64-bit integers hold); 400 `bad_cursor` otherwise."""
    moment, _, seq = text.rpartition("~")
    try:
        if not CURSOR_SEQ.fullmatch(seq) or int(seq) > MAX_SEQ:
            raise ValueError("seq")
        after = datetime.fromisoformat(moment)
        if after.tzinfo is None:
            raise ValueError("no time zone")
        return after.astimezone(UTC), int(seq)
    except (ValueError, OverflowError):
        raise ApiError(400, "bad_cursor", "cursor: pass back the link's value") from None


@router.get("/measurements", response_class=HTMLResponse)
async def cell_measurements(request: Request, services: ServicesDep, service: Text,
                            role: Text = None, cc: Text = None, operator: Text = None,
                            link: Text = None, lang: Lang = None, start: From = None,
                            to: Day = None,
                            cursor: Annotated[str | None, Query(max_length=60)] = None
                            ) -> HTMLResponse:
    page = Page.of(request, lang)
    if not service:
        raise ApiError(400, "bad_filter", "name a service")
    where = _series_where(service, role, cc, operator, link)
    period = await _period(services, start, to)
    after = _parse_cursor(cursor) if cursor else None
    rows, more = await run_in_threadpool(_cell_rows, services.engine, where, period, after,
                                         chunk_rows(services.settings.max_record_bytes))
    next_url = page.url("/measurements", service=service, role=role, cc=cc, operator=operator,
                        link=link, from_=period.start, to=period.end,
                        cursor=f"{more[0].isoformat()}~{more[1]}") if more else None
    series = Series(0, service, role or "", where.cc or "", operator or "", link or "", None)
    back = page.url("/cell", service=service, role=role, cc=cc, operator=operator, link=link,
                    from_=period.start, to=period.end) if role and link else None
    return page.render("measurements.html", rows=rows, period=period, next_url=next_url,
                       title=_cell_title(page, series) if role and link else service,
                       back=back, records=[{"endpoint": {"label": r.label}} for r in rows])


@router.get("/measurements/{record_id}.json")
async def measurement_json(services: ServicesDep, record_id: str) -> Response:
    """The record exactly as signed and sent."""
    def load() -> str | None:
        with services.engine.connect() as conn:
            return conn.execute(sa.select(measurements.c.record).where(
                measurements.c.id == record_id)).scalar_one_or_none()

    text = await run_in_threadpool(load)
    if text is None:
        raise ApiError(404, "not_found", "no such measurement")
    return Response(text, media_type="application/json")


@router.get("/measurements/{record_id}", response_class=HTMLResponse)
async def measurement(request: Request, services: ServicesDep, record_id: str,
                      lang: Lang = None) -> HTMLResponse:
    page = Page.of(request, lang)
    try:
        wanted = str(uuid.UUID(record_id))
    except ValueError:
        raise ApiError(404, "not_found", "no such measurement") from None

    def load() -> Any:
        with services.engine.connect() as conn:
            return conn.execute(sa.select(*EXPORT_COLUMNS).select_from(
                measurements.join(probes, probes.c.key_id == measurements.c.key_id))
                .where(measurements.c.id == wanted)).first()

    row = await run_in_threadpool(load)
    if row is None:
        return page.render("error.html", status=404, message=page_gettext(page)(
            "No measurement with this id is stored here."))
    record = orjson.loads(row.record)
    try:
        verify_record(record, decode_public_key(row.public_key))
        signature: dict[str, Any] = {"valid": True}
    except SignatureError as exc:
        signature = {"valid": False, "reason": str(exc)}
    dims = dims_of(row, record)
    evidence = dict(record.get("evidence") or {})
    control = evidence.pop("control", None)
    return page.render(
        "measurement.html", row=row, record=record, signature=signature, dims=dims,
        throttle_pairs=flow_pairs(record),
        evidence=indented(evidence),
        control=indented(control) if control is not None else None, raw=row.record,
        pretty=indented(record),
        cell=page.url("/cell", service=dims.service, role=dims.role, cc=dims.cc,
                      operator=dims.operator, link=dims.link,
                      from_=shift(row.started_at.date(), -30),
                      to=shift(row.started_at.date(), 30)))


def indented(value: Any) -> str:
    """`value` as JSON indented by two spaces. orjson writes at most 254
    levels of nesting; records stored before ingest refused deeper ones are
    laid out without recursion instead, as they were stored."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONEncodeError:
        return _indented_deep(value)


def _indented_deep(value: Any) -> str:
    """The same as orjson's OPT_INDENT_2 (numbers as Python writes them) with a
    stack of its own: no nesting is too deep."""
    out: list[str] = []
    todo: list[tuple[Any, int] | str] = [(value, 0)]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        node, depth = item
        if isinstance(node, dict | list) and node:
            pad, close = "\n" + "  " * (depth + 1), "\n" + "  " * depth
            pairs = node.items() if isinstance(node, dict) else ((None, v) for v in node)
            parts: list[tuple[Any, int] | str] = ["{" if isinstance(node, dict) else "["]
            for i, (key, child) in enumerate(pairs):
                parts.append(("," if i else "") + pad + (
                    "" if key is None else json.dumps(str(key), ensure_ascii=False) + ": "))
                parts.append((child, depth + 1))
            parts.append(close + ("}" if isinstance(node, dict) else "]"))
            todo.extend(reversed(parts))
        elif isinstance(node, dict | list):
            out.append("{}" if isinstance(node, dict) else "[]")
        else:
            out.append(json.dumps(node, ensure_ascii=False))
    return "".join(out)


# ---- operators: login, fleet -----------------------------------------------------------

@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, lang: Lang = None) -> HTMLResponse:
    return Page.of(request, lang).render("login.html", failed=False)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, services: ServicesDep, lang: Lang = None) -> Response:
    page = Page.of(request, lang)
    body = await request.body()  # a one-field urlencoded form: no multipart parser needed
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0][:200]
    if not await run_in_threadpool(OperatorTokens(services.engine).valid, token.strip()):
        return page.render("login.html", status=401, failed=True)
    response = RedirectResponse(page.url("/fleet"), status_code=303)
    response.set_cookie(COOKIE, token.strip(), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, lang: Lang = None) -> Response:
    response = RedirectResponse(Page.of(request, lang).url("/"), status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/fleet", response_class=HTMLResponse)
async def fleet(request: Request, services: ServicesDep, lang: Lang = None) -> Response:
    page = Page.of(request, lang)
    if not await is_operator(request):
        return RedirectResponse(page.url("/login"), status_code=303)
    keys, coverage = await run_in_threadpool(fleet_view.fleet, services.engine,
                                             utcnow().date())
    return page.render("fleet.html", keys=keys, coverage=coverage,
                       live_days=fleet_view.LIVE_DAYS, links=fleet_view.LINKS)

