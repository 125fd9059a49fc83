"""What ``heshi plan`` recommends for eight realistic deployments, and why.

Prints a Markdown table (and with ``--json`` every option) for: 1× T4, 1× L20, 2× A100,
8× H20, 1× Ascend 910B, 2× V100, a 32-core CPU server and this machine. The
recommendations and an inference engineer's review of them are recorded in
docs/benchmarks.md ("Plan scenarios").

    .venv/bin/python benchmarks/plan_scenarios.py [--json scenarios.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from heshi.plan.report import build_request, plan_json

# (title, hardware, workload, concurrent users, context) — what each kind of buyer runs
SCENARIOS = (
    ("branch office, one T4", "1x nvidia-t4-16gb", "customer-service", 20, 8192),
    ("department, one L20", "1x nvidia-l20-48gb", "customer-service", 50, 8192),
    ("bank contact centre, 2× A100", "2x nvidia-a100-80gb", "customer-service", 200, 8192),
    ("analyst reasoning, 8× H20", "8x nvidia-h20-96gb", "reasoning", 64, 16384),
    ("invoice extraction, one 910B", "1x huawei-ascend-910b", "document-extraction", 16, 16384),
    ("legacy cluster, 2× V100", "2x nvidia-v100-32gb", "customer-service", 32, 8192),
    ("32-core CPU server", "1x intel-xeon-gold-6338-256gb", "customer-service", 8, 8192),
    ("this machine", "local", "customer-service", 4, 8192),
)


def _short(option: dict[str, Any] | None) -> str:
    if option is None:
        return "—"
    rate = option["per_user_tokens_per_s"]
    speed = (
        "speed unknown (service level not checked)"
        if rate is None
        else f"{rate:g} tok/s/user, TTFT p95 {option['ttft_p95_s']} s"
    )
    copies = f" ×{option['replicas']}" if option["replicas"] > 1 else ""
    return (
        f"{option['model'].split('/')[-1]} {option['quant']} on {option['engine']} "
        f"TP{option['tensor_parallel']}{copies}; {speed}; "
        f"MMLU-Redux {option['quality']}, C-Eval {option['ceval']}"
    )


def run() -> list[dict[str, Any]]:
    out = []
    for title, hardware, workload, users, context in SCENARIOS:
        req = build_request(
            hardware=hardware, workload=workload, concurrency=users, context=context
        )
        plan = plan_json(req, top=50)
        options = plan["options"]
        out.append(
            {
                "scenario": title,
                "hardware": hardware,
                "workload": workload,
                "users": users,
                "context": context,
                "service_level": plan["service_level"],
                "best": options[0] if options else None,
                "runner_up": next(
                    (o for o in options[1:] if o["model"] != options[0]["model"]), None
                ),
                "rejected": [
                    {"model": r["model"], "reasons": r["reasons"][:1]} for r in plan["rejected"]
                ],
                "smallest_change": plan["smallest_change"],
                "notes": options[0]["notes"] if options else [],
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = run()
    print("| scenario | workload, users | recommendation | runner-up | larger models rejected |")
    print("|---|---|---|---|---|")
    for r in results:
        rejected = "; ".join(
            f"{x['model'].split('/')[-1]}: {x['reasons'][0].split(' / ')[-1]}"
            for x in r["rejected"][:2]
            if x["reasons"]
        )
        best = _short(r["best"]) if r["best"] else f"nothing fits — {r['smallest_change']}"
        print(
            f"| {r['scenario']} | {r['workload']}, {r['users']} × {r['context'] // 1024}k | "
            f"{best} | {_short(r['runner_up'])} | {rejected or '—'} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", "utf-8")


if __name__ == "__main__":
    main()
