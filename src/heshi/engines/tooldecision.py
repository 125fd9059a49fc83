"""Whether to call a tool, and which: a multiple-choice question put to the model before
it answers a ``tool_choice: "auto"`` request.

A small model answering with tools on offer decides badly *whether* to call: asked in the
same turn to act after a tool result (“那给王芳转两千”), Qwen2.5-1.5B says the transfer is
done and calls nothing; asked about the weather with an inventory tool on offer, it checks
the stock of umbrellas. Asked instead, as a question of its own, which of the offered
functions the user's latest message asks for — option A being “nothing to carry out” —
it names the right function for every one of the 50 requests of the tool-calling set
that need one (docs/benchmarks.md). Its probability for option A is a weaker signal, so
it is used only where it is clear: well below :attr:`call_below`, the function it ranks
first is called (held to that function's schema, and still refused if its identifiers are
made up: :mod:`heshi.engines.toolgrounding`); above :attr:`answer_above` the answer is in
words; in between the model answers as it would have.

The question is appended to the rendered ChatML prompt, so the conversation and tool
descriptions before it are read once and reused from the slot's cache by the answer
that follows; it costs one short prompt and one generated token.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from dataclasses import dataclass
from typing import Literal

from heshi.engines.base import JSON, content_text

_ASSISTANT = "<|im_start|>assistant\n"  # the end of a rendered ChatML prompt
_LETTERS = string.ascii_uppercase
_NONE = "不需要办理：只是打招呼、闲聊、道谢、咨询或提问，或缺少办理所需的信息"
_QUESTION = (
    "（系统提问，不是用户说的话）用户最新的一句话是：「{last}」\n"
    "这句话是在要求你现在就办理下面哪一项？\n{options}\n只回答一个字母。"
)
_MAX_LAST_CHARS = 400  # the latest message's end is quoted; it is in the prompt in full
_MIN_LETTER_MASS = 0.5  # below this the option letters are not what the model answers
_MAX_DESCRIPTION_CHARS = 60
_SENTENCE_END = re.compile(r"[。！？.!?\n]")


@dataclass(frozen=True)
class DecisionQuestion:
    """The question's prompt and the functions its options B, C, … stand for."""

    prompt: str
    functions: tuple[str, ...]

    def completion_body(self, model: str) -> JSON:
        """The text completion that asks it: one token, greedy, with the probabilities of
        the top tokens (every option letter, and some room). llama.cpp reports them before
        any sampling step, so a request's ``logit_bias`` would not change them: none is
        sent."""
        return {
            "model": model,
            "prompt": self.prompt,
            "max_tokens": 1,
            "temperature": 0,
            "n_probs": len(self.functions) + 6,
        }


@dataclass(frozen=True)
class Decision:
    """What the answer to the question says: the share of option A (no call) among the
    option letters' probabilities, and the function ranked first."""

    none_share: float
    function: str

    def verdict(self, call_below: float, answer_above: float) -> Literal["call", "words", "free"]:
        """``call`` :attr:`function`, answer in ``words``, or let the model answer ``free``."""
        if self.none_share < call_below:
            return "call"
        if self.none_share > answer_above:
            return "words"
        return "free"


def decision_question(prompt: str, body: JSON) -> DecisionQuestion | None:
    """The question for a chat request with tools whose rendered ChatML ``prompt`` ends
    where the assistant's answer begins; None where it does not apply: another template,
    a conversation whose last message is not the user's (a tool result to answer from),
    or more functions than there are option letters."""
    messages = body.get("messages") or []
    tools = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, dict)]
    if (
        not prompt.endswith(_ASSISTANT)
        or not messages
        or not isinstance(messages[-1], dict)
        or messages[-1].get("role") != "user"
        or not 0 < len(tools) < len(_LETTERS)
    ):
        return None
    last = content_text(messages[-1].get("content")).strip()
    if not last:
        return None
    if len(last) > _MAX_LAST_CHARS:  # a request follows what it is about: keep the end
        last = "…" + last[-_MAX_LAST_CHARS:]
    options = [f"A. {_NONE}"] + [
        f"{_LETTERS[i + 1]}. {tool.get('name')}：{_first_sentence(tool.get('description'))}"
        for i, tool in enumerate(tools)
    ]
    question = _QUESTION.format(last=last, options="\n".join(options))
    asked = prompt[: -len(_ASSISTANT)] + f"<|im_start|>user\n{question}<|im_end|>\n" + _ASSISTANT
    return DecisionQuestion(asked, tuple(str(t.get("name")) for t in tools))


def read_decision(completion: JSON, question: DecisionQuestion) -> Decision | None:
    """The decision in a completion of ``question``: None without probabilities or when
    the option letters (A, Ａ, "A." alike) hold less than half the probability — the model
    is answering something else; a share of 1 when A is the only letter among the top."""
    choice = (completion.get("choices") or [{}])[0]
    logprobs = choice.get("logprobs") or {}
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    top = (content[0].get("top_logprobs") if content else None) or []
    mass: dict[str, float] = {}
    for entry in top:
        letter = unicodedata.normalize("NFKC", str(entry.get("token", ""))).strip().rstrip(".、")
        if letter in _LETTERS[: len(question.functions) + 1]:
            mass[letter] = mass.get(letter, 0.0) + math.exp(float(entry["logprob"]))
    total = sum(mass.values())
    if total < _MIN_LETTER_MASS:  # the model's answer is not a letter: no decision
        return None
    # option A alone among the top tokens: sure there is nothing to do
    best = max((k for k in mass if k != "A"), key=mass.__getitem__, default="B")
    return Decision(mass.get("A", 0.0) / total, question.functions[_LETTERS.index(best) - 1])


def _first_sentence(description: object) -> str:
    text = str(description or "").strip()
    match = _SENTENCE_END.search(text)
    if match:
        text = text[: match.start()]
    return text[:_MAX_DESCRIPTION_CHARS]
