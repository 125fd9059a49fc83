"""Fields out of a document's text: one chat call through the gateway, held to the
schema's grammar (every field present, null where the document does not hold it), then
typed and checked (:mod:`heshi.apps.docs.validate`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from heshi.apps.docs.schema import Schema
from heshi.apps.docs.validate import Problem, validate

JSON = dict[str, Any]
Ask = Callable[[JSON], Awaitable[JSON]]  # a chat-completions body in, the response out

SYSTEM = (
    "你从中国商务单据中抽取字段，只输出 JSON。只填写文档中明确写出的内容；文档里没有的字段填 "
    "null，不要猜测，也不要自己计算。金额只写数字（不带货币符号和千位分隔符），"
    "大写金额照原文抄写，日期写成 YYYY-MM-DD。"
)


@dataclass
class Extraction:
    values: JSON
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False


def listing(schema: Schema) -> str:
    """The fields as the model is told them: name, what to extract, and the kind."""
    lines = []
    for name, spec in schema.properties.items():
        what = spec.get("description") or spec.get("title") or name
        kind = spec.get("type", "")
        if spec.get("format") == "date":
            kind = "date YYYY-MM-DD"
        lines.append(f"- {name}：{what}（{kind}）" if kind else f"- {name}：{what}")
    return "\n".join(lines)


def request(schema: Schema, text: str, model: str, max_chars: int) -> tuple[JSON, bool]:
    """The chat request for ``text`` (cut to ``max_chars``), and whether it was cut."""
    truncated = len(text) > max_chars
    document = text[:max_chars]
    user = f"要抽取的字段：\n{listing(schema)}\n\n文档：\n{document}\n\n请输出 JSON。"
    body: JSON = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "temperature": 0,
        "max_tokens": 1024,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": schema.for_model(), "strict": True},
        },
    }
    return body, truncated


async def extract(ask: Ask, schema: Schema, text: str, model: str, max_chars: int) -> Extraction:
    body, truncated = request(schema, text, model, max_chars)
    result = await ask(body)
    choice = (result.get("choices") or [{}])[0]
    content = str((choice.get("message") or {}).get("content") or "")
    try:
        raw = orjson.loads(content)
    except orjson.JSONDecodeError:
        raw = None
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        values = dict.fromkeys(schema.properties)
        problems.append(
            Problem("*", f"模型输出不是 JSON 对象 / the model's output is not a JSON object: "
                    f"{content[:120]!r}")
        )  # fmt: skip
    else:
        values, problems = validate(schema, raw)
    if choice.get("finish_reason") == "length":
        problems.append(Problem("*", "模型输出被截断 / the model's output was cut at max_tokens"))
    if truncated:
        problems.append(
            Problem(
                "*", f"文档过长，只读了前 {max_chars} 字 / document cut at {max_chars} characters"
            )
        )
    return Extraction(values, problems, truncated)
