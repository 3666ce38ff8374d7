"""One catalog, complete: every message the sources use is in it with Swedish and English,
and nothing a Swedish reader sees is English or an internal key.

The catalog checks read the sources as `python tasks.py i18n` does (Babel's extractors,
the same mapping and keywords); the reading checks render what people read (every email
kind, the pages, the CSV file and the command-line tables) and give it to `tests.language`.
"""

from __future__ import annotations

import io
import re
from csv import reader as csvreader
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import tasks
from i18n import catalog_path, text
from i18n.words import WORDS, word
from models.prerequisites import CHECKLIST
from tests.language import Reader

ROOT = Path(__file__).resolve().parent.parent
PARAM = re.compile(r"%\((\w+)\)[sd]")


def catalog(language: str) -> Catalog:
    with catalog_path(language).open("rb") as f:
        return read_po(f, locale=language)


def extracted() -> set[str]:
    """Every message id in the sources, found as `tasks.py i18n` finds them."""
    keywords: dict[str, tuple[int, ...] | None] = {
        "_": None,
        "gettext": None,
        "ngettext": (1, 2),
        "N_": None,
    }
    for spec in tasks.KEYWORDS:
        name, _, where = spec.partition(":")
        keywords[name] = tuple(int(i) for i in where.split(",")) if where else None
    mapping_file = ROOT / "i18n" / "babel.cfg"
    with mapping_file.open() as f:
        method_map, options_map = parse_mapping_cfg(f)  # type: ignore[no-untyped-call]
    found = set()
    for _, _, message, _, _ in extract_from_dir(
        ROOT,
        method_map,
        options_map,
        keywords=keywords,
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.fixture(scope="module")
def catalogs() -> dict[str, object]:
    return {language: catalog(language) for language in ("sv", "en")}


def test_the_catalogs_hold_exactly_the_sources_messages(catalogs) -> None:
    sources = extracted()
    for language, cat in catalogs.items():
        ids = {m.id[0] if isinstance(m.id, tuple) else m.id for m in cat if m.id}
        missing, stale = sources - ids, ids - sources
        assert not missing, f"{language}: not in the catalog (run python tasks.py i18n): {missing}"
        assert not stale, f"{language}: no longer in the sources: {stale}"
    assert len(sources) > 300  # the whole interface, not a handful


def test_every_entry_has_swedish_and_english_with_the_same_parameters(catalogs) -> None:
    problems = []
    for language, cat in catalogs.items():
        for m in cat:
            if not m.id:
                continue
            ids = m.id if isinstance(m.id, tuple) else (m.id,)
            strings = m.string if isinstance(m.string, tuple) else (m.string,)
            if m.fuzzy or not all(strings):
                problems.append(f"{language}: untranslated {ids[0]!r}")
                continue
            wanted = set(PARAM.findall(ids[-1]))
            for s in strings:
                if set(PARAM.findall(s)) - wanted - {"num"} or (
                    len(ids) == 1 and set(PARAM.findall(s)) != wanted
                ):
                    problems.append(f"{language}: parameters differ in {ids[0]!r}: {s!r}")
    assert not problems, "\n".join(problems)


def test_swedish_differs_from_english_where_it_should(catalogs) -> None:
    """A Swedish entry that is the English message left as it was is not a translation (a
    few words are the same in both: names, abbreviations)."""
    same = [
        m.id
        for m in catalogs["sv"]
        if m.id and not isinstance(m.id, tuple) and m.string == m.id and re.search("[a-z]{4}", m.id)
    ]
    assert len(same) <= 5, same


def test_every_key_a_person_may_see_has_words() -> None:
    for kind, table in WORDS.items():
        assert set(table) == set(kind), f"{kind.__name__}: {set(kind) ^ set(table)}"
        for value in kind:
            assert word("sv", value) != word("en", value) or value.value in ("", "IOP"), value
    for item in CHECKLIST.values():
        assert text("sv", item.text) != item.text, item.key


# Reading as a Swedish person would ------------------------------------------------------

# Words of the examples' own data that are English or look like keys (names, addresses).
DATA_WORDS = {"IOP", "INVA-SAM", "Helsingborgshem"}


def reader() -> Reader:
    return Reader(allowed=set(DATA_WORDS))


def report(name: str, found: Reader) -> None:
    print(f"{name}: {found.checked} texts read, {len(found.found)} found")  # shown with -s
    lines = [f"{where}: {what} … {context} …" for where, what, context in found.found]
    if found.found:
        pytest.fail(f"{len(lines)} found in {found.checked} texts:\n" + "\n".join(lines))


def test_every_email_kind_in_swedish() -> None:
    """Every kind's subject, plain text and HTML, for a Swedish recipient."""
    from emails.render import render_email
    from models.agreement import Language
    from tests.test_emails import KINDS, agreement, spec

    found = reader()
    a = agreement(Language.sv)
    for kind in KINDS:
        rendered = render_email(a, spec(a, kind, Language.sv), link="https://avtal.example.se/s")
        found.read(f"{kind} subject", rendered.subject)
        found.read(f"{kind} text", rendered.text)
        found.read_html(f"{kind} html", rendered.html)
    assert found.checked == 3 * len(KINDS) >= 60
    report("emails", found)


def test_a_swedish_coordinator_reads_pages_csv_tables_and_emails(web, service_env) -> None:
    """The whole service in Swedish: an agreement signed through its links, one taken on
    under way with decisions recorded on it, one rescinded; every page, the CSV file, the
    command-line tables and every email the sink received for a Swedish reader."""
    import os
    import subprocess
    import sys
    from email.message import EmailMessage

    from emails.sink import read_mail
    from tests.conftest import TOKEN
    from tests.test_web import AUTH, links, start, take_on_and_invoice, until

    client, mail = web
    found = reader()
    client.post("/login", data={"token": TOKEN})
    pages = {"login": "/login", "list": "/?lang=sv"}
    # 1. Planteringen, signed by everyone through their links.
    start(client)
    pages["agreement while signing"] = "/a/planteringen"
    personal = links(mail, 6)
    first = next(iter(personal.values()))
    found.read_html("signing page", client.get(first).text)
    for link in personal.values():
        found.read_html("after signing", client.post(link, data={"action": "sign"}).text)
    until(client, "planteringen", "signed")
    pages["agreement signed"] = "/a/planteringen"
    # 2. An example under way, taken on as signed, with decisions recorded on it.
    taken = "helsingborg-inva-sam"
    take_on_and_invoice(client, taken, "F-2041")
    refused = client.post(f"/api/agreements/{taken}/reports", json={"report": "x"}, headers=AUTH)
    assert refused.status_code >= 400
    pages["agreement active"] = f"/a/{taken}"
    # 3. Rescinded: ends today.
    ended = client.post(
        f"/api/agreements/{taken}/ending",
        json={"kind": "rescission", "reason": "Verksamheten har upphört", "repayment": 1000},
        headers=AUTH,
    )
    assert ended.status_code == 200, ended.text
    pages["agreement rescinded"] = f"/a/{taken}"
    pages["upcoming"] = "/upcoming?days=400"
    for where, path in pages.items():
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        found.read_html(where, answer.text)
    csv = client.get("/upcoming.csv?days=400")
    assert csv.status_code == 200
    cells = [cell for row in csvreader(io.StringIO(csv.text), delimiter=";") for cell in row]
    assert len(cells) > 20
    found.read("upcoming.csv", "\n".join(cells))
    # The command line's tables, in Swedish (the default).
    env = {**os.environ, **service_env, "AGREEMENTS_LANGUAGE": "sv", "COLUMNS": "200"}
    for args in (["list"], ["show", "planteringen"], ["show", taken], ["upcoming"]):
        run = subprocess.run(
            [str(Path(sys.executable).parent / "agreements"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        found.read("agreements " + " ".join(args), run.stdout)
    # The ids the other commands take are there on request, and only then.
    ids = subprocess.run(
        [str(Path(sys.executable).parent / "agreements"), "show", "planteringen", "--ids"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ids.returncode == 0 and "invoice:" in ids.stdout
    # Every email a Swedish reader received.
    swedish = 0
    for message in read_mail(mail):
        assert isinstance(message, EmailMessage)
        if message.get("Content-Language", "sv") != "sv":
            continue
        swedish += 1
        where = f"email {message['X-Agreement-Template']}"
        found.read(f"{where} subject", str(message["Subject"]))
        plain = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        if plain is not None:
            found.read(f"{where} text", plain.get_content())
        if html is not None:
            found.read_html(f"{where} html", html.get_content())
    assert swedish >= 10
    report("service", found)
