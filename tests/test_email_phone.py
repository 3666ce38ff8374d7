"""Every email kind, in Swedish and English, fits a 390 px wide phone screen: rendered in
headless Chromium (Debian's, driven by Playwright, one browser for all), the page is never
wider than the screen. Long data on purpose: a ~300-character signing link (the issue: the
link printed in the HTML made the email 2 846 px wide), the full SHA-256, long names."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from emails.render import render_email
from models.agreement import Language
from tests.test_emails import KINDS, agreement, spec

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and os.environ.get("CI") == "true":
    raise RuntimeError("chromium is missing on CI: tasks.py test installs it (apt-get)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (python3.11 tasks.py test installs it as root)",
)
PHONE = 390
LINK = "https://avtal.helsingborg.example.se/sign/" + "eyJhZ3JlZW1lbnQiOiJoZWxzaW5nYm9yZy1pbnZh" * 7
TITLE = "IOP Arbetsmarknadsförvaltningen, Helsingborgshem och INVA-SAM – mötesplats @Söder"


@pytest.fixture(scope="module")
def phone() -> Iterator[Any]:
    """One page of one browser, 390 px wide, for every email."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": PHONE, "height": 844})
        # No request leaves the page: the emails load nothing from outside.
        page.route("**/*", lambda route: route.abort())
        yield page
        browser.close()


@pytest.mark.parametrize("language", [Language.sv, Language.en])
def test_every_email_fits_a_phone(phone: Any, language: Language) -> None:
    a = agreement(language, title=TITLE)
    too_wide = {}
    for kind in KINDS:
        html = render_email(a, spec(a, kind, language), link=LINK).html
        assert LINK not in html.replace(f'href="{LINK}"', ""), kind  # never printed
        phone.set_content(html)
        width = phone.evaluate("document.documentElement.scrollWidth")
        if width > PHONE:
            too_wide[kind] = width
    assert not too_wide, too_wide


@pytest.mark.parametrize("language", [Language.sv, Language.en])
def test_the_weekly_digest_fits_a_phone(phone: Any, language: Language) -> None:
    from emails.render import render_digest
    from tests.test_digest import sample

    digest = render_digest(sample(language, title=TITLE), "https://avtal.helsingborg.example.se")
    phone.set_content(digest.html)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE
