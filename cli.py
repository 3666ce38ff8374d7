"""The `agreements` command line: check agreement files and preview what they will do."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emails.calendar import calendar
from emails.render import kronor, render_subject
from models.agreement import Agreement
from models.loader import AgreementFileError, load_agreement
from models.plan import MilestoneKind, Plan, Scenario
from models.prerequisites import CHECKLIST
from schedule.dates import STOCKHOLM
from schedule.engine import plan

app = typer.Typer(
    help="Avtalstjänsten: avtalsfiler, planer och påminnelser. / Agreement lifecycle service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def say_error(message: str) -> None:
    # Plain lines, never wrapped: one problem per line, easy to read and to grep.
    typer.echo(message, err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    say_error(message)
    return typer.Exit(code)


def parse_now(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(STOCKHOLM)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--now: {value!r} is not an ISO date or date-time (e.g. 2026-11-24)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=STOCKHOLM)


def warnings(agreement: Agreement) -> list[str]:
    notes = []
    if not agreement.reference:
        notes.append("reference: no diarienummer; emails will name the agreement only")
    if agreement.kind == "iop":
        missing = [key for key in CHECKLIST if not agreement.prerequisites.get(key)]
        if missing:
            notes.append("prerequisites: not yet confirmed before signing: " + ", ".join(missing))
    return notes


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Agreement files (.toml)")],
) -> None:
    """Validate agreement files; exit 1 with every problem if any file is wrong."""
    bad = 0
    for path in files:
        try:
            agreement = load_agreement(path)
        except AgreementFileError as error:
            bad += 1
            say_error(str(error))
            continue
        typer.echo(f"{path}: ok ({agreement.id})")
        for note in warnings(agreement):
            typer.echo(f"{path}: note: {note}")
    if bad:
        raise typer.Exit(1)


def _milestone_json(agreement: Agreement, m: Any) -> dict[str, Any]:
    data: dict[str, Any] = m.model_dump(mode="json", exclude_none=True)
    for role in ("payer", "payee", "party"):
        if getattr(m, role):
            data[f"{role}_name"] = agreement.parties[getattr(m, role)].name
    return data


def preview_json(agreement: Agreement, result: Plan) -> dict[str, Any]:
    by_id = {m.id: m for m in result.milestones}
    emails = []
    for e in result.emails:
        emails.append(
            {
                "send_at": e.send_at.isoformat(),
                "template": e.template,
                "to": e.to.email,
                "to_name": e.to.name,
                "role": e.to.role,
                "party": e.to.party,
                "language": e.to.language.value,
                "subject": render_subject(agreement, by_id[e.milestone_id], e),
                "milestone": e.milestone_id,
                "days_before": e.days_before,
                "key": e.key,
                "past": e.past,
            }
        )
    return {
        "agreement": agreement.id,
        "title": agreement.title,
        "reference": agreement.reference,
        "start": result.start.isoformat(),
        "end": result.end.isoformat(),
        "ending": result.ending.value,
        "periods": result.periods,
        "milestones": [_milestone_json(agreement, m) for m in result.milestones],
        "emails": emails,
    }


def finance_csv(agreement: Agreement, result: Plan) -> str:
    """Invoicing dates for a finance system: semicolon-separated (Swedish spreadsheets)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(
        [
            "agreement",
            "reference",
            "title",
            "period",
            "instalment",
            "date",
            "effective_date",
            "payer",
            "payer_org_number",
            "payee",
            "payee_org_number",
            "amount_sek",
        ]
    )
    for m in result.milestones:
        if m.kind is not MilestoneKind.invoice or m.payer is None or m.payee is None:
            continue
        payer, payee = agreement.parties[m.payer], agreement.parties[m.payee]
        writer.writerow(
            [
                agreement.id,
                agreement.reference or "",
                agreement.title,
                m.period,
                m.occurrence,
                m.date.isoformat(),
                m.effective_date.isoformat(),
                payer.name,
                payer.org_number or "",
                payee.name,
                payee.org_number or "",
                m.amount,
            ]
        )
    return buffer.getvalue()


def _write(path: Path, data: bytes, what: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as error:
        raise fail(f"{path}: cannot write the {what}: {error.strerror}") from None


_HEAD = {
    "sv": ("Datum", "Skrivet", "Typ", "Vad", "Belopp", "Skickas", "Till", "Ämne", "passerat"),
    "en": ("Date", "Written", "Kind", "What", "Amount", "Sent", "To", "Subject", "past"),
}


_ENDING = {
    "sv": {
        "expiry": "löper ut på sitt slutdatum",
        "non_renewal": "upphör: en part förlänger inte",
        "not_extended": "upphör: förlängningen godkändes inte",
        "termination": "uppsagd",
        "withdrawal": "en part har gått ur",
        "rescission": "hävd",
    },
    "en": {
        "expiry": "runs to its end date",
        "non_renewal": "ends: a party does not renew",
        "not_extended": "ends: the extension was not approved",
        "termination": "terminated",
        "withdrawal": "a party has withdrawn",
        "rescission": "rescinded",
    },
}


def print_table(agreement: Agreement, data: dict[str, Any]) -> None:
    h = _HEAD[agreement.language.value]
    ending = _ENDING[agreement.language.value].get(data["ending"], data["ending"])
    ref = f" (dnr {agreement.reference})" if agreement.reference else ""
    out.print(f"[bold]{agreement.title}[/bold]{ref}", highlight=False)
    out.print(
        f"{data['start']} – {data['end']} · {data['periods']} period(er) · {ending}",
        highlight=False,
    )
    milestones = Table(show_lines=False, header_style="bold")
    for column in h[:5]:
        milestones.add_column(column)
    for m in data["milestones"]:
        written = "" if m["date"] == m["effective_date"] else m["date"]
        what = m["title"] + (f" [dim]({h[8]})[/dim]" if m["past"] else "")
        milestones.add_row(m["effective_date"], written, m["kind"], what, kronor(m.get("amount")))
    out.print(milestones)
    emails = Table(header_style="bold")
    for column in h[5:8]:
        emails.add_column(column)
    for e in data["emails"]:
        sent = e["send_at"][:16].replace("T", " ")
        emails.add_row(sent, f"{e['to_name']} <{e['to']}>", e["subject"])
    out.print(emails)
    out.print(
        f"{len(data['milestones'])} milestones, {len(data['emails'])} emails", highlight=False
    )


@app.command()
def preview(
    file: Annotated[Path, typer.Argument(help="Agreement file (.toml)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    ics: Annotated[Path | None, typer.Option(help="Write every milestone to this .ics")] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="Write the invoicing dates to this .csv")
    ] = None,
    now: Annotated[
        str | None, typer.Option(help="Plan as of this date-time (default: now)")
    ] = None,
    scenario: Annotated[Scenario, typer.Option(help="plan or recorded")] = Scenario.plan,
) -> None:
    """Every milestone and every email the agreement will send, and to whom."""
    try:
        agreement = load_agreement(file)
    except AgreementFileError as error:
        raise fail(str(error)) from None
    moment = parse_now(now)
    result = plan(agreement, moment, scenario=scenario)
    data = preview_json(agreement, result)
    if ics is not None:
        _write(ics, calendar(agreement, result.milestones, moment), "calendar")
    if csv_out is not None:
        _write(csv_out, finance_csv(agreement, result).encode("utf-8-sig"), "CSV")
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    else:
        print_table(agreement, data)


if __name__ == "__main__":
    app()


def load_scenario(path: Path) -> Any:
    """A scenario file (TOML): `[[steps]]` with `at`, `action` and what the action needs."""
    import tomllib

    from pydantic import ValidationError

    from simulate import ScenarioFile

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return ScenarioFile.model_validate(data)
    except OSError as error:
        raise fail(f"{path}: cannot read the scenario: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"{path}: not valid TOML: {error}") from None
    except ValidationError as error:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        raise fail("\n".join(lines)) from None


@app.command()
def simulate(
    file: Annotated[Path, typer.Argument(help="Agreement file (.toml)")],
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario file (.toml) scripting decisions on dates")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Run the agreement's whole life through the real workflows on Temporal's time-skipping
    test server, with a real mail sink, and list every email actually sent."""
    import asyncio

    from simulate import simulate as run_simulation

    try:
        agreement = load_agreement(file)
    except AgreementFileError as error:
        raise fail(str(error)) from None
    script = load_scenario(scenario) if scenario is not None else None
    sent, snapshot = asyncio.run(run_simulation(agreement, script))
    data = {
        "agreement": agreement.id,
        "state": snapshot.state.value,
        "end": snapshot.end.isoformat(),
        "ending": snapshot.ending,
        "emails": [e.model_dump() for e in sent],
    }
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(header_style="bold")
    for column in ("Skickades", "Mall", "Till", "Ämne"):
        table.add_column(column)
    for e in sent:
        table.add_row(e.send_at[:16].replace("T", " "), e.template, e.to, e.subject)
    out.print(table)
    out.print(f"{len(sent)} e-post · {snapshot.state.value} · slut {snapshot.end}")
