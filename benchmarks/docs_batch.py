"""Wall time of ``heshi docs run`` over a directory of the gold set — with 1 worker, with 2,
and with ``--ray auto`` (a local Ray instance) — and the field F1 of each run's results,
read from its JSON Lines file (the shipped path end to end, ``--schema auto``: each
document classified, then extracted).

    .venv/bin/python benchmarks/docs_batch.py [--format scan] [--per-type 15]
        [--runs 1,2,ray] [--json FILE]

Each run is a fresh ``heshi docs run`` process with the embedded default model and an empty
results file, one after the other (the machine's cores are the resource measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from docs import count, machine, prf  # noqa: E402
from docs_gold import FORMATS  # noqa: E402

HESHI = Path(sys.executable).with_name("heshi")


def one_run(folder: Path, out: Path, run: str) -> float:
    command = [str(HESHI), "docs", "run", str(folder), "--schema", "auto", "--out", str(out)]
    command += ["--ray", "auto", "--workers", "2"] if run == "ray" else ["--workers", run]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    print(f"[{run}] exit {done.returncode}, {seconds:.1f} s: {done.stdout.strip()}", flush=True)
    if done.returncode not in (0, 1):
        print(done.stderr[-2000:], file=sys.stderr)
    return seconds


def score(gold: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    tp = fp = fn = failed = 0
    kinds_right = 0
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines() if line.strip()]
    for row in rows:
        doc = gold[Path(row["file"]).stem]
        kinds_right += row.get("type") == doc["type"]
        if row["status"] != "ok":
            failed += 1
            fn += sum(v is not None for v in doc["fields"].values())
            continue
        same_kind = row.get("type") == doc["type"]
        a, b, c = count(doc["fields"], row["fields"] if same_kind else None)
        tp, fp, fn = tp + a, fp + b, fn + c
    return {
        "files": len(rows), "failed": failed, "kind_accuracy": round(kinds_right / len(rows), 3),
        **prf(tp, fp, fn),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--format", default="scan", choices=FORMATS)
    parser.add_argument("--per-type", type=int, default=15)
    parser.add_argument("--runs", default="1,2,ray")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = args.runs.split(",")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(
            [sys.executable, str(HERE / "docs_gold.py"), str(root), "--per-type",
             str(args.per_type), "--seed", str(args.seed), "--formats", args.format],
            check=True,
        )  # fmt: skip
        documents = json.loads((root / "gold.json").read_text("utf-8"))["documents"]
        gold = {d["id"]: d for d in documents}
        for run in runs:
            out = root / f"results-{run}.jsonl"
            seconds = one_run(root / args.format, out, run)
            results[run] = {"seconds": round(seconds, 1), **score(gold, out)}
            print(json.dumps({run: results[run]}, ensure_ascii=False), flush=True)
    base = results.get(runs[0], {}).get("seconds")
    for run in runs:
        if base:
            results[run]["speedup_vs_" + runs[0]] = round(base / results[run]["seconds"], 2)
    report = {"machine": machine(), "format": args.format, "per_type": args.per_type,
              "runs": results}  # fmt: skip
    print(json.dumps(report, ensure_ascii=False, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
