"""Every benchmark in one run: `python -m bench [--quick] [--only NAME ...]`.

Writes bench/results.json (with the machine described) and prints a table. Each
benchmark is bounded in time; the figures that count are the ratios against a baseline
measured in the same run, since absolute times on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import devserver, email, lifecycle, schedule
from bench.common import EXAMPLES, machine

RESULTS = Path(__file__).resolve().parent / "results.json"

# name: (full run, quick run)
Plan = dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]]


async def _sync(work: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(work)


PLAN: Plan = {
    "schedule": (
        lambda: _sync(lambda: schedule.many(10_000)),
        lambda: _sync(lambda: schedule.many(200, seconds=10)),
    ),
    "lifecycle_and_history": (
        lambda: lifecycle.run(),
        lambda: lifecycle.run(EXAMPLES[:1], seconds=60),
    ),
    "devserver_throughput": (
        lambda: devserver.throughput(100),
        lambda: devserver.throughput(3, seconds=60),
    ),
    "email": (lambda: email.run(500), lambda: email.run(20, seconds=30)),
    "memory": (lambda: devserver.memory(1000), lambda: devserver.memory(10, seconds=60)),
    "burst": (lambda: devserver.burst(5000), lambda: devserver.burst(5, seconds=60)),
    "burst_rate_limited": (
        lambda: devserver.burst(200, rate=20),
        lambda: devserver.burst(5, rate=10, seconds=60),
    ),
}


def headline(name: str, figures: dict[str, Any]) -> tuple[str, str]:
    """The figure and the goal to show for one benchmark."""
    if name == "schedule":
        return (
            f"{figures['agreements_per_s']} agreements/s; 3-year plan "
            f"{figures['three_year_median_ms']} ms",
            "< 1 ms per 3-year agreement",
        )
    if name == "lifecycle_and_history":
        h = figures["history"]
        return (
            f"ours/raw email {figures['ratio_vs_raw_mail']}, ours/bare {figures['ratio']}; "
            f"{h['events_per_agreement_year_max']} "
            f"events per agreement-year (max), largest run {h['largest_run_events']} events "
            f"/ {h['largest_run_kib']} KiB",
            "≤ 1.5 of raw email; < 1 000 events/year",
        )
    if name == "devserver_throughput":
        return (
            f"{figures['ours_steps_per_s']} vs bare {figures['bare_steps_per_s']} updates/s: "
            f"{figures['ratio']}; decision p50/p95 {figures['ours_decision_ms_p50']}/"
            f"{figures['ours_decision_ms_p95']} ms vs bare {figures['bare_update_ms_p50']}/"
            f"{figures['bare_update_ms_p95']} ms",
            "≥ 0.8 of bare; p95 ≤ 3× bare",
        )
    if name == "email":
        return (
            f"{figures['ours_batch_per_s']} in batches of a moment, "
            f"{figures['ours_per_s']} one per activity, vs raw {figures['raw_per_s']} "
            f"emails/s: {figures['batch_ratio']} / {figures['ratio']}; vs raw on reused "
            f"connections {figures['raw_reused_connection_per_s']}: "
            f"{figures['batch_ratio_vs_reused']} / {figures['ratio_vs_reused']}",
            "≥ 0.8 of raw; ≥ 0.5 of raw reused",
        )
    if name == "memory":
        return (
            f"{figures['per_agreement_kib']} vs bare {figures['bare_per_agreement_kib']} KiB "
            f"per cached run: {figures['ratio_vs_bare']} "
            f"({figures['agreements']} open, {figures['rss_after_mib']} MiB)",
            "≤ 150 KiB and ≤ 2× bare",
        )
    return (
        f"{figures['emails']}/{figures['expected']} emails, last "
        f"{figures['due_to_last_email_s']} s after due (limit {figures['rate_limit_per_s']}/s)",
        "(measured)",
    )


async def main_async(quick: bool, only: list[str]) -> dict[str, Any]:
    console = Console()
    results: dict[str, Any] = {
        "machine": machine(),
        "run_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "benchmarks": {},
    }
    for name, (full, small) in PLAN.items():
        if only and name not in only:
            continue
        console.print(f"[bold]{name}[/bold] …", highlight=False)
        began = time.monotonic()
        try:
            figures = await (small() if quick else full())
        except Exception as error:  # one benchmark failing still reports the others
            figures = {"error": f"{type(error).__name__}: {error}"}
        figures["wall_s"] = round(time.monotonic() - began, 1)
        results["benchmarks"][name] = figures
        console.print(f"  done in {figures['wall_s']} s", highlight=False)
    table = Table(title="Benchmarks", header_style="bold")
    for column in ("benchmark", "measured", "goal"):
        table.add_column(column)
    for name, figures in results["benchmarks"].items():
        if "error" in figures:
            table.add_row(name, figures["error"], "")
        else:
            table.add_row(name, *headline(name, figures))
    console.print(table)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check they work")
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(PLAN))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.quick, args.only))
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
