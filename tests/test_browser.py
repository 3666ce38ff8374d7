"""In headless Chromium (Debian's, driven by Playwright): a coordinator adds an agreement
and starts signing in the web pages; signers open their links from the emails that
reached the mail sink; one declines, the coordinator restarts, everyone signs, and the
coordinator sees the agreement active. A forged and a reused link change nothing."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from agreements import access
from agreements.simulate import free_port
from models.db import engine
from models.schedule.dates import STOCKHOLM, add_months
from tests.mail import signing_requests
from tests.test_up import service

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and os.environ.get("CI") == "true":
    raise RuntimeError("chromium is missing on CI: tasks.py test installs it (apt-get)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (python3.11 tasks.py test installs it as root)",
)
TOKEN = "browser-token-5e1a"


# Column headings a page shows on more than one line (each heading is one or two words).
LINES_OF_HEADINGS = """() => [...document.querySelectorAll('th')].filter(th => {
    const r = document.createRange(); r.selectNodeContents(th);
    return new Set([...r.getClientRects()].map(c => Math.round(c.top))).size > 1;
}).map(th => th.textContent)"""

# A long address with no hyphen to break at, as many are: it must wrap on a phone.
SAUL = "saul.ordforande@idrottsforeningengamlegarden.example.se"


# The term starts today (Stockholm), so it can still be signed as a draft and is active once
# everyone has signed; a term that started earlier would have to say when it was signed.
def terms() -> str:
    """Made when the test types them: a module-level date would be yesterday's in a run
    that passes midnight."""
    start = dt.datetime.now(STOCKHOLM).date()
    return f"""
id = "webbavtal"
title = "IOP Webbavtal"
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Kommunen"
kind = "public"
contacts = [
  {{ name = "Maria Chef", email = "maria@kommun.example.se", roles = ["contact", "signatory"] }},
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
contacts = [
  {{ name = "Saul Ordförande", email = "{SAUL}", roles = ["signatory"] }},
]
[term]
start = {start.isoformat()}
end = {(add_months(start, 12) - dt.timedelta(days=1)).isoformat()}
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 120000
[prerequisites]
no-market = true
not-an-order = true
idea-driven = true
all-contribute = true
budget-plan = true
"""


def settings_here(**more: str) -> tuple[dict[str, str], str]:
    """The settings of `agreements up` on free loopback ports, and the pages' address."""
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    env = {
        "AGREEMENTS_TEMPORAL_PORT": str(free_port()),
        "AGREEMENTS_TEMPORAL_UI_PORT": str(free_port()),
        "AGREEMENTS_SMTP_PORT": str(free_port()),
        "AGREEMENTS_WEB_PORT": str(web_port),
        "AGREEMENTS_PUBLIC_BASE_URL": base,
        "AGREEMENTS_API_TOKEN": TOKEN,
        **more,
    }
    return env, base


def link_for(mail: Path, email: str, round_number: int) -> str:
    for _ in range(200):
        found = [url for _, signer, url in signing_requests(mail) if signer == email]
        if len(found) >= round_number:
            return found[round_number - 1]
        time.sleep(0.05)
    raise AssertionError(f"no signing link number {round_number} for {email}")


def test_coordinator_and_signers_in_the_browser(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    env, base = settings_here()
    mail = tmp_path / "data" / "mail"
    with service(env, tmp_path), sync_playwright() as p:
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
        coordinator = browser.new_page()
        coordinator.goto(base + "/")
        coordinator.fill("input[name=token]", TOKEN)
        coordinator.click("button[type=submit]")
        assert coordinator.url.endswith("/todo")  # the first page after signing in
        coordinator.goto(base + "/")
        coordinator.click("summary")
        coordinator.fill("textarea[name=terms]", terms())
        coordinator.click("#create")
        assert "IOP Webbavtal" in coordinator.inner_text("h1")
        coordinator.click("text=Bekräfta alla")
        # Each asks once more, saying what will happen.
        assert "Förutsättningarna för IOP registreras" in coordinator.inner_text("main")
        coordinator.click("#confirm")
        coordinator.click("text=Starta signering")
        assert "Var och en av de 2 undertecknarna får ett mejl" in coordinator.inner_text("main")
        coordinator.click("#confirm")
        assert "Signering (omgång 1" in coordinator.content()

        signer = browser.new_page()
        # Saul declines with a reason.
        signer.goto(link_for(mail, SAUL, 1))
        assert "SHA-256" in signer.content()
        signer.fill("textarea[name=reason]", "Budgeten är inte beslutad")
        signer.click("#decline")
        assert "avböjt" in signer.inner_text("#result")

        # A forged link changes nothing.
        forged = link_for(mail, "maria@kommun.example.se", 1)[:-4] + "AAAA"
        signer.goto(forged)
        assert "inte giltig" in signer.content()

        # The coordinator restarts; both sign from the new emails.
        for _ in range(100):
            coordinator.goto(f"{base}/a/webbavtal")
            if coordinator.is_visible("text=Starta signering"):
                break
            time.sleep(0.1)
        coordinator.click("text=Starta signering")
        coordinator.click("#confirm")
        for email in (
            "maria@kommun.example.se",
            SAUL,
        ):
            link = link_for(mail, email, 2)
            signer.goto(link)
            signer.click("#sign")
            assert "registrerad" in signer.inner_text("#result")
            # The same link again: nothing to sign, no second signature.
            signer.goto(link)
            assert "registrerad" in signer.inner_text("#result")
            assert not signer.is_visible("#sign")
            # The answer on a phone: the terms' fingerprint (64 characters in one word)
            # wraps instead of making the page 517 px wide.
            signer.set_viewport_size({"width": 390, "height": 900})
            signer.goto(link)
            assert signer.evaluate("document.documentElement.scrollWidth") <= 390
            signer.set_viewport_size({"width": 1280, "height": 900})

        for _ in range(100):
            coordinator.goto(f"{base}/a/webbavtal")
            if "Läge: löper" in coordinator.inner_text("main"):
                break
            time.sleep(0.1)
        main = coordinator.inner_text("main")
        assert "Läge: löper" in main and "UTC" not in main and " active" not in main
        assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} CES?T", main), "event times"
        # On a phone, with its emails, events and timeline, nothing scrolls sideways (long
        # email addresses in the outbox table once made the page 435 px wide at 390).
        for path in ("/a/webbavtal", "/", "/todo", "/upcoming?days=400&role=finance"):
            for width in (390, 1280):
                coordinator.set_viewport_size({"width": width, "height": 900})
                coordinator.goto(base + path)
                wide = coordinator.evaluate("document.documentElement.scrollWidth")
                assert wide <= width, (path, width, wide)
            # On a wide screen no column heading is broken across lines ("Belop|p").
            broken = coordinator.evaluate(LINES_OF_HEADINGS)
            assert not broken, (path, broken)
        browser.close()


def test_sign_in_through_the_identity_provider_in_the_browser(tmp_path: Path) -> None:
    """A coordinator an administrator added on the command line signs in through a real
    OpenID Connect provider on loopback, adds an agreement for her administration, and the
    event log names her; she signs out. The pages fit a phone."""
    import httpx
    import oidc_provider_mock
    from playwright.sync_api import sync_playwright

    from tests.test_up import cli

    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        env, base = settings_here(
            AGREEMENTS_OIDC_ISSUER=issuer,
            AGREEMENTS_OIDC_CLIENT_ID="avtalstjansten",
            AGREEMENTS_OIDC_CLIENT_SECRET="provider-secret-for-the-browser-test",
            AGREEMENTS_OIDC_NAME="Kommunens inloggning",
        )
        claims = {"email": "malin@kommun.example.se", "name": "Malin Samordnare"}
        assert httpx.put(f"{issuer}/users/malin-1", json=claims).status_code == 204
        with service(env, tmp_path), sync_playwright() as p:
            for args in (
                ("people", "org", "kultur", "Kultur- och fritidsnämnden"),
                ("people", "grant", "malin@kommun.example.se", "kultur", "coordinator"),
            ):
                done = cli(env, tmp_path, *args)
                assert done.returncode == 0, done.stdout + done.stderr
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(base + "/")
            assert page.url.endswith("/login")
            page.click("text=Logga in med Kommunens inloggning")
            assert page.url.startswith(issuer)  # the provider's own form
            page.get_by_placeholder("sub").fill("malin-1")
            page.get_by_role("button", name="Authorize").click()
            page.wait_for_url(base + "/todo")
            assert "Malin Samordnare" in page.inner_text("header")
            assert "Inget i dina avtal behöver din uppmärksamhet just nu." in page.inner_text(
                "main"
            )
            page.goto(base + "/")
            page.click("summary")
            assert page.inner_text("select[name=organisation]") == "Kultur- och fritidsnämnden"
            page.fill("textarea[name=terms]", terms())
            page.click("#create")
            assert "IOP Webbavtal" in page.inner_text("h1")
            page.click("text=Bekräfta alla")
            page.click("#confirm")
            for _ in range(100):
                page.goto(f"{base}/a/webbavtal")
                if "Malin Samordnare (malin@kommun.example.se)" in page.inner_text("main"):
                    break
                time.sleep(0.1)
            assert "Malin Samordnare (malin@kommun.example.se)" in page.inner_text("main")
            for path in ("/me", "/a/webbavtal", "/"):
                for width in (390, 1280):
                    page.set_viewport_size({"width": width, "height": 900})
                    page.goto(base + path)
                    wide = page.evaluate("document.documentElement.scrollWidth")
                    assert wide <= width, (path, width, wide)
            page.click("header >> text=Logga ut")
            assert "Du är utloggad." in page.inner_text("main")
            page.goto(base + "/")
            assert page.url.endswith("/login")
            browser.close()


# The WCAG 2.1 A and AA rules of axe-core (bundled with axe-playwright-python).
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def test_every_page_meets_wcag_2_1_aa(tmp_path: Path) -> None:
    """axe-core over every page, in Swedish and English, in the states that matter: signed
    out, to-do, the list, a draft, a round under way, an agreement under way with what is
    overdue, one that is ending, a confirmation, an error page, the signing page and its
    answer, the upcoming list, the person's page and the administrators' page."""
    import httpx
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    from tests.test_web import under_way

    env, base = settings_here()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    mail = tmp_path / "data" / "mail"
    failures: list[str] = []
    axe = Axe()
    with service(env, tmp_path), sync_playwright() as p:
        api = httpx.Client(base_url=base, headers=auth, timeout=30)
        draft = terms()
        assert api.post("/api/agreements", content=draft).status_code == 201
        signing = draft.replace('id = "webbavtal"', 'id = "signering"')
        assert api.post("/api/agreements", content=signing).status_code == 201
        missing = api.get("/api/agreements/signering").json()["prerequisites_missing"]
        assert api.post(
            "/api/agreements/signering/prerequisites", json={"keys": missing}
        ).is_success
        started = api.post("/api/agreements/signering/signing")
        assert started.status_code == 200, started.text
        text, signed_on = under_way("lund-radrum")  # reports and instalments overdue
        taken = api.post(f"/api/agreements?signed={signed_on}", content=text)
        assert taken.status_code == 201, taken.text
        ending = draft.replace('id = "webbavtal"', 'id = "upphor"')
        today = dt.datetime.now(STOCKHOLM).date().isoformat()
        assert api.post(f"/api/agreements?signed={today}", content=ending).status_code == 201
        # An organisation with a webhook endpoint: the webhooks' pages with what they list
        access.add_organisation(
            engine(f"sqlite:///{tmp_path / 'data' / 'agreements.db'}"), "kultur", "Kultur"
        )
        made = api.post(
            "/api/webhooks", json={"url": "https://93.184.216.34/in", "types": ["invoice.due"]}
        )
        assert made.status_code == 201, made.text
        hook = made.json()
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        # axe runs inside the page: the pages' own policy runs no script, so it is bypassed
        # for the checker only.
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()

        def check(name: str) -> None:
            if page.query_selector('footer a[href="/accessibility"]') is None:
                failures.append(f"{name}: no link to the accessibility statement")
            page.set_viewport_size({"width": 390, "height": 900})  # a phone: no sideways scroll
            wide = page.evaluate("document.documentElement.scrollWidth")
            if wide > 390:
                failures.append(f"{name}: {wide} px wide on a 390 px phone")
            page.set_viewport_size({"width": 1280, "height": 900})
            results = axe.run(page, options=WCAG)
            for v in results.response["violations"]:
                targets = [n["target"] for n in v["nodes"]][:3]
                failures.append(f"{name}: {v['id']} ({v['impact']}) {v['help']} {targets}")

        for lang in ("sv", "en"):
            page.goto(f"{base}/login?lang={lang}")
            check(f"login {lang}")
            page.goto(f"{base}/accessibility?lang={lang}")  # open to everyone
            check(f"accessibility statement {lang}")
        assert "Tillgänglighetsredogörelse" not in page.inner_text("main")  # English now
        page.goto(f"{base}/accessibility?lang=sv")
        assert "lag (2018:1937)" in page.inner_text("main")
        page.goto(base + "/login?lang=sv")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        for _ in range(100):
            page.goto(base + "/")
            if page.inner_text("main").count("IOP") >= 3:
                break
            time.sleep(0.1)
        paths = [
            "/todo",
            "/",
            "/a/webbavtal",
            "/a/signering",
            "/a/lund-radrum",
            "/upcoming?days=400&role=coordinator",
            "/upcoming?days=400&role=finance",
            "/me",
            "/people",
            "/a/finns-inte",
            "/draft",
            "/draft?copy=lund-radrum",
            "/a/webbavtal/draft",
            "/a/lund-radrum/draft",
            "/webhooks",
            f"/webhooks/{hook['id']}",
        ]
        for lang in ("sv", "en"):
            page.goto(f"{base}/?lang={lang}")
            for path in paths:
                page.goto(base + path)
                check(f"{path} {lang}")
            page.goto(base + "/a/webbavtal")
            page.click("text=Start signing" if lang == "en" else "text=Starta signering")
            check(f"confirmation {lang}")
            page.goto(base + "/draft")
            page.fill("#f-party-0-org_number", "12")
            page.click("#save")  # refused: the problems above the form and by their fields
            assert page.locator(".error").count() >= 3
            check(f"drafting form with problems {lang}")
        page.goto(base + "/?lang=sv")
        # Ending: terminated today by the municipality.
        page.goto(base + "/a/upphor")
        page.fill("#end input[name=reason]", "Verksamheten läggs ned")
        page.click("#end >> text=Säg upp")
        page.click("#confirm")
        page.goto(base + "/a/upphor")
        check("/a/upphor sv (ending)")
        # The signer's pages, in the signer's language.
        signer = context.new_page()
        for _ in range(100):
            if len(signing_requests(mail)) >= 2:
                break
            time.sleep(0.1)
        link = link_for(mail, SAUL, 1)
        page = signer
        signer.goto(link)
        check("signing page")
        signer.click("#sign")
        check("signed page")
        signer.goto(link[:-4] + "AAAA")
        check("invalid link page")
        browser.close()
    assert not failures, "\n".join(failures)


def test_keyboard_only(tmp_path: Path) -> None:
    """With the keyboard alone: sign in, draft an agreement, confirm its prerequisites,
    start signing, and sign from the link in the email. Every step is reached with Tab."""
    from playwright.sync_api import Locator, Page, sync_playwright

    env, base = settings_here()
    mail = tmp_path / "data" / "mail"

    def tab_to(page: Page, target: Locator) -> None:
        """Press Tab until `target` has the focus (at most 150 times)."""
        for _ in range(150):
            if target.evaluate("e => e === document.activeElement"):
                return
            page.keyboard.press("Tab")
        raise AssertionError(f"{target} is not reached with Tab")

    def typed_date(page: Page, day: dt.date) -> str:
        """A date as typed into a date field: its parts in the order the browser's locale
        shows them (month first in en-US), digits only."""
        order = page.evaluate(
            "() => new Intl.DateTimeFormat().formatToParts(new Date(2001, 10, 22))"
            ".map(p => p.type).filter(t => ['year', 'month', 'day'].includes(t))"
        )
        parts = {"year": f"{day.year:04d}", "month": f"{day.month:02d}", "day": f"{day.day:02d}"}
        return "".join(parts[name] for name in order)

    def press(page: Page, target: Locator, navigates: bool = True) -> None:
        tab_to(page, target)
        if navigates:  # the next page has come before the test looks at it
            with page.expect_navigation():
                page.keyboard.press("Enter")
        else:
            page.keyboard.press("Enter")

    with service(env, tmp_path), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(base + "/login")
        tab_to(page, page.locator("input[name=token]"))
        page.keyboard.type(TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_url(base + "/todo")
        press(page, page.locator("header a", has_text="Avtal"))
        press(page, page.locator("#new"))
        start = dt.datetime.now(STOCKHOLM).date()
        end = add_months(start, 12) - dt.timedelta(days=1)
        # The drafting form, field after field in the order Tab takes them.
        for field, value in (
            ("title", "IOP Webbavtal"),
            ("party-0-name", "Kommunen"),
            ("party-0-contact-0-name", "Maria Chef"),
            ("party-0-contact-0-email", "maria@kommun.example.se"),
            ("party-1-name", "Föreningen"),
            ("party-1-contact-0-name", "Saul Ordförande"),
            ("party-1-contact-0-email", SAUL),
            ("coordinator-name", "Malin Samordnare"),
            ("coordinator-email", "malin@kommun.example.se"),
            ("contribution-0-payer", "ArrowDown"),  # the first party
            ("contribution-0-payee", "ArrowDown ArrowDown"),  # the second
            ("contribution-0-amount", "120 000"),
            ("term-start", typed_date(page, start)),
            ("term-end", typed_date(page, end)),
        ):
            tab_to(page, page.locator(f"#f-{field}"))
            if value.startswith("Arrow"):
                for key in value.split():
                    page.keyboard.press(key)
            else:
                page.keyboard.type(value)
        assert page.input_value("#f-term-end") == end.isoformat()
        assert page.input_value("#f-contribution-0-payee") == "1"
        press(page, page.locator("#save"))
        assert "IOP Webbavtal" in page.inner_text("h1"), page.inner_text("main")
        press(page, page.locator("button", has_text="Bekräfta alla"))
        press(page, page.locator("#confirm"))
        press(page, page.locator("button", has_text="Starta signering"))
        press(page, page.locator("#confirm"))
        assert "Signering (omgång 1" in page.inner_text("main")
        # The page's list of emails follows the outbox without a reload: emptied here, it
        # is filled again by the page's script with the invitations.
        page.evaluate(
            "window.notReloaded = true;"
            "document.querySelector('[data-live-outbox]').replaceChildren()"
        )
        invitations = (
            "window.notReloaded && [...document.querySelectorAll('[data-live-outbox] tr')]"
            ".filter(r => r.textContent.includes('Underteckna')).length"
        )
        for _ in range(300):
            if page.evaluate(invitations) >= 2:
                break
            time.sleep(0.1)
        assert page.evaluate(invitations) >= 2
        for _ in range(100):
            if len(signing_requests(mail)) >= 2:
                break
            time.sleep(0.1)
        for email in ("maria@kommun.example.se", SAUL):
            page.goto(link_for(mail, email, 1))
            press(page, page.locator("#sign"))
            assert "registrerad" in page.inner_text("#result")
        browser.close()


def test_signers_open_the_documents_sign_and_download_the_sealed_record(tmp_path: Path) -> None:
    """A draft with its agreement text (PDF), signed by both signers from their links in the
    browser after opening the document; the last signer downloads the signed agreement
    from their page, and its seal holds against the service's seal certificate."""
    import httpx
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    from sealing.seal import SEAL_FILE, load_seal_key, verify
    from tests.test_documents import pdf

    env, base = settings_here()
    mail = tmp_path / "data" / "mail"
    agreement_text = pdf(3, text="Överenskommelse")
    with service(env, tmp_path), sync_playwright() as p:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert api.post("/api/agreements", content=terms()).status_code == 201
        added = api.post(
            "/api/agreements/webbavtal/documents",
            data={"kind": "text", "name": "Överenskommelse IOP"},
            files={"file": ("avtal.pdf", agreement_text, "application/pdf")},
        )
        assert added.status_code == 200, added.text
        missing = api.get("/api/agreements/webbavtal").json()["prerequisites_missing"]
        api.post("/api/agreements/webbavtal/prerequisites", json={"keys": missing})
        assert api.post("/api/agreements/webbavtal/signing").status_code == 200
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        # axe runs inside the page: the pages' own policy is bypassed for the checker only.
        page = browser.new_context(bypass_csp=True, accept_downloads=True).new_page()
        axe = Axe()
        violations: list[str] = []
        for email in ("maria@kommun.example.se", SAUL):
            page.goto(link_for(mail, email, 1))
            found = axe.run(page, options=WCAG).response["violations"]
            violations += [f"signing page with documents: {v['id']}" for v in found]
            document = page.locator("a", has_text="Överenskommelse IOP")
            opened = httpx.get(base + (document.get_attribute("href") or "/"), timeout=30)
            assert opened.status_code == 200 and opened.content == agreement_text
            page.click("#sign")
            assert "registrerad" in page.inner_text("#result")
        last = page.url
        for _ in range(300):  # the record is sealed a moment after the last signature
            page.goto(last)
            if page.locator("#record").count():
                break
            time.sleep(0.1)
        found = axe.run(page, options=WCAG).response["violations"]
        violations += [f"signed page with the record: {v['id']}" for v in found]
        assert not violations, violations
        with page.expect_download() as download:
            page.click("#record")
        record = Path(download.value.path()).read_bytes()
        assert download.value.suggested_filename == "webbavtal-underskrifter-1.pdf"
        browser.close()
    seal_certificate = load_seal_key(tmp_path / "data" / SEAL_FILE).certificate
    assert verify(record, seal_certificate).valid
    assert not verify(record[:-200] + bytes(200), seal_certificate).valid
