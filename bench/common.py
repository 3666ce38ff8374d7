"""What the benchmarks share: the machine's description, a Temporal dev server on free
loopback ports, a worker's resident memory, and timing."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from config import Settings
from service.up import start_dev_server
from simulate import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


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


class Clock:
    """Wall time of a block: `with Clock() as c: ...; c.seconds`."""

    def __enter__(self) -> Clock:
        self.began = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.began
