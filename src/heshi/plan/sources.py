"""Published speed measurements from many sources, as targets for the speed fit.

``heshi/plan/data/published_speed.csv`` holds measurements other people published —
engine projects' benchmark posts and issues, vendors' tables, MLPerf-style results —
one row per number with its source URL and a verbatim quote. Qwen's own A100 tables
(``qwen_speed_calibration.csv``) join them as two sources (the Qwen2 and the Qwen2.5
table). Each row says what was measured (``metric``), and that decides which part of
the request's time it constrains:

============================  ===========================================  ==========
metric                        seconds it pins down                         part
============================  ===========================================  ==========
``e2e_tok_s_per_seq``         output / value (the whole request)           whole
``output_throughput``         batch · output / value                       whole
``total_throughput``          batch · (input + output) / value             whole
``decode_tok_s_per_seq``      output / value (decode steps only)           decode
``tpot_ms``                   output · value / 1000                        decode
``prefill_tok_s``             batch · input / value                        prefill
``ttft_s``                    value (batch 1)                              prefill
============================  ===========================================  ==========

Rows are grouped by engine, quantization kernels and architecture (dense or MoE), so a
MoE model's expert kernels are fitted on MoE measurements, not borrowed from dense ones.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from heshi import catalog
from heshi.catalog import Hardware, ModelSpec
from heshi.plan.memory import Workload
from heshi.plan.quant import Quant, quant
from heshi.plan.speed import FEATURES, PREFILL_FEATURES, Placement, features, quant_group

PARTS = {
    "e2e_tok_s_per_seq": "whole",
    "output_throughput": "whole",
    "total_throughput": "whole",
    "decode_tok_s_per_seq": "decode",
    "tpot_ms": "decode",
    "prefill_tok_s": "prefill",
    "ttft_s": "prefill",
}
# Engine names as sources write them → the planner's profiles.
_ENGINES = {"llama.cpp": "llamacpp", "tensorrt-llm": "trtllm", "trt-llm": "trtllm"}


def arch(spec: ModelSpec) -> str:
    """The kernel family of the model's feed-forward layers: ``moe`` or ``dense``."""
    return "moe" if spec.moe is not None else "dense"


@dataclass(frozen=True)
class Measurement:
    """One published number, resolved against the catalog."""

    source: str  # one id per source document: the unit left out in cross-validation
    spec: ModelSpec
    q: Quant
    engine: str
    hw: Hardware  # the devices one server instance uses
    tensor_parallel: bool
    work: Workload
    metric: str
    value: float
    url: str

    @property
    def part(self) -> str:
        return PARTS[self.metric]

    @property
    def arch(self) -> str:
        return arch(self.spec)

    @property
    def group(self) -> tuple[str, str, str]:
        return self.engine, quant_group(self.q), self.arch

    @property
    def seconds(self) -> float:
        """The wall time the number implies for the part it measures."""
        w, v = self.work, self.value
        return {
            "e2e_tok_s_per_seq": w.output_tokens / v,
            "output_throughput": w.batch * w.output_tokens / v,
            "total_throughput": w.batch * (w.input_tokens + w.output_tokens) / v,
            "decode_tok_s_per_seq": w.output_tokens / v,
            "tpot_ms": w.output_tokens * v / 1000,
            "prefill_tok_s": w.batch * w.input_tokens / v,
            "ttft_s": v,
        }[self.metric]

    def terms(self) -> dict[str, float]:
        """The speed model's terms for the part of the request this number measures."""
        work = self.work
        if self.part == "prefill":
            work = Workload(work.input_tokens, 1, work.batch, work.kv_bytes)
        place = Placement(self.hw.count, self.tensor_parallel)
        full = features(self.spec, self.q, self.hw, place, work)
        if self.part == "whole":
            # a request's fixed cost is tens of milliseconds: beside a whole request's time
            # it cannot be identified (a fit would trade seconds of it against the rest),
            # so only time-to-first-token and prefill measurements fit it
            return {**full, "request": 0.0}
        if self.part == "prefill":
            return {f: (full[f] if f in PREFILL_FEATURES else 0.0) for f in FEATURES}
        return {f: (0.0 if f in PREFILL_FEATURES else full[f]) for f in FEATURES}

    def predicted_value(self, seconds: float) -> float:
        """The metric's value had the part taken ``seconds``."""
        if self.metric in ("ttft_s", "tpot_ms"):  # times: proportional to the seconds
            return self.value * seconds / self.seconds
        return self.value * self.seconds / seconds  # rates: inversely


def published_csv() -> Path:
    return Path(str(resources.files("heshi.plan").joinpath("data").joinpath("published_speed.csv")))


def _int(text: str, default: int) -> int:
    text = (text or "").strip()
    return int(float(text)) if text else default


def resolve(raw: dict[str, str]) -> Measurement:
    """A row of ``published_speed.csv`` (raises on names the catalog does not know)."""
    metric = raw["metric"].strip()
    if metric not in PARTS:
        raise ValueError(f"unknown metric {metric!r}")
    engine = raw["engine"].strip().lower()
    engine = _ENGINES.get(engine, engine)
    gpus = _int(raw.get("gpu_num", ""), 1)
    tp = _int(raw.get("tp", ""), gpus)
    work = Workload(
        _int(raw["input_length"], 0),
        max(_int(raw["output_length"], 1), 1),
        max(_int(raw.get("batch", ""), 1), 1),
    )
    return Measurement(
        source=raw["source_id"].strip(),
        spec=catalog.model(raw["model"].strip()),
        q=quant(raw["quantization"]),
        engine=engine,
        hw=catalog.hardware(f"{tp}x {raw['hardware'].strip()}"),
        tensor_parallel=engine != "llamacpp" and tp > 1,
        work=work,
        metric=metric,
        value=float(raw["value"]),
        url=raw["source_url"].strip(),
    )


def load(path: Path | None = None) -> list[Measurement]:
    with (path or published_csv()).open(newline="", encoding="utf-8") as handle:
        return [resolve(raw) for raw in csv.DictReader(handle)]
