"""Tool calling on the embedded engine: OpenAI's ``tools`` in, ``tool_calls`` out.

Qwen's chat templates describe the tools in the system prompt and ask for each call as

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "北京"}}
    </tool_call>

(the Hermes format). llama.cpp renders that prompt (``/apply-template``) but neither
fills ``tool_calls`` from the answer nor takes a grammar together with ``tools``; so a
request with tools runs here as a text completion of the rendered prompt, and:

- :class:`ToolRequest` checks ``tools`` / ``tool_choice`` and builds the grammar that
  constrains the answer (llguidance's Lark dialect, each call's JSON checked against its
  function's ``parameters`` schema): ``required`` and a named function force one or more
  calls (one for a named function or ``parallel_tool_calls: false``); ``auto`` allows
  either calls or an answer in prose (which then cannot start with ``<``, ``{`` or a
  backtick). ``engine.tool_grammar: false`` leaves ``auto`` unconstrained.
- :class:`~heshi.engines.toolparse.ToolCallParser` reads the generated text,
  incrementally for streams, into prose and calls. It also takes what small models write
  instead of the tag: bare JSON or a ```json fence naming one of the offered functions.

``tool_choice: "none"`` is answered as a plain chat without tools.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from heshi.engines.base import JSON
from heshi.errors import InvalidRequest

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
MAX_TOOLS = 128


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: JSON


@dataclass(frozen=True)
class ToolRequest:
    """What a chat request with ``tools`` asks of the model."""

    tools: tuple[Tool, ...]
    choice: Literal["auto", "required"] | str  # or the one function's name that must be called
    parallel: bool

    @classmethod
    def of(cls, body: JSON) -> ToolRequest | None:
        """The request's tool use; None when it offers no tools or says ``tool_choice:
        "none"``. ``InvalidRequest`` names the field that is wrong."""
        raw_tools = body.get("tools")
        choice = body.get("tool_choice")
        if not raw_tools:
            if choice not in (None, "none", "auto"):
                raise InvalidRequest(
                    "tool_choice 需要同时提供 tools / tool_choice needs tools", param="tool_choice"
                )
            return None
        tools = _tools(raw_tools)
        names = [t.name for t in tools]
        if choice is None or choice == "auto":
            wanted: str = "auto"
        elif choice == "none":
            return None
        elif choice == "required":
            wanted = "required"
        elif isinstance(choice, dict) and choice.get("type") == "function":
            function = choice.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if name not in names:
                raise InvalidRequest(
                    f"tool_choice 指定的函数 {name!r} 不在 tools 中 / tool_choice names "
                    f"{name!r}, which is not one of the tools",
                    param="tool_choice",
                )
            wanted = str(name)
        else:
            raise InvalidRequest(
                'tool_choice 应为 none、auto、required 或 {"type": "function", '
                '"function": {"name": …}} / tool_choice must be none, auto, required or '
                '{"type": "function", "function": {"name": …}}',
                param="tool_choice",
            )
        parallel = body.get("parallel_tool_calls")
        return cls(tuple(tools), wanted, parallel is not False)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools)

    def grammar(
        self,
        *,
        constrain_auto: bool,
        gbnf: Callable[[str], str] | None = None,
        thought: Thought = "none",
    ) -> str | None:
        """The grammar the answer must match (None: unconstrained): llguidance's Lark, or,
        given ``gbnf`` (llama.cpp's JSON-schema-to-GBNF converter, for an engine built
        without llguidance), llama.cpp's GBNF. ``thought``: a thinking model's answer
        begins inside a think block (``open``) or may open one (``optional``); the thought
        is free text up to ``</think>`` (Lark only: with GBNF the caller closes the block)."""
        if self.choice == "auto" and not constrain_auto:
            return None
        callable_ = [t for t in self.tools if self.choice in ("auto", "required", t.name)]
        schema = {"anyOf": [_call_schema(t) for t in callable_]}
        if len(callable_) == 1:
            schema = _call_schema(callable_[0])
        single = self.choice not in ("auto", "required") or not self.parallel
        prose = self.choice == "auto"
        if gbnf is not None:
            return _gbnf(gbnf(orjson.dumps(schema).decode()), single=single, prose=prose)
        lines = ["%llguidance {}", _start("(calls | PROSE)" if prose else "calls", thought)]
        if thought != "none":
            lines.append(_THOUGHT_RULE)
        lines += [
            "calls: call" if single else 'calls: call ("\\n" call)*',
            'call: "<tool_call>\\n" args "\\n</tool_call>"',
            "args: %json " + _compact(schema),
        ]
        if prose:  # anything that does not open like a call would
            lines.append("PROSE: /[^<{`\\[\\s][\\s\\S]*/")
        return "\n".join(lines) + "\n"


_TURN_END = "<|im_end|>"  # ChatML, the format of Qwen's templates


def with_instructions(prompt: str, instructions: str) -> str:
    """The rendered prompt with ``instructions`` added to the end of the system turn that
    describes the tools (a ChatML prompt with a ``<tools>`` block); unchanged otherwise."""
    at = prompt.find("</tools>")
    end = prompt.find(_TURN_END, at) if at >= 0 else -1
    if not instructions or end < 0:
        return prompt
    return f"{prompt[:end].rstrip()}\n\n{instructions}{prompt[end:]}"


def prose_grammar(thought: Thought = "none", *, gbnf: bool = False) -> str:
    """An answer in prose only (no call may open it): what the model writes instead of a
    call it made up (see :func:`invented_values`)."""
    if gbnf:
        return "root ::= [^<{`\\[ \\t\\n] .*\n"
    lines = ["%llguidance {}", _start("PROSE", thought), "PROSE: /[^<{`\\[\\s][\\s\\S]*/"]
    if thought != "none":
        lines.append(_THOUGHT_RULE)
    return "\n".join(lines) + "\n"


def _gbnf(args: str, *, single: bool, prose: bool) -> str:
    """The GBNF of the calls around ``args``, the converter's grammar of one call (its
    ``root`` renamed). Heshi's own rules are prefixed ``tc-``; the converter names its
    rules after the schema's top-level properties (``name``, ``arguments``) and its
    primitives, never so."""
    args = re.sub(r"^root(\s*)::=", r"tc-args\1::=", args, flags=re.MULTILINE)
    lines = [
        "root ::= tc-calls | tc-prose" if prose else "root ::= tc-calls",
        "tc-calls ::= tc-call" if single else 'tc-calls ::= tc-call ("\\n" tc-call)*',
        'tc-call ::= "<tool_call>\\n" tc-args "\\n</tool_call>"',
    ]
    if prose:
        lines.append("tc-prose ::= [^<{`\\[ \\t\\n] .*")
    return "\n".join(lines) + "\n" + args.strip() + "\n"


Thought = Literal["none", "open", "optional"]


def json_grammar(schema: JSON, thought: Thought = "none") -> str:
    """The llguidance grammar of one JSON value matching ``schema``, written compactly
    (engines built with llguidance only), after a thinking model's thought (``thought``
    as in :meth:`ToolRequest.grammar`)."""
    lines = ["%llguidance {}", _start("answer", thought), "answer: %json " + _compact(schema)]
    if thought != "none":
        lines.append(_THOUGHT_RULE)
    return "\n".join(lines) + "\n"


# the shortest text that closes the block: a thought ends at its first </think>
_THOUGHT_RULE = "thought[lazy]: /(.|\\n)*<\\/think>/"


def _start(answer: str, thought: Thought) -> str:
    return {
        "none": f"start: {answer}",
        "open": f'start: thought "\\n\\n"? {answer}',
        "optional": f'start: ("<think>" thought "\\n\\n"?)? {answer}',
    }[thought]


def _compact(schema: JSON) -> str:
    """``schema`` for llguidance's ``%json``: unknown keywords ignored (not an error), and
    the JSON written the way Qwen's templates write it (", " and ": ", no other
    whitespace) — a model held to it cannot spend its tokens on blank lines (small models
    given the freedom do, until ``max_tokens``)."""
    options = {
        "lenient": True,
        "whitespace_flexible": False,
        "item_separator": ", ",
        "key_separator": ": ",
    }
    return orjson.dumps({**schema, "x-guidance": options}).decode()


def _tools(raw: Any) -> list[Tool]:
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise InvalidRequest(
            f"tools 应为至多 {MAX_TOOLS} 个函数的列表 / tools must be a list of at most "
            f"{MAX_TOOLS} functions",
            param="tools",
        )
    out: list[Tool] = []
    for i, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or item.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise InvalidRequest(
                f'tools[{i}] 应为 {{"type": "function", "function": {{…}}}} / tools[{i}] must '
                'be {"type": "function", "function": {…}}',
                param=f"tools[{i}]",
            )
        name = function.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 64 or set(name) - _NAME_CHARS:
            raise InvalidRequest(
                f"tools[{i}].function.name 应为 1-64 个字母、数字、_、- 或 . / "
                f"tools[{i}].function.name must be 1-64 letters, digits, _, - or .",
                param=f"tools[{i}].function.name",
            )
        if any(t.name == name for t in out):
            raise InvalidRequest(
                f"函数名 {name} 重复 / two tools are named {name}", param=f"tools[{i}]"
            )
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise InvalidRequest(
                f"tools[{i}].function.parameters 应为 JSON Schema 对象 / "
                f"tools[{i}].function.parameters must be a JSON Schema object",
                param=f"tools[{i}].function.parameters",
            )
        out.append(Tool(name, parameters))
    return out


def _call_schema(tool: Tool) -> JSON:
    parameters = _closed(tool.parameters or {"type": "object"})
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _closed(schema: Any) -> Any:
    """``schema`` with objects that do not say otherwise closed to the properties they list
    (``additionalProperties: false``, as llama.cpp's own grammars do): a model held to the
    schema cannot then invent arguments."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) if k in _SUBSCHEMAS else v for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: _closed(sub) for name, sub in schema[key].items()}
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


_SUBSCHEMAS = frozenset({"items", "anyOf", "oneOf", "allOf", "not", "additionalProperties"})
