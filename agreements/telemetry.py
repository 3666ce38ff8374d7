"""Metrics in Prometheus format, served by the Temporal SDK's own exporter.

A process that runs a worker makes one Temporal runtime whose Prometheus exporter listens
on AGREEMENTS_METRICS_ADDRESS (127.0.0.1:9464 by default: loopback, no login; empty: none).
It serves the SDK's worker metrics (`temporal_*`: task slots, poll and schedule-to-start
latencies, workflow and activity outcomes, the sticky cache) and the service's own, made on
the same runtime's meter:

- `agreements_emails_total{template, outcome}`: sent, failed, retried;
- `agreements_decisions_total{kind, outcome}`: applied, refused (workflows/common.py);
- `agreements_webhook_deliveries_total{type, outcome}`: delivered, retry, gone, stopped,
  failed;
- gauges: `agreements_outbox_unsent`, `agreements_outbox_oldest_unsent_seconds`,
  `agreements_rounds_open`, `agreements_milestones_overdue`, `agreements_workers_polling`.

Counters count from the process's start (Prometheus's `rate()` and `increase()` read them
so). Decisions are counted by the workflows (`workflow.metric_meter()`: never twice on a
replay); the gauges are read from the database and Temporal every `SAMPLE_SECONDS` by the
worker (`keep_sampling`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from temporalio.client import Client
from temporalio.common import MetricCounter, MetricGaugeFloat, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from models.config import Settings

log = logging.getLogger("agreements.metrics")

SAMPLE_SECONDS = 15.0
FIRST_LOOK = 2.0  # seconds after the worker starts

_runtime: Runtime | None = None
_counters: dict[str, MetricCounter] = {}
_gauges: dict[str, MetricGaugeFloat] = {}

COUNTERS = {
    "agreements_emails": "Emails by template and what came of them (sent, failed, retried)",
    "agreements_webhook_deliveries": "Webhook delivery attempts by event type and outcome",
}
GAUGES = {
    "agreements_outbox_unsent": "Emails written to the outbox and not yet handed to the relay",
    "agreements_outbox_oldest_unsent_seconds": "Age of the oldest email not yet handed over",
    "agreements_rounds_open": "Signature rounds under way",
    "agreements_milestones_overdue": "Milestones past their date with nothing recorded",
    "agreements_workers_polling": "Workers polling the task queue, as Temporal last saw them",
}


def runtime_for(config: Settings) -> Runtime | None:
    """The process's runtime serving metrics at the configured address, made once; None
    when metrics are off or the address cannot be taken (said in the log: the worker runs
    on without them rather than not at all)."""
    global _runtime
    if _runtime is None and config.metrics_address:
        exporter = PrometheusConfig(
            bind_address=config.metrics_address,
            counters_total_suffix=True,
            durations_as_seconds=True,
        )
        try:
            _runtime = Runtime(telemetry=TelemetryConfig(metrics=exporter))
        except Exception as error:  # the address taken, or not an address
            log.warning("metrics not served at %s: %s", config.metrics_address, error)
            return None
        _counters.clear()
        _gauges.clear()
        log.info("metrics at http://%s/metrics", config.metrics_address)
    return _runtime


def adopt(runtime: Runtime) -> None:
    """Make the service's metrics on `runtime` (one that serves them already)."""
    global _runtime
    _runtime = runtime
    _counters.clear()
    _gauges.clear()


def meter() -> MetricMeter:
    """The meter of the process's runtime (one that goes nowhere when metrics are off)."""
    return (_runtime or Runtime.default()).metric_meter


def count(name: str, attributes: Mapping[str, str]) -> None:
    """One more of counter `name` (one of COUNTERS) with these labels."""
    counter = _counters.get(name)
    if counter is None:
        counter = _counters[name] = meter().create_counter(name, COUNTERS[name])
    counter.add(1, dict(attributes))


def gauge(name: str, value: float) -> None:
    """Gauge `name` (one of GAUGES) reads `value` from now on."""
    found = _gauges.get(name)
    if found is None:
        found = _gauges[name] = meter().create_gauge_float(name, GAUGES[name])
    found.set(value)


async def keep_sampling(client: Client, config: Settings) -> None:
    """Until cancelled: the gauges from the database and Temporal, every SAMPLE_SECONDS.
    The readiness the worker sees is said in its log when it changes (at start, on loss,
    when it is back)."""
    from agreements import health  # the probes also answer /readyz

    said: str | None = None
    await asyncio.sleep(FIRST_LOOK)  # the worker's first polls reach Temporal meanwhile
    while True:
        try:
            for name, value in (await asyncio.to_thread(health.figures, config)).items():
                gauge(name, value)
        except Exception as error:  # the database away: the readiness below says so
            log.debug("gauges not read: %s", error)
        report = await health.readiness(client, config)
        gauge("agreements_workers_polling", report.pollers)
        if report.temporal is None:
            try:
                gauge("agreements_rounds_open", await health.rounds_open(client))
            except Exception as error:  # Temporal's visibility away for a moment
                log.debug("rounds not counted: %s", error)
        line = report.line()
        if line != said:
            (log.info if report.ready else log.warning)("readiness: %s", line)
            said = line
        await asyncio.sleep(SAMPLE_SECONDS)
