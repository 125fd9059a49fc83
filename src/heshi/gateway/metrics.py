"""Prometheus metrics for the gateway, on a registry owned by the app (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)


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

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
