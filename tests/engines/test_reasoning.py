"""A thinking model's thought read out of its text (no engine)."""

from __future__ import annotations

import pytest

from heshi.engines.reasoning import ThinkSplitter, soft_switch, split_text


def pieces(text: str, *, opened: bool, step: int) -> list[tuple[str, str]]:
    splitter = ThinkSplitter(opened=opened)
    out = []
    for i in range(0, len(text), step):
        out += splitter.feed(text[i : i + step])
    out += splitter.finish()
    merged: list[tuple[str, str]] = []
    for kind, value in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + value)
        else:
            merged.append((kind, value))
    return merged


@pytest.mark.parametrize("step", [1, 2, 5, 100])
def test_a_thought_the_model_opens_itself(step: int) -> None:
    text = "<think>\n用户问天气，先想一想。\n</think>\n\n今天晴。"
    assert pieces(text, opened=False, step=step) == [
        ("reasoning", "用户问天气，先想一想。\n"),
        ("content", "今天晴。"),
    ]


@pytest.mark.parametrize("step", [1, 3, 100])
def test_a_thought_the_prompt_opened(step: int) -> None:
    assert pieces("嗯，<b>不是标签</b>\n</think>\n\n答案", opened=True, step=step) == [
        ("reasoning", "嗯，<b>不是标签</b>\n"),
        ("content", "答案"),
    ]


@pytest.mark.parametrize("step", [1, 4, 100])
def test_no_thought_is_the_answer_as_written(step: int) -> None:
    assert pieces("<b>粗体</b> 与 <thin 字", opened=False, step=step) == [
        ("content", "<b>粗体</b> 与 <thin 字")
    ]


def test_an_empty_thought_gives_no_reasoning() -> None:  # what /no_think makes Qwen3 write
    assert split_text("<think>\n\n</think>\n\n好的。", opened=False) == ("", "好的。")


def test_a_thought_cut_by_max_tokens_stays_thought() -> None:
    assert split_text("还在想", opened=True) == ("还在想", "")
    assert split_text("<think>\n还在想</thi", opened=False) == ("还在想</thi", "")


def test_answer_before_it_is_known_to_be_no_tag_is_held_only_briefly() -> None:
    splitter = ThinkSplitter(opened=False)
    assert splitter.feed("<th") == []
    assert splitter.feed("e") == [("content", "<the")]
    assert splitter.feed(" end") == [("content", " end")]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([{"role": "user", "content": "你好 /no_think"}], False),
        (
            [
                {"role": "user", "content": "/no_think 你好"},
                {"role": "user", "content": "再想想 /think"},
            ],
            True,
        ),
        (
            [{"role": "user", "content": "/think"}, {"role": "assistant", "content": "/no_think"}],
            True,
        ),
        ([{"role": "user", "content": [{"type": "text", "text": "简单说 /no_think"}]}], False),
        ([{"role": "user", "content": "你好"}], None),
        ("not a list", None),
    ],
)
def test_qwen_soft_switch(messages: object, expected: bool | None) -> None:
    assert soft_switch(messages) is expected
