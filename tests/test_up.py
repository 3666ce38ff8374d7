"""`agreements up` as a newcomer runs it: one command starts the Temporal dev server, the
worker and the mail sink; an agreement's first email lands in the sink; Ctrl-C stops
everything; running it again keeps the agreements."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from agreements.simulate import free_port
from agreements.up import dev_server_command
from emails.sink import read_mail
from models.config import Settings

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
    example = str(ROOT / "examples" / "planteringen.toml")
    with service(env, tmp_path):
        health = httpx.get(f"http://127.0.0.1:{env['AGREEMENTS_WEB_PORT']}/healthz", timeout=10)
        assert health.text == "ok"
        if Path("/proc/net/tcp").exists():  # Linux: what listens, and where
            for name, port in env.items():
                where = listening(int(port))
                assert where and where <= LOOPBACK, f"{name}: {port} listens on {where}"
        assert cli(env, tmp_path, "create", example).returncode == 0
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
        assert {m["X-Agreement-Template"] for m in first} == {"signature_request"}
    assert (tmp_path / "data" / "temporal.db").exists()
    with service(env, tmp_path):
        listed = cli(env, tmp_path, "show", "planteringen")
        assert listed.returncode == 0, listed.stderr
        assert "signing" in listed.stdout
