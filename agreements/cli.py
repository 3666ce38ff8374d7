"""The `agreements` command line: check agreement files and preview what they will do."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emails.calendar import calendar
from emails.render import kronor, reference, render_subject
from i18n import N_, language_of, plural, text
from i18n.refusals import explain
from i18n.words import actor, role_word, word, word_for
from models.agreement import Agreement, Language, SigningMethod, SigningMode
from models.lifecycle import State
from models.loader import AgreementFileError, load_agreement, loads_agreement
from models.plan import EndingKind, MilestoneKind, MilestoneStatus, Plan, Scenario
from models.prerequisites import CHECKLIST
from models.schedule.dates import STOCKHOLM
from models.schedule.engine import plan

app = typer.Typer(
    help="Avtalstjänsten: avtalsfiler, planer och påminnelser. / Agreement lifecycle service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (files, CI logs) gets a wide table instead of rich's 80-column default.
out = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def language() -> str:
    """The language of tables and messages: AGREEMENTS_LANGUAGE (sv, the default, or en).
    Machine output (--json, CSV) is the same in every language."""
    return language_of(os.environ.get("AGREEMENTS_LANGUAGE") or "sv")


def _(message: str, /, **params: Any) -> str:
    """A message of the command line in its language (English message ids)."""
    return text(language(), message, **params)


def kind_word(kind: object) -> str:
    return word_for(language(), MilestoneKind, kind)


def _when(moment: dt.datetime) -> str:
    """A moment as people here read it: Stockholm time, with the zone (stored as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M %Z")


# The outbox's statuses (models/records.py OutboxRecord.status).
OUTBOX = {
    "pending": N_("waiting"),
    "sending": N_("being sent"),
    "sent": N_("sent"),
    "failed": N_("failed"),
}


def say_error(message: str) -> None:
    # Plain lines, never wrapped: one problem per line, easy to read and to grep.
    typer.echo(message, err=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    say_error(message)
    return typer.Exit(code)


def _load(file: Path) -> Agreement:
    """The agreement file, or exit 1 with every problem in it."""
    try:
        return load_agreement(file)
    except AgreementFileError as error:
        raise fail(error.said(language())) from None


def parse_now(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(STOCKHOLM)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(
            _(
                "--now: %(value)s is not an ISO date or date-time (e.g. 2026-11-24)",
                value=repr(value),
            )
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=STOCKHOLM)


def parse_day(option: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise fail(not_a_date(option, value)) from None


def not_a_date(option: str, value: str) -> str:
    return _(
        "%(option)s: %(value)s is not a date (YYYY-MM-DD)", option=option, value=repr(value[:40])
    )


def warnings(agreement: Agreement) -> list[str]:
    notes = []
    if not agreement.reference:
        notes.append(_("reference: no diarienummer; emails will name the agreement only"))
    if agreement.kind == "iop":
        missing = [key for key in CHECKLIST if not agreement.prerequisites.get(key)]
        if missing:
            notes.append(
                _(
                    "prerequisites: not yet confirmed before signing: %(keys)s",
                    keys=", ".join(missing),
                )
            )
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
            say_error(error.said(language()))
            continue
        typer.echo(_("%(path)s: ok (%(id)s)", path=path, id=agreement.id))
        for note in warnings(agreement):
            typer.echo(_("%(path)s: note: %(note)s", path=path, note=note))
    if bad:
        raise typer.Exit(1)


def _milestone_json(agreement: Agreement | None, m: Any) -> dict[str, Any]:
    data: dict[str, Any] = m.model_dump(mode="json", exclude_none=True)
    for role in ("payer", "payee", "party"):
        if agreement is not None and getattr(m, role):
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
        raise fail(
            _(
                "%(path)s: cannot write the %(what)s: %(error)s",
                path=path,
                what=what,
                error=error.strerror,
            )
        ) from None


def print_table(agreement: Agreement, data: dict[str, Any]) -> None:
    lang = language()
    ending = word_for(lang, EndingKind, data["ending"])
    ref = reference(agreement, language())
    out.print(f"[bold]{agreement.title}[/bold]{ref}", highlight=False)
    periods = plural(lang, "%(num)d period", "%(num)d periods", data["periods"])
    out.print(f"{data['start']} – {data['end']} · {periods} · {ending}", highlight=False)
    milestones = Table(show_lines=False, header_style="bold")
    for column in (_("Date"), _("Written"), _("Kind"), _("What"), _("Amount")):
        milestones.add_column(column)
    past = _("past")
    for m in data["milestones"]:
        written = "" if m["date"] == m["effective_date"] else m["date"]
        what = m["title"] + (f" [dim]({past})[/dim]" if m["past"] else "")
        milestones.add_row(
            m["effective_date"], written, kind_word(m["kind"]), what, kronor(m.get("amount"))
        )
    out.print(milestones)
    emails = Table(header_style="bold")
    for column in (_("Sent"), _("To"), _("Subject")):
        emails.add_column(column)
    for e in data["emails"]:
        sent = e["send_at"][:16].replace("T", " ")
        emails.add_row(sent, f"{e['to_name']} <{e['to']}>", e["subject"])
    out.print(emails)
    counts = (
        plural(lang, "%(num)d milestone", "%(num)d milestones", len(data["milestones"]))
        + ", "
        + plural(lang, "%(num)d email", "%(num)d emails", len(data["emails"]))
    )
    out.print(counts, highlight=False)


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
    agreement = _load(file)
    moment = parse_now(now)
    result = plan(agreement, moment, scenario=scenario)
    data = preview_json(agreement, result)
    if ics is not None:
        _write(ics, calendar(agreement, result.milestones, moment), _("calendar"))
    if csv_out is not None:
        _write(csv_out, finance_csv(agreement, result).encode("utf-8-sig"), _("CSV file"))
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    else:
        print_table(agreement, data)


_DATE = re.compile(r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")


def _code_and_comment(line: str) -> tuple[str, str]:
    """A TOML line split where its comment starts (a `#` outside a string)."""
    quote = None
    for index, char in enumerate(line):
        if quote is None and char == "#":
            return line[:index], line[index:]
        if char in "\"'" and quote in (None, char):
            quote = None if quote == char else char
    return line, ""


def shifted(text: str, years: int) -> str:
    """The agreement file's text with every date value moved `years` years (29 February to
    the 28th when it must). Comments and strings stay as written."""

    def move(match: re.Match[str]) -> str:
        year, month, day = (int(part) for part in match.groups())
        try:
            moved = dt.date(year + years, month, day)
        except ValueError:  # 29 February in a common year
            moved = dt.date(year + years, month, day - 1)
        return moved.isoformat()

    lines = []
    for line in text.splitlines(keepends=True):
        code, comment = _code_and_comment(line)
        lines.append(_DATE.sub(move, code) + comment)
    return "".join(lines)


def years_to_future(start: dt.date, today: dt.date | None = None) -> int:
    """The fewest whole years that move `start` after today (the Stockholm date)."""
    today = today or dt.datetime.now(STOCKHOLM).date()
    years = 0
    while _moved(start, years) <= today:
        years += 1
    return years


def _moved(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year
        return dt.date(day.year + years, 2, 28)


def future_text(text: str, years: int | None = None) -> str:
    """An agreement file's text with every date moved forward `years` years (by default
    the fewest that put its term's start after today), under a comment that says so; the
    text of an example that can be created and signed today. AgreementFileError when the
    text, or the moved text, is not a valid agreement."""
    agreement = loads_agreement(text)
    if years is None:
        years = years_to_future(agreement.term.start)
    result = shifted(text, years)
    moved = loads_agreement(result, source=f"moved {years} years")
    head = (
        f"# Every date moved {years} years (`agreements shift`): the term now runs\n"
        f"# {moved.term.start} – {moved.term.end}. The comments quote the original.\n"
    )
    return head + result


@app.command()
def shift(
    file: Annotated[Path, typer.Argument(help="Agreement file (.toml)")],
    years: Annotated[
        int | None,
        typer.Option(help="How many years (default: the fewest that put the start after today)"),
    ] = None,
) -> None:
    """Print the agreement file with every date moved forward whole years, so that its term
    has not started yet: a real example to create, confirm and sign today
    (`agreements shift examples/planteringen.toml > planteringen.toml`)."""
    _load(file)
    try:
        sys.stdout.write(future_text(file.read_text(encoding="utf-8"), years))
    except AgreementFileError as error:
        raise fail(f"{file}: {error.said(language())}") from None


def main() -> None:
    """The `agreements` command. Once a command that talked to Temporal is done, the process
    leaves without the interpreter's shutdown (`worker.leave`)."""
    try:
        app()
        code: int = 0
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    if "worker" in sys.modules:
        from worker import leave

        leave(code)
    sys.exit(code)


if __name__ == "__main__":
    main()


def load_scenario(path: Path) -> Any:
    """A scenario file (TOML): `[[steps]]` with `at`, `action` and what the action needs."""
    import tomllib

    from pydantic import ValidationError

    from agreements.simulate import ScenarioFile

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return ScenarioFile.model_validate(data)
    except OSError as error:
        raise fail(
            _("%(path)s: cannot read the scenario: %(error)s", path=path, error=error.strerror)
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise fail(_("%(path)s: not valid TOML: %(error)s", path=path, error=error)) from None
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
    taken_on: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="YYYY-MM-DD",
            help="Taken on this day, already signed (as `create --signed`): no signing "
            "round, no email for anything before it",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    metrics: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Write the metrics (Prometheus text) as a worker serves them after this life",
        ),
    ] = None,
) -> None:
    """Run the agreement's whole life through the real workflows on Temporal's time-skipping
    test server, with a real mail sink, and list every email actually sent. A scripted step
    the workflow refuses is listed with its reason, and the life goes on."""
    import asyncio

    from agreements.simulate import RefusedStep, ScenarioError, free_port, quiet_runtime
    from agreements.simulate import simulate as run_simulation

    address = f"127.0.0.1:{free_port()}" if metrics is not None else None
    if address is not None:
        quiet_runtime(address)  # the process's runtime, serving the metrics there

    agreement = _load(file)
    script = load_scenario(scenario) if scenario is not None else None
    day = parse_day("--from", taken_on)
    refused: list[RefusedStep] = []
    try:
        sent, snapshot = asyncio.run(
            run_simulation(agreement, script, refused=refused, taken_on_day=day)
        )
    except ScenarioError as error:
        raise fail(str(error)) from None
    if metrics is not None:
        import httpx

        scraped = httpx.get(f"http://{address}/metrics", timeout=10).content
        _write(metrics, scraped, "metrics")
    data = {
        "agreement": agreement.id,
        "from": day.isoformat() if day else None,
        "state": snapshot.state.value,
        "end": snapshot.end.isoformat(),
        "ending": snapshot.ending,
        "emails": [e.model_dump() for e in sent],
        "refused": [r.model_dump() for r in refused],
    }
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    lang = language()
    if day is not None:
        out.print(
            _("Taken on %(day)s as signed: nothing is sent for what came before.", day=day),
            highlight=False,
        )
    table = Table(header_style="bold")
    for column in (_("Sent"), _("Template"), _("To"), _("Subject")):
        table.add_column(column)
    for e in sent:
        table.add_row(e.send_at[:16].replace("T", " "), e.template, e.to, e.subject)
    out.print(table)
    if refused:
        steps = Table(title=_("Refused steps"), header_style="bold")
        for column in (_("When"), _("Step"), _("Reason")):
            steps.add_column(column)
        for r in refused:
            steps.add_row(r.at[:16].replace("T", " "), r.step, explain(lang, r))
        out.print(steps)
    parts = [
        plural(lang, "%(num)d email", "%(num)d emails", len(sent)),
        word(lang, snapshot.state),
        _("ends %(end)s", end=snapshot.end),
    ]
    if refused:
        parts.append(plural(lang, "%(num)d refused step", "%(num)d refused steps", len(refused)))
    out.print(" · ".join(parts), highlight=False)


# --- the running service ------------------------------------------------------------------


def _settings() -> Any:
    from models.config import settings

    return settings()


def _run(work: Any) -> Any:
    """Run one operation; a refusal or an unreachable server becomes a one-line error."""
    import asyncio

    from agreements.ops import OperationError

    try:
        return asyncio.run(work)
    except OperationError as error:
        raise fail(explain(language(), error)) from None


def _read(query: Any) -> Any:
    """Read the database; a database that cannot be read becomes a one-line error."""
    from agreements.ops import OperationError

    try:
        return query()
    except OperationError as error:
        raise fail(explain(language(), error)) from None


def _emit(data: Any, as_json: bool, table: Table | str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    elif table is not None:
        out.print(table)


def _snapshot_json(snapshot: Any) -> dict[str, Any]:
    data: dict[str, Any] = snapshot.model_dump(mode="json")
    return data


def _print_snapshot(snapshot: Any, ids: bool = False) -> None:
    lang = language()
    out.print(f"[bold]{snapshot.title}[/bold] ({snapshot.agreement_id})", highlight=False)
    ending = ""
    if snapshot.ending:
        ending = " · " + _("ending: %(how)s", how=word_for(lang, EndingKind, snapshot.ending))
    state = _("State: %(state)s", state=word(lang, snapshot.state))
    out.print(f"{state} · {snapshot.start} – {snapshot.end}{ending}", highlight=False)
    if snapshot.prerequisites_missing:
        out.print(_("Prerequisites to confirm:"), highlight=False)
        for key in snapshot.prerequisites_missing:
            item = CHECKLIST.get(key)
            said = text(lang, item.text) if item else key
            out.print(f"  {said} ({key})" if ids else f"  {said}", highlight=False)
    if snapshot.round is not None:
        r = snapshot.round
        out.print(
            _(
                "Signature round %(number)s (%(method)s, %(mode)s): %(outcome)s",
                number=r.number,
                method=word_for(lang, SigningMethod, r.method),
                mode=word_for(lang, SigningMode, r.mode),
                outcome=word(lang, r.outcome),
            ),
            highlight=False,
        )
        for s in r.signers:
            out.print(f"  {s.name} ({s.party_name}): {word(lang, s.status)}", highlight=False)


async def _with_client(work: Any) -> Any:
    from agreements.ops import connect

    client = await connect(_settings())
    return await work(client)


@app.command()
def up() -> None:
    """Run the whole service here: Temporal dev server, worker and mail sink (Ctrl-C stops)."""
    from agreements.up import up as run_up

    _run(run_up(_settings()))


@app.command()
def worker() -> None:
    """Run one worker against the configured Temporal and database (a deployment runs
    several; the database must be migrated first: `agreements migrate`)."""
    from agreements.up import up as run_up

    _run(run_up(_settings(), web=False))


@app.command()
def web() -> None:
    """Run the web server and API alone (AGREEMENTS_WEB_HOST, AGREEMENTS_WEB_PORT) against
    the configured Temporal and database."""
    from agreements.up import up as run_up

    _run(run_up(_settings(), worker=False))


@app.command()
def create(
    file: Annotated[Path, typer.Argument(help="Agreement file (.toml)")],
    signed: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="It is already signed, on this day: taken on as signed, nothing is sent for "
            "what is past (required once the term has started)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start the agreement as a draft to sign through the service, or, with --signed (or
    `signing.signed` in the file), as an agreement already signed and perhaps under way.
    An agreement whose term has started needs --signed; one whose term is over is refused."""
    from agreements import ops

    agreement = _load(file)
    day = parse_day("--signed", signed)
    flag = "--signed YYYY-MM-DD"
    _read(lambda: ops.taken_on(agreement, day, flag=flag))  # refused before connecting
    snapshot = _run(
        _with_client(lambda c: ops.create(c, _settings(), agreement, day, flag=flag, by=operator()))
    )
    _emit(_snapshot_json(snapshot), as_json)
    if not as_json:
        _print_snapshot(snapshot)
        if snapshot.signed_on is not None:
            out.print(
                _(
                    "Taken on as signed on %(day)s: nothing is sent for what has already"
                    " passed; the reminders start now.",
                    day=snapshot.signed_on,
                ),
                highlight=False,
            )


@app.command("export")
def export(agreement_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Print an agreement's current terms as an agreement file (TOML): `create` or `edit`
    reads it back to the same terms."""
    from agreements import ops
    from models.loader import dumps_agreement

    config = _settings()
    terms = _read(
        lambda: ops.stored_terms(config, ops.agreement(config, agreement_id).terms_sha256)
    )
    sys.stdout.write(dumps_agreement(terms))


@app.command("archive")
def archive_package(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    out: Annotated[Path, typer.Option("--out", help="Write the ZIP file here")],
) -> None:
    """Write the agreement's archive package: an E-ARK SIP (FGS Paketstruktur 2.0) as one
    ZIP with every version of the terms, the documents, the sealed signing records, the
    event log and the emails sent, described in METS and PREMIS."""
    from archive.sip import write_file

    config = _settings()
    now = dt.datetime.now(dt.UTC)
    try:
        objid = _read(lambda: write_file(config, agreement_id, out, now, 0o644))
    except OSError as error:
        raise fail(
            _(
                "%(path)s: cannot write the %(what)s: %(error)s",
                path=out,
                what=_("archive package"),
                error=error.strerror,
            )
        ) from None
    typer.echo(_("Archive package %(objid)s written to %(path)s", objid=objid, path=out))


@app.command("list")
def list_agreements(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every agreement with its state and next milestone."""
    from agreements import ops

    rows = _read(lambda: ops.agreements(_settings()))
    table = Table(header_style="bold")
    for column in (_("Id"), _("Agreement"), _("State"), _("Ends"), _("Next")):
        table.add_column(column)
    for r in rows:
        coming = f"{r.next_date} {r.next_title}" if r.next_date else ""
        state = word_for(language(), State, r.state)
        table.add_row(r.id, r.title, state, str(r.end), coming)
    _emit([r.model_dump(mode="json") for r in rows], as_json, table)


@app.command()
def show(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    every: Annotated[
        bool,
        typer.Option("--all", help="Every milestone, past ones too (default: the coming ones)"),
    ] = False,
    ids: Annotated[
        bool,
        typer.Option(
            "--ids",
            help="Also each milestone's id and each checklist item's key (what `agreements "
            "milestone` and `agreements confirm` take)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """State, parties' signatures, coming milestones (with their status) and sent emails of
    one agreement; `--ids` adds the ids the other commands take."""
    from agreements import ops

    async def read(c: Any) -> tuple[Any, Any]:
        snapshot = await ops.state(c, agreement_id)
        return snapshot, await ops.timeline(c, agreement_id) if every else None

    snapshot, timeline = _run(_with_client(read))
    sent = _read(lambda: ops.outbox(_settings(), agreement_id))
    if as_json:
        data = _snapshot_json(snapshot)
        if timeline is not None:
            data["timeline"] = [m.model_dump(mode="json") for m in timeline]
        data["emails"] = [r.model_dump(mode="json") for r in sent]
        _emit(data, True)
        return
    _print_snapshot(snapshot, ids)
    table = Table(title=_("Timeline") if every else _("Coming"), header_style="bold")
    columns = [_("Date"), _("Written"), _("Kind"), _("What"), _("Status")]
    for column in [*columns, _("Id")] if ids else columns:
        table.add_column(column)
    for m in snapshot.next if timeline is None else timeline:
        written = "" if m.date == m.effective_date else str(m.date)
        row = [str(m.effective_date), written, kind_word(m.kind), m.title, status_text(m)]
        table.add_row(*row, *([m.id] if ids else []))
    out.print(table)
    out.print(
        _(
            "Emails: %(sent)s sent, %(failed)s failed, %(waiting)s waiting",
            sent=sum(r.status == "sent" for r in sent),
            failed=sum(r.status == "failed" for r in sent),
            waiting=sum(r.status in ("pending", "sending") for r in sent),
        ),
        highlight=False,
    )


def status_text(m: Any) -> str:
    """A milestone's status in the command line's language, with when, by whom, an
    invoice's number and a note: "fakturerad 2026-05-04 via kommandoraden, fakturanr F-1"."""
    lang = language()
    status = getattr(m, "status", None)
    if status is None:
        return ""
    said = word_for(lang, MilestoneStatus, status)
    if m.status_on:
        said += f" {m.status_on}"
    if m.status_by and str(getattr(status, "value", status)) != "decided":
        said += " " + (actor(lang, m.status_by) or _("by %(name)s", name=m.status_by))
    if m.number:
        said += ", " + _("invoice number %(number)s", number=m.number)
    if m.note:
        label = {
            "postponed": N_("new due date %(note)s"),
            "returned": N_("missing: %(note)s"),
            "decided": N_("by %(note)s"),
        }.get(str(getattr(status, "value", status)))
        said += ", " + (text(lang, label, note=m.note) if label else m.note)
    return said


# A retried command with the same key applies once (service.ops.update_id_for).
IdempotencyKey = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Any printable ASCII up to 200 characters: running the command again with the "
        "same key answers as the first time and changes nothing",
    ),
]


def operator() -> str:
    """Who the event log names for a decision made here: the command line and the account
    that ran it (`cli:anna`), written by the command, not typed by the person."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return f"cli:{user}"[:200]


def stamped(request: Any) -> Any:
    """The request with the operator as who made it (a `--by` given for a milestone stays:
    it names the person whose decision the operator enters)."""
    for name in ("by", "recorded_by"):
        if name in type(request).model_fields and getattr(request, name) in (None, "coordinator"):
            return request.model_copy(update={name: operator()})
    return request


def _decision(
    agreement_id: str, update: str, request: Any, as_json: bool, key: str | None = None
) -> None:
    from agreements import ops

    request = stamped(request)
    update_id = None
    if key is not None:
        try:
            update_id = ops.update_id_for(update, key)
        except ops.OperationError as error:
            if "field" in error.params:
                error.params["field"] = "--idempotency-key"
            raise fail(explain(language(), error)) from None
    snapshot = _run(
        _with_client(
            lambda c: ops.decide(
                c, agreement_id, update, request, config=_settings(), update_id=update_id
            )
        )
    )
    if as_json:
        _emit(_snapshot_json(snapshot), True)
    else:
        _print_snapshot(snapshot)


@app.command()
def confirm(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    keys: Annotated[list[str], typer.Argument(help="Checklist keys, e.g. no-market trust")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Confirm IOP prerequisites of a draft (the checklist from the guidelines)."""
    from workflows.agreement import ConfirmPrerequisites

    request = ConfirmPrerequisites(keys=keys)
    _decision(agreement_id, "confirm_prerequisites", request, as_json, idempotency_key)


@app.command()
def edit(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="The draft's new agreement file (same id)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Replace a draft's terms with a new agreement file (before signing starts)."""
    from workflows.agreement import EditDraft

    agreement = _load(file)
    _decision(agreement_id, "edit_draft", EditDraft(agreement=agreement), as_json, idempotency_key)


@app.command("sign-start")
def sign_start(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Start (or restart) the signature round: every signer gets a personal link."""
    from workflows.agreement import StartSigning

    _decision(agreement_id, "start_signing", StartSigning(), as_json, idempotency_key)


@app.command("sign-cancel")
def sign_cancel(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why; everyone involved is told")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Cancel the running signature round."""
    from pydantic import ValidationError

    from agreements import ops
    from workflows.signing import MAX_REASON, CancelRequest

    try:
        request = CancelRequest(reason=reason, by=operator())
    except ValidationError:
        raise fail(
            _("--reason: say why, in at most %(most)s characters", most=MAX_REASON)
        ) from None
    answer = _run(
        _with_client(
            lambda c: ops.round_action(c, agreement_id, "cancel", request, config=_settings())
        )
    )
    _emit(answer.model_dump(mode="json"), as_json)
    if not as_json:
        out.print(
            _(
                "Signature round %(number)s is being cancelled: %(reason)s",
                number=answer.number,
                reason=reason,
            ),
            highlight=False,
        )


@app.command("sign-paper")
def sign_paper(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    signer: Annotated[str, typer.Option(help="The signer's email")],
    date: Annotated[str, typer.Option(help="The date on the paper (YYYY-MM-DD)")],
    scan: Annotated[
        Path | None, typer.Option(help="The scanned signed copy (PDF): kept, its hash recorded")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record a signature made on paper, with its scanned signed copy."""
    from agreements import ops
    from documents.check import DocumentRefused
    from models.agreement import DocumentKind
    from workflows.signing import PaperSignature

    try:
        signed_on = dt.date.fromisoformat(date)
    except ValueError:
        raise fail(not_a_date("--date", date)) from None
    kept = None
    if scan is not None:
        try:
            data = scan.read_bytes()
        except OSError as error:
            raise fail(
                _("%(path)s: cannot read: %(error)s", path=scan, error=error.strerror)
            ) from None
        try:
            kept = ops.take_document(_settings(), data, scan.stem[:200], DocumentKind.attachment)
        except DocumentRefused as error:
            raise fail(error.said(language())) from None
    try:
        request = PaperSignature(
            signer=signer,
            signed_on=signed_on,
            recorded_by=operator(),
            scan_sha256=kept.sha256 if kept else None,
            scan_name=kept.name if kept else None,
        )
    except ValueError:
        raise fail(
            _("--signer: %(value)s is not a signer's email", value=repr(signer[:80]))
        ) from None

    async def record(c: Any) -> tuple[Any, Any]:
        answer = await ops.round_action(c, agreement_id, "sign_paper", request, config=_settings())
        return answer, None if as_json else await ops.current_round(c, agreement_id)

    answer, info = _run(_with_client(record))
    _emit(answer.model_dump(mode="json"), as_json)
    if not as_json and info is not None:
        for s in info.signers:
            dated = f" ({s.signed_on})" if s.signed_on else ""
            status = word(language(), s.status)
            out.print(f"  {s.name} ({s.party_name}): {status}{dated}", highlight=False)


@app.command()
def report(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    report_key: Annotated[str, typer.Option("--report", help="The report's key")],
    period: Annotated[int, typer.Option(help="Which one: 1 for the first")],
    postpone_to: Annotated[
        str | None, typer.Option(help="Grant a new due date instead (YYYY-MM-DD)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Record a report as submitted (today), or postpone it."""
    from workflows.agreement import ReportDecision

    new_due = None
    if postpone_to is not None:
        try:
            new_due = dt.date.fromisoformat(postpone_to)
        except ValueError:
            raise fail(not_a_date("--postpone-to", postpone_to)) from None
    request = ReportDecision(report=report_key, occurrence=period, new_due=new_due)
    _decision(agreement_id, "record_report", request, as_json, idempotency_key)


@app.command()
def milestone(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    milestone_id: Annotated[
        str,
        typer.Argument(
            metavar="MILESTONE", help="The milestone's id, e.g. invoice:kommun:forening:1:1"
        ),
    ],
    status: Annotated[
        str, typer.Argument(metavar="STATUS", help="invoiced, paid, held, approved or returned")
    ],
    on: Annotated[
        str | None, typer.Option(help="The day it happened (YYYY-MM-DD; default today)")
    ] = None,
    number: Annotated[
        str | None, typer.Option(help="The invoice's number (required for invoiced)")
    ] = None,
    note: Annotated[
        str | None, typer.Option(help="What is missing (required for returned)")
    ] = None,
    by: Annotated[str, typer.Option(help="Who records it")] = "coordinator",
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Record a milestone's status: an instalment invoiced (--number) or paid, a meeting
    held, a received report approved or returned for completion (--note). The ids are in
    `agreements show ID --all` and on the agreement's page."""
    from pydantic import ValidationError

    from models.plan import SETTABLE, MilestoneStatus
    from workflows.agreement import MilestoneUpdate

    allowed = list(dict.fromkeys(s.value for kind in SETTABLE.values() for s in kind))
    if status not in allowed:
        raise fail(
            _(
                "status: %(value)s is not one of %(allowed)s",
                value=repr(status[:40]),
                allowed=", ".join(allowed),
            )
        )
    day = None
    if on is not None:
        try:
            day = dt.date.fromisoformat(on)
        except ValueError:
            raise fail(not_a_date("--on", on)) from None
    try:
        request = MilestoneUpdate(
            milestone=milestone_id,
            status=MilestoneStatus(status),
            on=day,
            number=number,
            note=note,
            by=by,
        )
    except ValidationError as error:
        names = {"milestone": "MILESTONE", "by": "--by", "number": "--number", "note": "--note"}
        problems = [
            f"{names.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else ''}: {e['msg']}"
            for e in error.errors()
        ]
        raise fail("\n".join(problems)) from None
    _decision(agreement_id, "record_milestone", request, as_json, idempotency_key)
    if not as_json:
        out.print(f"{milestone_id}: {status_text(_recorded(request))}", highlight=False)


def _recorded(request: Any) -> Any:
    """The status just recorded, shaped like a milestone's for `status_text`."""
    from types import SimpleNamespace

    return SimpleNamespace(
        status=request.status,
        status_on=request.on or dt.datetime.now(STOCKHOLM).date(),
        status_by=request.by,
        number=request.number,
        note=request.note,
    )


@app.command()
def decide(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    decision: Annotated[str, typer.Argument(help="renew, notice or approve")],
    party: Annotated[str, typer.Option(help="The party's key")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Record a party's renewal decision: notice of non-renewal, or approval of an extension."""
    from workflows.agreement import RenewalRequest

    if decision not in ("renew", "notice", "approve"):
        raise fail(
            _(
                "decision: %(value)s is not one of %(allowed)s",
                value=repr(decision),
                allowed="renew, notice, approve",
            )
        )
    request = RenewalRequest(party=party, renew=decision != "notice")
    _decision(agreement_id, "decide_renewal", request, as_json, idempotency_key)


@app.command()
def amend(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="The amended agreement file")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Propose an amendment: it runs its own signature round, then re-plans every date."""
    from workflows.agreement import Amendment

    agreement = _load(file)
    _decision(agreement_id, "amend", Amendment(agreement=agreement), as_json, idempotency_key)


@app.command()
def terminate(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why; every party is told")],
    notice: Annotated[str | None, typer.Option(help="Party giving notice")] = None,
    withdraw: Annotated[str | None, typer.Option(help="Party withdrawing")] = None,
    rescind: Annotated[str | None, typer.Option(help="Party rescinding (hävning)")] = None,
    repayment: Annotated[int | None, typer.Option(help="Repayment claimed, kronor")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """End the agreement: termination with notice, a party's withdrawal, or rescission."""
    from models.plan import EndingKind
    from workflows.agreement import TerminationRequest

    chosen = [
        (k, p)
        for k, p in (
            (EndingKind.termination, notice),
            (EndingKind.withdrawal, withdraw),
            (EndingKind.rescission, rescind),
        )
        if p is not None
    ]
    if len(chosen) != 1:
        raise fail(_("give exactly one of %(options)s", options="--notice, --withdraw, --rescind"))
    kind, party = chosen[0]
    request = TerminationRequest(kind=kind, party=party, reason=reason, repayment=repayment)
    _decision(agreement_id, "terminate", request, as_json, idempotency_key)


@app.command()
def withdrawal(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    end_all: Annotated[
        bool, typer.Option("--end-all", help="The remaining parties end the whole agreement")
    ] = False,
    go_on: Annotated[
        bool, typer.Option("--continue", help="The remaining parties go on without the party")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """The remaining parties' decision after a party's withdrawal (terminate --withdraw)."""
    from workflows.agreement import WithdrawalOutcome

    if end_all == go_on:
        raise fail(_("give exactly one of %(options)s", options="--end-all, --continue"))
    request = WithdrawalOutcome(end_all=end_all)
    _decision(agreement_id, "withdrawal_outcome", request, as_json, idempotency_key)


@app.command()
def outbox(
    agreement_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What was sent, what failed and what is waiting to be sent."""
    from agreements import ops

    rows = _read(lambda: ops.outbox(_settings(), agreement_id))
    table = Table(header_style="bold")
    for column in (_("Created"), _("Status"), _("To"), _("Subject"), _("Error")):
        table.add_column(column)
    for r in rows:
        status = OUTBOX.get(r.status)
        table.add_row(
            _when(r.created_at),
            text(language(), status) if status else r.status,
            r.recipient,
            r.subject,
            r.error or "",
        )
    _emit([r.model_dump(mode="json") for r in rows], as_json, table)


@app.command()
def upcoming(
    days: Annotated[int, typer.Option(help="How far ahead")] = 30,
    role: Annotated[
        str | None, typer.Option(help="finance (invoicing), coordinator (all) or contact")
    ] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV on standard output")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Coming milestones across every running agreement."""
    from agreements import ops

    role_name = role or "coordinator"
    try:
        rows = _read(lambda: ops.upcoming_all(_settings(), days, role_name))
    except ops.OperationError as error:  # an unknown role
        raise fail(explain(language(), error)) from None
    data = [
        {"agreement": r.id, "title": r.title, "reference": r.reference, **_milestone_json(None, m)}
        for r, m in rows
    ]
    if csv_out:
        terms = _read(lambda: ops.terms_of(_settings(), rows))
        sys.stdout.write(ops.upcoming_csv(language(), rows, terms))
        return
    table = Table(header_style="bold")
    for column in (_("Date"), _("Agreement"), _("Kind"), _("What"), _("Amount"), _("Status")):
        table.add_column(column)
    for d, (__, m) in zip(data, rows, strict=True):
        table.add_row(
            d["effective_date"],
            d["agreement"],
            kind_word(d["kind"]),
            d["title"],
            kronor(d.get("amount")),
            status_text(m),
        )
    _emit(data, as_json, table)


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema (agreements up does this by itself)."""
    from models.db import migrate as run_migrations
    from models.db import shown

    config = _settings()
    run_migrations(config.db_url())
    out.print(_("The database is up to date: %(url)s", url=shown(config.db_url())), highlight=False)


# --- backup and restore (the embedded default; docs/operations.md) ---------------------------


def _size(count: int) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count} {unit}"
        count //= 1000
    return f"{count} GB"


def _backup_refused(error: Any) -> typer.Exit:
    """A refused backup or restore (agreements.backup.BackupError), in the reader's words."""
    return fail(_(error.message, **error.params), error.code)


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder for the backup")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Copy the embedded default's data while the service runs: Temporal's database, then
    the service's (SQLite's online backup), the documents, the payload key and the seal,
    with a manifest of each file's SHA-256. PostgreSQL and a Temporal cluster are backed
    up with their own tools (docs/operations.md)."""
    from agreements.backup import BackupError
    from agreements.backup import backup as run_backup

    try:
        manifest = run_backup(_settings(), dest)
    except BackupError as error:
        raise _backup_refused(error) from None
    except OSError as error:
        raise fail(
            _(
                "%(path)s: cannot write the %(what)s: %(error)s",
                path=dest,
                what=_("backup"),
                error=error.strerror,
            )
        ) from None
    if as_json:
        _emit({"path": str(dest.resolve()), **manifest.as_json()}, True)
        return
    files = manifest.files
    typer.echo(
        _(
            "Backup written to %(path)s: %(files)d files, %(size)s, schema %(schema)s.",
            path=dest.resolve(),
            files=len(files),
            size=_size(sum(f["size"] for f in files.values())),
            schema=manifest.schema or "?",
        )
    )
    documents = [name for name in files if name.startswith("documents/")]
    notes = {
        "temporal.db": _("Temporal's database: the agreements' workflows and timers"),
        "agreements.db": _("the service's database: terms, events, outbox, people"),
        "payload.key": _("the key to Temporal's histories: without it they cannot be read"),
        "seal.p12": _("the seal of the signing records"),
    }
    for name, note in notes.items():
        if name in files:
            typer.echo(f"  {name:<14} {_size(files[name]['size']):>8}  {note}")
    if documents:
        typer.echo("  " + _("documents: %(count)d files", count=len(documents)))
    if manifest.payload_keys == "settings":
        typer.echo(
            _(
                "The payload keys are AGREEMENTS_PAYLOAD_KEYS, not in the backup: keep them in"
                " the secret store, without them the backup cannot be read."
            )
        )
    typer.echo(
        _(
            "It holds personal data and the keys: keep it on another machine, readable by the"
            " service's operators only (docs/operations.md)."
        )
    )


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="A folder written by agreements backup")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Put a backup into the configured data folder (AGREEMENTS_DATA_DIR), which must be
    empty or absent; every file is checked against the manifest's SHA-256 first."""
    from agreements.backup import BackupError
    from agreements.backup import restore as run_restore
    from models.db import head

    config = _settings()
    try:
        manifest = run_restore(config, src)
    except BackupError as error:
        raise _backup_refused(error) from None
    except OSError as error:
        raise fail(
            _(
                "%(path)s: cannot write the %(what)s: %(error)s",
                path=config.data_dir,
                what=_("data folder"),
                error=error.strerror,
            )
        ) from None
    if as_json:
        _emit({"path": str(config.data_dir.resolve()), **manifest}, True)
        return
    typer.echo(
        _(
            "Restored %(files)d files made %(made)s into %(path)s; each matches the manifest's"
            " SHA-256.",
            files=len(manifest["files"]),
            made=manifest["made_at"],
            path=config.data_dir.resolve(),
        )
    )
    if manifest.get("schema") != head():
        typer.echo(
            _(
                "Its database is at schema %(schema)s: agreements up brings it to %(head)s.",
                schema=manifest.get("schema"),
                head=head(),
            )
        )
    typer.echo(
        _(
            "Start the service on it (agreements up) with the same AGREEMENTS_SIGNING_SECRET"
            " (and AGREEMENTS_PAYLOAD_KEYS if set), so that the links already emailed work."
        )
    )


# --- people -----------------------------------------------------------------------------------

people_app = typer.Typer(
    help="Organisationer, personer och roller. / Organisations, people and their roles.",
    no_args_is_help=True,
)
app.add_typer(people_app, name="people")


def _people_db() -> Any:
    from agreements import ops

    return _read(lambda: ops.database(_settings()))


def _people(work: Any) -> Any:
    """A people command; what cannot be done is one line in the reader's language."""
    from agreements.access import AccessError

    try:
        return work(_people_db())
    except AccessError as error:
        raise fail(explain(language(), error)) from None


@people_app.command("org")
def people_org(
    organisation_id: Annotated[str, typer.Argument(metavar="ID", help="e.g. kultur")],
    name: Annotated[str, typer.Argument(help="e.g. Kultur- och fritidsnämnden")],
) -> None:
    """Add an organisation (a committee or an administration), or rename it."""
    from agreements import access

    _people(lambda db: access.add_organisation(db, organisation_id, name))
    out.print(f"{organisation_id}: {name}", highlight=False)


@people_app.command("grant")
def people_grant(
    email: Annotated[str, typer.Argument(help="The address the person's account has")],
    organisation_id: Annotated[str, typer.Argument(metavar="ORGANISATION")],
    role: Annotated[str, typer.Argument(help="administrator, coordinator, finance or reader")],
    name: Annotated[str | None, typer.Option(help="The person's name")] = None,
    email_language: Annotated[
        Language | None,
        typer.Option(
            "--language", help="sv or en: the language of the person's weekly digest (sv)"
        ),
    ] = None,
) -> None:
    """Give a person a role in an organisation (adds the person when new); their first
    sign-in through the identity provider binds their account to them."""
    from agreements import access

    if role not in access.PersonRole.__members__:
        raise fail(
            _(
                "role: %(value)s is not one of %(allowed)s",
                value=repr(role[:40]),
                allowed=", ".join(access.PersonRole.__members__),
            )
        )
    by = operator()
    _people(
        lambda db: access.grant(
            db,
            email,
            organisation_id,
            access.PersonRole(role),
            name=name,
            by=by,
            language=email_language.value if email_language else None,
        )
    )
    out.print(f"{email.strip().lower()}: {role_word(language(), role)} ({organisation_id})")


@people_app.command("remove")
def people_remove(
    email: str, organisation_id: Annotated[str, typer.Argument(metavar="ORGANISATION")]
) -> None:
    """Take a person out of an organisation."""
    from agreements import access

    _people(lambda db: access.remove(db, email, organisation_id))


@people_app.command("deactivate")
def people_deactivate(email: str) -> None:
    """A person who has left: no sign-in, every session ended, every token revoked."""
    from agreements import access

    ended = _people(lambda db: access.deactivate(db, email))
    out.print(
        _("%(email)s deactivated (%(count)s sessions and tokens ended)", email=email, count=ended)
    )


@people_app.command("list")
def people_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Everyone with their roles."""
    from agreements import access

    rows = _people(access.people)
    table = Table(header_style="bold")
    for column in (_("Email"), _("Name"), _("Roles"), _("Last signed in")):
        table.add_column(column)
    data = []
    for person, memberships in rows:
        roles = ", ".join(
            f"{m.organisation_id}: {role_word(language(), m.role)}" for m in memberships
        )
        last = _when(person.last_sign_in_at) if person.last_sign_in_at else ""
        table.add_row(person.email, person.name or "", roles, last)
        data.append(
            {
                "email": person.email,
                "name": person.name,
                "active": person.active,
                "roles": {m.organisation_id: m.role for m in memberships},
                "last_sign_in_at": last or None,
            }
        )
    _emit(data, as_json, table)


@people_app.command("assign")
def people_assign(
    agreement_id: Annotated[str, typer.Argument(metavar="AGREEMENT")],
    organisation_id: Annotated[str, typer.Argument(metavar="ORGANISATION")],
) -> None:
    """Make an agreement an organisation's (one made before organisations existed, or
    moved to another administration): its people see it and decide on it."""
    from agreements import access, ops

    _read(lambda: ops.agreement(_settings(), agreement_id))
    by = operator()
    _people(lambda db: access.assign(db, agreement_id, organisation_id, by))
    out.print(f"{agreement_id}: {organisation_id}", highlight=False)


document_app = typer.Typer(
    help="Avtalets dokument (PDF). / The agreement's documents (PDF).", no_args_is_help=True
)
app.add_typer(document_app, name="document")


@document_app.command("add")
def document_add(
    agreement_id: Annotated[str, typer.Argument(metavar="ID")],
    file: Annotated[Path, typer.Argument(help="A PDF: the agreement text or an attachment")],
    kind: Annotated[str, typer.Option(help="text (the agreement text) or attachment")] = (
        "attachment"
    ),
    name: Annotated[str | None, typer.Option(help="Its name (default: the file's)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Add a document to a draft: checked (a PDF that opens, not encrypted), kept by its
    SHA-256, and named in the terms, so the signers sign it with them."""
    from agreements import ops
    from documents.check import DocumentRefused
    from models.agreement import DocumentKind

    if kind not in DocumentKind.__members__:
        raise fail(_("--kind: %(value)s is not text or attachment", value=kind))
    try:
        data = file.read_bytes()
    except OSError as error:
        raise fail(_("%(path)s: cannot read: %(error)s", path=file, error=error.strerror)) from None
    title = (name or file.stem).strip()[:200]
    try:
        document = ops.take_document(_settings(), data, title, DocumentKind(kind))
    except DocumentRefused as error:
        raise fail(error.said(language())) from None
    update_id = None
    if idempotency_key is not None:
        try:
            update_id = ops.update_id_for("add_document", idempotency_key)
        except ops.OperationError as error:
            raise fail(explain(language(), error)) from None
    snapshot = _run(
        _with_client(
            lambda c: ops.add_document(
                c, _settings(), agreement_id, document, operator(), update_id
            )
        )
    )
    if as_json:
        _emit(_snapshot_json(snapshot), True)
    else:
        typer.echo(f"{document.name}: SHA-256 {document.sha256}")
        _print_snapshot(snapshot)


@app.command("finance")
def finance_export(
    start: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD)")],
    end: Annotated[str, typer.Option("--to", help="Last day (YYYY-MM-DD)")],
    organisation: Annotated[
        str | None, typer.Option(help="Only this organisation's agreements (its id)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of CSV")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write to this file")] = None,
) -> None:
    """Every instalment of a period with its status, payer and payee by name and
    organisation number, amount and invoice number: CSV as Swedish Excel opens it, or JSON."""
    from agreements import access, finance, ops

    try:
        first = dt.date.fromisoformat(start)
    except ValueError:
        raise fail(not_a_date("--from", start)) from None
    try:
        last = dt.date.fromisoformat(end)
    except ValueError:
        raise fail(not_a_date("--to", end)) from None
    config = _settings()
    try:
        items = _read(lambda: ops.instalments_between(config, first, last))
    except ops.OperationError as error:
        raise fail(explain(language(), error)) from None
    if organisation:
        owned = _read(lambda: access.owners(_people_db()))
        items = [r for r in items if owned.get(r[0].id) == organisation]
    found = finance.rows(items, _read(lambda: ops.terms_of(config, items)))
    data = finance.as_json(found) if as_json else finance.as_csv(found, language())
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        _write(out, data, _("file"))
