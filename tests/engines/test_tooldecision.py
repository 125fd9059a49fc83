"""The which-function question asked before an ``auto`` tool answer."""

from __future__ import annotations

import math

import pytest

from heshi.engines.tooldecision import Decision, decision_question, read_decision

TOOLS = [
    {
        "type": "function",
        "function": {"name": "query_order", "description": "查询订单状态。按订单号"},
    },
    {
        "type": "function",
        "function": {"name": "apply_refund", "description": "Refund an order. Long"},
    },
]
PROMPT = "<|im_start|>system\n<tools>…</tools><|im_end|>\n<|im_start|>user\n退款<|im_end|>\n"
ASSISTANT = "<|im_start|>assistant\n"


def body(*messages: dict) -> dict:
    return {"messages": list(messages), "tools": TOOLS}


def top(**probabilities: float) -> dict:
    entries = [{"token": t, "logprob": math.log(p)} for t, p in probabilities.items()]
    return {"choices": [{"text": "", "logprobs": {"content": [{"top_logprobs": entries}]}}]}


def test_the_question_quotes_the_latest_message_and_offers_none_first() -> None:
    question = decision_question(
        PROMPT + ASSISTANT, body({"role": "user", "content": "帮我把订单 DD1 退了"})
    )
    assert question is not None
    assert question.functions == ("query_order", "apply_refund")
    # the conversation is kept whole in front, so the answer after it reuses the cache
    assert question.prompt.startswith(PROMPT)
    assert question.prompt.endswith(ASSISTANT)
    asked = question.prompt[len(PROMPT) :]
    assert "「帮我把订单 DD1 退了」" in asked
    assert "A. 不需要办理" in asked
    assert "B. query_order：查询订单状态\n" in asked  # first sentence of the description
    assert "C. apply_refund：Refund an order\n" in asked
    sent = question.completion_body("m")
    assert sent["max_tokens"] == 1 and sent["temperature"] == 0 and sent["n_probs"] >= 3


def test_no_question_where_it_does_not_apply() -> None:
    user = {"role": "user", "content": "退款"}
    tool_result = {"role": "tool", "tool_call_id": "c1", "content": "{}"}
    assert decision_question(PROMPT, body(user)) is None  # not a ChatML prompt's end
    assert decision_question(PROMPT + ASSISTANT, body(user, tool_result)) is None
    assert decision_question(PROMPT + ASSISTANT, body({"role": "user", "content": " "})) is None
    many = {"messages": [user], "tools": TOOLS * 13}  # 26 functions: more than B…Z
    assert decision_question(PROMPT + ASSISTANT, many) is None


def test_a_very_long_message_is_quoted_shortened() -> None:
    long = "合同正文" * 250 + "退" * 400  # the request comes last
    question = decision_question(PROMPT + ASSISTANT, body({"role": "user", "content": long}))
    assert question is not None and "「…" + "退" * 400 + "」" in question.prompt


def test_the_decision_is_the_share_of_option_a_among_the_letters() -> None:
    question = decision_question(PROMPT + ASSISTANT, body({"role": "user", "content": "退款"}))
    assert question is not None
    decision = read_decision(top(A=0.1, B=0.2, C=0.6, 的=0.05), question)
    assert decision is not None
    assert decision.function == "apply_refund"
    assert math.isclose(decision.none_share, 0.1 / 0.9)
    sure = read_decision(top(A=0.6, D=0.3), question)  # D is not an option
    assert sure is not None and sure.none_share == 1.0
    wide = read_decision(top(**{"Ａ": 0.5, "B.": 0.3}), question)  # full-width, "B."
    assert wide is not None and math.isclose(wide.none_share, 0.5 / 0.8)
    # letters that are scraps beside another answer, or none, or no probabilities: no answer
    assert read_decision(top(不=0.95, C=0.001), question) is None
    assert read_decision(top(D=0.5, 的=0.4), question) is None
    assert read_decision({"choices": [{"text": "A"}]}, question) is None


def test_only_a_clear_answer_overrides_the_model() -> None:
    assert Decision(0.05, "f").verdict(0.14, 0.30) == "call"
    assert Decision(0.20, "f").verdict(0.14, 0.30) == "free"
    assert Decision(0.45, "f").verdict(0.14, 0.30) == "words"


def test_the_thresholds_must_be_in_order() -> None:
    import pydantic

    from heshi.config import LocalEngineConfig

    with pytest.raises(pydantic.ValidationError, match="must not exceed"):
        LocalEngineConfig(tool_decision_call_below=0.5, tool_decision_answer_above=0.3)
