"""What every page shares: the templates (Jinja2, one environment per language
with its Babel catalogue), the request's language, period and filters, and
URL building that keeps them (filters are shareable URLs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from collector.dashboard.cells import Period
from collector.dashboard.i18n import LANGS, NAMES, Formats, negotiate, translations
from collector.errors import ApiError
from probe.core.record import utcnow

DEFAULT_DAYS = 366  # the default period: up to a year, ending on the last day with data
# the days a period may hold: the calendar's (years 1 to 9999) less its last year,
# so that a period's arithmetic (the day after it, the month after its end, a
# default end a year on) never leaves the calendar
FIRST_DAY = date.min
LAST_DAY = date(9998, 12, 31)
DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
CC = re.compile(r"^[A-Za-z]{2}$")
SAFE = re.compile(r"^[A-Za-z0-9:._ -]{0,80}$")


@cache
def environment(lang: str) -> Environment:
    env = Environment(loader=PackageLoader("collector.dashboard", "templates"),
                      autoescape=select_autoescape(("html", "xml", "svg", "atom")),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def parse_day(name: str, value: str | None) -> date | None:
    if value is None or value == "":
        return None
    if not DAY.fullmatch(value):
        raise ApiError(400, "bad_period", f"{name}={value!r}: expected a date, YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "bad_period", f"{name}={value!r}: no such day") from None
    if day > LAST_DAY:
        raise ApiError(400, "bad_period", f"{name}={value!r}: the dashboard shows days up to "
                       f"{LAST_DAY.isoformat()}")
    return day


def shift(day: date, days: int) -> date:
    """`day` moved by `days`, kept within FIRST_DAY..LAST_DAY (never an
    OverflowError at the calendar's ends)."""
    if days >= 0:
        return day + timedelta(days=days) if (LAST_DAY - day).days >= days else LAST_DAY
    return day + timedelta(days=days) if (day - FIRST_DAY).days >= -days else FIRST_DAY


def period_of(start: str | None, end: str | None, data: tuple[date, date] | None) -> Period:
    """`?from=&to=` (inclusive days, UTC); missing ends default to the last
    day with data and up to a year before it, so old data (a replay of 2016)
    shows without asking."""
    first, last = parse_day("from", start), parse_day("to", end)
    if data is not None:  # a stored record may be dated anywhere in the calendar
        data = (min(data[0], LAST_DAY), min(data[1], LAST_DAY))
    if last is None:
        last = data[1] if data else utcnow().date()
        if first is not None and first > last:
            last = shift(first, DEFAULT_DAYS - 1)
    if first is None:
        first = max(data[0], shift(last, 1 - DEFAULT_DAYS)) if data and \
            data[0] <= last else shift(last, 1 - DEFAULT_DAYS)
    if first > last:
        raise ApiError(400, "bad_period", f"from={first} is after to={last}")
    if (last - first).days > 20 * 366:
        raise ApiError(400, "bad_period", "the period is longer than 20 years")
    return Period(first, last)


def check_cc(cc: str | None) -> str | None:
    if cc is None or cc == "":
        return None
    if not CC.match(cc):
        raise ApiError(400, "bad_filter", f"cc={cc!r}: expected a two-letter country code")
    return cc.upper()


def check_text(name: str, value: str | None) -> str | None:
    if value is not None and not SAFE.match(value):
        raise ApiError(400, "bad_filter", f"{name}: unexpected characters")
    return value


@dataclass
class Page:
    """The request's language and the query it came with."""

    request: Request
    lang: str
    explicit_lang: bool

    @classmethod
    def of(cls, request: Request, lang: str | None) -> Page:
        chosen = negotiate(lang, request.headers.get("accept-language"))
        return cls(request, chosen, lang in LANGS)

    @property
    def fmt(self) -> Formats:
        return Formats(self.lang)

    def url(self, path: str, **query: Any) -> str:
        """`path` with `query` (None values dropped) and the language when it
        was chosen explicitly."""
        params = {k: v for k, v in query.items() if v is not None and v != ""}
        if self.explicit_lang and "lang" not in params:
            params["lang"] = self.lang
        params = {("from" if k == "from_" else k): (v.isoformat() if isinstance(v, date) else v)
                  for k, v in params.items()}
        return path + ("?" + urlencode(params) if params else "")

    def switch(self, lang: str) -> str:
        """This page in another language."""
        params = dict(self.request.query_params)
        params["lang"] = lang
        return self.request.url.path + "?" + urlencode(params)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        env = environment(self.lang)
        fmt = self.fmt
        html = env.get_template(template).render(
            lang=self.lang, dir=fmt.direction, fmt=fmt, page=self, langs=LANGS, names=NAMES,
            Markup=Markup, **context)
        return HTMLResponse(html, status_code=status, headers={
            "Content-Language": self.lang, "Vary": "Accept-Language"})
