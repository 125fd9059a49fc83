"""The checks around the answer model: figures and words grounded in the chunks, citation
markers, follow-up search, the prompt (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from heshi.apps.kb.answer import prompt_messages, search_query
from heshi.apps.kb.grounding import cite, keep_grounded
from heshi.apps.kb.index import Hit, mix
from heshi.apps.kb.store import StoredChunk

FEES = "在境内其他银行的 ATM 上取现，每个自然月的前 3 笔免费，从第 4 笔起每笔收取 2 元。"
HOTLINE = "挂失请拨打客服热线 400-615-2738，临时挂失有效期为 5 天。"


def hit(text: str, doc: str = "借记卡.md", n: int = 0) -> Hit:
    chunk = StoredChunk(f"c{n}", doc, "d", n, ("借记卡", "费用"), "text", None, text)
    return Hit(chunk, 1.0, 1.0, 0.9)


HITS = [hit(FEES, n=0), hit(HOTLINE, n=1)]


def test_figures_must_come_from_the_chunks_or_the_question() -> None:
    answer = "跨行取现前 3 笔免费，之后每笔 2 元 [1]。挂失打 4006152738 [2]。手续费每年 50 元封顶。"
    kept = keep_grounded(answer, HITS, "我上个月取了 6 次")
    assert "50 元" not in kept  # a fee from nowhere: the sentence is gone
    assert "前 3 笔免费" in kept and "4006152738" in kept  # 400-615-2738 without dashes
    assert keep_grounded("从第 4 笔起每笔收取 8 元。", HITS, "我上个月取了 6 次") == ""


def test_sentences_about_what_the_chunks_do_not_cover_are_removed() -> None:
    made_up = "华信银行有黄金积存业务。一克起买。"
    assert keep_grounded(made_up, HITS, "华信银行有黄金积存吗？一克起买还是十克起买？") == ""
    copied = "每个自然月的前 3 笔免费 [1]。"
    assert keep_grounded(copied, HITS, "取现收费吗") == copied


def test_the_question_repeated_back_is_not_an_answer() -> None:
    assert keep_grounded("[3] 取现收费吗？", HITS, "那取现收费吗？") == ""


def test_a_copied_chunk_header_and_source_notes_are_tidied() -> None:
    answer = "[1]（费用）在境内其他银行的 ATM 上取现，前 3 笔免费。资料编号：[1]"
    assert (
        keep_grounded(answer, HITS, "取现收费吗") == "在境内其他银行的 ATM 上取现，前 3 笔免费。[1]"
    )


def test_citations_follow_the_markers_and_an_unmarked_answer_cites_the_best_chunk() -> None:
    text, citations = cite("前 3 笔免费 [1]，挂失打热线 [2][9]。", HITS)
    assert text == "前 3 笔免费 [1]，挂失打热线 [2]。"
    assert [c.chunk_id for c in citations] == ["c0", "c1"]
    text, citations = cite("前 3 笔免费。", HITS)
    assert text == "前 3 笔免费。 [1]" and [c.doc for c in citations] == ["借记卡.md"]


def test_follow_ups_are_searched_with_the_previous_question() -> None:
    history = [
        {"role": "user", "content": "团队版一年多少钱？"},
        {"role": "assistant", "content": "团队版每人每年 360 元。"},
    ]
    assert search_query("那企业版呢？", history) == "团队版一年多少钱？ 那企业版呢？"
    assert (
        search_query("信用卡的年费怎么收取才能免掉？", history) == "信用卡的年费怎么收取才能免掉？"
    )
    assert search_query("那企业版呢？", []) == "那企业版呢？"


def test_the_question_and_the_chunks_come_last() -> None:
    history = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}]
    messages = prompt_messages("shop", HITS, history, "取现收费吗？")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    last = messages[-1]["content"]
    assert (
        last.index("[1]（费用）在境内") < last.index("[2]（费用）挂失") < last.index("取现收费吗？")
    )


def test_quotable_sentences_skip_the_faq_question_and_name_table_cells() -> None:
    from heshi.apps.kb.answer import quotable

    faq = "问：保修期从哪天算？\n答：从发票日期算起。没有发票的，从出厂后 3 个月起算。"
    assert [s for _, s in quotable(faq)] == [
        "从发票日期算起。",
        "没有发票的，从出厂后 3 个月起算。",
    ]
    assert [s for _, s in quotable("- 开机后不立即启动。\n* 属正常现象。")] == [
        "开机后不立即启动。",
        "属正常现象。",
    ]
    table = "项目 | 费用\n上门费 | 50 元\n清洗 | 80 元"
    assert [s for _, s in quotable(table)] == [
        "项目：上门费，费用：50 元。",
        "项目：清洗，费用：80 元。",
    ]


def test_the_judge_of_a_quoted_answer_reads_the_quoted_sentences_and_can_decline(
    tmp_path: Path,
) -> None:
    """The judge (here a stand-in returning a set doubt) sees exactly the sentences the
    answer would quote — not the whole chunks — and at ``max_doubt`` the bot declines."""
    import asyncio

    from heshi.apps.kb.answer import DECLINE, QUOTE_JUDGE_ASK, KnowledgeBot
    from heshi.apps.kb.index import E5Vectors
    from heshi.apps.kb.ingest import ingest
    from heshi.apps.kb.sessions import SessionStore
    from heshi.apps.kb.store import KnowledgeBaseStore
    from heshi.config import KnowledgeConfig
    from heshi.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'heshi.db'}")
    db.migrate()
    store = KnowledgeBaseStore(db)
    store.create("bank")
    doc = tmp_path / "借记卡.md"
    doc.write_text(f"# 借记卡\n## 费用\n{FEES}\n## 挂失\n{HOTLINE}\n", "utf-8")
    ingest(store, "bank", [doc], E5Vectors())
    seen: list[list[dict[str, Any]]] = []
    doubt = 0.2

    async def judge(messages: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
        seen.append(messages)
        return doubt, {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}

    async def generate(messages: list[dict[str, Any]], max_tokens: int) -> tuple[str, None]:
        raise AssertionError("a quoted answer is not generated")

    config = KnowledgeConfig(min_similarity=0.0, max_doubt=0.3, quote_sentences=2)
    bot = KnowledgeBot(store, SessionStore(db), E5Vectors(), generate, config, judge=judge)
    question = [{"role": "user", "content": "在别的银行ATM取现收费吗？"}]
    answer = asyncio.run(bot.ask("bank", question))
    asked = seen[0][-1]["content"]
    assert asked.endswith(QUOTE_JUDGE_ASK) and "取现收费吗" in asked
    listed = [line[2:] for line in asked.split("\n") if line.startswith("- ")]
    assert len(listed) == 2 and all(s in answer.answer for s in listed)
    assert answer.grounded and "每笔收取 2 元" in answer.answer and answer.doubt == 0.2
    assert answer.usage == {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}

    doubt = 0.3  # at the threshold: declined, and the judge's call is still metered
    declined = asyncio.run(bot.ask("bank", question))
    assert declined.answer == DECLINE and not declined.grounded
    assert declined.usage is not None and declined.usage["total_tokens"] == 11
    db.dispose()


def test_a_lone_chunk_that_matches_scores_one_not_zero() -> None:
    one = np.array([0.8], dtype=np.float32)  # one chunk's vector similarity
    # its keyword and vector scores are the best there are, so hybrid shows 1
    assert mix(np.array([2.5], dtype=np.float32), one, 0.5)[0] == pytest.approx(1.0)
    # no keyword in common: only the vector half counts
    assert mix(np.zeros(1, dtype=np.float32), one, 0.5)[0] == pytest.approx(0.5)
    tied = mix(np.array([1.0, 1.0, 0.0]), np.array([0.5, 0.2, 0.1]), 0.5)
    assert tied[0] > tied[1] > tied[2]  # ties in one method leave the other to order them
