"""Validate the kb_zh gold set (questions.json + docs/). Standard library only.

Usage: python benchmarks/data/kb/check_gold.py [path/to/questions.json]
       python benchmarks/data/kb/check_gold.py benchmarks/data/kb/holdout.json

The held-out set (name ``kb_zh_holdout``: no handoff questions, smaller minimums) must
also share no question with the gold set.
Prints the counts per kind and every problem found; exits 1 if there is any problem.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOCS = HERE / "docs"

MINIMUMS = {
    "direct": 35,
    "paraphrase": 35,
    "typo": 15,
    "pinyin": 12,
    "followup": 15,
    "unanswerable": 25,
    "handoff": 20,
    "not_handoff": 12,
}
HOLDOUT_MINIMUMS = {
    "direct": 15, "paraphrase": 15, "typo": 8, "pinyin": 8, "followup": 8, "unanswerable": 30,
}  # fmt: skip
ANSWERABLE = {"direct", "paraphrase", "typo", "pinyin", "followup", "not_handoff"}
NULL_KINDS = {"unanswerable", "handoff"}
KEYS = {"id", "kind", "question", "history", "doc", "facts", "evidence"}
DOC_SUFFIXES = {".md", ".txt", ".html", ".csv"}
MIN_CJK, MAX_CJK = 1500, 5000
CJK = re.compile(r"[\u4e00-\u9fff]")


def strip_tags(raw: str) -> str:
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text)


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def evidence_count(doc: Path, raw: str, evidence: str) -> int:
    """Occurrences of evidence in the document (HTML: tag-stripped text, else raw)."""
    if doc.suffix == ".html":
        n = strip_tags(raw).count(evidence)
        return n if n else raw.count(evidence)
    return raw.count(evidence)


def check_docs(problems: list[str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    if not DOCS.is_dir():
        problems.append(f"missing directory {DOCS}")
        return texts
    for path in sorted(DOCS.iterdir()):
        if path.suffix not in DOC_SUFFIXES:
            problems.append(f"{path.name}: unexpected file type")
            continue
        raw = path.read_text(encoding="utf-8")
        texts[path.name] = raw
        plain = strip_tags(raw) if path.suffix == ".html" else raw
        n = len(CJK.findall(plain))
        if not MIN_CJK <= n <= MAX_CJK:
            problems.append(f"{path.name}: {n} Chinese characters, want {MIN_CJK}-{MAX_CJK}")
        if path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(raw)))
            if not rows or rows[0] != ["问题", "答案"]:
                problems.append(f"{path.name}: header must be 问题,答案")
            body = rows[1:]
            if len(body) < 30:
                problems.append(f"{path.name}: {len(body)} rows, want >= 30")
            for i, row in enumerate(body, 2):
                if len(row) != 2 or not all(cell.strip() for cell in row):
                    problems.append(f"{path.name}: row {i} is not a non-empty question,answer pair")
    suffixes = {Path(n).suffix for n in texts}
    for want in (".md", ".txt", ".html", ".csv"):
        if want not in suffixes:
            problems.append(f"docs/: no {want} document")
    if len(texts) < 12:
        problems.append(f"docs/: {len(texts)} documents, want >= 12")
    return texts


def check_history(qid: str, kind: str, history: object, problems: list[str]) -> None:
    if not isinstance(history, list):
        problems.append(f"{qid}: history must be a list")
        return
    for turn in history:
        if (
            not isinstance(turn, dict)
            or set(turn) != {"role", "content"}
            or turn["role"] not in ("user", "assistant")
            or not isinstance(turn["content"], str)
            or not turn["content"].strip()
        ):
            problems.append(f"{qid}: bad history turn {turn!r}")
    if kind == "followup":
        if not history:
            problems.append(f"{qid}: followup without history")
        elif history[-1].get("role") != "assistant":
            problems.append(f"{qid}: followup history must end with an assistant turn")
    elif kind != "handoff" and history:
        problems.append(f"{qid}: only followup and handoff items may have history")


def check_item(item: object, n: int, texts: dict[str, str], state: dict[str, Any]) -> None:
    """Check one question; record its kind, id, question text and document in state."""
    problems: list[str] = state["problems"]
    qid = item.get("id", f"#{n}") if isinstance(item, dict) else f"#{n}"
    if not isinstance(item, dict) or set(item) != KEYS:
        problems.append(f"{qid}: keys must be exactly {sorted(KEYS)}")
        return
    if qid in state["ids"]:
        problems.append(f"{qid}: duplicate id")
    state["ids"].add(qid)
    kind = item["kind"]
    if kind not in MINIMUMS:
        problems.append(f"{qid}: unknown kind {kind!r}")
        return
    state["counts"][kind] += 1
    question = item["question"]
    if not isinstance(question, str) or not question.strip():
        problems.append(f"{qid}: empty question")
        return
    state["questions"][(question, json.dumps(item["history"], ensure_ascii=False))] += 1
    check_history(qid, kind, item["history"], problems)
    check_answer(qid, kind, item, texts, state)


def check_answer(
    qid: str, kind: str, item: dict[str, Any], texts: dict[str, str], state: dict[str, Any]
) -> None:
    """Check doc, facts and evidence of one question."""
    problems: list[str] = state["problems"]
    doc, facts, evidence = item["doc"], item["facts"], item["evidence"]
    if kind in NULL_KINDS:
        if doc is not None or facts is not None or evidence is not None:
            problems.append(f"{qid}: {kind} items must have null doc, facts and evidence")
        return
    if doc not in texts:
        problems.append(f"{qid}: doc {doc!r} not found in docs/")
        return
    state["docs"].add(doc)
    if (
        not isinstance(facts, list)
        or not facts
        or not all(isinstance(f, str) and f.strip() for f in facts)
    ):
        problems.append(f"{qid}: facts must be a non-empty list of non-empty strings")
        return
    if not isinstance(evidence, str) or not 10 <= len(evidence) <= 60:
        problems.append(f"{qid}: evidence must be a string of 10-60 characters")
        return
    hits = evidence_count(DOCS / doc, texts[doc], evidence)
    if hits != 1:
        problems.append(f"{qid}: evidence occurs {hits} times in {doc}: {evidence!r}")
    if not any(squash(f) in squash(evidence) for f in facts):
        problems.append(f"{qid}: no fact appears in the evidence")


def asked(item: dict[str, Any]) -> tuple[str, ...]:
    """A question with the user turns before it: what makes two questions the same."""
    history = item.get("history") or []
    turns = [
        str(t.get("content")) for t in history if isinstance(t, dict) and t.get("role") == "user"
    ]
    return tuple(squash(t) for t in [*turns, str(item.get("question"))])


def check_not_in_gold(questions: list[Any], problems: list[str]) -> None:
    """A held-out question must not be one the gold set already asks."""
    gold = json.loads((HERE / "questions.json").read_text(encoding="utf-8"))["questions"]
    seen = {asked(q) for q in gold}
    for item in questions:
        if isinstance(item, dict) and asked(item) in seen:
            problems.append(f"{item.get('id')}: also a question of questions.json")


def main() -> int:
    qpath = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "questions.json"
    problems: list[str] = []
    texts = check_docs(problems)

    data = json.loads(qpath.read_text(encoding="utf-8"))
    holdout = data.get("name") == "kb_zh_holdout"
    minimums = HOLDOUT_MINIMUMS if holdout else MINIMUMS
    if data.get("name") not in ("kb_zh", "kb_zh_holdout") or not isinstance(
        data.get("description"), str
    ):
        problems.append(
            f"{qpath.name}: name must be 'kb_zh' or 'kb_zh_holdout', description a string"
        )
    questions = data.get("questions")
    if not isinstance(questions, list):
        print("questions.json: 'questions' must be a list")
        return 1

    counts: Counter[str] = Counter()
    state: dict[str, Any] = {
        "problems": problems,
        "counts": counts,
        "ids": set(),
        "questions": Counter(),
        "docs": set(),
    }
    for n, item in enumerate(questions):
        check_item(item, n, texts, state)

    for (question, _), n in state["questions"].items():
        if n > 1:
            problems.append(f"duplicate question {question!r} ({n} times)")
    for name in sorted(set(texts) - state["docs"]):
        problems.append(f"{name}: no question refers to this document")
    for kind, minimum in minimums.items():
        if counts[kind] < minimum:
            problems.append(f"kind {kind}: {counts[kind]} items, want >= {minimum}")
    if holdout:
        check_not_in_gold(questions, problems)

    print(f"{len(questions)} questions, {len(texts)} documents")
    for kind, minimum in minimums.items():
        print(f"  {kind:<13} {counts[kind]:>4}  (min {minimum})")
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
