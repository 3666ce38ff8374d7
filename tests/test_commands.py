"""Every `agreements` command against a running service: the real Temporal dev server, a
worker process, the mail sink, a SQLite database. Rejections reach the user as the
workflow's reason, with exit code 1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import models.config as config
from agreements.cli import app, future_text
from emails.sink import read_mail

# Moved whole years forward when today reaches it (`future_text`): the term never started.
FUTURE_AS_WRITTEN = """
id = "kommande"
title = "IOP Kommande"
reference = "SOF 2026/41"
[coordinator]
name = "Malin Samordnare"
email = "malin@kommun.example.se"
[parties.kommun]
name = "Socialförvaltningen"
kind = "public"
org_number = "212000-1157"
contacts = [
  { name = "Maria Chef", email = "maria@kommun.example.se", roles = ["contact", "signatory"] },
  { name = "Ekonomi", email = "ekonomi@kommun.example.se", roles = ["finance"] },
]
[parties.forening]
name = "Föreningen"
kind = "nonprofit"
org_number = "802002-8638"
contacts = [{ name = "Saul", email = "saul@forening.example.se", roles = ["contact", "signatory"] }]
[term]
start = 2027-01-01
end = 2027-12-31
[[contributions]]
payer = "kommun"
payee = "forening"
amount = 240000
[[reports]]
key = "arsrapport"
name = "Årsrapport"
party = "forening"
[signing]
method = "paper"
[prerequisites]
no-market = true
not-an-order = true
idea-driven = true
all-contribute = true
budget-plan = true
"""
FUTURE = future_text(FUTURE_AS_WRITTEN)


@pytest.fixture
def cli(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    config.settings.cache_clear()
    yield CliRunner()
    config.settings.cache_clear()


def run(cli: CliRunner, *args: str) -> Result:
    result = cli.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def refused(cli: CliRunner, *args: str) -> str:
    result = run(cli, *args)
    assert result.exit_code == 1, result.output
    return result.output


def test_a_coordinators_week(cli: CliRunner, tmp_path: Path, service_env: dict[str, str]) -> None:
    path = tmp_path / "kommande.toml"
    path.write_text(FUTURE, encoding="utf-8")
    created = run(cli, "create", str(path), "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["state"] == "draft"
    assert "det finns redan ett avtal" in refused(cli, "create", str(path))
    assert "det finns inget avtal med id nobody" in refused(cli, "show", "nobody")

    reason = refused(cli, "sign-start", "kommande")
    assert reason.startswith("bekräfta först förutsättningarna för IOP: ")
    assert "follow-up-plan" not in reason and "trust" not in reason  # their text, not keys
    assert "okänd förutsättning tillit" in refused(cli, "confirm", "kommande", "tillit")
    assert run(cli, "confirm", "kommande", "follow-up-plan", "trust").exit_code == 0
    started = run(cli, "sign-start", "kommande", "--json")
    assert json.loads(started.stdout)["state"] == "signing"

    reason = refused(
        cli, "sign-paper", "kommande", "--signer", "x@example.se", "--date", "2026-11-20"
    )
    assert "x@example.se är inte firmatecknare för avtalet" in reason
    assert "är inte ett datum" in refused(
        cli, "sign-paper", "kommande", "--signer", "saul@forening.example.se", "--date", "20/11"
    )
    for signer in ("maria@kommun.example.se", "saul@forening.example.se"):
        signed = run(cli, "sign-paper", "kommande", "--signer", signer, "--date", "2026-11-20")
        assert signed.exit_code == 0, signed.output

    state = {}
    for _ in range(100):  # the round ends and the agreement takes it in
        state = json.loads(run(cli, "show", "kommande", "--json").stdout)
        if state["state"] == "signed":
            break
        time.sleep(0.1)
    assert state["state"] == "signed"

    for _ in range(100):  # the list is the read model the worker writes, a moment later
        listed = json.loads(run(cli, "list", "--json").stdout)
        if listed and listed[0]["state"] == "signed":
            break
        time.sleep(0.1)
    assert [(a["id"], a["state"]) for a in listed] == [("kommande", "signed")]
    assert "kommande" in run(cli, "list").stdout

    assert "avtalet har ingen rapport arsrapport nummer 5" in refused(
        cli, "report", "kommande", "--report", "arsrapport", "--period", "5"
    )
    assert "bestämd tid" in refused(cli, "decide", "kommande", "notice", "--party", "kommun")
    assert "är inte ett av renew" in refused(cli, "decide", "kommande", "maybe", "--party", "x")
    assert "exakt ett av" in refused(cli, "terminate", "kommande", "--reason", "x")
    assert "kan inte sägas upp med uppsägningstid" in refused(
        cli, "terminate", "kommande", "--notice", "kommun", "--reason", "Budget"
    )

    finance = json.loads(run(cli, "upcoming", "--days", "60", "--role", "finance", "--json").stdout)
    assert [(r["agreement"], r["kind"], r["amount"]) for r in finance] == [
        ("kommande", "invoice", 240000)
    ]
    csv_text = run(cli, "upcoming", "--days", "60", "--csv").stdout
    assert csv_text.startswith("Avtal;Diarienummer;") and "IOP Kommande;SOF 2026/41" in csv_text

    # The completion emails reached the sink and the outbox says so.
    mail = Path(service_env["AGREEMENTS_DATA_DIR"]) / "mail"
    for _ in range(100):
        if len(read_mail(mail)) >= 4:
            break
        time.sleep(0.1)
    rows = json.loads(run(cli, "outbox", "kommande", "--json").stdout)
    assert {r["template"] for r in rows} == {"signature_receipt", "signature_completed"}
    assert {r["status"] for r in rows} == {"sent"}
    assert {str(m["X-Sink-Recipient"]) for m in read_mail(mail)} == {
        "maria@kommun.example.se",
        "saul@forening.example.se",
        "malin@kommun.example.se",
    }
    assert "Signeringsomgång 1" in run(cli, "show", "kommande").stdout


def test_an_unreachable_service_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGREEMENTS_TEMPORAL_ADDRESS", "127.0.0.1:9")
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    config.settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["show", "kommande"])
    finally:
        config.settings.cache_clear()
    assert result.exit_code == 1
    assert "når inte Temporal på 127.0.0.1:9" in result.output
    assert "Traceback" not in result.output


def test_cancel_amend_terminate_and_outbox(
    cli: CliRunner, tmp_path: Path, service_env: dict[str, str]
) -> None:
    path = tmp_path / "kommande.toml"
    path.write_text(FUTURE, encoding="utf-8")
    assert run(cli, "create", str(path)).exit_code == 0
    assert "har ingen signeringsomgång" in refused(cli, "sign-cancel", "kommande", "--reason", "x")
    run(cli, "confirm", "kommande", "follow-up-plan", "trust")
    assert run(cli, "sign-start", "kommande").exit_code == 0
    cancelled = run(cli, "sign-cancel", "kommande", "--reason", "Fel belopp", "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout)["number"] == 1
    for _ in range(100):
        if json.loads(run(cli, "show", "kommande", "--json").stdout)["state"] == "draft":
            break
        time.sleep(0.1)
    assert "signeringsomgången för kommande är avslutad" in refused(
        cli, "sign-cancel", "kommande", "--reason", "igen"
    )
    assert "inte undertecknat ännu" in refused(cli, "amend", "kommande", str(path))
    # Restart and sign on paper; then amend and end it.
    run(cli, "sign-start", "kommande")
    for signer in ("maria@kommun.example.se", "saul@forening.example.se"):
        run(cli, "sign-paper", "kommande", "--signer", signer, "--date", "2026-11-20")
    for _ in range(100):
        if json.loads(run(cli, "show", "kommande", "--json").stdout)["state"] == "signed":
            break
        time.sleep(0.1)
    bigger = tmp_path / "kommande-2.toml"
    bigger.write_text(FUTURE.replace("amount = 240000", "amount = 300000"), encoding="utf-8")
    amended = run(cli, "amend", "kommande", str(bigger), "--json")
    assert amended.exit_code == 0, amended.output
    assert json.loads(amended.stdout)["round"]["purpose"] == "amendment"
    ended = run(
        cli,
        "terminate",
        "kommande",
        "--rescind",
        "kommun",
        "--reason",
        "Brister",
        "--repayment",
        "10000",
        "--json",
    )
    assert ended.exit_code == 0, ended.output
    assert json.loads(ended.stdout)["ending"] == "rescission"
    assert "upphör redan" in refused(
        cli, "terminate", "kommande", "--rescind", "kommun", "--reason", "igen"
    )
    for _ in range(100):
        rows = json.loads(run(cli, "outbox", "--json").stdout)
        if any(r["template"] == "agreement_ended" for r in rows):
            break
        time.sleep(0.1)
    assert {"signature_cancelled", "signature_completed", "agreement_ended"} <= {
        r["template"] for r in rows
    }
    assert "Status" in run(cli, "outbox").stdout


def test_a_missing_tls_certificate_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGREEMENTS_TEMPORAL_ADDRESS", "temporal.example.se:7233")
    monkeypatch.setenv("AGREEMENTS_TEMPORAL_TLS_CERT", str(tmp_path / "client.pem"))
    monkeypatch.setenv("AGREEMENTS_TEMPORAL_TLS_KEY", str(tmp_path / "client.key"))
    monkeypatch.setenv("AGREEMENTS_DATA_DIR", str(tmp_path))
    config.settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["show", "kommande"])
    finally:
        config.settings.cache_clear()
    assert result.exit_code == 1
    assert "når inte Temporal på temporal.example.se:7233" in result.output
    assert "client.pem" in result.output and "Traceback" not in result.output
