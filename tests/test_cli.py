"""The `agreements` command as a coordinator uses it: check files, preview a plan, export it."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from icalendar import Calendar
from typer.testing import CliRunner

from agreements.cli import app

ROOT = Path(__file__).resolve().parent.parent
AGREEMENT = """
id = "cli-demo"
title = "IOP Demo"
reference = "SOF 2025/3"
[coordinator]
name = "Malin Koordinator"
email = "malin@amf.example.se"
[parties.amf]
name = "Arbetsmarknadsförvaltningen"
kind = "public"
org_number = "212000-1157"
contacts = [
  { name = "Maria Chef", email = "maria@amf.example.se", roles = ["contact", "signatory"] },
  { name = "Ekonomi AMF", email = "ekonomi@amf.example.se", roles = ["finance"] },
]
[parties.forening]
name = "Föreningen <b>Vi</b>"
kind = "nonprofit"
org_number = "802002-8638"
contacts = [{ name = "Saul", email = "saul@forening.example.se", roles = ["contact", "signatory"] }]
[term]
start = 2025-01-01
end = 2025-12-31
[[contributions]]
payer = "amf"
payee = "forening"
amount = 650000
instalments = { per_year = 2 }
[signing]
planned = 2024-12-02
"""

runner = CliRunner()


@pytest.fixture
def agreement_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli-demo.toml"
    path.write_text(AGREEMENT, encoding="utf-8")
    return path


def test_check_accepts_a_good_file_and_notes_what_is_missing(agreement_file: Path):
    result = runner.invoke(app, ["check", str(agreement_file)])
    assert result.exit_code == 0, result.output
    assert f"{agreement_file}: ok (cli-demo)" in result.output
    assert "prerequisites: ännu inte bekräftade" in result.output


def test_check_rejects_a_bad_file_with_file_field_and_reason(tmp_path: Path, agreement_file):
    bad = tmp_path / "bad.toml"
    bad.write_text(AGREEMENT.replace('payer = "amf"', 'payer = "nobody"'), encoding="utf-8")
    english = {"AGREEMENTS_LANGUAGE": "en"}
    result = runner.invoke(app, ["check", str(agreement_file), str(bad)], env=english)
    assert result.exit_code == 1
    assert f"{bad}: contributions[0].payer: unknown party 'nobody'" in result.output
    assert "Traceback" not in result.output


def test_preview_json_has_the_promised_shape(agreement_file: Path):
    result = runner.invoke(app, ["preview", str(agreement_file), "--json", "--now", "2024-12-01"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["agreement"] == "cli-demo"
    invoices = [m for m in data["milestones"] if m["kind"] == "invoice"]
    assert [(m["date"], m["effective_date"], m["amount"]) for m in invoices] == [
        ("2025-01-01", "2025-01-02", 325000),
        ("2025-07-01", "2025-07-01", 325000),
    ]
    assert {m["payer"] for m in invoices} == {"amf"}
    assert {m["payee_name"] for m in invoices} == {"Föreningen <b>Vi</b>"}
    for milestone in data["milestones"]:
        assert {"kind", "date", "effective_date", "title"} <= milestone.keys()
    for email in data["emails"]:
        assert {"send_at", "template", "to", "subject"} <= email.keys()
        assert "\n" not in email["subject"]
        assert "SOF 2025/3" in email["subject"]  # every subject names the diarienummer
    invoice_mail = next(e for e in data["emails"] if e["template"] == "invoice_reminder")
    assert invoice_mail["subject"].startswith("Om 14 dagar: fakturering 325\u00a0000\u00a0kr")
    assert invoice_mail["send_at"] == "2024-12-19T08:00:00+01:00"


def test_preview_table_is_readable_and_swedish(agreement_file: Path):
    result = runner.invoke(app, ["preview", str(agreement_file), "--now", "2024-12-01"])
    assert result.exit_code == 0, result.output
    assert "IOP Demo (dnr SOF 2025/3)" in result.output
    assert "Datum" in result.output and "Ämne" in result.output
    assert "325 000 kr" in result.output.replace("\u00a0", " ")


def test_preview_writes_a_calendar_with_stable_uids(agreement_file: Path, tmp_path: Path):
    ics = tmp_path / "plan.ics"
    for _ in range(2):
        result = runner.invoke(app, ["preview", str(agreement_file), "--ics", str(ics)])
        assert result.exit_code == 0, result.output
        cal = Calendar.from_ical(ics.read_bytes())
        uids = [str(e["uid"]) for e in cal.walk("VEVENT")]
        if _ == 0:
            first = uids
    assert uids == first
    assert len(uids) == len(set(uids))
    assert "cli-demo.invoice.amf.forening.1.1@agreements.invalid" in uids
    event = next(e for e in cal.walk("VEVENT") if "invoice" in str(e["uid"]))
    assert str(event.decoded("dtstart")) == "2025-01-02"


def test_preview_writes_invoicing_dates_for_finance_as_csv(agreement_file: Path, tmp_path):
    out = tmp_path / "fakturor.csv"
    result = runner.invoke(app, ["preview", str(agreement_file), "--csv", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_bytes().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert [(r["effective_date"], r["amount_sek"], r["payer_org_number"]) for r in rows] == [
        ("2025-01-02", "325000", "212000-1157"),
        ("2025-07-01", "325000", "212000-1157"),
    ]


def test_preview_of_a_missing_file_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(app, ["preview", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml: Filen kan inte läsas: den finns inte." in result.output


def test_preview_refuses_a_bad_now(agreement_file: Path):
    result = runner.invoke(app, ["preview", str(agreement_file), "--now", "yesterday"])
    assert result.exit_code == 1
    assert "--now: 'yesterday' är inte ett ISO-datum" in result.output


def test_preview_reports_an_unwritable_output(agreement_file: Path, tmp_path: Path):
    target = tmp_path / "missing-dir" / "plan.ics"
    result = runner.invoke(app, ["preview", str(agreement_file), "--ics", str(target)])
    assert result.exit_code == 1
    assert "kan inte skriva kalenderfilen" in result.output


def test_the_installed_script_runs_and_fails_without_a_traceback(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"id = \xff")
    script = Path(sys.executable).parent / "agreements"
    english = {**os.environ, "AGREEMENTS_LANGUAGE": "en"}
    result = subprocess.run(
        [str(script), "check", str(bad)], capture_output=True, text=True, timeout=60, env=english
    )
    assert result.returncode == 1
    assert "not UTF-8" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
