"""Non-negative least squares on relative error, the fit behind the planner's speed and
memory coefficients (small designs: every support is tried)."""

from __future__ import annotations

import itertools

import numpy as np

_TIE = 1e-7  # relative: residual differences below this are rounding


def nonnegative_relative_fit(
    design: np.ndarray,
    target: np.ndarray,
    offset: np.ndarray | None = None,
    lower: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """min Σ((o + X·x)/y − 1)² subject to x ≥ lower (default 0), by trying every support.

    ``offset`` o is a known part of the target (e.g. weights, for memory). Returns the
    coefficients and the in-sample MAPE (fraction).
    """
    floor = np.zeros(design.shape[1]) if lower is None else lower
    known = (np.zeros(len(target)) if offset is None else offset) + design @ floor
    scaled = design / target[:, None]
    ones = 1 - known / target
    best: tuple[float, np.ndarray] | None = None
    columns = [j for j in range(design.shape[1]) if np.any(design[:, j])]
    for size in range(1, len(columns) + 1):
        for support in itertools.combinations(columns, size):
            sub = scaled[:, support]
            solution, *_ = np.linalg.lstsq(sub, ones, rcond=None)
            if np.any(solution < 0):
                continue
            x = np.zeros(design.shape[1])
            x[list(support)] = solution
            residual = float(np.sum((scaled @ x - ones) ** 2))
            # A larger support must fit better by more than rounding: where two explain
            # the data equally (collinear columns), the smaller one wins on every machine
            # (BLAS builds round differently, and a tie went either way).
            if best is None or residual < best[0] * (1 - _TIE) - 1e-15:
                best = (residual, x)
    # No support with a non-negative solution: the known part and the floors already
    # exceed the target, so nothing more is added.
    x = np.zeros(design.shape[1]) if best is None else best[1]
    return x + floor, float(np.mean(np.abs((known + design @ x) / target - 1)))
