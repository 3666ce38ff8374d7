"""What the benchmarks (and the reliability tests) share: the machine's description, a
Temporal dev server on free loopback ports, a worker's resident memory, timing, and
agreements whose emails fall due within seconds on the real clock.

Those agreements start with a clock offset (the workflow input's `clock_offset_seconds`,
zero in production) that puts their "now" just before one of their own send times, so
real timers fire while the benchmark or test watches."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from temporalio.client import Client

from agreements.simulate import free_port
from agreements.up import start_dev_server
from models.agreement import Agreement
from models.config import Settings
from models.loader import load_agreement
from workflows.agreement import AgreementInput, AgreementWorkflow, workflow_id

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
SIGNED = ROOT / "examples" / "lund-radrum.toml"


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": str(round(meminfo("MemTotal") / 1024 / 1024, 1)),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "os": platform.platform(),
    }


def meminfo(field: str) -> int:
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@contextmanager
def dev_server(folder: Path) -> Iterator[str]:
    """The real Temporal dev server (not time-skipping) on free loopback ports."""
    config = Settings(data_dir=folder, temporal_port=free_port(), temporal_ui_port=free_port())
    server = start_dev_server(config, folder / "temporal.log")
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", config.temporal_port)) == 0:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the Temporal dev server did not start")
            time.sleep(0.1)
        time.sleep(0.5)
        yield config.temporal_target()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def agreement_copy(number: int, template: Agreement | None = None) -> Agreement:
    """The example under another id, imported as signed on its planned signing day."""
    base = template or load_agreement(SIGNED)
    signing = base.signing.model_copy(update={"signed": base.signing.planned})
    return base.model_copy(update={"id": f"{base.id}-{number:02d}", "signing": signing})


def instants(agreement: Agreement) -> list[dt.datetime]:
    """The agreement's planned send times, each with at least two emails, in order."""
    from models.plan import Scenario
    from models.schedule.engine import plan

    promised = plan(agreement, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), scenario=Scenario.plan)
    counts = Counter(e.send_at for e in promised.emails)
    begin = dt.datetime.combine(agreement.term.start, dt.time(), tzinfo=dt.UTC)
    return sorted(t for t, n in counts.items() if n >= 2 and t > begin)


async def start_due_soon(
    client: Client,
    agreement: Agreement,
    instant: dt.datetime,
    lead_seconds: float,
    task_queue: str = "agreements",
) -> None:
    """Start the agreement with its clock `lead_seconds` before `instant`."""
    now = dt.datetime.now(dt.UTC)
    offset = (instant - dt.timedelta(seconds=lead_seconds) - now).total_seconds()
    await client.start_workflow(
        AgreementWorkflow.run,
        AgreementInput(agreement=agreement, clock_offset_seconds=offset, handed_over_at=now),
        id=workflow_id(agreement.id),
        task_queue=task_queue,
    )


class Clock:
    """Wall time of a block: `with Clock() as c: ...; c.seconds`."""

    def __enter__(self) -> Clock:
        self.began = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.began
