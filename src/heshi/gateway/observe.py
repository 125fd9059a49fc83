"""What ``/metrics`` shows beyond per-request counters: the gateway's state, read when
Prometheus scrapes (nothing on the request path), and lifetime spend per tenant,
refreshed from the ledger in the background.

Series (all ``heshi_``):

- ``engine_slots`` / ``engine_slots_busy`` / ``engine_requests_waiting`` {model}: the
  embedded llama.cpp engine's parallel slots, those decoding, and requests queued for one;
- ``backend_breaker_state`` {backend, state} (1 for the state it is in: closed, open,
  half-open), ``backend_in_flight`` and ``backend_consecutive_failures`` {backend};
- ``ledger_lag_seconds`` (age of the oldest row not yet in the database),
  ``ledger_buffered_rows``, ``ledger_spooled_rows``, ``ledger_rejected_rows``;
  ``database_up`` (0 while the ledger's database fails or stalls);
- ``tenant_spent_yuan`` / ``tenant_spent_tokens`` {tenant} (lifetime, pruned rows
  included, as budgets count them) and ``tenant_budget_used_ratio`` {tenant, budget}
  (``cny`` or ``tokens``) for tenants with a budget in heshi.yaml.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from heshi.store.keys import MICRO
from heshi.store.tally import SpendTally
from heshi.tasks import cancel

log = logging.getLogger("heshi.gateway")

SPEND_REFRESH_SECONDS = 60.0  # reads the ledger rows added since: cheap, but not per scrape
_STATES = ("closed", "open", "half-open")


class StateCollector(Collector):
    """Reads engines, router and governance when scraped."""

    def __init__(self, engines: Mapping[str, Any], router: Any, gov: Any, config: Any) -> None:
        self._engines = engines
        self._router = router
        self._gov = gov
        self._config = config
        self._spent_tokens: dict[str, int] = {}
        self._spent_micro: dict[str, int] = {}
        self._refreshed_at = 0.0  # unix time of the last spend refresh that worked
        self._refresh_ok = True  # the last refresh reached the database
        self._task: asyncio.Task[None] | None = None
        self._tally = SpendTally(gov.db)

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    # ------------------------------------------------------------------ scrape

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._engine_families()
        yield from self._backend_families()
        yield from self._ledger_families()
        yield from self._tenant_families()

    def _engine_families(self) -> Iterator[GaugeMetricFamily]:
        slots, busy, waiting = _gauges(
            ["model"],
            ("heshi_engine_slots", "Parallel slots of each embedded model."),
            ("heshi_engine_slots_busy", "Slots decoding or prefilling now."),
            ("heshi_engine_requests_waiting", "Requests waiting for a free slot (its queue)."),
        )
        for engine in self._engines.values():
            status = getattr(engine, "status", None)
            if not callable(status):
                continue
            try:
                entries = status()
            except Exception:  # a model being (un)loaded: no figures this scrape
                continue
            for entry in entries if isinstance(entries, list) else []:
                name = str(entry.get("name"))
                if entry.get("slots") is not None:
                    slots.add_metric([name], float(entry["slots"]))
                busy.add_metric([name], float(entry.get("slots_busy") or 0))
                waiting.add_metric([name], float(entry.get("requests_waiting") or 0))
        yield from (slots, busy, waiting)

    def _backend_families(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "heshi_backend_breaker_state",
            "1 for the circuit breaker state each backend is in (closed, open, half-open).",
            labels=["backend", "state"],
        )
        in_flight, failures = _gauges(
            ["backend"],
            ("heshi_backend_in_flight", "Requests at each backend now."),
            ("heshi_backend_consecutive_failures", "Failures since each backend's last success."),
        )
        for name, status in self._router.status().items():
            for s in _STATES:
                state.add_metric([name, s], 1.0 if status.state == s else 0.0)
            in_flight.add_metric([name], float(status.in_flight))
            failures.add_metric([name], float(status.consecutive_failures))
        yield from (state, in_flight, failures)

    def _ledger_families(self) -> Iterator[GaugeMetricFamily]:
        stats = self._gov.ledger.stats()
        for name, help_text, value in (
            (
                "heshi_ledger_lag_seconds",
                "Age of the oldest usage row not yet in the database (0: none waiting).",
                stats.lag_seconds,
            ),
            ("heshi_ledger_buffered_rows", "Usage rows in memory.", stats.buffered),
            ("heshi_ledger_spooled_rows", "Usage rows in the spool file.", stats.spooled),
            ("heshi_ledger_rejected_rows", "Usage rows the database refused.", stats.rejected),
            (
                "heshi_database_up",
                "1 while the database takes ledger rows and answers the minutely spend "
                "query, 0 while either fails or stalls (also when no requests arrive).",
                1.0 if stats.healthy and self._refresh_ok else 0.0,
            ),
            (
                "heshi_trace_spans_dropped",
                "Trace spans dropped since start because the exporter fell behind or exited "
                "(0 with tracing off).",
                getattr(getattr(self._router, "tracing", None), "dropped", 0),
            ),
        ):
            yield GaugeMetricFamily(name, help_text, value=float(value))

    def _tenant_families(self) -> Iterator[GaugeMetricFamily]:
        spent_cny = GaugeMetricFamily(
            "heshi_tenant_spent_yuan",
            "Lifetime spend of each tenant in yuan, as budgets count it.",
            labels=["tenant"],
        )
        spent_tokens = GaugeMetricFamily(
            "heshi_tenant_spent_tokens", "Lifetime tokens of each tenant.", labels=["tenant"]
        )
        used = GaugeMetricFamily(
            "heshi_tenant_budget_used_ratio",
            "Share of each tenant's budget spent (budget: cny or tokens).",
            labels=["tenant", "budget"],
        )
        tenants = self._config.tenants
        for tenant in sorted({*self._spent_tokens, *self._spent_micro}):
            spent_cny.add_metric([tenant], self._spent_micro.get(tenant, 0) / MICRO)
            spent_tokens.add_metric([tenant], float(self._spent_tokens.get(tenant, 0)))
        for tenant, settings in sorted(tenants.items()):
            if settings.budget_cny:
                cny = self._spent_micro.get(tenant, 0) / MICRO
                used.add_metric([tenant, "cny"], cny / settings.budget_cny)
            if settings.budget_tokens:
                tokens = self._spent_tokens.get(tenant, 0)
                used.add_metric([tenant, "tokens"], tokens / settings.budget_tokens)
        yield from (spent_cny, spent_tokens, used)
        yield GaugeMetricFamily(
            "heshi_tenant_spend_refreshed_timestamp_seconds",
            "When the tenant spend series were last read from the ledger (0: never).",
            value=self._refreshed_at,
        )

    # ------------------------------------------------------------------ spend

    def refresh_spend(self) -> None:
        """Lifetime spend per tenant from the ledger (blocking: call from a thread): the
        rows added since the last refresh, not the whole ledger (:mod:`heshi.store.tally`)."""
        try:
            spent = self._tally.refresh()
        except Exception:
            self._refresh_ok = False
            raise
        self._spent_tokens = dict(spent.by_tenant)
        self._spent_micro = dict(spent.cost_by_tenant)
        self._refresh_ok = True
        self._refreshed_at = time.time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_forever(), name="heshi-metrics-spend")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh_spend)
            except Exception as exc:  # a database outage: keep the last figures
                log.warning("tenant spend for /metrics not refreshed: %s", exc)
            await asyncio.sleep(SPEND_REFRESH_SECONDS)


def _gauges(labels: list[str], *specs: tuple[str, str]) -> list[GaugeMetricFamily]:
    """Gauge families sharing ``labels``, one per (name, help)."""
    return [GaugeMetricFamily(name, text, labels=labels) for name, text in specs]
