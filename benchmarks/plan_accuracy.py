"""How close ``heshi plan predict`` comes to measurements.

1. Every row of Qwen's published speed tables (``heshi/plan/data/
   qwen_speed_calibration.csv``, A100 80GB, batch 1): predicted vs published generation
   speed (generated tokens over the whole request) and, for transformers rows, peak
   memory (published as GiB summed over the GPUs, so compared with per-device peak ×
   GPUs). Two columns: *in sample* (the shipped calibration, fitted on all rows) and
   *leave one model out* (each model predicted by coefficients fitted without its rows:
   what to expect for a model the calibration never saw).
2. This machine: llama.cpp decode speed of the default model predicted (``--hardware
   local``: read bandwidth measured now) and measured with xllamacpp in the same run.

    .venv/bin/python benchmarks/plan_accuracy.py [--json results.json] [--skip-local]

Targets (issue 4): memory MAPE ≤ 8%, speed MAPE ≤ 20%, local decode within 25%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heshi.plan import resolve_hardware
from heshi.plan.fit import CalibrationRow, fit_groups, load_rows
from heshi.plan.gguf import spec_from_gguf
from heshi.plan.predict import predict
from heshi.plan.speed import FEATURES, Workload, features

TARGET_MEMORY, TARGET_SPEED, TARGET_LOCAL = 0.08, 0.20, 0.25


def _errors(rows: Sequence[CalibrationRow]) -> list[dict[str, Any]]:
    """In-sample errors through the public predict path (the shipped calibration)."""
    out = []
    for row in rows:
        assert row.speed is not None  # every published row carries its speed
        result = predict(row.spec, row.q, row.engine, row.hw, row.work).as_json()
        entry: dict[str, Any] = {
            "model": row.spec.name,
            "engine": row.engine,
            "quant": row.q.name,
            "gpus": row.hw.count,
            "input": row.work.input_tokens,
            "speed_measured": row.speed,
            "speed_predicted": result["generation_tokens_per_s"],
            "speed_error": result["generation_tokens_per_s"] / row.speed - 1,
        }
        if row.memory_gib is not None:
            total = result["peak_memory_gb"] * row.hw.count
            entry |= {
                "memory_measured": row.memory_gib,
                "memory_predicted": round(total, 2),
                "memory_error": total / row.memory_gib - 1,
            }
        out.append(entry)
    return out


def _leave_one_model_out(rows: Sequence[CalibrationRow]) -> dict[int, float]:
    """Speed error of each row when its model's rows were not in the fit."""
    errors: dict[int, float] = {}
    for name in sorted({r.spec.name for r in rows}):
        held = [i for i, r in enumerate(rows) if r.spec.name == name]
        fitted = fit_groups(r for r in rows if r.spec.name != name)
        for i in held:
            row = rows[i]
            engine, group = row.group
            entry = fitted.get(engine, {}).get(group)
            if entry is None:
                continue  # no other model measured in this group
            terms = features(row.spec, row.q, row.hw, row.placement, row.work)
            seconds = sum(entry["values"][f] * terms[f] for f in FEATURES)
            errors[i] = (
                row.work.output_tokens / seconds
            ) * row.seconds / row.work.output_tokens - 1
    return errors


def _summary(values: Sequence[float]) -> dict[str, float]:
    arr = np.abs(np.array(values))
    return {"n": len(arr), "mape": float(arr.mean()), "worst": float(arr.max())}


def _measure_prefill(model: Path, threads: int) -> dict[str, float]:
    """llama.cpp's own prompt-processing rate for a ~560-token Chinese prompt (no cache)."""
    from local_engine import xllamacpp_server

    server = xllamacpp_server(model, threads)
    try:
        text = "中国古代的四大发明包括造纸术、指南针、火药和印刷术，对世界文明影响深远。" * 24
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": 1}
        server.handle_chat_completions(dict(body))  # warm-up (caches this prompt)
        body["messages"][0]["content"] = "请总结：" + text  # a different prefix: no reuse
        result = server.handle_chat_completions(body)
        timings = result["timings"]
        return {"tokens": timings["prompt_n"], "tok_s": timings["prompt_per_second"]}
    finally:
        del server


def _local(skip: bool) -> dict[str, Any] | None:
    if skip:
        return None
    from local_engine import default_model, raw_xllamacpp

    model = default_model()
    if not model.exists():
        print(f"default model missing ({model}); run `make model` first", file=sys.stderr)
        return None
    threads = len(os.sched_getaffinity(0))
    n = 96
    hw = resolve_hardware("local")  # measures bandwidth now, before the run
    spec, q = spec_from_gguf(model)
    predicted = predict(spec, q, "llamacpp", hw, Workload(40, n)).as_json()
    measured = raw_xllamacpp(model, threads, n)
    prefill = _measure_prefill(model, threads)
    prefill_predicted = predict(spec, q, "llamacpp", hw, Workload(int(prefill["tokens"]), 1))
    return {
        "prefill_tokens": prefill["tokens"],
        "prefill_measured": prefill["tok_s"],
        "prefill_predicted": prefill_predicted.as_json()["prefill_tokens_per_s"],
        "model": model.name,
        "threads": threads,
        "read_bandwidth_gb_s": hw.device.bandwidth_gb_s,
        "gemm_tflops": hw.device.fp16_tflops,
        "decode_predicted": predicted["decode_tokens_per_s"],
        "decode_measured": measured["decode_tok_s"],
        "error": predicted["decode_tokens_per_s"] / measured["decode_tok_s"] - 1,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="write all numbers here")
    p.add_argument("--skip-local", action="store_true", help="no llama.cpp run on this machine")
    args = p.parse_args()
    rows = load_rows()
    per_row = _errors(rows)
    loo = _leave_one_model_out(rows)
    by_engine: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, entry in enumerate(per_row):
        engine = by_engine[entry["engine"]]
        engine["speed"].append(entry["speed_error"])
        if "memory_error" in entry:
            engine["memory"].append(entry["memory_error"])
        if i in loo:
            engine["speed_loo"].append(loo[i])
        everything = by_engine["all"]
        everything["speed"].append(entry["speed_error"])
        if "memory_error" in entry:
            everything["memory"].append(entry["memory_error"])
        if i in loo:
            everything["speed_loo"].append(loo[i])
    summary = {e: {k: _summary(v) for k, v in kinds.items()} for e, kinds in by_engine.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{len(rows)} published rows (Qwen2/2.5 on A100 80GB, batch 1)\n")
    print(
        f"{'profile':<19}{'rows':>5}  {'speed MAPE / worst':>20}  {'leave-one-model-out':>21}"
        f"  {'memory MAPE / worst':>21}"
    )
    for engine in sorted(summary, key=lambda e: (e == "all", e)):
        s = summary[engine]
        speed, loo_s, mem = s["speed"], s.get("speed_loo"), s.get("memory")
        loo_text = f"{loo_s['mape']:6.1%} / {loo_s['worst']:6.1%}" if loo_s else "—"
        mem_text = f"{mem['mape']:6.1%} / {mem['worst']:6.1%}" if mem else "— (not published)"
        print(
            f"{engine:<19}{speed['n']:>5}  {speed['mape']:8.1%} / {speed['worst']:6.1%}  "
            f"{loo_text:>21}  {mem_text:>21}"
        )
    total = summary["all"]
    print(
        f"\ntargets: memory MAPE {total['memory']['mape']:.1%} (≤ {TARGET_MEMORY:.0%}) "
        f"{'✅' if total['memory']['mape'] <= TARGET_MEMORY else '❌'}; speed MAPE "
        f"{total['speed']['mape']:.1%} in sample, {total['speed_loo']['mape']:.1%} leaving "
        f"each model out (≤ {TARGET_SPEED:.0%}) "
        f"{'✅' if total['speed_loo']['mape'] <= TARGET_SPEED else '❌'}"
    )
    local = _local(args.skip_local)
    if local:
        ok = abs(local["error"]) <= TARGET_LOCAL
        print(
            f"\nthis machine ({local['threads']} threads, read bandwidth "
            f"{local['read_bandwidth_gb_s']} GB/s): {local['model']} decode predicted "
            f"{local['decode_predicted']:.1f} tok/s, measured {local['decode_measured']:.1f} "
            f"tok/s, ratio {local['decode_predicted'] / local['decode_measured']:.2f} "
            f"({local['error']:+.1%}; target ±{TARGET_LOCAL:.0%}) {'✅' if ok else '❌'}"
        )
        print(
            f"(info, no target) prefill of {local['prefill_tokens']:.0f} tokens: predicted "
            f"{local['prefill_predicted']:.1f} tok/s, measured {local['prefill_measured']:.1f} "
            f"tok/s, ratio {local['prefill_predicted'] / local['prefill_measured']:.2f}"
        )
    if args.json:
        payload = {
            "summary": summary,
            "rows": per_row,
            "local": local,
            "machine": platform.platform(),
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
