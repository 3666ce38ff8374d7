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
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from dateutil.relativedelta import relativedelta

from bench.common import EXAMPLES
from models.agreement import Agreement, DateRule
from models.loader import load_agreement
from models.plan import Scenario
from models.schedule import dates
from models.schedule.engine import plan

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


def generated(count: int, seed: int = 1) -> list[Agreement]:
    """`count` agreements from the four examples, each with a term of 1 to 10 years."""
    rng = random.Random(seed)
    templates = [load_agreement(path) for path in EXAMPLES]
    made = []
    for n in range(count):
        template = templates[n % len(templates)]
        data = template.model_dump(mode="python")
        data["id"] = f"{template.id}-{n}"
        data["term"]["end"] = template.term.start + relativedelta(years=rng.randint(1, 10), days=-1)
        made.append(Agreement.model_validate(data))
    return made


def many(count: int = 10_000, seconds: float = 120) -> dict[str, float | int]:
    """Plan `count` generated agreements once each (stopping at `seconds`)."""
    agreements = generated(count)
    dates.warm()
    per_agreement: list[tuple[float, float]] = []  # (years, seconds)
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    for agreement in agreements:
        t0 = time.perf_counter()
        plan(agreement, NOW, scenario=Scenario.plan)
        per_agreement.append(
            ((agreement.term.end - agreement.term.start).days / 365.25, time.perf_counter() - t0)
        )
        if time.perf_counter() > deadline:
            break
    total = time.perf_counter() - began
    three = [t for years, t in per_agreement if 2.5 <= years <= 3.5] or [0.0]
    return {
        "agreements": len(per_agreement),
        "agreements_per_s": round(len(per_agreement) / total, 1),
        "mean_ms": round(total / len(per_agreement) * 1000, 3),
        "three_year_median_ms": round(statistics.median(three) * 1000, 3),
        "goal_three_year_ms": 1.0,
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
