"""Local engine benchmark: Heshi over HTTP vs raw llama.cpp and vs llama_cpp.server.

Run with ``make bench`` (installs the ``bench`` extra: llama-cpp-python[server]).
Everything runs in one process run, one thing at a time, on the same model and thread
count, so machine noise affects both sides alike. Prints a table and the ratios the
serve issue sets targets for; ``--json FILE`` saves the raw numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

QUESTION = "请用中文详细介绍中国古代的四大发明，每一项写两段，说明它的历史和影响。"
TOPICS = ["四大发明", "长城", "丝绸之路", "京杭大运河", "敦煌莫高窟", "兵马俑", "故宫", "都江堰"]


@dataclass
class StreamResult:
    tokens: int
    ttft: float  # seconds to the first content token
    total: float  # seconds to the last byte
    failed: bool = False  # the server cut the stream short
    prompt_tokens: int = 0  # as the server counted them (0 if it did not say)
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    marks: tuple[float, ...] = ()  # arrival time of each content chunk (perf_counter)

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first token (pure decode)."""
        span = self.total - self.ttft
        return (self.tokens - 1) / span if span > 0 and self.tokens > 1 else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def question(i: int) -> str:
    topic = TOPICS[i % len(TOPICS)]
    return f"请用中文详细介绍{topic}，写三段，说明它的历史、建造和影响。"


async def sse_chunks(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """The chunks of one streamed chat completion, parsed."""
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    messages: list[dict[str, str]],
    n: int,
    **extra: Any,
) -> StreamResult:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": n,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    start = time.perf_counter()
    ttft = 0.0
    tokens = 0
    pieces = 0
    failed = False
    prompt_tokens = cached = 0
    marks: list[float] = []
    try:
        async for chunk in sse_chunks(client, url, body):
            if chunk.get("usage"):
                usage = chunk["usage"]
                tokens = usage["completion_tokens"]
                prompt_tokens = usage.get("prompt_tokens", 0)
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    pieces += 1
                    marks.append(time.perf_counter())
                    if not ttft:
                        ttft = marks[-1] - start
    except httpx.RemoteProtocolError:
        # llama_cpp.server sometimes drops a stream under concurrency; count what arrived
        failed = True
        tokens = 0
    total = time.perf_counter() - start
    return StreamResult(
        tokens or pieces, ttft, total, failed, prompt_tokens, cached or 0, tuple(marks)
    )


def decode_window(results: list[StreamResult]) -> float | None:
    """Aggregate decode rate while every stream decodes (content chunks ≈ tokens), the
    same window ``heshi bench`` uses; None when a stream has fewer than two chunks."""
    from heshi.engines.bench import StreamTrace, window_rate

    if any(len(r.marks) < 2 for r in results):
        return None
    traces = [
        StreamTrace(started=0.0, times=list(r.marks), tokens=list(range(1, len(r.marks) + 1)))
        for r in results
    ]
    return window_rate(traces)


async def aggregate(url: str, model: str, clients: int, n: int) -> dict[str, float]:
    """``clients`` concurrent streams; aggregate completion tokens per second of wall time."""
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0), limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                stream_chat(client, url, model, [{"role": "user", "content": question(i)}], n)
                for i in range(clients)
            )
        )
        wall = time.perf_counter() - start
    tokens = sum(r.tokens for r in results)
    return {
        "clients": clients,
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tok_s": tokens / wall,
        "mean_ttft_s": sum(r.ttft for r in results) / clients,
        "broken_streams": sum(r.failed for r in results),
        "decode_window_tok_s": decode_window(results),
    }


@contextmanager
def server_process(
    cmd: list[str], url: str, ready_path: str, env: dict[str, str]
) -> Iterator[None]:
    # The servers log a lot; a pipe nobody reads would fill up and block them.
    with tempfile.TemporaryFile() as log:
        yield from _supervise(cmd, url, ready_path, env, log)


def _supervise(
    cmd: list[str], url: str, ready_path: str, env: dict[str, str], log: Any
) -> Iterator[None]:
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{cmd} exited: {log.read().decode()[-2000:]}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd} did not become ready")
            time.sleep(0.5)
        try:
            yield
        except Exception:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            print(f"--- last output of {cmd[2]} ---\n{tail}", file=sys.stderr)
            raise
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def xllamacpp_server(model: Path, threads: int) -> Any:
    """llama.cpp's server loop in process: one slot, 4,096-token context, ``threads``."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.n_parallel = 1
    params.n_ctx = 4096
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.port = 0
    return xllamacpp.Server(params)


def raw_xllamacpp(model: Path, threads: int, n: int) -> dict[str, float]:
    """The ceiling: llama.cpp's server loop in process, no HTTP, one stream."""
    server = xllamacpp_server(model, threads)
    try:
        body = {
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": n,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        server.handle_chat_completions(dict(body, max_tokens=8, stream=False))  # warm-up
        marks: list[float] = []
        last: dict[str, Any] = {}

        def on_chunk(data: dict[str, Any]) -> bool:
            if data.get("choices") and (data["choices"][0].get("delta") or {}).get("content"):
                marks.append(time.perf_counter())
            if data.get("usage"):
                last.update(data)
            return False

        start = time.perf_counter()
        server.handle_chat_completions(body, on_chunk)
        tokens = last["usage"]["completion_tokens"]
        result = StreamResult(tokens, marks[0] - start, marks[-1] - start)
        return {
            "tokens": tokens,
            "decode_tok_s": result.decode_rate,
            "llama_timings_tok_s": last["timings"]["predicted_per_second"],
        }
    finally:
        del server


def raw_llama_cpp_python(model: Path, threads: int, n: int) -> dict[str, float]:
    """llama-cpp-python's own in-process decode, for the engine decision."""
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    messages = [{"role": "user", "content": QUESTION}]
    llm.create_chat_completion(messages, max_tokens=8, temperature=0)  # warm-up
    marks: list[float] = []
    start = time.perf_counter()
    for chunk in llm.create_chat_completion(messages, max_tokens=n, temperature=0, stream=True):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):  # type: ignore[index]
            marks.append(time.perf_counter())
    llm.close()
    result = StreamResult(len(marks), marks[0] - start, marks[-1] - start)
    return {"tokens": len(marks), "decode_tok_s": result.decode_rate}


def in_child(func: Any, *args: Any) -> Any:
    """``func(*args)`` in a child process, so that a baseline that crashes the
    interpreter (llama-cpp-python's build segfaults on some CPUs) fails alone."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(func, *args).result()
        except BrokenProcessPool as exc:
            raise RuntimeError("its process crashed (e.g. a segmentation fault)") from exc


def raw_batched_decode(model: Path, threads: int, sequences: list[int]) -> list[dict[str, float]]:
    """The batching ceiling: llama.cpp decoding N sequences per step, no server, no sampling.

    Uses llama-cpp-python's low-level API (its build is native to this CPU), so it shows
    how much a batch of N can gain here at all, whoever schedules it.
    """
    import llama_cpp as lc

    lc.llama_backend_init()
    lm = lc.llama_model_load_from_file(str(model).encode(), lc.llama_model_default_params())
    vocab = lc.llama_model_get_vocab(lm)
    prompt = QUESTION.encode()
    ids = (lc.llama_token * 256)()
    n_prompt = lc.llama_tokenize(vocab, prompt, len(prompt), ids, 256, True, False)
    out = []
    for n_seq in sequences:
        cparams = lc.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_seq_max = 4096, 512, n_seq
        cparams.n_threads = cparams.n_threads_batch = threads
        ctx = lc.llama_init_from_model(lm, cparams)
        batch = lc.llama_batch_init(512, 0, n_seq)

        def fill(items: list[tuple[int, int, int, bool]], batch: Any = batch) -> None:
            batch.n_tokens = len(items)
            for i, (tok, pos, seq, logits) in enumerate(items):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits

        fill([(ids[j], j, s, j == n_prompt - 1) for s in range(n_seq) for j in range(n_prompt)])
        lc.llama_decode(ctx, batch)
        steps = 48
        start = time.perf_counter()
        for step in range(steps):
            fill([(ids[step % n_prompt], n_prompt + step, s, True) for s in range(n_seq)])
            lc.llama_decode(ctx, batch)
        rate = n_seq * steps / (time.perf_counter() - start)
        out.append({"sequences": n_seq, "tok_s": rate})
        lc.llama_batch_free(batch)
        lc.llama_free(ctx)
    lc.llama_model_free(lm)
    return out


async def prefix_cache_ttft(url: str, model: str) -> dict[str, float]:
    """TTFT for a ~500-token question behind a shared ~1000-token system prompt.

    Sizes for the Qwen2.5 tokenizer: the system prompt is 1,003 tokens with its chat
    markup, each question ~500; the server's own counts are reported with the times.
    """
    system = {
        "role": "system",
        "content": ("你是一家银行的客服助手，回答要准确、礼貌、简洁。" * 66),
    }

    def user(i: int) -> dict[str, str]:
        return {
            "role": "user",
            "content": f"第{i}位客户的问题：" + ("我的银行卡昨天在外地被冻结了，怎么办？" * 44),
        }

    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as client:
        await stream_chat(client, url, model, [system, user(0)], 1)  # warms the shared prefix
        cached = await stream_chat(client, url, model, [system, user(1)], 4)
        cold = await stream_chat(client, url, model, [system, user(2)], 4, cache_prompt=False)
    return {
        "ttft_cached_s": cached.ttft,
        "ttft_uncached_s": cold.ttft,
        "prompt_tokens": cached.prompt_tokens,
        "cached_tokens": cached.cached_tokens,
        "uncached_run_cached_tokens": cold.cached_tokens,
    }


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, {platform.python_version()}, {platform.machine()}"


def default_model() -> Path:
    from heshi.config import DEFAULT_MODEL_REF, default_home
    from heshi.hub.store import ModelStore

    return ModelStore(default_home()).resolve(DEFAULT_MODEL_REF)


async def bench_heshi(args: argparse.Namespace, model: Path, env: dict[str, str]) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "heshi",
        "serve",
        "--model",
        str(model),
        "--name",
        "bench",
        "--port",
        str(port),
        "--parallel",
        str(max(args.clients)),
        "--ctx",
        "2048",
        "--threads",
        str(args.threads),
        "--log-level",
        "warning",
    ]
    out: dict[str, Any] = {}
    with server_process(cmd, url, "/healthz", env):
        async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as client:
            await stream_chat(client, url, "bench", [{"role": "user", "content": "你好"}], 4)
            single = await stream_chat(
                client, url, "bench", [{"role": "user", "content": QUESTION}], args.tokens
            )
        out["single_decode_tok_s"] = single.decode_rate
        out["aggregate"] = [await aggregate(url, "bench", c, args.tokens) for c in args.clients]
        out["prefix_cache"] = await prefix_cache_ttft(url, "bench")
    return out


async def bench_llama_cpp_server(
    args: argparse.Namespace, model: Path, env: dict[str, str]
) -> list[dict[str, float]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(args.threads),
        "--n_threads_batch",
        str(args.threads),
        "--n_ctx",
        "2048",
    ]
    out = []
    with server_process(cmd, url, "/v1/models", env):
        async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as client:
            await stream_chat(client, url, "bench", [{"role": "user", "content": "你好"}], 4)
        for clients in args.clients:
            # llama_cpp.server sometimes cuts concurrent streams; up to 3 attempts for a
            # run where every stream completes, and the cut ones are reported
            cut = []
            for _ in range(3):
                result = await aggregate(url, "bench", clients, args.tokens)
                if not result["broken_streams"]:
                    break
                cut.append(result["broken_streams"])
            result["earlier_attempts_cut_streams"] = cut
            out.append(result)
    return out


def report(res: dict[str, Any]) -> None:
    heshi = res["heshi"]
    print(f"\nmachine: {res['machine']}; threads={res['threads']}; tokens/stream={res['tokens']}")
    print(f"raw xllamacpp in-process decode     : {res['raw_xllamacpp']['decode_tok_s']:.2f} tok/s")
    for key, value in res.items():
        if isinstance(value, dict) and "error" in value:
            print(f"{key}: not measured — {value['error']}")
    if "decode_tok_s" in res.get("raw_llama_cpp_python", {}):
        lcp = res["raw_llama_cpp_python"]["decode_tok_s"]
        print(f"raw llama-cpp-python decode         : {lcp:.2f} tok/s")
    print(f"heshi serve single stream over HTTP : {heshi['single_decode_tok_s']:.2f} tok/s")
    ceiling = heshi["single_decode_tok_s"] / res["raw_xllamacpp"]["decode_tok_s"]
    print(f"  ratio heshi/raw = {ceiling:.2f}  (target >= 0.90)")
    served = res.get("llama_cpp_server", [])
    base = {a["clients"]: a for a in served} if isinstance(served, list) else {}
    print("\nclients  heshi tok/s  llama_cpp.server tok/s  ratio")
    for a in heshi["aggregate"]:
        b = base.get(a["clients"])
        other = f"{b['aggregate_tok_s']:.2f}" if b else "-"
        ratio = f"{a['aggregate_tok_s'] / b['aggregate_tok_s']:.2f}" if b else "-"
        broken = (
            f"  ({b['broken_streams']} streams cut by the server)"
            if b and b["broken_streams"]
            else ""
        )
        print(f"{a['clients']:>7}  {a['aggregate_tok_s']:>11.2f}  {other:>22}  {ratio:>5}{broken}")
    agg = {a["clients"]: a["aggregate_tok_s"] for a in heshi["aggregate"]}
    if 1 in agg and 4 in agg:
        print(f"  heshi 4 clients / 1 client = {agg[4] / agg[1]:.2f}  (target >= 1.3)")
    if 4 in agg and 4 in base:
        vs = agg[4] / base[4]["aggregate_tok_s"]
        print(f"  heshi / llama_cpp.server at 4 clients = {vs:.2f}  (target >= 1.8)")
    if isinstance(res.get("raw_batched_decode"), list):
        ceil = {r["sequences"]: r["tok_s"] for r in res["raw_batched_decode"]}
        line = ", ".join(f"{k} seq {v:.1f}" for k, v in ceil.items())
        print(f"  raw llama.cpp batched decode ceiling (tok/s): {line}")
        if 1 in ceil and 4 in ceil:
            print(f"  ceiling 4 seq / 1 seq = {ceil[4] / ceil[1]:.2f}")
        for a in heshi["aggregate"]:
            window, top = a.get("decode_window_tok_s"), ceil.get(a["clients"])
            if window and top and a["clients"] > 1:
                print(
                    f"  heshi decode while {a['clients']} streams decode: {window:.1f} tok/s = "
                    f"{window / top:.2f} of the ceiling  (target >= 0.90)"
                )
    pc = heshi["prefix_cache"]
    print(
        f"\nTTFT, {pc['prompt_tokens']}-token prompt of which {pc['cached_tokens']} came "
        f"from the prefix cache (shared system prompt): cached "
        f"{pc['ttft_cached_s']:.2f} s, uncached {pc['ttft_uncached_s']:.2f} s "
        f"(x{pc['ttft_uncached_s'] / pc['ttft_cached_s']:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", type=Path, help="GGUF path (default: the embedded default model)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=96, help="tokens generated per stream")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--skip-baseline", action="store_true", help="skip llama-cpp-python runs")
    parser.add_argument("--json", type=Path, help="write raw results here")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    model = args.model or default_model()
    env = dict(os.environ)
    res: dict[str, Any] = {"machine": machine(), "threads": args.threads, "tokens": args.tokens}

    def phase(key: str, label: str, run: Any, baseline: bool = False) -> None:
        print(f"{label} …", flush=True)
        try:
            res[key] = run()
        except Exception as exc:  # a baseline that fails is reported; Heshi's must not
            if not baseline:
                raise
            res[key] = {"error": f"{type(exc).__name__}: {str(exc)[-300:]}"}
        print(json.dumps({key: res[key]}, ensure_ascii=False), flush=True)
        if args.json:  # after every phase, so a later failure loses nothing
            args.json.write_text(json.dumps(res, indent=2, ensure_ascii=False), encoding="utf-8")

    phase("raw_xllamacpp", "raw xllamacpp", lambda: raw_xllamacpp(model, args.threads, args.tokens))
    if not args.skip_baseline:
        phase(
            "raw_llama_cpp_python",
            "raw llama-cpp-python",
            lambda: in_child(raw_llama_cpp_python, model, args.threads, args.tokens),
            baseline=True,
        )
    if not args.skip_baseline:
        phase(
            "raw_batched_decode",
            "raw llama.cpp batched decode",
            lambda: in_child(raw_batched_decode, model, args.threads, args.clients),
            baseline=True,
        )
    phase("heshi", "heshi serve", lambda: asyncio.run(bench_heshi(args, model, env)))
    if not args.skip_baseline:
        phase(
            "llama_cpp_server",
            "llama_cpp.server",
            lambda: asyncio.run(bench_llama_cpp_server(args, model, env)),
            baseline=True,
        )
    report(res)


if __name__ == "__main__":
    main()
