"""The probe's terminal in the user's language (English, French, Arabic):
gettext catalogues in probe/ui/locale, chosen as gettext does from LANGUAGE,
LC_ALL, LC_MESSAGES or LANG. Only the stdlib's `gettext`, loaded on first use,
so start-up stays fast. `make i18n` re-extracts and compiles them (Babel)."""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

LOCALE = Path(__file__).resolve().parent / "locale"
DOMAIN = "voipwatch-probe"


@cache
def _catalogue() -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, LOCALE, fallback=True)


def _(message: str) -> str:
    return _catalogue().gettext(message)


def N_(message: str) -> str:
    """Marks a string for extraction; translated where it is shown."""
    return message
