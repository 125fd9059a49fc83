"""The last step of every request: settle its reservation, write its ledger row, count it
in the metrics and, when the guard ran, queue its audit record — exactly once."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import anyio

from heshi.gateway.exchange import Exchange
from heshi.gateway.governance import Governance
from heshi.gateway.metrics import GatewayMetrics
from heshi.guard.stage import GuardStage
from heshi.store.ledger import UsageRecord
from heshi.tracing import Tracing

log = logging.getLogger("heshi.gateway")


class Recorder:
    """Turns a finished :class:`Exchange` into its ledger row, metrics and audit record."""

    def __init__(
        self,
        gov: Governance,
        metrics: GatewayMetrics,
        guard: GuardStage,
        tracing: Tracing | None = None,
    ) -> None:
        self.tracing = tracing or Tracing.disabled()
        self.gov = gov
        self.metrics = metrics
        self.guard = guard

    def started(self, x: Exchange) -> None:
        """Count the request as in flight (once its model is known)."""
        self.metrics.series(x.model, x.endpoint).in_flight.inc()
        x.in_flight = True

    async def settle(self, x: Exchange) -> None:
        """Replace ``x``'s reservation by what it has cost so far (at most once; ``finish``
        then has nothing left to settle). For a complete answer, before it is screened."""
        reservation, x.reservation = x.reservation, None
        spend, x.spend = x.spend, None
        if reservation is None and spend is None:
            return
        prompt, completion = x.charged()
        with anyio.CancelScope(shield=True):
            if reservation is not None:
                await self.gov.settle(reservation, prompt + completion)
            if spend is not None:
                await self.gov.settle(spend, self.gov.cost(x.model, prompt, completion) or 0)

    async def finish(self, x: Exchange) -> None:
        """Record ``x`` once; later calls do nothing. A client leaving cannot cut it short."""
        if x.finished:
            return
        x.finished = True
        try:
            with self.tracing.stage(x, "record"):
                await self._record(x)
        finally:
            self.tracing.finish(x)

    async def _record(self, x: Exchange) -> None:
        prompt, completion = x.charged()
        if x.authenticated:
            self._ledger(x, prompt, completion)  # before the settle: Redis may be down
        await self.settle(x)
        self._metrics(x, prompt, completion)
        if x.guard is not None:
            x.guard.classify = None  # the one reference cycle of a request (stages.Guard)
        if x.guard is not None and x.guard.config.enabled and not x.internal:
            self.gov.audit.submit(
                self.guard.audit_entry(
                    x.guard,
                    tenant=x.tenant,
                    key_id=x.key_id,
                    request_id=x.request_id,
                    client_ip=x.client_ip,
                    model=f"{x.model}->{x.route.backend or '-'}",
                    produce_id=x.produce_id,
                )
            )

    def _ledger(self, x: Exchange, prompt: int, completion: int) -> None:
        now = time.perf_counter()
        self.gov.ledger.submit(
            UsageRecord(
                request_id=x.request_id,
                ts=datetime.now(UTC),
                tenant=x.tenant,
                key_id=x.key_id,
                model=x.model,
                backend=x.route.backend,
                prompt_tokens=prompt,
                completion_tokens=completion,
                latency_ms=round((now - x.received) * 1000),
                ttft_ms=round((x.first_token_at - x.received) * 1000)
                if x.first_token_at is not None
                else None,
                status=x.status,
                route=x.route.route,
                endpoint=x.endpoint,
                reason=x.reason,
                cost_micro=self.gov.cost(x.model, prompt, completion),
            )
        )

    def _metrics(self, x: Exchange, prompt: int, completion: int) -> None:
        # Only a name the router resolved becomes a label value: a client must not be
        # able to create time series by sending made-up model names.
        model = x.model if x.plan is not None else "-"
        series = self.metrics.series(model, x.endpoint)
        if x.in_flight:
            series.in_flight.dec()
        self.metrics.counted(model, x.endpoint, x.status, x.reason).inc()
        series.latency.observe(time.perf_counter() - x.received)
        if x.first_token_at is not None:
            series.ttft.observe(x.first_token_at - x.received)
        if prompt:
            series.tokens_in.inc(prompt)
        if completion:
            series.tokens_out.inc(completion)
        if x.guard is not None and x.guard.config.enabled:
            self._guard_metrics(x)

    def _guard_metrics(self, x: Exchange) -> None:
        inbound = x.guard
        assert inbound is not None
        blocks = self.metrics.guard_blocks
        if inbound.blocked:
            risks = {h.risk for h in inbound.hits if h.action == "block"} or {"classifier"}
            for risk in risks:
                blocks.labels("in", risk or "unknown").inc()
        out = {h.risk for h in inbound.out_hits if h.action == "block"}
        if out or (x.guard_header == "block" and not inbound.blocked):
            for risk in out or {"classifier"}:
                blocks.labels("out", risk or "unknown").inc()
