"""The TTFT p95 model under load (heshi.plan.queueing): its closed form against a direct
simulation of the same queue, and its limits."""

from __future__ import annotations

import math
import random

import pytest

from heshi.plan.queueing import arrival_queue, ttft_quantile


def _simulate(users: int, prefill: float, decode: float, requests: int, seed: int) -> list[float]:
    """N users, one FIFO prefill server of fixed service time, exponential decode
    ("think") times; the TTFT of every request after a warm-up."""
    rng = random.Random(seed)
    ready = sorted(rng.expovariate(1 / decode) for _ in range(users))  # first arrivals
    free_at, out = 0.0, []
    while len(out) < requests:
        arrival = ready.pop(0)
        start = max(arrival, free_at)
        free_at = start + prefill
        out.append(free_at - arrival)
        nxt = free_at + rng.expovariate(1 / decode)
        ready.insert(next((i for i, t in enumerate(ready) if t > nxt), len(ready)), nxt)
    return out[requests // 10 :]


@pytest.mark.parametrize(
    ("users", "prefill", "decode"),
    [(2, 1.0, 2.0), (2, 1.0, 10.0), (4, 1.0, 1.0), (4, 1.0, 5.0), (8, 1.0, 3.0), (8, 1.0, 20.0),
     (16, 1.0, 10.0), (50, 0.05, 7.5), (8, 1.0, 0.5)],
)  # fmt: skip
def test_the_p95_is_close_to_a_simulation_of_the_queue_with_fixed_prefills(
    users: int, prefill: float, decode: float
) -> None:
    """Prompts of one workload take about the same time to prefill: the closed form
    (exact for exponential prefill times) stays within -10% / +35% of a simulation with
    fixed ones, erring high."""
    seen = sorted(_simulate(users, prefill, decode, 40_000, seed=users))
    simulated = seen[int(0.95 * len(seen))]
    predicted = ttft_quantile(users, prefill, decode)
    assert 0.90 * simulated <= predicted <= 1.35 * simulated


def test_one_user_waits_for_nobody_and_a_saturated_queue_waits_for_everyone() -> None:
    assert ttft_quantile(1, 2.0, 5.0) == 2.0
    assert ttft_quantile(6, 2.0, 0.0) == pytest.approx(2.0 * (5 + 0.95))  # all 5 others ahead
    assert ttft_quantile(6, 2.0, 1e-9) == pytest.approx(2.0 * (5 + 0.95), rel=1e-3)
    assert ttft_quantile(1000, 0.0, 5.0) == 0.0  # speed unknown: nothing predicted


def test_the_p95_grows_with_load_and_never_falls_below_one_prefill() -> None:
    last = 0.0
    for users in (1, 2, 4, 8, 16, 32, 64):
        p95 = ttft_quantile(users, 0.3, 6.0)
        assert p95 >= max(last, 0.3)
        last = p95
    assert last > 10 * 0.3  # 64 users × 0.3 s of prefill in every 6 s: a long queue


def test_the_distribution_is_a_distribution_at_any_size() -> None:
    for users, ratio in ((2, 0.5), (500, 0.01), (5000, 2.0)):
        probs = arrival_queue(users, ratio, 1.0)
        assert len(probs) == users and all(p >= 0 for p in probs)
        assert math.fsum(probs) == pytest.approx(1.0)
