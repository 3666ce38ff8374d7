"""`agreements up` as a newcomer runs it: one command starts the Temporal dev server, the
worker and the mail sink; an agreement's first email lands in the sink; Ctrl-C stops
everything; running it again keeps the agreements."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from agreements import ops
from agreements.cli import years_to_future
from agreements.simulate import free_port
from agreements.up import dev_server_command
from emails.sink import read_mail
from models.config import Settings
from models.loader import load_agreement, loads_agreement

ROOT = Path(__file__).resolve().parent.parent
AGREEMENTS = str(Path(sys.executable).parent / "agreements")


@contextmanager
def service(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    # The README's run command, as a newcomer types it (the .venv is already set up).
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "run"],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # after `check examples/*.toml`, the service
        lines.append(line)
        if "Stoppa med Ctrl-C" in line or not line:
            break
    assert any("Temporal Web UI" in line for line in lines), "".join(lines) + server_log(env, cwd)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, "".join(lines) + rest
        assert "Stoppad." in rest


def server_log(env: dict[str, str], cwd: Path) -> str:
    """The end of the dev server's log, for a failure's message."""
    log = cwd / env.get("AGREEMENTS_DATA_DIR", "data") / "temporal.log"
    if not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-20:]
    return "\ndata/temporal.log ends:\n" + "\n".join(tail)


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGREEMENTS, *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp{,6} write them) listening on a port."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1


async def raw_history(env: dict[str, str], workflow: str) -> bytes:
    """A workflow's history as the dev server keeps it, read without the service's codec."""
    from temporalio.client import Client

    client = await Client.connect(f"127.0.0.1:{env['AGREEMENTS_TEMPORAL_PORT']}")
    history = await client.get_workflow_handle(workflow).fetch_history()
    return b"".join(e.SerializeToString() for e in history.events)


def test_the_dev_server_is_told_to_listen_on_loopback_only(tmp_path: Path) -> None:
    command = dev_server_command(Settings(data_dir=tmp_path))
    for flag in ("--ip", "--ui-ip"):
        assert command[command.index(flag) + 1] == "127.0.0.1", command
    assert "0.0.0.0" not in command


def test_up_runs_the_service_and_keeps_agreements(tmp_path: Path) -> None:
    env = {
        "AGREEMENTS_TEMPORAL_PORT": str(free_port()),
        "AGREEMENTS_TEMPORAL_UI_PORT": str(free_port()),
        "AGREEMENTS_SMTP_PORT": str(free_port()),
        "AGREEMENTS_WEB_PORT": str(free_port()),
    }
    examples = ROOT / "examples"
    with service(env, tmp_path):
        health = httpx.get(f"http://127.0.0.1:{env['AGREEMENTS_WEB_PORT']}/healthz", timeout=10)
        assert health.text == "ok"
        # The data folder (database, mail, Temporal's history) is the service user's only.
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        # The embedded default seals what it stores in Temporal with a key of its own.
        key_file = tmp_path / "data" / "payload.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        if Path("/proc/net/tcp").exists():  # Linux: what listens, and where
            for name, port in env.items():
                where = listening(int(port))
                assert where and where <= LOOPBACK, f"{name}: {port} listens on {where}"
        # The README's quick start: the seed moved forward whole years, to sign today.
        shifted = cli(env, tmp_path, "shift", str(examples / "planteringen.toml"))
        assert shifted.returncode == 0, shifted.stderr
        (tmp_path / "data" / "planteringen.toml").write_text(shifted.stdout, encoding="utf-8")
        created = cli(env, tmp_path, "create", "data/planteringen.toml")
        assert created.returncode == 0, created.stderr
        assert "Läge: utkast" in created.stdout
        confirm = cli(
            env,
            tmp_path,
            "confirm",
            "planteringen",
            "no-market",
            "not-an-order",
            "budget-plan",
            "follow-up-plan",
        )
        assert confirm.returncode == 0, confirm.stderr
        started = cli(env, tmp_path, "sign-start", "planteringen")
        assert started.returncode == 0, started.stderr
        mail = tmp_path / "data" / "mail"
        for _ in range(100):
            if len(read_mail(mail)) >= 6:
                break
            time.sleep(0.1)
        first = read_mail(mail)
        assert len(first) == 6  # one signing link per signatory
        # Read straight from the dev server (no codec): sealed, no signer's address in clear.
        raw = asyncio.run(raw_history(env, "agreement-planteringen"))
        assert b"binary/encrypted" in raw and b"raddabarnen.example.se" not in raw
        assert first[0]["To"].encode() not in raw
        assert {m["X-Agreement-Template"] for m in first} == {"signature_request"}
        # One already under way: refused until it says when it was signed, then taken on
        # as signed, sending nothing for what is past; one whose term is over is refused.
        # The README takes INVA-SAM on as it is (signed 2024-04-26, running to 2027-04-30);
        # so that this test keeps working after that, it is then moved whole years to have
        # started within the past year.
        seed = examples / "helsingborg-inva-sam.toml"
        try:
            ops.taken_on(load_agreement(seed), dt.date(2024, 4, 26))
            years = 0
        except ops.OperationError:  # the seed's term is over
            yesterday = ops.stockholm_today() - dt.timedelta(days=1)
            years = years_to_future(load_agreement(seed).term.start, yesterday) - 1
        moved = cli(env, tmp_path, "shift", str(seed), "--years", str(years))
        inva_sam = tmp_path / "data" / "helsingborg-inva-sam.toml"
        inva_sam.write_text(moved.stdout, encoding="utf-8")
        signed = f"{2024 + years}-04-26"
        refused = cli(env, tmp_path, "create", str(inva_sam))
        assert refused.returncode == 1 and "--signed YYYY-MM-DD" in refused.stderr
        taken = cli(env, tmp_path, "create", str(inva_sam), "--signed", signed)
        assert taken.returncode == 0, taken.stderr
        assert f"Övertaget som undertecknat {signed}" in taken.stdout
        over = cli(env, tmp_path, "create", str(examples / "lund-radrum.toml"))
        assert over.returncode == 1 and "är slut" in over.stderr
        for _ in range(100):
            shown = cli(env, tmp_path, "show", "helsingborg-inva-sam")
            if "Läge: löper" in shown.stdout:
                break
            time.sleep(0.1)
        assert "Läge: löper" in shown.stdout, shown.stdout + shown.stderr
        assert "E-post: 0 skickade" in shown.stdout
        assert len(read_mail(mail)) == 6  # nothing more
        # Its terms as a file, read back to the same terms.
        exported = cli(env, tmp_path, "export", "helsingborg-inva-sam")
        assert exported.returncode == 0, exported.stderr
        assert loads_agreement(exported.stdout).id == "helsingborg-inva-sam"
        missing = cli(env, tmp_path, "export", "finns-inte")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert (tmp_path / "data" / "temporal.db").exists()
    with service(env, tmp_path):
        listed = cli(env, tmp_path, "show", "planteringen")
        assert listed.returncode == 0, listed.stderr
        assert "under signering" in listed.stdout
