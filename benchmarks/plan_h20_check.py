"""``heshi plan predict`` against Qwen's held-out Qwen3 speed table on H20, row by row.

The same numbers ``plan_accuracy.py`` reports as validation, but through the public
``predict()`` of whichever ``heshi`` is importable, so an older release can be measured
beside the current one in the same run (the baseline in docs/benchmarks.md):

    .venv/bin/python benchmarks/plan_h20_check.py
    git worktree add /tmp/base <commit>
    PYTHONPATH=/tmp/base/src .venv/bin/python benchmarks/plan_h20_check.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from heshi import catalog
from heshi.plan.predict import predict
from heshi.plan.quant import quant
from heshi.plan.speed import Workload

TABLE = Path(__file__).resolve().parent / "data" / "qwen3_h20_validation.csv"


def main() -> None:
    errors: dict[str, list[float]] = {}
    with TABLE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            spec, q = catalog.model(row["model"]), quant(row["quantization"])
            hw = catalog.hardware(f"{row['gpu_num']}x nvidia-h20-96gb")
            n_in, n_out = int(row["input_length"]), int(row["output_length"])
            out = predict(spec, q, row["engine"], hw, Workload(n_in, n_out)).as_json()
            key = f"{row['engine']} {'moe' if spec.moe else 'dense'} {q.name}"
            if not out["decode_tokens_per_s"]:
                errors.setdefault(key + " (no speed given)", [])
                continue
            # the table's speed is (prompt + generated tokens) / request time
            predicted = (n_in + n_out) / out["total_seconds"]
            errors.setdefault(key, []).append(predicted / float(row["value"]) - 1)
    for key, values in sorted(errors.items()):
        if not values:
            print(f"{key:<40}")
            continue
        arr = np.array(values)
        print(
            f"{key:<40}{len(arr):>4}  MAPE {np.mean(np.abs(arr)):7.1%}  bias {np.mean(arr):+7.1%}"
        )


if __name__ == "__main__":
    main()
