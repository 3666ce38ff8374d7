"""The Grafana dashboard in docs/grafana-dashboard.json: it loads, each panel asks Prometheus
only for metrics a worker serves (the service's from agreements/telemetry.py, the SDK's as a
real scrape shows them), through the dashboard's data source variable, and every metric of the
service is shown somewhere. Each check is also run on a spoilt copy, to see it can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agreements.telemetry import COUNTERS, GAUGES

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"

# The service's own: counters are exported with `_total`; decisions are counted by the
# workflows (workflows/common.py), not through COUNTERS.
SERVICE = sorted(
    [f"{name}_total" for name in COUNTERS] + list(GAUGES) + ["agreements_decisions_total"]
)

# The Temporal SDK's, as a worker of this service serves them (counters with `_total`,
# histograms in seconds). Some appear only once they happen (failures, completions).
TEMPORAL_HISTOGRAMS = [
    "temporal_workflow_task_schedule_to_start_latency",
    "temporal_workflow_task_execution_latency",
    "temporal_activity_schedule_to_start_latency",
    "temporal_activity_execution_latency",
]
TEMPORAL = [
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_hit_total",
    "temporal_activity_execution_failed_total",
    "temporal_workflow_completed_total",
    "temporal_workflow_failed_total",
    "temporal_request_total",
    "temporal_request_failure_total",
    "temporal_long_request_total",
    "temporal_long_request_failure_total",
    "temporal_workflow_task_queue_poll_succeed_total",
    "temporal_worker_start_total",
] + [f"{name}_{part}" for name in TEMPORAL_HISTOGRAMS for part in ("bucket", "sum", "count")]

KNOWN = frozenset(SERVICE + TEMPORAL)

# PromQL's functions and aggregations the dashboard may call; any other name before "(" is
# taken for a misspelling.
FUNCTIONS = frozenset(
    {
        *("abs", "absent", "ceil", "changes", "clamp_max", "clamp_min", "delta", "deriv"),
        *("floor", "histogram_quantile", "increase", "irate", "rate", "resets", "round"),
        *("scalar", "sort", "sort_desc", "time", "vector"),
        *("avg_over_time", "count_over_time", "last_over_time", "max_over_time"),
        *("min_over_time", "avg", "count", "max", "min", "quantile", "sum", "topk", "bottomk"),
    }
)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
MODIFIERS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
RANGES = frozenset({"$__rate_interval", "$__range"})  # what rate() and increase() read over
DATASOURCE = "${datasource}"
JOB = 'job=~"$job"'

STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)")
NUMBER = re.compile(r"[0-9][0-9A-Za-z_.]*")  # numbers and durations (5m, 1e3, 0.95)


def load() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as file:
        found = json.load(file)
    assert isinstance(found, dict)
    return found


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def closing(text: str, start: int, opening: str, close: str) -> int:
    """The index just past the bracket that closes the one at `start`."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == opening:
            depth += 1
        elif text[index] == close:
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError(f"unbalanced {opening}{close} in {text!r}")


def parse(expression: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """The selectors (metric name and its label matchers), the ranges read over, and
    problems a reader sees without a Prometheus: names called that are no PromQL function,
    brackets that do not close."""
    selectors: list[tuple[str, str]] = []
    ranges: list[str] = []
    problems: list[str] = []
    # the insides of strings become blanks, so that `{…}` and `(…)` in label values do not
    # count, and the positions stay those of the expression
    text = STRING.sub(lambda found: '"' + " " * (len(found.group()) - 2) + '"', expression)
    if text.count("(") != text.count(")"):
        return selectors, ranges, [f"unbalanced parentheses in {expression!r}"]
    try:
        read(text, expression, selectors, ranges, problems)
    except ValueError as error:  # a {…} or […] that does not close
        problems.append(str(error))
    return selectors, ranges, problems


def read(
    text: str,
    expression: str,
    selectors: list[tuple[str, str]],
    ranges: list[str],
    problems: list[str],
) -> None:
    """parse()'s reading of `text` (the expression with blank strings), left to right."""
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char == "[":
            end = closing(text, index, "[", "]")
            ranges.append(text[index + 1 : end - 1].strip())
            index = end
        elif char == "{":  # matchers without a name: not used here, and not allowed
            problems.append(f"a selector without a metric name in {expression!r}")
            index = closing(text, index, "{", "}")
        elif char.isdigit() or (char == "." and text[index + 1 : index + 2].isdigit()):
            index = NUMBER.match(text, index).end()  # type: ignore[union-attr]
        elif found := NAME.match(text, index):
            word = found.group()
            index = found.end()
            after = len(text) - len(text[index:].lstrip())
            modifier = NAME.match(text, after)  # sum by (…) (…): an aggregation
            if word in MODIFIERS and text[after : after + 1] == "(":
                index = closing(text, after, "(", ")")  # label names, not metrics
            elif text[after : after + 1] == "(" or (modifier and modifier.group() in MODIFIERS):
                if word not in FUNCTIONS:
                    problems.append(f"{word}() is no PromQL function, in {expression!r}")
            elif word in KEYWORDS:
                pass
            else:
                matchers = ""
                if text[after : after + 1] == "{":
                    end = closing(text, after, "{", "}")
                    matchers = expression[after + 1 : end - 1]
                    index = end
                selectors.append((word, matchers))
        else:
            index += 1


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Each PromQL expression with the title of the panel (or variable) that asks it."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target.get("expr", "")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            # Grafana's label_values(selector, label): the selector is PromQL
            found = LABEL_VALUES.fullmatch(query.strip())
            yield f"${variable['name']}", found.group(1) if found else query


def metric_problems(dashboard: dict[str, Any]) -> list[str]:
    """What is wrong in the expressions: a metric no worker serves, an unknown function,
    a selector without the job filter, a range other than Grafana's, a quantile of
    something other than a histogram."""
    problems = []
    for title, expression in expressions(dashboard):
        if not expression.strip():
            problems.append(f"{title}: an empty query")
            continue
        selectors, ranges, found = parse(expression)
        problems += [f"{title}: {problem}" for problem in found]
        if not selectors and not found:
            problems.append(f"{title}: no metric in {expression!r}")
        for name, matchers in selectors:
            if name not in KNOWN:
                problems.append(f"{title}: {name} is no metric a worker serves")
            if not title.startswith("$") and JOB not in matchers:
                problems.append(f"{title}: {name} without {JOB}")
        problems += [f"{title}: over [{span}]" for span in ranges if span not in RANGES]
        buckets = any(name.endswith("_bucket") for name, _ in selectors)
        if buckets != ("histogram_quantile(" in expression.replace(" ", "")):
            problems.append(f"{title}: histogram_quantile() and _bucket go together")
    return problems


def layout_problems(dashboard: dict[str, Any]) -> list[str]:
    """Ids unique, every panel placed on the grid, titled and (but rows) described and
    asking through the data source variable."""
    problems = []
    ids = [panel.get("id") for panel in panels(dashboard)]
    problems += ["a panel without an id" for i in ids if not isinstance(i, int)]
    numbers = [i for i in ids if isinstance(i, int)]
    problems += [
        f"panel id {i} twice" for i in sorted({i for i in numbers if numbers.count(i) > 1})
    ]
    for panel in panels(dashboard):
        title = panel.get("title", "")
        grid = panel.get("gridPos", {})
        if not title:
            problems.append(f"panel {panel.get('id')} has no title")
        if not all(isinstance(grid.get(key), int) for key in ("x", "y", "w", "h")):
            problems.append(f"{title}: no gridPos")
        elif grid["x"] + grid["w"] > 24:
            problems.append(f"{title}: wider than the grid")
        if panel["type"] == "row":
            continue
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]
        if any(source != {"type": "prometheus", "uid": DATASOURCE} for source in sources):
            problems.append(f"{title}: not asked through {DATASOURCE}")
    return problems


def coverage_problems(dashboard: dict[str, Any]) -> list[str]:
    """Each of the service's metrics shown by some panel."""
    shown = {
        name
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        for name, _ in parse(target.get("expr", ""))[0]
    }
    return [f"{name} is on no panel" for name in SERVICE if name not in shown]


def rows(dashboard: dict[str, Any]) -> list[str]:
    return [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]


def test_the_service_metrics_are_eight() -> None:
    assert len(SERVICE) == 8, SERVICE
    assert "agreements_emails_total" in SERVICE
    assert "agreements_webhook_deliveries_total" in SERVICE


def test_it_loads_as_a_dashboard_to_import() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"] and dashboard["uid"]
    assert dashboard["id"] is None  # Grafana gives its own on import
    assert dashboard["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": dashboard["__inputs"][0]["description"],
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    # the import fills the variable with the data source chosen for DS_PROMETHEUS
    assert source["current"]["value"] == "${DS_PROMETHEUS}"
    assert variables["job"]["datasource"] == {"type": "prometheus", "uid": DATASOURCE}
    assert rows(dashboard) == ["Email", "Decisions", "Webhooks", "Agreements", "Workers"]


def test_every_panel_asks_for_metrics_that_exist() -> None:
    assert metric_problems(load()) == []


def test_panels_have_unique_ids_a_place_and_the_data_source_variable() -> None:
    assert layout_problems(load()) == []


def test_every_service_metric_is_on_a_panel() -> None:
    assert coverage_problems(load()) == []


def test_the_alerting_thresholds_are_on_their_panels() -> None:
    by_title = {panel["title"]: panel for panel in panels(load())}
    polling = by_title["Workers polling"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert polling == [{"color": "red", "value": None}, {"color": "green", "value": 1}]
    age = by_title["Outbox: age of the oldest unsent email"]["fieldConfig"]["defaults"]
    assert age["unit"] == "s"
    assert {"color": "red", "value": 3600} in age["thresholds"]["steps"]


def spoil(change: str, old: str, new: str) -> dict[str, Any]:
    """The dashboard with `old` made `new` in the first query that has it."""
    dashboard = copy.deepcopy(load())
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if old in target.get("expr", ""):
                target["expr"] = target["expr"].replace(old, new, 1)
                return dashboard
    raise AssertionError(f"{old!r} is in no query ({change})")


@pytest.mark.parametrize(
    ("change", "old", "new", "said"),
    [
        ("misspelt metric", "agreements_emails_total", "agreement_emails_total", "no metric"),
        ("misspelt SDK metric", "temporal_num_pollers", "temporal_num_poller", "no metric"),
        ("misspelt function", "histogram_quantile(", "histogram_quantil(", "no PromQL function"),
        (
            "no job filter",
            'agreements_rounds_open{job=~"$job"}',
            "agreements_rounds_open",
            "without",
        ),
        ("fixed range", "[$__rate_interval]", "[5m]", "over [5m]"),
        ("quantile of a counter", "latency_bucket{", "latency_count{", "go together"),
        ("unclosed", "sum by (kind) (", "sum by (kind) ((", "unbalanced"),
        ("unclosed range", "[$__rate_interval]", "[$__rate_interval", "unbalanced"),
    ],
)
def test_a_spoilt_query_is_caught(change: str, old: str, new: str, said: str) -> None:
    problems = metric_problems(spoil(change, old, new))
    assert any(said in problem for problem in problems), problems


def test_a_missing_service_metric_is_caught() -> None:
    dashboard = spoil("no overdue", "agreements_milestones_overdue", "agreements_rounds_open")
    assert coverage_problems(dashboard) == ["agreements_milestones_overdue is on no panel"]


def test_a_panel_without_the_variable_or_with_a_taken_id_is_caught() -> None:
    dashboard = copy.deepcopy(load())
    shown = [panel for panel in panels(dashboard) if panel["type"] != "row"]
    shown[0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    shown[1]["id"] = shown[2]["id"]
    problems = layout_problems(dashboard)
    assert len(problems) == 2, problems
    assert f"panel id {shown[2]['id']} twice" in problems
    assert f"{shown[0]['title']}: not asked through {DATASOURCE}" in problems
