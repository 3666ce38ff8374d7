"""Record the histories the replay tests check: `python -m tests.record_histories [TAG]`.

Runs every example's whole life (plan scenario) through the real workflows on the
time-skipping server and writes each run's history to `tests/histories/`. Re-record only
when a workflow change is meant to be incompatible (and running agreements are migrated);
otherwise the committed histories are what running agreements look like. After a
`workflow.patched` change, record the new path beside the old under a TAG
(`<example>.<TAG>.<run>.json`), so that both stay proved.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agreements.simulate import simulate
from models.loader import load_agreement

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "histories"


async def main(tag: str | None) -> None:
    OUT.mkdir(exist_ok=True)
    for path in sorted((ROOT / "examples").glob("*.toml")):
        histories: list = []  # type: ignore[type-arg]
        await simulate(load_agreement(path), histories=histories)
        for index, history in enumerate(histories):
            name = f"{path.stem}.{tag}" if tag else path.stem
            target = OUT / f"{name}.{index:02d}.json"
            target.write_text(history.to_json())
            print(target.relative_to(ROOT), len(history.events), "events")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
