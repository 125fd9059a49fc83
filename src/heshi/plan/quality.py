"""Published quality of each model, and the key the planner ranks by.

``heshi/catalog/data/quality.csv`` holds the instruct models' published scores, one row
per model × mode (thinking / non-thinking / n/a) × benchmark, each with its source URL
and a verbatim quote of the table row (collected from the Qwen2, Qwen2.5 and Qwen3
technical reports, Qwen's blogs and model cards; see catalog/data/SOURCES.md).

Ranking uses **MMLU-Redux** of the instruct model in the mode the workload runs
(reasoning: thinking; the others: non-thinking): it is the one benchmark published for
nearly every model on one harness across generations (the Qwen3 report's tables cover
Qwen2.5, Qwen3, QwQ and the DeepSeek models; the Qwen2.5 report covers Qwen2). C-Eval is
shown beside it as the Chinese score, and ``--min-quality`` takes any benchmark here.
Qwen3.5 and 3.6 publish thinking-mode scores only; those stand in for both modes.

Scores within ``SAME_QUALITY`` points count as equal: then the newer generation wins,
then the cheaper deployment.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources

from heshi.catalog import ModelSpec
from heshi.errors import InvalidRequest

RANK_BY = "mmlu_redux"
# Models with no non-thinking mode: every answer starts with a long chain of thought
ALWAYS_THINKING = frozenset(
    {
        "Qwen/QwQ-32B",
        "deepseek-ai/DeepSeek-R1",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    }
)
SAME_QUALITY = 1.0  # points of MMLU-Redux within which two models count as equal
BENCHMARKS = (
    "ceval",
    "cmmlu",
    "mmlu_redux",
    "mmlu_pro",
    "mmlu",
    "ifeval",
    "arena_hard",
    "math500",
    "aime25",
    "gsm8k",
    "math",
    "humaneval",
)

# When each generation's open weights were released (the recommendation prefers the newer
# of two equal-quality models).
RELEASED = {
    "Qwen2": (date(2024, 6, 7), "https://qwenlm.github.io/blog/qwen2/"),
    "Qwen2.5": (date(2024, 9, 19), "https://qwenlm.github.io/blog/qwen2.5/"),
    "QwQ": (date(2025, 3, 6), "https://qwenlm.github.io/blog/qwq-32b/"),
    "Qwen3": (date(2025, 4, 29), "https://qwenlm.github.io/blog/qwen3/"),
    "Qwen3.5": (
        date(2026, 2, 16),
        "https://www.nxcode.io/resources/news/qwen-3-5-developer-guide-api-visual-agents-2026",
    ),
    "Qwen3.6": (date(2026, 4, 16), "https://bbs.qiongdian.com/archiver/tid-47556"),
}


@dataclass(frozen=True)
class Score:
    value: float
    mode: str  # the mode it was measured in
    source_url: str


@cache
def _table() -> dict[tuple[str, str, str], Score]:
    text = (
        resources.files("heshi.catalog").joinpath("data").joinpath("quality.csv").read_text("utf-8")
    )
    table: dict[tuple[str, str, str], Score] = {}
    for row in csv.DictReader(text.splitlines()):
        key = (row["model"], row["benchmark"], row["mode"])
        table[key] = Score(float(row["score"]), row["mode"], row["source_url"])
    return table


def score(spec: ModelSpec, benchmark: str, mode: str = "non-thinking") -> Score | None:
    """The published ``benchmark`` score of ``spec`` in ``mode`` (the other mode, or the
    catalog's own figure, when only that is published)."""
    table = _table()
    other = "thinking" if mode == "non-thinking" else "non-thinking"
    for m in (mode, "n/a", other):
        found = table.get((spec.id, benchmark, m))
        if found is not None:
            return found
    legacy = spec.quality.get(benchmark)
    if legacy is not None:
        return Score(float(legacy), "n/a", spec.quality_source or spec.source_url)
    return None


def generation(spec: ModelSpec) -> date | None:
    """When the model's generation was released (None: not a Qwen generation we date)."""
    name = spec.name
    for family in sorted(RELEASED, key=len, reverse=True):  # "Qwen2.5" before "Qwen2"
        if name.startswith(family):
            return RELEASED[family][0]
    return None


def mode_for(workload: str) -> str:
    """The mode a workload runs Qwen3-style hybrid models in."""
    return "thinking" if workload == "reasoning" else "non-thinking"


_METRIC_ALIASES = {"c_eval": "ceval", "mmluredux": "mmlu_redux", "mmlupro": "mmlu_pro",
                   "math_500": "math500", "arenahard": "arena_hard"}  # fmt: skip


def parse_quality(text: str | None) -> tuple[str, float] | None:
    """``"ceval=75"`` → ("ceval", 75.0); ``mmlu-redux=85`` → ("mmlu_redux", 85.0)."""
    if not text:
        return None
    metric, sep, value = text.partition("=")
    metric = metric.strip().lower().replace("-", "_")
    metric = _METRIC_ALIASES.get(metric, metric)
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or metric not in BENCHMARKS or not 0 <= number <= 100:
        raise InvalidRequest(
            f"--min-quality 格式为 指标=分数 / --min-quality takes METRIC=SCORE, METRIC one of "
            f"{', '.join(BENCHMARKS)} and SCORE 0–100 (e.g. ceval=75), got {text!r}",
            param="min_quality",
        )
    return metric, number
