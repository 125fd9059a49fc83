"""Trial of three ways for the embedded model to judge a quoted answer (KB bot).

The bot quotes the retrieved sentences closest to the question and asks the model whether
they state the answer; its probability of "没有" (the doubt) declines the question at
``kb.max_doubt``. This trial asks the same questions of three judges, over the same
retrieval and the same chosen sentences, and prints how well each tells answerable from
unanswerable questions (ROC AUC) and the facts kept at each rate of unanswerable questions
declined:

- ``v0``: the bot's judge (``quote_judge_messages``: the four sentences, one question);
- ``fewshot``: the same with six worked examples of our own in front (a shared prefix);
- ``sent``: one question per sentence, the least doubt of the four (4 calls).

    .venv/bin/python benchmarks/kb_judge_trials.py [--questions FILE] [--variants v0,sent]
        [--json FILE]

About 10 minutes a variant on the gold set (sent: 17) on 2 cores. Results:
docs/benchmarks.md ("Judging a quoted answer: three judges tried").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from heshi.apps.kb.answer import QUOTE_JUDGE_ASK, SYSTEM, KnowledgeBot, quote_judge_messages
from heshi.apps.kb.answer import search_query as query_of
from heshi.apps.kb.engine import doubt_of, judge_body
from heshi.apps.kb.evaluate import has_fact
from heshi.apps.kb.index import E5Vectors
from heshi.apps.kb.sessions import SessionStore
from heshi.config import KnowledgeConfig
from kb import DATA, default_engine, default_model, gold_base, question_set  # benchmarks/kb.py

# worked examples of our own (not from the gold set): sentences, question, verdict
EXAMPLES = [
    ("健身卡的年费为 1,680 元，可分 12 期支付。\n年卡会员可免费使用游泳池。",
     "游泳池要另外收费吗？", "有"),
    ("本店营业时间为每天 10:00—22:00。\n节假日营业时间以门店公告为准。",
     "你们店有停车场吗？", "没有"),
    ("会员积分有效期 2 年，到期自动清零。\n积分可在小程序兑换优惠券。",
     "积分能换现金吗？", "没有"),
    ("退货商品须保持包装完好，运费由买家承担。\n质量问题退货由本店承担运费。",
     "东西坏了退回去谁出运费？", "有"),
    ("快递员在投递前 30 分钟电话联系收件人。\n超大件包裹需另付上楼费。",
     "国际快递寄到日本多少钱？", "没有"),
    ("上课前 24 小时内取消预约的，扣除一次课时。\n私教课程每节 60 分钟。",
     "临时不去了会扣课吗？", "有"),
]  # fmt: skip
SENTENCE_ASK = (
    "这句话是否直接写明了这个问题的答案？只是话题相关、但没有写明答案时，回答“没有”。"
    "只回答“有”或“没有”。"
)


def _ask(sentences: list[str], question: str) -> str:
    listing = "\n".join(f"- {s}" for s in sentences)
    return f"句子：\n{listing}\n\n问题：{question}\n\n{QUOTE_JUDGE_ASK}"


def alone(sentence: str, history: list[Any], question: str) -> list[dict[str, Any]]:
    ask = f"句子：{sentence}\n\n问题：{question}\n\n{SENTENCE_ASK}"
    system = {"role": "system", "content": SYSTEM.format(kb="gold")}
    return [system, *history, {"role": "user", "content": ask}]


def fewshot(sentences: list[str], history: list[Any], question: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM.format(kb="gold")}]
    for shown, asked, verdict in EXAMPLES:
        messages += [
            {"role": "user", "content": _ask(shown.split("\n"), asked)},
            {"role": "assistant", "content": verdict},
        ]
    return [*messages, *history, {"role": "user", "content": _ask(sentences, question)}]


def prepared(questions: list[dict[str, Any]], home: str) -> list[dict[str, Any]]:
    """Each non-handoff question with the sentences the bot would quote."""
    embed = E5Vectors()
    db, store, _ = gold_base(home, embed)
    config = KnowledgeConfig()
    bot = KnowledgeBot(store, SessionStore(db), embed, None, config)  # type: ignore[arg-type]
    index = bot.index("gold")
    out = []
    for q in questions:
        if q["kind"] == "handoff":
            continue
        history = q.get("history") or []
        query = query_of(q["question"], history)
        hits = index.search(query, config.chunks, dense_weight=config.dense_weight)
        chosen = [s for _, _, s in bot.choose(query, hits)]
        out.append({**q, "chosen": chosen, "earlier": history[-2 * config.history_turns :]})
    db.dispose()
    return out


async def judged(items: list[dict[str, Any]], variant: str) -> dict[str, float]:
    engine = default_engine()
    await engine.start()

    async def doubt(messages: list[dict[str, Any]]) -> float:
        found = doubt_of(await engine.chat(judge_body("qwen", messages)))
        return 1.0 if found is None else found

    out: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for n, item in enumerate(items, 1):
            sentences, earlier, question = item["chosen"], item["earlier"], item["question"]
            if not sentences:
                out[item["id"]] = 1.0
            elif variant == "v0":
                quotes = [(1, i, s) for i, s in enumerate(sentences)]
                out[item["id"]] = await doubt(
                    quote_judge_messages("gold", quotes, earlier, question)
                )
            elif variant == "fewshot":
                out[item["id"]] = await doubt(fewshot(sentences, earlier, question))
            else:  # sent: the least doubt over the sentences, each judged alone
                each = [await doubt(alone(s, earlier, question)) for s in sentences]
                out[item["id"]] = min(each)
            if n % 20 == 0:
                seconds = time.perf_counter() - started
                print(f"[{variant}] {n}/{len(items)} {seconds:.0f}s", flush=True)
    finally:
        await engine.close()
    return out


def scored(items: list[dict[str, Any]], doubts: dict[str, float]) -> dict[str, Any]:
    """ROC AUC, and the facts kept at the best threshold for each share of unanswerable
    questions declined."""
    s = np.array([doubts[i["id"]] for i in items])
    y = np.array([i["kind"] == "unanswerable" for i in items])
    fact = np.array(
        [bool(i.get("facts")) and has_fact("".join(i["chosen"]), i["facts"]) for i in items]
    )
    auc = float(np.mean([(p > n) + 0.5 * (p == n) for p in s[y] for n in s[~y]]))
    points = []
    for t in np.unique(s):
        declined = s >= t
        points.append((
            float((declined & y).sum() / max(1, y.sum())),
            float((fact & ~declined & ~y).sum() / max(1, (~y).sum())),
        ))  # fmt: skip
    return {
        "auc": round(auc, 3),
        "facts_without_judge": round(float(fact[~y].mean()), 3),
        "facts_at_unanswerable_declined": {
            f"{u:.2f}": round(max((f for d, f in points if d >= u), default=0.0), 3)
            for u in (0.5, 0.7, 0.8, 0.85, 0.9)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--questions", type=Path, default=DATA / "questions.json")
    parser.add_argument("--variants", default="v0,fewshot,sent")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    questions = question_set(args.questions)
    default_model()  # not pulled: say so before the documents are ingested
    with tempfile.TemporaryDirectory() as home:
        items = prepared(questions, home)
    out: dict[str, Any] = {"questions": args.questions.name, "variants": {}}
    for variant in args.variants.split(","):
        doubts = asyncio.run(judged(items, variant))
        out["variants"][variant] = {**scored(items, doubts), "doubts": doubts}
        print(variant, {k: v for k, v in out["variants"][variant].items() if k != "doubts"})
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
