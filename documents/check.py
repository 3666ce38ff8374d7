"""What an uploaded document must be: a PDF that opens, not encrypted, with pages, and not
too large. Each refusal says what is wrong in words a coordinator understands (a catalog
message), never a parser's traceback."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError

from i18n import N_, text

MAX_BYTES = 25 * 1024 * 1024  # an agreement text with scanned attachments; email takes less
MAX_PAGES = 2000

# pypdf says what it repairs in a slightly broken file through logging; that is not ours.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Checked:
    pages: int
    size: int


@dataclass
class DocumentRefused(Exception):
    """Why a file is not taken, as a catalog message and its values."""

    code: str
    msgid: str
    params: dict[str, Any] = field(default_factory=dict)

    def said(self, language: str) -> str:
        return text(language, self.msgid, **self.params)

    def __str__(self) -> str:
        return self.msgid % self.params if self.params else self.msgid


def check_pdf(data: bytes, name: str) -> Checked:
    """The PDF's pages and size, or DocumentRefused saying why it is not taken."""
    shown = name[:80]
    if not data:
        raise DocumentRefused("empty", N_("%(name)s is empty."), {"name": shown})
    if len(data) > MAX_BYTES:
        raise DocumentRefused(
            "too-large",
            N_("%(name)s is %(size)s MB; a document may be at most %(limit)s MB."),
            {"name": shown, "size": round(len(data) / 1e6, 1), "limit": MAX_BYTES // 2**20},
        )
    if not data.lstrip()[:5] == b"%PDF-":
        raise DocumentRefused(
            "not-a-pdf",
            N_("%(name)s is not a PDF. Save the document as PDF and upload it again."),
            {"name": shown},
        )
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise DocumentRefused(
                "encrypted",
                N_(
                    "%(name)s is protected with a password or encrypted. Save a copy without "
                    "protection and upload that."
                ),
                {"name": shown},
            )
        pages = len(reader.pages)
    except DocumentRefused:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError):
        raise DocumentRefused(
            "damaged",
            N_("%(name)s cannot be read as a PDF: the file is damaged or not a PDF."),
            {"name": shown},
        ) from None
    if pages < 1 or pages > MAX_PAGES:
        raise DocumentRefused(
            "pages",
            N_("%(name)s has %(pages)s pages; a document has 1 to %(limit)s."),
            {"name": shown, "pages": pages, "limit": MAX_PAGES},
        )
    return Checked(pages=pages, size=len(data))
