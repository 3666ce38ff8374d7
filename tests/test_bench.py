"""The benchmarks run (at a tiny size); their figures are read in bench/, never asserted here."""

from __future__ import annotations

from pathlib import Path

from bench import schedule as bench_schedule
from tests.test_cli import AGREEMENT


def test_schedule_benchmark_runs_and_reports_a_ratio(tmp_path: Path):
    path = tmp_path / "cli-demo.toml"
    path.write_text(AGREEMENT, encoding="utf-8")
    figures = bench_schedule.run(repeat=3, path=path)
    assert figures["agreement"] == "cli-demo"
    assert int(figures["milestones"]) > 0
    assert {"plan_ms", "baseline_ms", "ratio"} <= figures.keys()
