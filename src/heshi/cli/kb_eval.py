"""``heshi kb eval``: a knowledge base scored on a question set of the user's own.

Retrieval (Recall@5 and MRR of hybrid, keyword-only and vector-only search) is measured on
this machine's store for questions that name their ``doc`` and ``evidence``; the answers
are asked end to end through the gateway pipeline (in this process, or ``--url``). The
question-set format is in :mod:`heshi.apps.kb.evaluate` and docs/kb.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from heshi.apps.kb.answer import search_query
from heshi.apps.kb.evaluate import (
    Outcome,
    first_relevant,
    load_questions,
    recall_mrr,
    retrievable,
    score,
    spread,
)
from heshi.cli.chat import ApiKeyOption
from heshi.cli.database import ConfigOption, open_database
from heshi.cli.reporting import JsonOption, UrlOption, counting, reporting_errors
from heshi.config import load_config

_LABELS = {
    "facts": "答案含要点 / answers holding a fact",
    "answerable_declined": "可答却拒答 / answerable declined",
    "unanswerable_declined": "无答案而拒答 / unanswerable declined",
    "handoffs_found": "转人工识别 / handoffs found",
    "false_handoffs": "误转人工 / false handoffs",
    "cited_right_doc": "首条引用正确 / first citation right",
    "right": "总体正确 / right overall",
}


def eval_command(
    questions: Annotated[
        Path, typer.Argument(help="问题集（JSON 或 JSON Lines）/ Question set (JSON or JSONL).")
    ],
    kb: Annotated[str, typer.Option("--kb", help="知识库名称 / Knowledge base.")],
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, help="只问 N 个（各类均匀抽取；0 为全部）/ Ask N, spread over kinds."
        ),
    ] = 0,
    url: UrlOption = None,
    key: ApiKeyOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="逐题结果写入（JSON Lines）/ Write each answer here (JSONL).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    with reporting_errors():
        asked = spread(load_questions(questions), limit)
        report: dict[str, Any] = {"kb": kb, "retrieval": None}
        if url is None:  # the store is this machine's: retrieval is measured on it
            report["retrieval"] = retrieval(config, kb, asked)
        outcomes = asyncio.run(_ask_all(url, key, config, kb, asked))
        report["answers"] = score(outcomes)
    if out is not None:
        lines = [json.dumps(o.as_json(), ensure_ascii=False) for o in outcomes]
        out.write_text("\n".join(lines) + "\n", "utf-8")
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
    else:
        _print(report, outcomes)
    if report["answers"]["errors"]:
        raise typer.Exit(1)


def retrieval(
    config: Path | None, kb: str, questions: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Recall@5 and MRR over the questions that name their evidence; None when none do."""
    from heshi.apps.kb.index import E5Vectors, KnowledgeIndex
    from heshi.apps.kb.store import KnowledgeBaseStore

    wanted = retrievable(questions)
    if not wanted:
        return None
    weight = load_config(config).kb.dense_weight
    with open_database(config) as db:
        index = KnowledgeIndex.load(KnowledgeBaseStore(db), kb, E5Vectors())
    found: dict[str, list[int | None]] = {"hybrid": [], "bm25": [], "dense": []}
    for q in wanted:
        query = search_query(q["question"], q["history"])
        bm25, dense = index.keyword_scores(query), index.dense_scores(query)
        for method, ranks in found.items():
            ranks.append(first_relevant(index, q, bm25, dense, method, weight))
    out: dict[str, Any] = {"questions": len(wanted), "dense_weight": weight}
    for method, ranks in found.items():
        recall, mrr = recall_mrr(ranks)
        out[method] = {"recall_at_5": round(recall, 3), "mrr": round(mrr, 3)}
    return out


async def _ask_all(
    url: str | None, key: str | None, config: Path | None, kb: str,
    questions: list[dict[str, Any]],
) -> list[Outcome]:  # fmt: skip
    from heshi.cli.gateway_call import AskFailed, asking

    console = Console(stderr=True)
    outcomes: list[Outcome] = []
    async with asking(url, key, config) as ask:
        with counting(console) as progress:
            task = progress.add_task("提问 / asking", total=len(questions))
            for q in questions:
                body = {
                    "model": f"kb:{kb}",
                    "messages": [*q["history"], {"role": "user", "content": q["question"]}],
                }
                start = time.perf_counter()
                try:
                    result = await ask(body)
                except AskFailed as exc:
                    outcome = Outcome(q, "", False, False, error=exc.message)
                else:
                    outcome = Outcome(
                        q, str(result["choices"][0]["message"].get("content") or ""),
                        bool(result.get("grounded")), bool(result.get("handoff")),
                        [str(c.get("doc")) for c in result.get("citations") or []],
                    )  # fmt: skip
                outcome.seconds = time.perf_counter() - start
                outcomes.append(outcome)
                right = sum(o.right for o in outcomes)
                progress.update(task, advance=1, description=f"提问 / asking ✓{right}")
    return outcomes


def _print(report: dict[str, Any], outcomes: list[Outcome]) -> None:
    console = Console()
    r = report["retrieval"]
    if r is not None:
        table = Table("检索 / retrieval", "Recall@5", "MRR", title=f"{r['questions']} questions")
        for method in ("hybrid", "bm25", "dense"):
            table.add_row(method, f"{r[method]['recall_at_5']:.3f}", f"{r[method]['mrr']:.3f}")
        console.print(table)
    a = report["answers"]
    table = Table("端到端 / end to end", "", title=f"{a['questions']} questions")
    for name, label in _LABELS.items():
        value = a[name]
        table.add_row(label, "—" if value is None else f"{value:.3f}")
    p50, p95 = a["seconds_p50_p95"] or [0.0, 0.0]
    table.add_row("每题耗时 p50/p95 / seconds per answer", f"{p50:.1f} / {p95:.1f}")
    if a["errors"]:
        table.add_row("请求失败 / failed requests", str(a["errors"]), style="red")
    console.print(table)
    wrong = [o for o in outcomes if not o.right]
    for o in wrong[:10]:
        said = o.error or o.answer.replace("\n", " ")
        console.print(
            f"✗ [{o.kind}] {o.question['question']} → {said[:80]}", markup=False, highlight=False
        )
    if len(wrong) > 10:
        console.print(f"… {len(wrong) - 10} more (--out FILE writes every answer)")
