"""`heshi kb eval`: a knowledge base scored on the user's own question set — in process and
against a running gateway, on the tiny model and the built-in embedder — and the question
set's checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from heshi.apps.kb.evaluate import (
    Outcome,
    QuestionSetError,
    load_questions,
    score,
    spread,
)
from heshi.cli.main import app
from heshi.config import HeshiConfig
from heshi.gateway.app import create_app
from tests.apps.test_kb_gateway import kb_config, prepare
from tests.conftest import local_engines
from tests.loopback import serve_app

QUESTIONS = [
    {"id": "team", "kind": "direct", "question": "团队版每人每年多少钱？", "facts": ["360 元"],
     "doc": "价格.md", "evidence": "团队版每人每年 360 元"},
    {"id": "ent", "kind": "paraphrase", "question": "企业版一个人一年要多少", "facts": ["680"],
     "doc": "价格.md", "evidence": "企业版每人每年 680 元"},
    {"id": "wrong-fact", "kind": "direct", "question": "团队版最多几个人？",
     "facts": ["100 人"]},
    {"id": "none", "kind": "unanswerable", "question": "简舟协作支持私有化部署吗？"},
    {"id": "person", "kind": "handoff", "question": "我要投诉，给我转人工"},
]  # fmt: skip


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def write_config(config: HeshiConfig, long_tiny: Path, tmp_path: Path) -> Path:
    path = tmp_path / "heshi.yaml"
    engine = {"model": str(long_tiny), "ctx": 4096, "parallel": 1, "threads": 1}
    kb = {"min_similarity": 0.0, "min_word_support": 0.0, "max_doubt": 1.0}
    path.write_text(yaml.safe_dump({"home": str(config.home), "engine": engine, "kb": kb}))
    return path


def test_eval_in_process_scores_retrieval_and_answers_and_can_fail(
    tiny_config: HeshiConfig,
    long_tiny: Path,
    tmp_path: Path,
) -> None:
    config = kb_config(tiny_config, max_doubt=1.0)
    prepare(config, tmp_path)
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUESTIONS), "utf-8")
    cfg = write_config(config, long_tiny, tmp_path)
    rows = tmp_path / "rows.jsonl"
    code, out, err = run(
        "kb", "eval", str(questions), "--kb", "shop", "--json", "--out", str(rows),
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    retrieval = report["retrieval"]
    assert retrieval["questions"] == 2 and retrieval["dense_weight"] == 0.6
    assert retrieval["hybrid"] == {"recall_at_5": 1.0, "mrr": 1.0}
    answers = report["answers"]
    assert answers["questions"] == 5 and answers["errors"] == 0
    # the quoted sentences hold 360 元 and 680; "100 人" is in no answer: 2 of 3
    assert answers["facts"] == pytest.approx(0.667, abs=0.001)
    # nothing gates the tiny base here: the unanswerable question is answered — and counted
    assert answers["unanswerable_declined"] == 0.0
    assert answers["handoffs_found"] == 1.0 and answers["false_handoffs"] == 0.0
    assert answers["cited_right_doc"] == 1.0
    written = [json.loads(line) for line in rows.read_text("utf-8").splitlines()]
    assert [r["id"] for r in written] == [q["id"] for q in QUESTIONS]
    assert [r["right"] for r in written] == [True, True, False, False, True]
    assert written[4]["handoff"] is True and written[0]["cited"][0] == "价格.md"

    code, out, _ = run("kb", "eval", str(questions), "--kb", "shop", "--config", str(cfg))
    assert code == 0
    assert "Recall@5" in out and "0.667" in out and "团队版最多几个人" in out
    # llama.cpp's own log lines went to the home's log file, not over the report
    assert "load_model" in (config.home / "logs" / "engine.log").read_text("utf-8")


def test_eval_against_a_running_gateway_skips_retrieval(
    tiny_config: HeshiConfig,
    tmp_path: Path,
) -> None:
    config = kb_config(tiny_config, max_doubt=1.0)
    prepare(config, tmp_path)
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps({"questions": QUESTIONS[:2]}, ensure_ascii=False), "utf-8")
    with serve_app(create_app(config, local_engines(config))) as url:
        code, out, err = run(
            "kb", "eval", str(questions), "--kb", "shop", "--url", url, "--json",
            "--config", str(tmp_path / "absent.yaml"),
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["retrieval"] is None
        assert json.loads(out)["answers"]["facts"] == 1.0
        # a base the gateway does not serve: every request fails, and the exit status says so
        code, out, _ = run("kb", "eval", str(questions), "--kb", "nope", "--url", url, "--json")
    assert code == 1 and json.loads(out)["answers"]["errors"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the question set is empty"),
        ("[1, 2", "neither JSON nor JSON Lines"),
        ('{"questions": []}', "expected a list"),
        ('[{"kind": "direct"}]', 'needs a "question"'),
        ('[{"question": "x", "kind": "other"}]', "kind 'other'"),
        ('[{"question": "x", "facts": "360"}]', "list of strings"),
        ('[{"question": "x", "history": [{"role": "tool", "content": "y"}]}]', "user/assistant"),
        ('{"question": "x"}\n{"question": ', "neither JSON nor JSON Lines"),
    ],
)
def test_a_bad_question_set_is_refused_naming_the_question(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "q.json"
    path.write_text(content, "utf-8")
    with pytest.raises(QuestionSetError, match=message):
        load_questions(path)
    code, _, err = run("kb", "eval", str(path), "--kb", "shop")
    assert code != 0 and message.split(maxsplit=1)[0] in err


def test_question_forms_and_spread() -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "kb" / "questions.json"
    gold = load_questions(path)
    assert len(gold) >= 150 and {q["kind"] for q in gold} >= {"unanswerable", "handoff"}
    picked = spread(gold, 16)
    assert len(picked) == 16 and len({q["kind"] for q in picked}) == 8
    assert len(gold) == len(load_questions(path))  # spreading does not eat the set


def test_score_counts_each_outcome_once() -> None:
    def outcome(kind: str, **kw: Any) -> Outcome:
        q = {"id": kind, "kind": kind, "question": "?", "facts": kw.pop("facts", []), "doc": "a"}
        return Outcome(q, kw.pop("answer", ""), kw.pop("grounded", True), False, **kw)

    scored = score([
        outcome("direct", facts=["3 年"], answer="保修3年 [1]", cited=["a"]),
        outcome("direct", facts=["3 年"], answer="保修5年", cited=["b"]),
        outcome("direct", facts=["3 年"], grounded=False),
        outcome("unanswerable", grounded=False),
        outcome("unanswerable", error="HTTP 500"),
    ])  # fmt: skip
    assert scored["facts"] == pytest.approx(0.333, abs=0.001)
    assert scored["answerable_declined"] == pytest.approx(0.333, abs=0.001)
    assert scored["unanswerable_declined"] == 0.5  # a failed request is no decline
    assert scored["handoffs_found"] is None and scored["errors"] == 1
    assert scored["cited_right_doc"] == 0.5


def test_gold_and_held_out_sets_pass_their_checks_and_a_repeat_is_caught(tmp_path: Path) -> None:
    import subprocess
    import sys

    kb = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "kb"
    check = [sys.executable, str(kb / "check_gold.py")]
    for path in (kb / "questions.json", kb / "holdout.json"):
        done = subprocess.run([*check, str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "0 problems" in done.stdout, done.stdout
    held = json.loads((kb / "holdout.json").read_text("utf-8"))
    gold = json.loads((kb / "questions.json").read_text("utf-8"))["questions"]
    repeated = next(q for q in gold if q["kind"] == "direct")
    held["questions"].append({**repeated, "id": "ho-repeat"})
    path = tmp_path / "holdout.json"
    path.write_text(json.dumps(held, ensure_ascii=False), "utf-8")
    done = subprocess.run([*check, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "ho-repeat: also a question of questions.json" in done.stdout
