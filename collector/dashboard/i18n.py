"""English, French and Arabic: Babel gettext catalogues, the language a request
gets, dates and numbers in its conventions.

The catalogues ship as `.po` files (translations/LANG/LC_MESSAGES/messages.po,
the template `messages.pot` beside them) and are compiled in memory the first
time a language is used: no build step, nothing written at run time.
`make i18n` re-extracts the strings (`pybabel extract -F babel.cfg`) and
updates the catalogues.

The language is `?lang=` when given (the switch on every page), else the
best match of the browser's Accept-Language, else English.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from functools import cache
from pathlib import Path

from babel.core import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGS = ("en", "fr", "ar")
RTL = frozenset({"ar"})
NAMES = {"en": "English", "fr": "Français", "ar": "العربية"}
CATALOGUES = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"


def negotiate(explicit: str | None, accept_language: str | None) -> str:
    if explicit in LANGS:
        return str(explicit)
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = tag.strip().lower().split("-")[0]
        if language and quality > 0:
            wanted.append((-quality, position, language))
    for _, _, language in sorted(wanted):
        if language in LANGS:
            return language
    return "en"


@cache
def translations(lang: str) -> NullTranslations:
    path = CATALOGUES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == "en" or not path.is_file():
        return NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


class Formats:
    """Dates and numbers in a language's conventions (CLDR, through Babel)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.locale = Locale.parse(lang)
        # the parsed CLDR patterns, applied directly: format_decimal parses them each call
        self._decimal = self.locale.decimal_formats[None]
        self._percent = self.locale.percent_formats[None]

    def date(self, value: date | None, form: str = "medium") -> str:
        return "" if value is None else format_date(value, form, locale=self.locale)

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return ""
        return format_datetime(value, "medium", tzinfo=None, locale=self.locale) + " UTC"

    def number(self, value: float | int) -> str:
        return str(self._decimal.apply(value, self.locale))

    def percent(self, value: float) -> str:
        return str(self._percent.apply(value, self.locale))

    @property
    def direction(self) -> str:
        return "rtl" if self.lang in RTL else "ltr"
