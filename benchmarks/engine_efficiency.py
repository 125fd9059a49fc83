"""The embedded engine's efficiency settings, measured through ``heshi serve`` over HTTP.

Four parts, each against its own baseline in the same run:

* **fair prefill** — for each ``engine.batch`` (prompt tokens per step): a ~2,000-token
  prompt's time to first token alone, then the same prompt arriving while three streams
  decode: the streams' largest pause between two tokens while it is processed, against
  their undisturbed 99th percentile gap, and its time to first token under load;
* **prompt lookup** — ``engine.speculative.type: ngram`` against ``none``: decode speed
  (tokens after the first ÷ time after the first) on document-extraction prompts (the
  document pipeline's own request, on generated invoices, contracts, bills of lading and
  statements) and knowledge-base answers (the bot's generate-style prompt over the gold
  documents), and whether every answer is the same text;
* **KV format** — the same prompts with ``kv_cache_type`` f16 and q8_0: answer agreement,
  decode speed, and the resident memory of 8 slots × 4,096 tokens;
* **batching** — whether temperature 0 gives the same text for a prompt alone twice and
  when another request shares its steps (no speculation).

    .venv/bin/python benchmarks/engine_efficiency.py --json engine-efficiency.json

``--batches 512,64,16`` picks the step sizes, ``--lookup 3:4,4:8`` the lookup settings;
``--skip-fairness`` / ``--skip-lookup`` / ``--skip-kv`` / ``--skip-batching`` leave a
part out. Nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from local_engine import (  # noqa: E402
    default_model,
    free_port,
    machine,
    server_process,
    sse_chunks,
)

KB_DOCS = HERE / "data" / "kb" / "docs"
STREAMS = 3  # decoding while the long prompt arrives
SETTLE_S = 6.0  # of decoding before it arrives
WARM_TOKENS = 5  # a stream's gaps count as undisturbed from its 5th token on


def serve(model: Path, threads: int, engine: dict[str, Any]) -> tuple[Any, str]:
    """A ``heshi serve`` child with these engine settings, and its URL."""
    port = free_port()
    home = tempfile.mkdtemp(prefix="heshi-bench-")
    config = Path(home) / "heshi.yaml"
    settings = {"home": home, "engine": {"model": str(model), "name": "bench",
                                         "threads": threads, **engine}}  # fmt: skip
    config.write_text(json.dumps(settings), encoding="utf-8")  # YAML reads JSON
    cmd = [sys.executable, "-m", "heshi", "serve", "--config", str(config), "--open",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return server_process(cmd, url, "/healthz", dict(os.environ)), url


async def stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], marks: list[float] | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One streamed chat: its text, token times, time to first token and total."""
    body = {"model": "bench", "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **body}  # fmt: skip
    marks = [] if marks is None else marks
    text: list[str] = []
    usage: dict[str, Any] = {}
    start = time.perf_counter()
    async with contextlib.aclosing(sse_chunks(client, url, body)) as chunks:
        async for chunk in chunks:
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    marks.append(time.perf_counter())
                    text.append(piece)
            if stop is not None and stop.is_set():
                break  # the stream closes: the server frees its slot
    end = time.perf_counter()
    ttft = marks[0] - start if marks else end - start
    tokens = int(usage.get("completion_tokens") or len(marks))
    decode = (tokens - 1) / (end - start - ttft) if tokens > 1 and end - start > ttft else 0.0
    return {"text": "".join(text), "ttft_s": ttft, "total_s": end - start, "tokens": tokens,
            "prompt_tokens": usage.get("prompt_tokens"), "decode_tok_s": decode}  # fmt: skip


def long_prompt(variant: str) -> dict[str, Any]:
    """~2,000 tokens: a gold knowledge-base document and a question about it."""
    doc = sorted(KB_DOCS.iterdir())[0].read_text(encoding="utf-8")
    ask = f"资料（{variant}）：\n{doc}\n\n问题：这份资料讲了什么？"
    return {
        "messages": [{"role": "user", "content": ask}],
        "max_tokens": 2,
        "cache_prompt": False,
    }


async def fairness(url: str) -> dict[str, Any]:
    timeout = httpx.Timeout(900.0)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=8)) as c:
        await stream(c, url, {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 2})
        alone = await stream(c, url, long_prompt("甲"))
        stop = asyncio.Event()
        marks: list[list[float]] = [[] for _ in range(STREAMS)]
        writers = []
        for i in range(STREAMS):
            ask = f"请详细介绍中国古代第{i + 1}项发明，写十段。"
            body = {"messages": [{"role": "user", "content": ask}], "max_tokens": 3000}
            writers.append(asyncio.create_task(stream(c, url, body, marks[i], stop)))
        await asyncio.sleep(SETTLE_S)
        sent = time.perf_counter()
        loaded = await stream(c, url, long_prompt("乙"))
        first = sent + loaded["ttft_s"]
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*writers)
    calm: list[float] = []
    during: list[tuple[float, float]] = []  # (gap, when it began, after the prompt was sent)
    # undisturbed = once every stream is past its own prompt (a few tokens in), so the
    # other streams' prompt steps are not in the baseline
    settled = max(m[min(WARM_TOKENS, len(m) - 1)] for m in marks)
    for m in marks:
        for a, b in itertools.pairwise(m):
            if settled <= a and b < sent:
                calm.append(b - a)
            elif a < first:
                during.append((b - a, a - sent))
    calm.sort()
    p99 = calm[int(0.99 * (len(calm) - 1))]
    worst, at = max(during) if during else (0.0, 0.0)
    return {
        "prompt_tokens": alone["prompt_tokens"],
        "ttft_alone_s": alone["ttft_s"],
        "ttft_loaded_s": loaded["ttft_s"],
        "streams_p50_gap_s": calm[len(calm) // 2],
        "streams_p99_gap_s": p99,
        "streams_max_gap_while_prefilling_s": worst,
        "max_gap_over_p99": worst / p99,
        "max_gap_began_s": at,
        "stream_tokens_while_prefilling": len(during),
    }


def extraction_prompts(n_per_type: int) -> list[tuple[str, dict[str, Any]]]:
    import docs_gold
    from heshi.apps.docs.extract import request
    from heshi.apps.docs.schema import load_schema

    out = []
    for doc_id, kind, _gold, lines, table in docs_gold.generate(seed=11, per_type=n_per_type):
        text = "\n".join(lines + ["\t".join(row) for row in table])
        body, _ = request(load_schema(kind), text, "bench", 6000)
        out.append((doc_id, body))
    return out


KB_QUESTIONS = {  # questions whose answers quote their document at some length
    "优品汇商城退换货与配送政策.md": "退货的流程是怎样的？运费由谁承担？",
    "华信银行借记卡常见问题.md": "借记卡在ATM取现怎么收费，有什么限额？",
    "暖居空调使用说明与保修条款.md": "空调保修期多久？哪些情况不在保修范围内？",
    "禾安保险理赔服务指南.md": "申请理赔需要准备哪些材料，流程是什么？",
    "畅联通信手机套餐资费说明.md": "有哪些套餐，每个套餐多少钱、包含什么？",
    "简舟协作版本与价格说明.md": "各个版本的价格和功能有什么区别？",
}


def kb_prompts() -> list[tuple[str, dict[str, Any]]]:
    from heshi.apps.kb.answer import ANSWER_ASK, CONTEXT, SYSTEM

    out = []
    for name, question in KB_QUESTIONS.items():
        doc = KB_DOCS / name
        text = doc.read_text(encoding="utf-8")
        parts = [p for p in text.split("\n\n") if p.strip()][:8]
        materials = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(parts, 1))
        user = CONTEXT.format(materials=materials, question=question) + ANSWER_ASK
        body = {"messages": [{"role": "system", "content": SYSTEM.format(kb=doc.stem)},
                             {"role": "user", "content": user}], "max_tokens": 300}  # fmt: skip
        out.append((f"kb-{doc.stem}", body))
    return out


async def answers(url: str, prompts: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as c:
        await stream(c, url, {"messages": [{"role": "user", "content": "你好"}], "max_tokens": 2})
        for name, body in prompts:
            result = await stream(c, url, body)
            print(f"  {name}: {result['tokens']} tokens, {result['decode_tok_s']:.2f} tok/s",
                  flush=True)  # fmt: skip
            out.append({"id": name, **result})
    return out


def common_prefix(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def lookup_summary(plain: list[dict[str, Any]], fast: list[dict[str, Any]]) -> dict[str, Any]:
    """Decode speed with and without lookup, per kind of prompt, and how far the answers
    agree (the same text, or the share of characters before they first differ)."""

    def group(kb: bool | None) -> dict[str, Any]:
        pairs = [(a, b) for a, b in zip(plain, fast, strict=True)
                 if kb is None or a["id"].startswith("kb-") == kb]  # fmt: skip

        def rate(rows: list[dict[str, Any]]) -> float:  # tokens after the first, per second
            after = sum(r["tokens"] - 1 for r in rows)
            return after / sum(r["total_s"] - r["ttft_s"] for r in rows)

        base, spec = rate([a for a, _ in pairs]), rate([b for _, b in pairs])
        agree = [common_prefix(a["text"], b["text"]) / max(len(a["text"]), 1) for a, b in pairs]
        return {
            "prompts": len(pairs),
            "decode_tok_s_none": base,
            "decode_tok_s_ngram": spec,
            "speedup": spec / base,
            "identical": sum(a["text"] == b["text"] for a, b in pairs),
            "mean_share_before_first_difference": sum(agree) / len(agree),
        }

    return {"extraction": group(False), "kb": group(True), "all": group(None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batches", default="512,64,16")
    parser.add_argument(
        "--prompt-cache-mib", type=int, help="engine.prompt_cache_mib for the fairness part"
    )
    parser.add_argument("--per-type", type=int, default=2, help="extraction documents per type")
    parser.add_argument(
        "--lookup", default="3:4,4:8",
        help="prompt-lookup settings to try, NGRAM_SIZE:DRAFT_MAX, comma-separated",
    )  # fmt: skip
    parser.add_argument("--skip-fairness", action="store_true")
    parser.add_argument("--skip-lookup", action="store_true")
    parser.add_argument("--skip-kv", action="store_true")
    parser.add_argument("--skip-batching", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model or default_model()
    res: dict[str, Any] = {"machine": machine(), "threads": args.threads}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False), encoding="utf-8")

    if not args.skip_fairness:
        res["fairness"] = []
        for batch in [int(b) for b in args.batches.split(",")]:
            engine = {"parallel": 4, "ctx": 4096, "batch": batch}
            if args.prompt_cache_mib is not None:
                engine["prompt_cache_mib"] = args.prompt_cache_mib
            running, url = serve(model, args.threads, engine)
            with running:
                row = {**engine, **asyncio.run(fairness(url))}
            print(json.dumps(row), flush=True)
            res["fairness"].append(row)
            save()
    if not args.skip_lookup:
        prompts = extraction_prompts(args.per_type) + kb_prompts()
        settings = [tuple(int(x) for x in pair.split(":")) for pair in args.lookup.split(",")]
        res["lookup"] = []
        for spec in [{"type": "none"}] + [
            {"type": "ngram", "ngram_size": n, "draft_max": m} for n, m in settings
        ]:
            print(f"speculative {spec} …", flush=True)
            engine = {"parallel": 1, "ctx": 4096, "speculative": spec}
            running, url = serve(model, args.threads, engine)
            with running:
                rows = asyncio.run(answers(url, prompts))
            if spec["type"] == "none":
                plain = res["lookup_none"] = rows
            else:
                summary = {"settings": spec, **lookup_summary(plain, rows), "rows": rows}
                res["lookup"].append(summary)
                print(json.dumps({k: v for k, v in summary.items() if k != "rows"}), flush=True)
            save()

    if not args.skip_kv:
        res["kv"] = kv_formats(
            model, args.threads, extraction_prompts(args.per_type) + kb_prompts()
        )
        print(json.dumps({k: v for k, v in res["kv"].items() if k != "rows"}), flush=True)
        save()
    if not args.skip_batching:
        running, url = serve(model, args.threads, {"parallel": 2, "ctx": 4096})
        with running:
            res["batching"] = asyncio.run(batched_text(url, kb_prompts()[:3]))
        print(json.dumps(res["batching"]), flush=True)
        save()


async def batched_text(url: str, prompts: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Whether temperature 0 gives the same text for a prompt alone twice, and when it
    shares its decode steps with another request (no speculation either way)."""
    other = {"messages": [{"role": "user", "content": "请详细介绍长城的历史，写五段。"}],
             "max_tokens": 300}  # fmt: skip
    rows = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as c:
        for name, prompt in prompts:
            body = prompt | {"max_tokens": 200, "cache_prompt": False}
            alone = (await stream(c, url, body))["text"]
            again = (await stream(c, url, body))["text"]
            _, together = await asyncio.gather(stream(c, url, other), stream(c, url, body))
            rows.append({
                "id": name,
                "alone_twice_same": alone == again,
                "batched_same": alone == together["text"],
                "share_before_difference": common_prefix(alone, together["text"]) / len(alone),
            })  # fmt: skip
    return {
        "prompts": len(rows),
        "alone_twice_same": sum(r["alone_twice_same"] for r in rows),
        "batched_same": sum(r["batched_same"] for r in rows),
        "rows": rows,
    }


def kv_formats(
    model: Path, threads: int, prompts: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The same prompts with an f16 and a q8_0 KV cache: agreement, speed, memory."""
    rows, memory = {}, {}
    for kind in ("f16", "q8_0"):
        print(f"kv_cache_type {kind} …", flush=True)
        running, url = serve(model, threads, {"parallel": 1, "ctx": 4096, "kv_cache_type": kind})
        with running:
            rows[kind] = asyncio.run(answers(url, prompts))
        memory[kind] = kv_memory(model, threads, kind)
    agree = [
        common_prefix(a["text"], b["text"]) / max(len(a["text"]), 1)
        for a, b in zip(rows["f16"], rows["q8_0"], strict=True)
    ]
    rate = {k: sum(r["tokens"] - 1 for r in v) / sum(r["total_s"] - r["ttft_s"] for r in v)
            for k, v in rows.items()}  # fmt: skip
    return {
        "prompts": len(prompts),
        "identical": sum(
            a["text"] == b["text"] for a, b in zip(rows["f16"], rows["q8_0"], strict=True)
        ),
        "mean_share_before_first_difference": sum(agree) / len(agree),
        "decode_tok_s": rate,
        "rss_mib_parallel8_ctx4096": memory,
        "rows": rows,
    }


def kv_memory(model: Path, threads: int, kind: str) -> float:
    """Resident memory (MiB) of a server holding 8 slots of 4,096 tokens, after one
    request: weights plus the KV cache it allocated."""
    running, url = serve(model, threads, {"parallel": 8, "ctx": 4096, "kv_cache_type": kind})
    with running:
        hello = {"role": "user", "content": "你好"}
        body = {"model": "bench", "messages": [hello], "max_tokens": 2}
        httpx.post(url + "/v1/chat/completions", timeout=300, json=body)
        pid = running_pid(url)
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
    return rss / 1024


def running_pid(url: str) -> int:
    """The ``heshi serve`` child listening at ``url``."""
    port = url.rsplit(":", 1)[1]
    found = subprocess.run(
        ["pgrep", "-f", f"heshi serve .*port {port}"], check=True, capture_output=True, text=True
    )
    return int(found.stdout.split()[0])


if __name__ == "__main__":
    main()
