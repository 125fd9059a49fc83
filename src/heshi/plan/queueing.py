"""Time to first token under load: the finite-source (machine-repairman) queue.

``concurrency`` users each keep one request in flight: a request waits for the prompts
ahead of it, is prefilled (``prefill_s``, the devices' whole compute: a CPU or GPU that is
compute-bound on prompts gains nothing by prefilling two at once), then decodes its
answer (``decode_s``, batched with the others, so no one waits for it), and the user
sends the next one. That is the classic closed queue with N sources, one server and a
"think" time — here the decode time. Its state distribution is known in closed form
(Kleinrock, *Queueing Systems* vol. 1, §3.8; Gross & Harris, "finite-source queues"):

    P(j at the prefill station) ∝ N! / (N − j)! · (prefill_s / decode_s)^j

and by the arrival theorem a new request finds the distribution of the same system with
N − 1 users. Prompts of one workload are about the same length, so service is taken as
fixed: a request that finds j ≥ 1 prompts there waits for j − 1 whole ones and the rest of
the one being processed (uniform over one prefill). The p95 is read from that mixture.

Two limits check it: one user never waits (TTFT = one prefill); when prefill dominates
(``decode_s`` → 0) every other request is ahead, TTFT → N prefills — the batch pipeline
that submits its whole queue at once. The model replaces the fixed "two prefills" the
planner used before, which was right for neither.

The closed form is exact for exponential prefill times; prompts of one workload take
about the same time, and against a simulation of that (fixed prefill, exponential decode
times; tests/plan/test_plan_queueing.py) its p95 is 3% low to about 40% high — highest with
many users at light load (+37% at 20 users with half the prefill capacity in use). Against
the embedded engine it was 15% low to 52% high, the rule it replaced 63% low to 54% high
(docs/benchmarks.md).
"""

from __future__ import annotations

import math


def arrival_queue(users: int, prefill_s: float, decode_s: float) -> list[float]:
    """P(a new request finds j prompts at the prefill station), j = 0 … users − 1."""
    others = max(users - 1, 0)
    if others == 0:
        return [1.0]
    if decode_s <= 0:
        return [0.0] * others + [1.0]  # nothing but prefill: everyone else is ahead
    ratio = prefill_s / decode_s
    if ratio <= 0:
        return [1.0] + [0.0] * others
    # log of N!/(N-j)! r^j, normalised in log space (N in the thousands overflows floats)
    logs = [0.0]
    for j in range(1, others + 1):
        logs.append(logs[-1] + math.log(others - j + 1) + math.log(ratio))
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return [w / total for w in weights]


def ttft_quantile(users: int, prefill_s: float, decode_s: float, q: float = 0.95) -> float:
    """The ``q`` quantile of the time to first token, in seconds."""
    if prefill_s <= 0:
        return 0.0
    probs = arrival_queue(users, prefill_s, decode_s)
    if probs[0] >= q:
        return prefill_s
    # Finding j ≥ 1 ahead: wait (j − 1 + U) prefills, U uniform on [0, 1). The CDF of the
    # wait in prefill units is then piecewise linear: on [k, k + 1) it climbs by p_{k+1}.
    reached = probs[0]
    for k, p in enumerate(probs[1:]):
        if reached + p >= q:
            within = (q - reached) / p if p > 0 else 0.0
            return prefill_s * (1 + k + within)
        reached += p
    return prefill_s * len(probs)  # rounding: the last band
