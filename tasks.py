"""Set up and run the project with nothing but Python 3.11: `python3.11 tasks.py run|test`.

`python3.11 tasks.py i18n` extracts new messages into the catalogs (i18n/) and compiles them.

Creates `.venv` when it is missing, installs the project into it (again whenever
pyproject.toml changes), then runs the service or the whole test suite.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def sh(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=ROOT)
    if result.returncode:
        sys.exit(result.returncode)


def install() -> None:
    if not (BIN / "python").exists():
        print(f"Creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(digest)


# The catalog (i18n/): where messages are looked for, and the Babel steps that keep it.
I18N = ROOT / "i18n"
KEYWORDS = ("text:2", "plural:2,3", "N_")


def compile_catalogs() -> None:
    """Compile the .po catalogs into .mo files (build output, not kept in git)."""
    sh(BIN / "pybabel", "compile", "--statistics", "-d", I18N, "-D", "messages")


def i18n() -> None:
    """Extract every message from the sources, merge new and changed ones into the Swedish
    and English catalogs (to be translated there), and compile them."""
    keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
    sh(BIN / "pybabel", "--quiet", "extract", "--no-location", "--sort-output", "--omit-header",
       "--ignore-dirs", ".* ._ .venv build tests bench data", "-F", I18N / "babel.cfg",
       *keywords, "-o", I18N / "messages.pot", ".")  # fmt: skip
    sh(BIN / "pybabel", "--quiet", "update", "--no-fuzzy-matching", "--ignore-obsolete",
       "-i", I18N / "messages.pot", "-d", I18N, "-D", "messages")  # fmt: skip
    compile_catalogs()


def run() -> None:
    compile_catalogs()
    # The whole service on its embedded default: Temporal dev server, worker, mail sink.
    sh(BIN / "agreements", "check", *sorted((ROOT / "examples").glob("*.toml")))
    os.execv(BIN / "agreements", [str(BIN / "agreements"), "up"])


def apt_install(package: str, command: str, why: str) -> None:
    """Install a Debian package the tests need when its command is missing and this is root
    on a Debian machine (CI is); elsewhere the tests that need it say why they skip."""
    if shutil.which(command) or not shutil.which("apt-get"):
        return
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        print(f"{package} is missing and this is not root: {why} will say so")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> int:
        return subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, env=env).returncode

    print(f"+ apt-get install {package} (for {why})", flush=True)
    if apt("install", "-y", "-q", package):
        apt("update", "-q")
        apt("install", "-y", "-q", package)


def postgres_present() -> bool:
    return bool(shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")))


def test() -> None:
    apt_install("chromium", "chromium", "the browser tests")
    if not postgres_present():  # Debian puts its binaries under /usr/lib/postgresql/<v>/bin
        apt_install("postgresql", "pg_ctl", "the PostgreSQL tests")
    compile_catalogs()
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "ruff", "format", "--check", ".")
    sh(BIN / "mypy", ".")
    sh(BIN / "agreements", "check", *sorted((ROOT / "examples").glob("*.toml")))
    # Three tests at a time: most of the suite waits (on real clocks, processes starting,
    # mail retries), so three keep two cores busy; each runner has its own dev server.
    sh(BIN / "python", "-m", "pytest", "-q", "-n", "3", "--dist", "worksteal")


def main() -> None:
    commands = {"run": run, "test": test, "i18n": i18n}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python3.11 tasks.py {'|'.join(commands)}")
    install()
    commands[sys.argv[1]]()


if __name__ == "__main__":
    main()
