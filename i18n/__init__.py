"""Every word a person reads, in Swedish first and English too: one gettext catalog.

Sources say what they mean in English (the message ids); `i18n/<language>/LC_MESSAGES/
messages.po` holds the Swedish and the English text of each, kept with Babel
(`python tasks.py i18n`: extract, update, compile). The compiled `.mo` files are build
output, written by the set-up step; a catalog whose `.mo` is missing or older than its
`.po` is compiled in memory instead, so a checkout that skipped the step still speaks.

- `text(language, message, **params)`: one message, with `%(name)s` parameters.
- `N_(message)`: marks a message in a table, translated where it is shown.
- `translations(language)`: the catalog itself, for Jinja2's i18n extension.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

HERE = Path(__file__).resolve().parent
DOMAIN = "messages"
LANGUAGES = ("sv", "en")
DEFAULT = "sv"


def language_of(value: object) -> str:
    """The catalog's language for a language value (an enum, a string, None): Swedish unless
    English is asked for."""
    return "en" if str(getattr(value, "value", value) or "").lower().startswith("en") else "sv"


def catalog_path(language: str, suffix: str = ".po") -> Path:
    return HERE / language / "LC_MESSAGES" / f"{DOMAIN}{suffix}"


@functools.cache
def translations(language: str) -> Translations:
    language = language_of(language)
    po, mo = catalog_path(language), catalog_path(language, ".mo")
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as compiled:
            return Translations(compiled, domain=DOMAIN)
    with po.open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def text(language: object, message: str, /, **params: Any) -> str:
    """`message` in `language` (Swedish unless English), its `%(name)s` filled from params."""
    translated: str = translations(language_of(language)).gettext(message)
    return translated % params if params else translated


def plural(language: object, singular: str, many: str, n: int, /, **params: Any) -> str:
    translated: str = translations(language_of(language)).ngettext(singular, many, n)
    return translated % {"num": n, **params}


def N_(message: str) -> str:
    return message


def warm() -> None:
    """Load both catalogs (before a workflow sandbox, where files can't be opened, needs one)."""
    for language in LANGUAGES:
        translations(language)
