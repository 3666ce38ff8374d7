"""The benchmarks run (at a tiny size) and report their figures; the figures themselves are
read in bench/results.json, never asserted here (timed assertions on a shared machine are
noise)."""

from __future__ import annotations

from pathlib import Path

from bench import schedule as bench_schedule
from bench.__main__ import PLAN, headline, main_async
from tests.test_cli import AGREEMENT


def test_schedule_benchmark_runs_and_reports_a_ratio(tmp_path: Path):
    path = tmp_path / "cli-demo.toml"
    path.write_text(AGREEMENT, encoding="utf-8")
    figures = bench_schedule.run(repeat=3, path=path)
    assert figures["agreement"] == "cli-demo"
    assert int(figures["milestones"]) > 0
    assert {"plan_ms", "baseline_ms", "ratio"} <= figures.keys()


async def test_every_benchmark_runs_at_a_tiny_size():
    results = await main_async(quick=True, only=[])
    assert set(results["benchmarks"]) == set(PLAN)
    assert results["machine"]["cores"] > 0
    for name, figures in results["benchmarks"].items():
        assert "error" not in figures, (name, figures)
        measured, goal = headline(name, figures)
        assert measured and goal
    b = results["benchmarks"]
    assert b["schedule"]["agreements"] == 200
    assert b["lifecycle_and_history"]["examples"][0]["timers"] > 0
    assert b["lifecycle_and_history"]["history"]["largest_run_events"] > 0
    # The raw-email baseline sent what our life delivered, with the same timers.
    assert b["lifecycle_and_history"]["examples"][0]["raw_mail_s"] > 0
    assert b["lifecycle_and_history"]["ratio_vs_raw_mail"] > 0
    assert b["devserver_throughput"]["updates"] == 12
    throughput = b["devserver_throughput"]
    assert 0 < throughput["ours_decision_ms_p50"] <= throughput["ours_decision_ms_p95"]
    assert 0 < throughput["bare_update_ms_p50"] <= throughput["bare_update_ms_p95"]
    assert b["email"]["emails"] == 20
    assert b["memory"]["agreements"] == 10
    # The bare baseline, in its own worker, opened the same number of runs the same way.
    assert b["memory"]["bare_runs"] == 10
    assert {"bare_per_agreement_kib", "ratio_vs_bare"} <= b["memory"].keys()
    assert b["memory"]["bare_rss_after_mib"] > 0
    assert b["burst"]["emails"] == b["burst"]["expected"] == 10
    assert b["burst_rate_limited"]["emails"] == 10
