"""Backup and restore of the embedded default, as an operator does it: `agreements backup`
while the service runs with agreements mid-life, the service stopped, `agreements restore`
into a fresh data folder on other ports, and the service started there. The agreements go
on where they were: the same states, milestones, event log, outbox and planned emails; a
signature round finishes from a link emailed before the backup; a decision applies; no
email is sent twice across the two mail folders."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from agreements import ops
from emails.sink import read_mail
from models.config import Settings
from sealing.seal import SEAL_FILE, load_seal_key, verify
from tests.mail import signing_requests
from tests.test_browser import TOKEN, settings_here, terms
from tests.test_up import cli, service
from tests.test_web import under_way
from workflows.agreement import AgreementWorkflow
from workflows.decider import workflow_id

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The same on both machines, as in any restore: it signs the links already emailed.
SECRET = "backup-test-signing-secret-4f1d2a9c0b7e6d5c"
SIGNED, ROUND, DRAFT = "klart", "runda", "utkast"
TAKEN = "lund-radrum"  # taken on as signed, under way, an instalment invoiced
MARIA = "maria@kommun.example.se"

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], seconds: float = 30) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"waited {seconds} s for {what}")


def agreement_terms(agreement_id: str) -> str:
    return terms().replace('id = "webbavtal"', f'id = "{agreement_id}"', 1)


def state(api: httpx.Client, agreement_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/agreements/{agreement_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def until(api: httpx.Client, agreement_id: str, wanted: str) -> dict[str, Any]:
    return wait_for(
        f"{agreement_id} to be {wanted}",
        lambda: (s := state(api, agreement_id))["state"] == wanted and s,
    )


def links(mail: Path, agreement_id: str, count: int) -> dict[str, str]:
    """Signer -> the path of their personal link, once `count` requests are in the sink."""

    def found() -> dict[str, str] | None:
        paths = {
            signer: url[url.index("/sign/") :]
            for agreement, signer, url in signing_requests(mail)
            if agreement == agreement_id
        }
        return paths if len(paths) >= count else None

    return wait_for(f"{count} signing links of {agreement_id}", found)


def sign(api: httpx.Client, path: str) -> None:
    assert api.get(path).status_code == 200
    answer = api.post(path, data={"action": "sign"})
    assert answer.status_code == 200, answer.text


def record_of(api: httpx.Client, link: str) -> bytes | None:
    """The sealed signing record, downloaded from a signer's link (once there is one)."""
    answer = api.get(f"{link}/record")
    return answer.content if answer.status_code == 200 else None


def settings_of(env: dict[str, str], folder: Path) -> Settings:
    return Settings(data_dir=folder / "data", temporal_port=int(env["AGREEMENTS_TEMPORAL_PORT"]))


def workflow_view(config: Settings, agreement_ids: list[str]) -> dict[str, Any]:
    """What each agreement's workflow itself says (read through the payload codec): its
    timeline and its planned emails."""

    async def read() -> dict[str, Any]:
        client = await ops.connect(config)
        view = {}
        for agreement_id in agreement_ids:
            handle = client.get_workflow_handle(workflow_id(agreement_id))
            timeline = await handle.query(AgreementWorkflow.get_timeline)
            planned = await handle.query(AgreementWorkflow.get_planned_emails)
            view[agreement_id] = {
                "timeline": [m.model_dump(mode="json") for m in timeline],
                # `past` turns as time goes by; what is planned, when and to whom, does not
                "planned": [
                    (e.key, e.send_at.isoformat(), e.template, e.to.email) for e in planned
                ],
            }
        return view

    return asyncio.run(read())


def everything(api: httpx.Client, config: Settings, agreement_ids: list[str]) -> dict[str, Any]:
    """Each agreement as the service shows it (state, milestones, outbox, event log) and
    as its workflow plans it."""
    seen: dict[str, Any] = {}
    for agreement_id in agreement_ids:
        shown = state(api, agreement_id)
        milestones = api.get(f"/api/agreements/{agreement_id}/milestones").json()
        outbox = api.get(f"/api/agreements/{agreement_id}/outbox").json()
        seen[agreement_id] = {
            "state": shown,
            "milestones": milestones,
            "outbox": sorted((r["key"], r["status"], r["message_id"]) for r in outbox),
            "events": [(e.event_key, e.kind) for e in ops.events(config, agreement_id)],
        }
    for agreement_id, view in workflow_view(config, agreement_ids).items():
        seen[agreement_id].update(view)
    return seen


def quiet(config: Settings, agreement_ids: list[str], still: float = 2.0) -> None:
    """Until no agreement's event log or outbox has changed for `still` seconds and no
    email is in flight (tests/test_archive.py `quiet`, for several agreements)."""

    def now() -> list[Any]:
        return [
            (
                len(ops.events(config, a)),
                sorted((r.key, r.status) for r in ops.outbox(config, a)),
            )
            for a in agreement_ids
        ]

    deadline = time.monotonic() + 60
    seen, since = now(), time.monotonic()
    while time.monotonic() - since < still or any(
        status != "sent" for _, rows in seen for _, status in rows
    ):
        assert time.monotonic() < deadline, f"the agreements kept changing: {seen}"
        time.sleep(0.2)
        if (found := now()) != seen:
            seen, since = found, time.monotonic()


def message_ids(mail: Path) -> list[str]:
    return [str(m["Message-ID"]) for m in read_mail(mail)]


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli({**env, "AGREEMENTS_LANGUAGE": "en"}, cwd, *args)


def test_a_backup_taken_while_the_service_runs_restores_elsewhere_and_nothing_is_sent_twice(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    saved = tmp_path / "backup"
    old_env, old_base = settings_here(AGREEMENTS_SIGNING_SECRET=SECRET)
    old_mail = old / "data" / "mail"
    old_config = settings_of(old_env, old)
    ids = [SIGNED, ROUND, DRAFT, TAKEN]
    with service(old_env, old), httpx.Client(base_url=old_base, headers=AUTH, timeout=30) as api:
        missing = {}
        for agreement_id in (SIGNED, ROUND, DRAFT):  # the draft stays one
            created = api.post("/api/agreements", content=agreement_terms(agreement_id))
            assert created.status_code == 201, created.text
            missing[agreement_id] = {"keys": created.json()["prerequisites_missing"]}
        for agreement_id in (SIGNED, ROUND):
            path = f"/api/agreements/{agreement_id}/prerequisites"
            confirmed = api.post(path, json=missing[agreement_id])
            assert confirmed.status_code == 200, confirmed.text
            started = api.post(f"/api/agreements/{agreement_id}/signing")
            assert started.status_code == 200, started.text
        # Signed through the service: its signing requests, its completion emails with the
        # sealed record (the seal made then), all sent.
        for path in links(old_mail, SIGNED, 2).values():
            sign(api, path)
        until(api, SIGNED, "active")
        # A round under way: one of two has signed; the other's link is in the sink.
        round_links = links(old_mail, ROUND, 2)
        sign(api, round_links[MARIA])
        wait_for(
            "the first signature of the round",
            lambda: any(e.kind == "signature.signed" for e in ops.events(old_config, ROUND)),
        )
        # Taken on as signed, under way, its first instalment still to invoice: invoiced.
        text, signed_on = under_way(TAKEN)
        taken = api.post(f"/api/agreements?signed={signed_on}", content=text)
        assert taken.status_code == 201, taken.text
        until(api, TAKEN, "active")
        rows = wait_for(
            "the milestones", lambda: api.get(f"/api/agreements/{TAKEN}/milestones").json()
        )
        invoice = next(m for m in rows if m["kind"] == "invoice" and m["status"] == "to_invoice")
        marked = api.post(
            f"/api/agreements/{TAKEN}/milestones/{invoice['id']}",
            json={"status": "invoiced", "number": "F-1001"},
        )
        assert marked.status_code == 200, marked.text
        quiet(old_config, ids)
        # Every email the outbox says was sent is in the sink, once.
        sent_before = sum(r.status == "sent" for a in ids for r in ops.outbox(old_config, a))
        assert len(message_ids(old_mail)) == sent_before >= 6
        record = record_of(api, links(old_mail, SIGNED, 2)[MARIA])
        assert record is not None and record.startswith(b"%PDF")
        before = everything(api, old_config, ids)

        # The backup, while the service runs; a second into the same folder is refused.
        made = run(old_env, old, "backup", str(saved))
        assert made.returncode == 0, made.stdout + made.stderr
        assert "payload.key" in made.stdout and "temporal.db" in made.stdout
        again = run(old_env, old, "backup", str(saved))
        assert again.returncode == 1 and "not empty" in again.stderr
    sent_old = message_ids(old_mail)

    manifest = json.loads((saved / "manifest.json").read_text(encoding="utf-8"))
    files = manifest["files"]
    for name in ("temporal.db", "agreements.db", "payload.key", "seal.p12"):
        assert name in files, f"{name} is not in the backup: {sorted(files)}"
    assert any(name.startswith("documents/") for name in files)  # the sealed record
    assert files["temporal.db"]["copied_at"] <= files["agreements.db"]["copied_at"]
    assert saved.stat().st_mode & 0o777 == 0o700
    assert all((saved / name).stat().st_mode & 0o777 == 0o600 for name in files)

    # Restore refuses a backup whose file changed since (naming it) and a data folder that
    # is not empty, and writes nothing when it refuses.
    new_env, new_base = settings_here(AGREEMENTS_SIGNING_SECRET=SECRET)
    tampered = tmp_path / "tampered"
    shutil.copytree(saved, tampered)
    with (tampered / "payload.key").open("a", encoding="ascii") as key:
        key.write("\n")
    refused = run(new_env, new, "restore", str(tampered))
    assert refused.returncode == 1 and "payload.key" in refused.stderr, refused.stderr
    assert not (new / "data").exists()
    (new / "data").mkdir()
    (new / "data" / "notes.txt").write_text("someone's", encoding="utf-8")
    refused = run(new_env, new, "restore", str(saved))
    assert refused.returncode == 1 and "not empty" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (new / "data").iterdir()) == ["notes.txt"]
    (new / "data" / "notes.txt").unlink()

    restored = run(new_env, new, "restore", str(saved))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (new / "data").stat().st_mode & 0o777 == 0o700
    assert (new / "data" / "payload.key").stat().st_mode & 0o777 == 0o600

    new_mail = new / "data" / "mail"
    new_config = settings_of(new_env, new)
    with service(new_env, new), httpx.Client(base_url=new_base, headers=AUTH, timeout=30) as api:
        quiet(new_config, ids)
        after = everything(api, new_config, ids)
        for agreement_id in ids:
            assert after[agreement_id] == before[agreement_id], agreement_id
        assert message_ids(new_mail) == []  # nothing already sent went out again
        # The sealed record, from the restored documents, by a link emailed before.
        assert record_of(api, links(old_mail, SIGNED, 2)[MARIA]) == record

        # The round goes on: the second signer signs from the link emailed before the backup.
        saul = next(path for signer, path in round_links.items() if signer != MARIA)
        sign(api, saul)
        until(api, ROUND, "active")
        # Its record is sealed with the seal restored from the backup, not a new one.
        sealed = wait_for("the round's sealed record", lambda: record_of(api, saul))
        assert verify(sealed, load_seal_key(old / "data" / SEAL_FILE).certificate).valid
        # A decision applies: the invoiced instalment is paid.
        paid = api.post(
            f"/api/agreements/{TAKEN}/milestones/{invoice['id']}", json={"status": "paid"}
        )
        assert paid.status_code == 200, paid.text
        wait_for(  # in the read model a moment after the workflow answered
            "the instalment paid",
            lambda: any(
                m["id"] == invoice["id"] and m["status"] == "paid"
                for m in api.get(f"/api/agreements/{TAKEN}/milestones").json()
            ),
        )
        quiet(new_config, ids)
        outbox_after = {a: ops.outbox(new_config, a) for a in ids}

    # The round's completion went out after the restore, and nothing went out twice: no
    # Message-ID in both folders, nor twice in one, and each new email is a new outbox key.
    sent_new = message_ids(new_mail)
    assert sent_new, "the round's completion emails"
    assert not set(sent_old) & set(sent_new)
    twice = [mid for mid, n in Counter(sent_old + sent_new).items() if n > 1]
    assert twice == []
    keys_before = {key for a in ids for key, _, _ in before[a]["outbox"]}
    new_rows = [r for a in ids for r in outbox_after[a] if r.key not in keys_before]
    assert sorted(r.message_id for r in new_rows if r.status == "sent") == sorted(sent_new)
    assert all(r.agreement_id == ROUND for r in new_rows)
    seconds = time.monotonic() - began
    print(
        f"{len(ids)} agreements, {len(sent_old)} emails before the backup, "
        f"{len(sent_new)} after the restore, none twice; {len(files)} files; {seconds:.0f} s"
    )


def test_backup_of_a_production_deployment_points_to_its_own_tools(tmp_path: Path) -> None:
    """PostgreSQL or a Temporal cluster: their own backups; nothing is copied, exit 2."""
    for setting in (
        {"AGREEMENTS_DATABASE_URL": "postgresql://agreements:secret@db.example.se/agreements"},
        {"AGREEMENTS_TEMPORAL_ADDRESS": "temporal.example.se:7233"},
    ):
        answer = run(setting, tmp_path, "backup", str(tmp_path / "copy"))
        assert answer.returncode == 2, answer.stderr
        assert "docs/operations.md" in answer.stderr and "pg_dump" in answer.stderr
        assert "secret" not in answer.stderr  # the URL's password is not shown
        assert not (tmp_path / "copy").exists()


def test_a_backup_needs_the_service_data_to_be_there(tmp_path: Path) -> None:
    answer = run({}, tmp_path, "backup", str(tmp_path / "copy"))
    assert answer.returncode == 1 and "temporal.db is missing" in answer.stderr
    assert not (tmp_path / "copy").exists()
