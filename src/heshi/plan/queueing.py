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

import numpy as np
import numpy.typing as npt

Probs = npt.NDArray[np.float64]


def arrival_queue(users: int, prefill_s: float, decode_s: float) -> list[float]:
    """P(a new request finds j prompts at the prefill station), j = 0 … users − 1."""
    return [float(p) for p in _arrival_queue(users, prefill_s, decode_s)]


def _arrival_queue(users: int, prefill_s: float, decode_s: float) -> Probs:
    others = max(users - 1, 0)
    probs: Probs = np.zeros(others + 1)
    if others == 0 or (decode_s > 0 and prefill_s / decode_s <= 0):
        probs[0] = 1.0  # alone, or nothing to wait for
        return probs
    if decode_s <= 0:
        probs[others] = 1.0  # nothing but prefill: everyone else is ahead
        return probs
    ratio = prefill_s / decode_s
    # log of N!/(N-j)! r^j, normalised in log space (N in the thousands overflows floats);
    # numpy, not a Python loop: the planner asks this of every option, and with 5,000 users
    # a loop took 5 of the 6 seconds of `heshi plan`
    steps = np.log(np.arange(others, 0, -1, dtype=np.float64)) + math.log(ratio)
    logs = np.concatenate(([0.0], np.cumsum(steps)))
    weights: Probs = np.exp(logs - logs.max())
    weights /= weights.sum()
    return weights


def ttft_quantile(users: int, prefill_s: float, decode_s: float, q: float = 0.95) -> float:
    """The ``q`` quantile of the time to first token, in seconds."""
    if prefill_s <= 0:
        return 0.0
    probs = _arrival_queue(users, prefill_s, decode_s)
    if probs[0] >= q:
        return prefill_s
    # Finding j ≥ 1 ahead: wait (j − 1 + U) prefills, U uniform on [0, 1). The CDF of the
    # wait in prefill units is then piecewise linear: on [k, k + 1) it climbs by p_{k+1}.
    reached = probs[0] + np.cumsum(probs[1:])  # reached[k]: P(at most k + 1 ahead)
    k = int(np.searchsorted(reached, q))  # the first band whose end reaches q
    if k >= len(reached):
        return prefill_s * len(probs)  # rounding: the last band
    before = probs[0] if k == 0 else reached[k - 1]
    p = probs[k + 1]
    within = (q - before) / p if p > 0 else 0.0
    return float(prefill_s * (1 + k + within))
