"""``heshi bench``: measure this machine's embedded engine for ``heshi plan``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from heshi import __version__
from heshi.cli.database import ConfigOption
from heshi.cli.reporting import reporting_errors
from heshi.config import HeshiConfig, LocalEngineConfig, default_home, load_config
from heshi.errors import ConfigError, HeshiError, InvalidRequest
from heshi.plan.measured import bench_path

err_console = Console(stderr=True)
_CTX_PER_STREAM = 1024  # the prefill prompt and a decode phase both fit
INTERRUPTED = 130


def _streams(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if len(counts) < 2 or counts[0] != 1 or counts[-1] > 64:
        raise InvalidRequest(
            f"--streams 须含 1 及至少一个更大的数（≤ 64），如 1,2,4,8 / --streams needs 1 and at "
            f"least one larger count (≤ 64), e.g. 1,2,4,8: the planner scales from one stream; "
            f"got {text!r}",
            param="streams",
        )
    return counts


def _engine_config(config: HeshiConfig, streams: list[int]) -> LocalEngineConfig:
    """The configured engine generating (never embedding), one slot per stream, no
    speculation."""
    data = config.engine.model_dump()
    data.update(
        enabled=True,
        embeddings=False,
        pooling=None,
        parallel=max(streams),
        ctx=_CTX_PER_STREAM,
        batch=max(int(data["batch"]), *streams),
        speculative={"type": "none"},
    )
    return LocalEngineConfig.model_validate(data)


@contextmanager
def _engine_log(path: Path) -> Iterator[Console]:
    """llama.cpp logs each request to file descriptor 2: while the engine runs, that goes
    to ``path`` (kept for a failure) and the returned console writes to the terminal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "wb")  # noqa: SIM115 - closed below, after fd 2 is restored
    except OSError as exc:
        raise ConfigError(
            f"无法写入 {path}（检查 HESHI_HOME）/ cannot write {path} (check HESHI_HOME): {exc}"
        ) from exc
    if sys.stderr is not None:
        sys.stderr.flush()
    saved = os.dup(2)
    terminal = open(saved, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    os.dup2(log.fileno(), 2)
    try:
        yield Console(file=terminal, force_terminal=os.isatty(saved) or None)
    finally:
        terminal.flush()
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        log.close()


def _gateway_running(config: HeshiConfig) -> bool:
    """Something listens on the gateway's port (it would share the CPU with the bench)."""
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    try:
        with socket.create_connection((host, config.server.port), timeout=0.2):
            return True
    except OSError:
        return False


def _warn(text: str) -> None:
    err_console.print(text, style="yellow", markup=False, highlight=False)


async def _run(engine: Any, streams: list[int], status: Any) -> tuple[dict[str, Any], float]:
    from heshi.engines.bench import measure

    started = time.perf_counter()
    status.update("加载模型 / loading the model")
    await engine.start()
    loaded = time.perf_counter() - started
    try:
        result = await measure(
            engine, lambda phase: status.update(f"测量 / measuring: {phase}"), streams
        )
    finally:
        await engine.close()
    return result, loaded


def _measure(cfg: HeshiConfig, engine_cfg: LocalEngineConfig, counts: list[int]) -> dict[str, Any]:
    """Load the engine, measure, and build the result (the file's content)."""
    from heshi.engines.bench import now, unused_cpu_features
    from heshi.engines.llamacpp import LlamaCppEngine
    from heshi.hub.store import ModelStore
    from heshi.plan.gguf import spec_from_gguf
    from heshi.plan.measured import (
        FORMAT,
        effective_figures,
        engine_features,
        noisy_counts,
        this_machine,
    )

    path = ModelStore(cfg.home).resolve(engine_cfg.model)
    spec, q = spec_from_gguf(path)
    if _gateway_running(cfg):
        _warn(
            f"注意：端口 {cfg.server.port} 上有服务在运行，会与测量争用 CPU / note: something "
            f"serves on port {cfg.server.port}; it shares the CPU and lowers these numbers"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        _warn(
            f"注意：系统负载 {load:.1f}，其他程序会使结果偏低 / note: load average {load:.1f}: "
            "other work on this machine lowers these numbers"
        )
    engine = LlamaCppEngine(engine_cfg.name, path, engine_cfg)
    started = time.perf_counter()
    log = bench_path(cfg.home).with_name("engine.log")
    with _engine_log(log) as terminal:
        try:
            with terminal.status("heshi bench") as status:
                measured, load_s = asyncio.run(_run(engine, counts, status))
        except KeyboardInterrupt:
            asyncio.run(engine.close())  # llama.cpp's last lines still go to the log
            raise
        except HeshiError as exc:
            exc.message += f" (llama.cpp log: {log})"
            raise
    rates = {run["streams"]: run["tokens_per_s"] for run in measured["decode"]}
    features = engine_features()
    return {
        "format": FORMAT,
        "measured_at": now(),
        "heshi_version": __version__,
        "machine": this_machine(),
        "model": {
            "ref": engine_cfg.model,
            "name": spec.name,
            "file": str(path),
            "quantization": q.name,
        },
        "engine": {
            "threads": engine_cfg.threads,
            "batch": engine_cfg.batch,
            "kv_cache_type": engine_cfg.kv_cache_type,
            "features": features,
            "unused_cpu_features": unused_cpu_features(features),
        },
        "load_average": round(load, 2),
        "load_s": round(load_s, 2),
        **measured,
        "decode_tokens_per_s": {str(n): r for n, r in rates.items()},
        "noisy_streams": noisy_counts(rates),
        "effective": effective_figures(
            spec, q, measured["prefill_tokens"], measured["prefill_tokens_per_s"], rates
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }


def bench(
    config: ConfigOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="模型引用（默认 engine.model）/ Model ref (default: engine.model)"
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU 线程数 / CPU threads", min=1)
    ] = None,
    streams: Annotated[
        str, typer.Option("--streams", help="并发流数，须含 1 / concurrent streams, 1 included")
    ] = "1,2,4,8",
    no_save: Annotated[
        bool, typer.Option("--no-save", help="不写入结果文件 / do not write the result file")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="以 JSON 输出 / Print JSON.")] = False,
) -> None:
    """测量本机推理引擎（约一分钟），供 heshi plan --hardware local 使用。/ Measure this
    machine's embedded engine (about a minute) for heshi plan --hardware local."""
    from heshi.plan.measured import write_result

    try:
        with reporting_errors():
            counts = _streams(streams)
            cfg = load_config(config).with_overrides(
                **{"engine.model": model, "engine.threads": threads}
            )
            result = _measure(cfg, _engine_config(cfg, counts), counts)
    except KeyboardInterrupt:
        _warn("已中断，未保存结果 / interrupted: nothing saved")
        raise typer.Exit(INTERRUPTED) from None
    # the results are shown before they are saved: a failed save loses nothing
    if json_output:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        _print(result)
    _advise(result)
    if no_save:
        return
    with reporting_errors():
        try:
            saved = write_result(result, cfg.home)
        except OSError as exc:
            raise ConfigError(
                f"无法保存结果 / cannot save the result in {bench_path(cfg.home)}: {exc}"
            ) from exc
    err_console.print(f"已写入 / written: {saved}", markup=False, highlight=False)
    if cfg.home != default_home():
        _warn(
            f"heshi plan 读取 $HESHI_HOME（{default_home()}）：请设 HESHI_HOME={cfg.home} / "
            f"heshi plan reads $HESHI_HOME: set HESHI_HOME={cfg.home} for it to use this"
        )


def _advise(result: dict[str, Any]) -> None:
    noisy = result["noisy_streams"]
    if noisy:
        _warn(
            f"×{', ×'.join(map(str, noisy))} 比单流还慢：测量时有其他程序占用 CPU，结果偏低，建议"
            f"空闲时重测 / with {', '.join(map(str, noisy))} streams the engine was slower than "
            "with one: something else took the CPU; run heshi bench again when the machine is "
            "idle"
        )
    unused = result["engine"]["unused_cpu_features"]
    if unused:
        _warn(
            f"本机 CPU 支持 {', '.join(unused)}，但引擎未按其编译：`make native-engine` 可为本机"
            f"重新编译（约 6 分钟，无 llguidance）/ this CPU has {', '.join(unused)} and the "
            "engine build does not use them: `make native-engine` rebuilds it for this CPU "
            "(~6 minutes on 2 cores; no llguidance: grammars fall back to GBNF; "
            "docs/decisions.md)"
        )


def _print(result: dict[str, Any]) -> None:
    console = Console()
    model = result["model"]
    console.print(
        f"{model['name']} ({model['quantization']}) · {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores · {result['seconds']} s",
        markup=False,
        highlight=False,
    )
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    for header in ("tokens/s", "TTFT s", "÷ ×1"):
        table.add_column(header, justify="right")
    table.add_row(
        f"prefill 预填充 ({result['prefill_tokens']} tokens)",
        f"{result['prefill_tokens_per_s']:.1f}",
        f"{result['prefill_ttft_s']:.2f}",
        "",
    )
    table.add_row("short prompt 短提示", "", f"{result['ttft_s']:.2f}", "")
    one = result["decode"][0]["tokens_per_s"]
    for run in result["decode"]:
        table.add_row(
            f"decode 解码 ×{run['streams']}",
            f"{run['tokens_per_s']:.1f}",
            f"{run['ttft_s']:.2f}",
            f"{run['tokens_per_s'] / one:.2f}" if one else "",
        )
    console.print(table)
    console.print(
        "heshi plan --hardware local 将使用这些数值 / heshi plan --hardware local uses these",
        markup=False,
        highlight=False,
    )
