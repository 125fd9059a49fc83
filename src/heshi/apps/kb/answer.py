"""One turn of the knowledge-base bot: hand off, or retrieve, answer, check, cite.

1. Handoff first (:mod:`heshi.apps.kb.handoff`): a user who asks for a person, is angry,
   or whom the bot failed twice is handed off — a record in the store, the webhook told.
2. A follow-up (那企业版呢？) is searched together with the user's previous question.
3. Retrieval gate: when even the best chunk is not similar enough, the base holds no
   answer and the bot says so without asking the model.
4. The model answers from the numbered chunks only, citing them as [1], [2].
5. Grounded or nothing: every figure in the answer (fees, rates, phone numbers, days)
   must appear in the chunks it read or in the question; a sentence with a figure from
   nowhere is removed, and an answer left empty is a decline. A decline offers a person.
6. Citations: the chunks the answer marks; an unmarked answer cites the best chunk.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from heshi.apps.kb.grounding import CJK, MARK, Citation, cite, keep_grounded
from heshi.apps.kb.handoff import Reason, handoff_reason
from heshi.apps.kb.index import Hit, KnowledgeIndex, Vectors
from heshi.apps.kb.sessions import Session, SessionStore
from heshi.apps.kb.store import KnowledgeBaseStore
from heshi.config import KnowledgeConfig
from heshi.engines.base import add_usage, content_text

JSON = dict[str, Any]
# messages in, (answer text, usage or None) out: the gateway's chat path
Generate = Callable[[list[JSON], int], Awaitable[tuple[str, JSON | None]]]
# messages in, the model's probability that the chunks do not hold the answer (None: the
# model gave no probabilities) and the call's usage out
Judge = Callable[[list[JSON]], Awaitable[tuple[float | None, JSON | None]]]

DECLINE = "抱歉，知识库里没有找到这个问题的答案。如需帮助，我可以为您转接人工客服。"
HANDOFF_TEXT = {
    "asked": "好的，正在为您转接人工客服，请稍候。",
    "angry": "非常抱歉给您带来不好的体验，正在为您转接人工客服，请稍候。",
    "failed": "抱歉没能帮您解决问题，正在为您转接人工客服，请稍候。",
}
DECLINED = re.compile(
    r"(没有|未|无)(找到|提供|提及|包含|涉及|相关)|资料(中|里)?(没有|未)|无法回答|不清楚"
)
_FOLLOW_UP = re.compile(
    r"^(那|那么|还有|另外|其他|其它|它|这个|那个|如果|要是)|[呢吗]\s*[?？]?\s*$"
)

SYSTEM = "你是「{kb}」的客服助手，根据用户提供的资料，用简洁、礼貌的中文回答问题。"
CONTEXT = "资料：\n{materials}\n\n问题：{question}\n\n"
ANSWER_ASK = "请根据上面的资料回答，在用到的句子末尾标注资料编号，例如 [1]。"
# Asked first, with the same context (so the answer reuses its prompt cache): whether the
# chunks state the answer at all. The model's probability of "没有" is the doubt.
# Before a quoted answer the judge reads only the sentences it would quote (half the
# prompt of the chunks, and better told apart on the gold set: docs/benchmarks.md).
QUOTE_JUDGE_ASK = (
    "上面的句子里是否直接写明了这个问题的答案？句子只是话题相关、但没有写明答案时，回答“没有”。"
    "只回答“有”或“没有”。"
)
JUDGE_ASK = (
    "资料里是否直接写明了这个问题的答案？资料只是话题相关、但没有写明答案时，回答“没有”。"
    "只回答“有”或“没有”。"
)


@dataclass
class Answer:
    answer: str
    citations: list[Citation] = field(default_factory=list)
    grounded: bool = False
    handoff: bool = False
    handoff_reason: Reason | None = None
    handoff_id: str | None = None
    session_id: str | None = None
    usage: JSON | None = None
    hits: list[Hit] = field(default_factory=list)  # what retrieval found (for evaluation)
    raw: str = ""  # what the model wrote, before the checks
    doubt: float | None = None  # the judge's probability that the chunks hold no answer

    def as_json(self) -> JSON:
        """The contract of ``heshi kb ask --json``."""
        return {
            "answer": self.answer,
            "citations": [c.as_json() for c in self.citations],
            "handoff": self.handoff,
            "grounded": self.grounded,
        }


class KnowledgeBot:
    """Answers questions from the knowledge bases in ``store``."""

    def __init__(
        self,
        store: KnowledgeBaseStore,
        sessions: SessionStore,
        embed: Vectors | None,
        generate: Generate,
        config: KnowledgeConfig,
        notify: Callable[[JSON], Awaitable[str]] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.embed = embed
        self.generate = generate
        self.config = config
        self.notify = notify  # the handoff webhook: record in, "sent" | "failed" out
        self.judge = judge
        self._indexes: dict[str, KnowledgeIndex] = {}

    def index(self, kb: str, revision: int | None = None) -> KnowledgeIndex:
        """The base's index, rebuilt when the store's revision (read now, unless given)
        has moved."""
        if revision is None:
            revision = self.store.get(kb).revision
        index = self._indexes.get(kb)
        if index is None or index.revision != revision:
            index = KnowledgeIndex.load(self.store, kb, self.embed)
            self._indexes[kb] = index
        return index

    async def ask(
        self,
        kb: str,
        messages: list[JSON],
        *,
        session_id: str | None = None,
        tenant: str | None = None,
    ) -> Answer:
        """Answer the last user message of ``messages`` (earlier turns: the conversation
        as the client keeps it, or, with ``session_id``, as the store kept it)."""
        # the store's calls run off the event loop (a slow database stalls no other request)
        base = await asyncio.to_thread(self.store.get, kb)
        session = (
            await asyncio.to_thread(self.sessions.load, session_id, kb, tenant)
            if session_id
            else Session("", kb, tenant)
        )
        history = _turns(messages[:-1]) or session.messages
        question = content_text(messages[-1].get("content")) if messages else ""
        session.messages = [*history, {"role": "user", "content": question}]
        answer = await self._turn(kb, base.revision, question, history, session)
        session.messages.append({"role": "assistant", "content": answer.answer})
        answer.session_id = session_id
        if session_id:
            await asyncio.to_thread(self.sessions.save, session)
        return answer

    async def _turn(
        self, kb: str, revision: int, question: str, history: list[JSON], session: Session
    ) -> Answer:
        reason = handoff_reason(question, session.failures)
        if reason is not None:
            return await self._hand_off(session, reason)
        query = search_query(question, history)
        # index (re)building and the embedder's work run off the event loop
        index = await asyncio.to_thread(self.index, kb, revision)
        hits = await asyncio.to_thread(
            index.search, query, self.config.chunks, dense_weight=self.config.dense_weight
        )
        if not hits or (
            self.embed is not None and max(h.dense for h in hits) < self.config.min_similarity
        ):
            session.failures += 1
            return Answer(DECLINE, hits=hits)
        earlier = history[-2 * self.config.history_turns :]
        if self.config.answer_style == "quote":
            return await self._quote(kb, query, hits, earlier, question, session)
        doubt, judged = None, None
        if self.judge is not None:
            asked = prompt_messages(kb, hits, earlier, question, JUDGE_ASK)
            doubt, judged = await self.judge(asked)
            if doubt is not None and doubt >= self.config.doubt_limit:
                session.failures += 1
                return Answer(DECLINE, hits=hits, doubt=doubt, usage=judged)
        prompt = prompt_messages(kb, hits, earlier, question)
        raw, written = await self.generate(prompt, self.config.max_answer_tokens)
        usage = add_usage(judged, written)
        checked = keep_grounded(raw, hits, question, self.config.min_word_support)
        if not checked or DECLINED.search(checked) or not CJK.search(MARK.sub("", checked)):
            session.failures += 1
            return Answer(DECLINE, usage=usage, hits=hits, raw=raw, doubt=doubt)
        session.failures = 0
        text, citations = cite(checked, hits)
        return Answer(text, citations, grounded=True, usage=usage, hits=hits, raw=raw, doubt=doubt)

    async def _quote(
        self, kb: str, query: str, hits: list[Hit], earlier: list[JSON], question: str,
        session: Session,
    ) -> Answer:  # fmt: skip
        """The answer as the sources' own sentences, when the judge finds they answer."""
        chosen = await asyncio.to_thread(self.choose, query, hits)
        doubt, judged = None, None
        if self.judge is not None and chosen:
            doubt, judged = await self.judge(quote_judge_messages(kb, chosen, earlier, question))
        if not chosen or (doubt is not None and doubt >= self.config.doubt_limit):
            session.failures += 1
            return Answer(DECLINE, hits=hits, doubt=doubt, usage=judged)
        text, citations = quoted(chosen, hits)
        session.failures = 0
        return Answer(text, citations, grounded=True, hits=hits, doubt=doubt, usage=judged)

    def choose(self, query: str, hits: list[Hit]) -> list[Quote]:
        """The ``kb.quote_sentences`` sentences of the chunks closest to the question (by
        the embedder; without one, the best chunk's first sentences), in the order the
        sources give them."""
        candidates = [
            (n, i, s) for n, hit in enumerate(hits, 1) for i, s in quotable(hit.chunk.text)
        ]
        if not candidates:
            return []
        if self.embed is not None:
            vectors = self.embed.passages([s for _, _, s in candidates])
            scores = vectors @ self.embed.query(query)
            best = sorted(range(len(candidates)), key=lambda k: -float(scores[k]))
        else:
            best = list(range(len(candidates)))
        return sorted(candidates[k] for k in best[: self.config.quote_sentences])

    async def _hand_off(self, session: Session, reason: Reason) -> Answer:
        session.handed_off = True
        session.failures = 0
        session.messages.append({"role": "assistant", "content": HANDOFF_TEXT[reason]})
        webhook = "pending" if self.notify is not None else None
        record = await asyncio.to_thread(self.sessions.hand_off, session, reason, webhook)
        session.messages.pop()
        if self.notify is not None:
            sent = await self.notify(record.as_json())
            await asyncio.to_thread(self.sessions.set_webhook, record.id, sent)
        return Answer(
            HANDOFF_TEXT[reason], handoff=True, handoff_reason=reason, handoff_id=record.id
        )


Quote = tuple[int, int, str]  # (chunk number from 1, sentence number in it, sentence)


def quoted(chosen: list[Quote], hits: list[Hit]) -> tuple[str, list[Citation]]:
    """The answer made of the chosen sentences, each chunk's marked [n]."""
    parts: list[str] = []
    for n, _, sentence in chosen:
        if parts and parts[-1] == f"[{n}]":
            parts.pop()
        parts += [sentence, f"[{n}]"]
    return cite("".join(_spaced(parts)), hits)


def quote_judge_messages(
    kb: str, chosen: list[Quote], history: list[JSON], question: str
) -> list[JSON]:
    """What the judge reads before a quoted answer: exactly the sentences the answer would
    be, the question, and whether they state its answer."""
    listing = "\n".join(f"- {sentence}" for _, _, sentence in chosen)
    return _with_turns(kb, history, f"句子：\n{listing}\n\n问题：{question}\n\n{QUOTE_JUDGE_ASK}")


def prompt_messages(
    kb: str, hits: list[Hit], history: list[JSON], question: str, ask: str = ANSWER_ASK
) -> list[JSON]:
    """What the answer model reads: who it is, the earlier turns, then the numbered chunks,
    the question and what to do in the last user turn (small models follow what is
    closest)."""
    last = CONTEXT.format(materials=materials(hits), question=question) + ask
    return _with_turns(kb, history, last)


def _with_turns(kb: str, history: list[JSON], last: str) -> list[JSON]:
    """Who the model is, the earlier turns, and the last user turn."""
    return [
        {"role": "system", "content": SYSTEM.format(kb=kb)},
        *history,
        {"role": "user", "content": last},
    ]


_QUESTION_LINE = re.compile(r"^\s*(问|Q)\s*[:：]")
_ANSWERMARK = re.compile(r"^\s*(答|A)\s*[:：]\s*")
_BULLET = re.compile(r"^\s*[-*•·]\s+")  # a list item's bullet is not part of its sentence


def quotable(text: str) -> list[tuple[int, str]]:
    """A chunk's sentences that can answer (a FAQ's question line is not one), numbered
    in order; table rows come with the table's header row."""
    lines = text.split("\n")
    out: list[tuple[int, str]] = []
    header = lines[0] if len(lines) > 1 and " | " in lines[0] else None
    for line in lines:
        if _QUESTION_LINE.match(line) or not line.strip():
            continue
        if header is not None and " | " in line:
            if line != header:
                pairs = zip(header.split(" | "), line.split(" | "), strict=False)
                out.append((len(out), "，".join(f"{h}：{c}" for h, c in pairs if c) + "。"))
            continue
        for sentence in re.split(r"(?<=[。！？；!?])", _BULLET.sub("", _ANSWERMARK.sub("", line))):
            if len(sentence.strip()) >= 4:
                out.append((len(out), sentence.strip()))
    return out


def _spaced(parts: list[str]) -> list[str]:
    return [f" {p}" if p.startswith("[") else p for p in parts]


def search_query(question: str, history: list[JSON]) -> str:
    """What is searched: the question, and for a follow-up the user's previous question
    with it (那企业版呢？ after 团队版一年多少钱？)."""
    previous = [m["content"] for m in history if m.get("role") == "user" and m.get("content")]
    short = len(question.strip()) <= 8
    if previous and (short or _FOLLOW_UP.search(question.strip())):
        return f"{previous[-1]} {question}"
    return question


def materials(hits: list[Hit]) -> str:
    parts = []
    for n, hit in enumerate(hits, 1):
        where = hit.chunk.headings[-1] if hit.chunk.headings else ""
        title = f"（{where}）" if where else ""
        parts.append(f"[{n}]{title}{hit.chunk.text}")
    return "\n\n".join(parts)


def _turns(messages: list[JSON]) -> list[JSON]:
    return [
        {"role": m["role"], "content": content_text(m.get("content"))}
        for m in messages
        if m.get("role") in ("user", "assistant") and content_text(m.get("content"))
    ]
