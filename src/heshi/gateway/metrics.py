"""Prometheus metrics for the gateway, on a registry owned by the app (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Series:
    """One model and endpoint's metric children."""

    in_flight: Any
    latency: Any
    ttft: Any
    tokens_in: Any
    tokens_out: Any


class GatewayMetrics:
    """Counters and histograms per model, endpoint and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "heshi_requests",
            "Requests, by model, endpoint, HTTP status and why they ended so (reason: ok, "
            "client_gone, auth.missing_key, quota.key.rpm, guard.block, upstream_error, …).",
            ["model", "endpoint", "status", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "heshi_request_duration_seconds",
            "Time from request received to last byte sent.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "heshi_time_to_first_token_seconds",
            "Time from request received to the first generated token (streams).",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "heshi_tokens",
            "Tokens processed, by model and direction (in = prompt, out = completion).",
            ["model", "direction"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "heshi_requests_in_flight",
            "Requests being answered right now.",
            ["model"],
            registry=self.registry,
        )
        self.guard_blocks = Counter(
            "heshi_guard_blocks",
            "Requests the compliance guard blocked, by direction (in: the prompt, out: the "
            "answer) and TC260-003 risk id (classifier: blocked by the guard model alone).",
            ["direction", "risk"],
            registry=self.registry,
        )
        # Cached children; their keys are bounded like the labels (resolved models only).
        self._series: dict[tuple[str, str], Series] = {}
        self._requests: dict[tuple[str, str, int, str], Any] = {}

    def series(self, model: str, endpoint: str) -> Series:
        """The time series of one model and endpoint, looked up once (``labels()`` costs
        microseconds a call, several calls a request)."""
        key = (model, endpoint)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = Series(
                in_flight=self.in_flight.labels(model),
                latency=self.latency.labels(model, endpoint),
                ttft=self.ttft.labels(model),
                tokens_in=self.tokens.labels(model, "in"),
                tokens_out=self.tokens.labels(model, "out"),
            )
        return found

    def counted(self, model: str, endpoint: str, status: int, reason: str) -> Any:
        """The ``heshi_requests_total`` child of one outcome (cached like :meth:`series`)."""
        key = (model, endpoint, status, reason)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(model, endpoint, str(status), reason)
        return child

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
