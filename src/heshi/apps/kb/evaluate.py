"""Scoring a knowledge base on a question set (``heshi kb eval``, ``benchmarks/kb.py``).

A question set is JSON — ``{"questions": [...]}`` or a bare list — or JSON Lines, one
question per line. Each question::

    {"question": "改套餐什么时候生效？",          # required
     "kind": "direct",                              # see KINDS; default "direct"
     "facts": ["次月 1 日", "次月1日"],             # any one in the answer counts
     "history": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}],
     "doc": "畅联通信手机套餐资费说明.md",          # for retrieval: the file that answers
     "evidence": "变更均于次月 1 日生效",           # for retrieval: text of that chunk
     "id": "tel-direct-01"}

``kind`` says what a right outcome is: ``unanswerable`` — the bot declines (``grounded``
false) and hands nobody off; ``handoff`` — the conversation is handed to a person; any
other kind — the answer holds one of ``facts`` (spaces ignored) and nobody is handed off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heshi.apps.kb.index import KnowledgeIndex, mix
from heshi.apps.kb.store import StoredChunk
from heshi.errors import HeshiError

ANSWERABLE = ("direct", "paraphrase", "typo", "pinyin", "followup", "not_handoff")
KINDS = (*ANSWERABLE, "unanswerable", "handoff")
MAX_QUESTIONS = 100_000
MAX_FILE_BYTES = 64 * 1024 * 1024
K = 5  # Recall@K


class QuestionSetError(HeshiError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_question_set"


def load_questions(path: Path) -> list[dict[str, Any]]:
    """The questions of ``path``, checked; a clear error names the first bad one."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise QuestionSetError(f"问题集过大 / question set over 64 MiB: {path}")
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionSetError(f"无法读取问题集 / cannot read {path}: {exc}") from exc
    if not text.strip():
        raise QuestionSetError(f"{path}: 问题集为空 / the question set is empty")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise QuestionSetError(
                f"{path}: 不是 JSON 或 JSON Lines / neither JSON nor JSON Lines: {exc}"
            ) from exc
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise QuestionSetError(
            f'{path}: 需要问题列表或 {{"questions": [...]}} / expected a list of questions '
            'or {"questions": [...]}'
        )
    if len(data) > MAX_QUESTIONS:
        raise QuestionSetError(f"{path}: 问题过多 / more than {MAX_QUESTIONS} questions")
    return [_checked(q, n, path) for n, q in enumerate(data, 1)]


def _checked(q: Any, n: int, path: Path) -> dict[str, Any]:
    where = f"{path} #{n}"
    if isinstance(q, str):
        q = {"question": q}
    if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"]:
        raise QuestionSetError(f'{where}: 缺少 "question" 文本 / needs a "question" string')
    kind = q.get("kind", "direct")
    if kind not in KINDS:
        raise QuestionSetError(f"{where}: kind {kind!r} 无效 / invalid; one of: {', '.join(KINDS)}")
    facts = q.get("facts") or []
    if not isinstance(facts, list) or not all(isinstance(f, str) and f for f in facts):
        raise QuestionSetError(f'{where}: "facts" 须为字符串列表 / must be a list of strings')
    history = q.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(m, dict)
        and m.get("role") in ("user", "assistant")
        and isinstance(m.get("content"), str)
        for m in history
    ):
        raise QuestionSetError(
            f'{where}: "history" 须为 user/assistant 消息列表 / must be user/assistant messages'
        )
    for name in ("doc", "evidence", "id"):
        if q.get(name) is not None and not isinstance(q[name], str):
            raise QuestionSetError(f'{where}: "{name}" 须为字符串 / must be a string')
    return {**q, "kind": kind, "facts": facts, "history": history, "id": q.get("id") or f"q{n}"}


def spread(questions: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` questions taken in turn from each kind (all of them when n is 0)."""
    if n <= 0 or n >= len(questions):
        return questions
    kinds: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        kinds.setdefault(q["kind"], []).append(q)
    queues = [list(members) for members in kinds.values()]
    out: list[dict[str, Any]] = []
    while len(out) < n:
        for members in queues:
            if members and len(out) < n:
                out.append(members.pop(0))
    return out


# ---------------------------------------------------------------- retrieval


def relevant(chunk: StoredChunk, question: dict[str, Any]) -> bool:
    """The chunk holds the evidence (or, for evidence cut by a chunk boundary, its first
    or last 12 characters) and belongs to the question's document."""
    evidence = question["evidence"]
    if chunk.doc != question["doc"]:
        return False
    text = chunk.text.replace("\n", "")
    return evidence in text or evidence[:12] in text or evidence[-12:] in text


def retrievable(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answerable questions that say which chunk answers them."""
    return [q for q in questions if q["kind"] in ANSWERABLE and q.get("doc") and q.get("evidence")]


def first_relevant(
    index: KnowledgeIndex, question: dict[str, Any], bm25: np.ndarray, dense: np.ndarray,
    method: str, dense_weight: float,
) -> int | None:  # fmt: skip
    """The rank (1..K) of the first chunk holding the question's evidence; None past K."""
    score = {"bm25": bm25, "dense": dense}.get(method)
    if score is None:
        score = mix(bm25, dense, dense_weight)
    top = [int(i) for i in np.argsort(-score, kind="stable")[:K]]
    if method == "bm25":
        top = [i for i in top if score[i] > 0]
    return next((n for n, i in enumerate(top, 1) if relevant(index.chunks[i], question)), None)


def recall_mrr(found: list[int | None]) -> tuple[float, float]:
    """Recall@K and mean reciprocal rank of first-relevant ranks."""
    if not found:
        return 0.0, 0.0
    recall = sum(1 for r in found if r is not None) / len(found)
    mrr = sum(1 / r for r in found if r is not None) / len(found)
    return recall, mrr


def percentiles(values: list[float], pcts: tuple[int, ...]) -> list[float]:
    if not values:
        return []
    ordered = sorted(values)
    return [round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 4) for p in pcts]


# ---------------------------------------------------------------- answers


def has_fact(answer: str, facts: list[str]) -> bool:
    text = answer.replace(" ", "")
    return any(f.replace(" ", "") in text for f in facts)


@dataclass
class Outcome:
    """One question asked of the bot."""

    question: dict[str, Any]
    answer: str
    grounded: bool
    handoff: bool
    cited: list[str] = field(default_factory=list)  # the cited files, in order
    seconds: float = 0.0
    error: str | None = None  # the request failed

    @property
    def kind(self) -> str:
        return str(self.question["kind"])

    @property
    def declined(self) -> bool:
        return self.error is None and not self.grounded and not self.handoff

    @property
    def right(self) -> bool:
        if self.error is not None:
            return False
        if self.kind == "handoff":
            return self.handoff
        if self.kind == "unanswerable":
            return self.declined
        facts = self.question.get("facts") or []
        return self.grounded and not self.handoff and (not facts or has_fact(self.answer, facts))

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.question["id"], "kind": self.kind, "question": self.question["question"],
            "answer": self.answer, "grounded": self.grounded, "handoff": self.handoff,
            "cited": self.cited, "seconds": round(self.seconds, 3), "right": self.right,
            "error": self.error,
        }  # fmt: skip


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def score(outcomes: list[Outcome]) -> dict[str, Any]:
    """The end-to-end numbers of the knowledge-base issue, over what was asked (a share is
    None when no question of its kind was asked)."""
    answerable = [o for o in outcomes if o.kind in ANSWERABLE]
    with_facts = [o for o in answerable if o.question.get("facts")]
    unanswerable = [o for o in outcomes if o.kind == "unanswerable"]
    asked = [o for o in outcomes if o.kind == "handoff"]
    others = [o for o in outcomes if o.kind != "handoff"]
    with_doc = [o for o in answerable if o.question.get("doc") and o.grounded]
    return {
        "questions": len(outcomes),
        "right": _share(sum(o.right for o in outcomes), len(outcomes)),
        "facts": _share(sum(o.right for o in with_facts), len(with_facts)),
        "answerable_declined": _share(sum(o.declined for o in answerable), len(answerable)),
        "unanswerable_declined": _share(sum(o.declined for o in unanswerable), len(unanswerable)),
        "handoffs_found": _share(sum(o.handoff for o in asked), len(asked)),
        "false_handoffs": _share(sum(o.handoff for o in others), len(others)),
        "cited_right_doc": _share(
            sum(bool(o.cited) and o.cited[0] == o.question["doc"] for o in with_doc), len(with_doc)
        ),
        "errors": sum(o.error is not None for o in outcomes),
        "seconds_p50_p95": percentiles([o.seconds for o in outcomes], (50, 95)),
    }
