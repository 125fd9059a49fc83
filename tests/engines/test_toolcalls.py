"""Tool-call requests checked and tool calls read out of generated text (no engine)."""

from __future__ import annotations

import json

import pytest

from heshi.engines.toolcalls import ToolRequest
from heshi.engines.toolparse import ToolCallParser, chat_message, parse_call
from heshi.errors import InvalidRequest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ORDER = {"type": "function", "function": {"name": "query_order"}}
NAMES = frozenset({"get_weather", "query_order"})


def events(parser: ToolCallParser, text: str, step: int) -> list[tuple[str, str]]:
    """Feed ``text`` ``step`` characters at a time; (kind, value) of what came out."""
    out = []
    for i in range(0, len(text), step):
        out += parser.feed(text[i : i + step])
    out += parser.finish()
    return [
        ("call", f"{e.call.name}{e.call.arguments}") if e.call else ("text", e.text) for e in out
    ]


def merged(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent prose pieces joined (how they are split depends on the step)."""
    out: list[tuple[str, str]] = []
    for kind, value in items:
        if out and kind == out[-1][0] == "text":
            out[-1] = ("text", out[-1][1] + value)
        else:
            out.append((kind, value))
    return out


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_prose_and_parallel_calls_come_out_whatever_the_chunking(step: int) -> None:
    text = (
        "我来查一下。\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"上海\\"}"}\n'
        "</tool_call>\n"
    )
    got = merged(events(ToolCallParser(NAMES), text, step))
    assert got == [
        ("text", "我来查一下。\n"),
        ("call", 'get_weather{"city":"北京"}'),
        ("call", 'get_weather{"city":"上海"}'),
    ]


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_a_lone_angle_bracket_is_prose_and_is_not_held_forever(step: int) -> None:
    parser = ToolCallParser(NAMES)
    assert merged(events(parser, "价格 <100 元，<tool 不是标签", step)) == [
        ("text", "价格 <100 元，<tool 不是标签")
    ]


def test_prose_is_passed_on_before_the_answer_ends() -> None:
    parser = ToolCallParser(NAMES)
    assert [e.text for e in parser.feed("您好，")] == ["您好，"]
    assert [e.text for e in parser.feed("请问<tool_")] == ["请问"]  # the tag's start is held
    assert [e.text for e in parser.feed("x>")] == ["<tool_x>"]


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"name": "query_order", "arguments": {"order_id": "A1"}}\n```',
        '{"name": "query_order", "arguments": {"order_id": "A1"}}',
        '  [{"name": "query_order", "parameters": {"order_id": "A1"}}]',
    ],
)
def test_what_small_models_write_instead_of_the_tag_is_a_call(text: str) -> None:
    assert events(ToolCallParser(NAMES), text, 5) == [("call", 'query_order{"order_id":"A1"}')]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "delete_everything", "arguments": {}}',  # not an offered function
        '{"answer": 42}',
        "```python\nprint(1)\n```",
        "{ 不是 JSON",
    ],
)
def test_json_or_code_that_is_not_a_call_stays_prose(text: str) -> None:
    assert merged(events(ToolCallParser(NAMES), text, 3)) == [("text", text)]


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_a_fenced_call_after_a_preamble_is_a_call(step: int) -> None:
    # what the default model writes when it narrates the call instead of making it
    text = (
        '要查询订单状态，可以使用以下函数调用：\n\n```json\n{\n  "name": "query_order",\n'
        '  "arguments": {\n    "order_id": "DD20261125330021"\n  }\n}\n```\n'
    )
    got = merged(events(ToolCallParser(NAMES), text, step))
    assert got == [
        ("text", "要查询订单状态，可以使用以下函数调用：\n\n"),
        ("call", 'query_order{"order_id":"DD20261125330021"}'),
    ]


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_fences_in_prose_that_are_not_calls_stay_prose(step: int) -> None:
    text = (
        '示例：\n```python\nprint(1)\n```\n配置：\n```json\n{"port": 8080}\n```\n'
        '未提供的函数：\n```\n{"name": "delete_everything", "arguments": {}}\n```\n结束'
    )
    assert merged(events(ToolCallParser(NAMES), text, step)) == [("text", text)]


def test_code_in_prose_is_passed_on_before_its_fence_closes() -> None:
    parser = ToolCallParser(NAMES)
    assert [e.text for e in parser.feed("看：\n``")] == ["看：\n"]
    assert "".join(e.text for e in parser.feed("`python\nprint(1)\n")) == "```python\nprint(1)\n"


def test_a_fenced_call_cut_off_at_max_tokens_still_counts_when_it_parses() -> None:
    text = '好的：\n```json\n{"name": "get_weather", "arguments": {"city": "杭州"}}\n'
    assert merged(events(ToolCallParser(NAMES), text, 4)) == [
        ("text", "好的：\n"),
        ("call", 'get_weather{"city":"杭州"}'),
    ]


def test_a_broken_call_is_returned_as_the_model_wrote_it() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>'
    assert merged(events(ToolCallParser(NAMES), text, 4)) == [("text", text)]


def test_a_call_the_model_did_not_close_still_counts() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "杭州"}}\n'
    assert events(ToolCallParser(NAMES), text, 6) == [("call", 'get_weather{"city":"杭州"}')]


def test_chat_message_has_null_content_and_distinct_ids_when_only_calls() -> None:
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "query_order", "arguments": {"order_id": "7"}}\n</tool_call>'
    )
    message, called = chat_message(text, ToolCallParser(NAMES))
    assert called
    assert message["content"] is None
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "query_order"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"order_id": "7"}
    assert len({c["id"] for c in calls}) == 2
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)


def test_parse_call_rejects_arguments_that_are_not_an_object() -> None:
    assert parse_call('{"name": "get_weather", "arguments": [1]}') is None
    assert parse_call('{"name": "get_weather", "arguments": "not json"}') is None
    assert parse_call('{"name": 3, "arguments": {}}') is None


def test_tool_choice_forms() -> None:
    assert ToolRequest.of({"tools": [WEATHER]}).choice == "auto"  # type: ignore[union-attr]
    assert ToolRequest.of({"tools": [WEATHER], "tool_choice": "none"}) is None
    assert ToolRequest.of({"messages": []}) is None
    named = ToolRequest.of(
        {
            "tools": [WEATHER, ORDER],
            "tool_choice": {"type": "function", "function": {"name": "query_order"}},
        }
    )
    assert named is not None and named.choice == "query_order"
    assert not ToolRequest.of(  # type: ignore[union-attr]
        {"tools": [WEATHER], "parallel_tool_calls": False}
    ).parallel


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
        (
            {"tools": [{"type": "function", "function": {"name": "有 空格"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools[1]"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tools": [ORDER] * 129}, "tools"),
    ],
)
def test_bad_tools_are_refused_naming_the_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        ToolRequest.of(body)
    assert err.value.param == param


def test_grammars_force_calls_or_allow_prose() -> None:
    tools = [WEATHER, ORDER]
    auto = ToolRequest.of({"tools": tools})
    required = ToolRequest.of({"tools": tools, "tool_choice": "required"})
    single = ToolRequest.of(
        {"tools": tools, "tool_choice": "required", "parallel_tool_calls": False}
    )
    named = ToolRequest.of(
        {"tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    )
    assert auto and required and single and named
    assert auto.grammar(constrain_auto=False) is None
    auto_grammar = auto.grammar(constrain_auto=True)
    assert auto_grammar is not None and "start: (calls | PROSE)\n" in auto_grammar
    assert "thought" not in auto_grammar  # no thinking model: no rule for a thought
    opened = auto.grammar(constrain_auto=True, thought="open") or ""
    assert 'start: thought "\\n\\n"? (calls | PROSE)' in opened and "thought[lazy]" in opened
    maybe = required.grammar(constrain_auto=True, thought="optional") or ""
    assert 'start: ("<think>" thought "\\n\\n"?)? calls' in maybe
    required_grammar = required.grammar(constrain_auto=True)
    assert required_grammar is not None and "PROSE" not in required_grammar
    assert 'calls: call ("\\n" call)*' in required_grammar
    assert "calls: call\n" in (single.grammar(constrain_auto=True) or "")
    named_grammar = named.grammar(constrain_auto=True) or ""
    assert '"const":"get_weather"' in named_grammar and "query_order" not in named_grammar


def test_an_answer_that_may_not_call_reads_every_call_as_words() -> None:
    text = '好的\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'
    fenced = '例如：\n```json\n{"name": "query_order", "arguments": {"order_id": "E10293"}}\n```'
    for answer in (text, fenced):
        assert merged(events(ToolCallParser(frozenset()), answer, 4)) == [("text", answer)]
