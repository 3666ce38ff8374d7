"""How long the schedule engine takes to plan one agreement, against a baseline in the same run.

The baseline does the irreducible part of the same work with no engine around it: the same
number of month steps and Swedish business-day look-ups as the plan has milestones. The
ratio (engine / baseline) is the figure to watch; absolute times on a shared machine are noise.

    .venv/bin/python -m bench.schedule [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from models.agreement import DateRule
from models.loader import load_agreement
from models.plan import Scenario
from schedule import dates
from schedule.engine import plan

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "helsingborg-inva-sam.toml"
NOW = dt.datetime(2024, 1, 1, tzinfo=dates.STOCKHOLM)


def _median_seconds(work: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def run(repeat: int = 200, path: Path = EXAMPLE) -> dict[str, float | int | str]:
    agreement = load_agreement(path)
    result = plan(agreement, NOW, scenario=Scenario.plan)
    count = len(result.milestones)
    start = agreement.term.start

    def baseline() -> None:
        for i in range(count):
            day = dates.add_months(start, i)
            dates.effective_date(day, DateRule.forward)

    def engine() -> None:
        plan(agreement, NOW, scenario=Scenario.plan)

    engine()  # warm the holiday cache for both
    ours = _median_seconds(engine, repeat)
    bare = _median_seconds(baseline, repeat)
    return {
        "agreement": agreement.id,
        "years": round((result.end - result.start).days / 365.25, 1),
        "milestones": count,
        "emails": len(result.emails),
        "plan_ms": round(ours * 1000, 3),
        "baseline_ms": round(bare * 1000, 3),
        "ratio": round(ours / bare, 1) if bare else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.repeat)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>12}: {value}")


if __name__ == "__main__":
    main()
