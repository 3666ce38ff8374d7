"""The workflow modules import no database, SMTP or web library: what they pass to
activities lives in models/, and the decider is plain code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("sqlalchemy", "sqlmodel", "psycopg", "aiosmtplib", "aiosmtpd", "fastapi", "alembic")


def test_workflow_modules_import_no_database_smtp_or_web_library() -> None:
    code = (
        "import json, sys\n"
        "import workflows.agreement, workflows.signing, workflows.decider, workflows.digest\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "workflows" in loaded and "temporalio" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_the_decider_imports_no_temporal() -> None:
    code = (
        "import json, sys\n"
        "import workflows.decider\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "workflows" in loaded
    assert "temporalio" not in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_every_activity_the_workflows_call_is_implemented_under_its_name() -> None:
    """The workflows call the activities through `activities.contracts`; each contract method
    has an implementation (not the contract's own body) of the same name in the classes the
    worker registers, so a renamed or forgotten activity fails here, not in a running
    agreement."""
    from temporalio import activity

    from activities.contracts import DigestActivities, EmailActivities, StoreActivities
    from activities.digest import Digester
    from activities.notify import Notifier
    from activities.store import Store

    for contract, implementation in (
        (StoreActivities, Store),
        (EmailActivities, Notifier),
        (DigestActivities, Digester),
    ):
        assert issubclass(implementation, contract)
        for name, method in vars(contract).items():
            wanted = activity._Definition.from_callable(method)
            if wanted is None:
                continue
            done = getattr(implementation, name)
            assert done is not method, f"{implementation.__name__}.{name} is not implemented"
            found = activity._Definition.from_callable(done)
            assert found is not None and found.name == wanted.name, name
