"""What an OpenAI request becomes for llama-server: the fields its template step and its
completion handler take, the thinking switch, and the grammar converter it ships."""

from __future__ import annotations

import functools

import aiohttp
import orjson

from heshi.engines.base import JSON
from heshi.engines.local_worker import message_of
from heshi.engines.toolcalls import Thought, json_grammar
from heshi.errors import InvalidRequest

# What a chat request's sampling becomes when it is answered as a text completion.
SAMPLING = (
    "frequency_penalty", "logit_bias", "presence_penalty", "seed", "stop", "temperature",
    "top_p", "top_k", "min_p", "repeat_penalty", "cache_prompt", "stream_options",
)  # fmt: skip
TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


def for_template(body: JSON) -> JSON:
    """What llama.cpp's template step reads: the messages and tools (it warns about, then
    ignores, a ``tool_choice`` naming a function)."""
    if body.get("tool_choice") == "none":
        return without_tools(body)
    if isinstance(body.get("tool_choice"), dict):
        return {k: v for k, v in body.items() if k != "tool_choice"}
    return body


def without_tools(body: JSON) -> JSON:
    """A chat request whose tools are not to be called (``tool_choice: "none"``) is a plain
    chat: llama.cpp is not given them."""
    if any(k in body for k in TOOL_FIELDS):
        return {k: v for k, v in body.items() if k not in TOOL_FIELDS}
    return body


@functools.cache
def llguidance_built() -> bool:
    """Whether this llama.cpp was built with llguidance (the PyPI wheel is; a native build
    without Rust, ``make native-engine``, is not: its grammars are GBNF only)."""
    return json_schema_to_grammar("{}").lstrip().startswith("%llguidance")


def json_schema_to_grammar(schema: str) -> str:
    import xllamacpp

    return str(xllamacpp.json_schema_to_grammar(schema))


def thought_of(body: JSON, opened: bool | None) -> Thought:
    """Where a thinking model's thought may go before a grammar-held answer: the prompt
    opened the block (``open``), or thinking is on and the model may open one."""
    if opened:
        return "open"
    kwargs = body.get("chat_template_kwargs") or {}
    return "optional" if opened is not None and kwargs.get("enable_thinking") else "none"


def plain_chat(body: JSON, thought: Thought = "none") -> JSON:
    """A chat request without tools to call, as llama.cpp's chat handler takes it: a JSON
    ``response_format`` becomes a grammar that writes the JSON compactly (after the
    thought of a thinking model)."""
    body = without_tools(body)
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("json_object", "json_schema") or body.get("grammar") is not None:
        return body
    if not llguidance_built():
        return body  # llama.cpp's own GBNF for the schema (its whitespace is bounded)
    assert isinstance(fmt, dict)
    described = fmt.get("json_schema")
    schema = fmt.get("schema")
    if isinstance(described, dict):
        schema = described.get("schema", schema)
    if not isinstance(schema, dict):
        schema = {"type": "object"}
    rest = {k: v for k, v in body.items() if k != "response_format"}
    return rest | {"grammar": json_grammar(schema, thought)}


async def apply_template(session: aiohttp.ClientSession, payload: bytes) -> str:
    async with session.post("/apply-template", data=payload) as resp:
        templated = orjson.loads(await resp.read())
    if resp.status == 400:
        raise InvalidRequest(f"llama.cpp: {message_of(templated)}")
    return str(templated["prompt"])
