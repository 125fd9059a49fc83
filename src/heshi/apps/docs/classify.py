"""Which kind of business document a text is: invoice, contract, bill of lading, bank
statement, or other.

The words each kind prints (发票号码 and 价税合计 on an invoice, 甲方/乙方 in a contract,
提单号 and 装货港 on a bill of lading, 期初余额 on a statement) decide when they point one
way; otherwise the model chooses, held by a grammar to one of the kinds.
"""

from __future__ import annotations

import re
from typing import Any

from heshi.apps.docs.extract import Ask, Extraction, extract
from heshi.apps.docs.schema import Schema, load_schema
from heshi.errors import HeshiError

AUTO = "auto"  # --schema auto: classify, then the kind's built-in schema
KINDS = ("invoice", "contract", "bill_of_lading", "bank_statement", "other")
_MARKS = {
    "invoice": ("发票号码", "价税合计", "开票日期", "发票代码", "税额", "购买方", "销售方"),
    "contract": ("合同编号", "甲方", "乙方", "本合同", "签订日期", "违约"),
    "bill_of_lading": ("提单", "B/L", "Shipper", "Consignee", "装货港", "卸货港", "船名"),
    "bank_statement": ("对账单", "期初余额", "期末余额", "本期收入", "本期支出", "交易明细"),
}


class NotBuiltIn(HeshiError):
    status_code = 422
    error_type = "invalid_request_error"
    code = "unknown_document_kind"

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"单据类型为 {kind}，没有内置字段定义，请用 --schema 文件.json / the document is "
            f"'{kind}': no built-in schema; pass --schema FILE.json"
        )


_CLEAR = 2  # marks of one kind, none of another: the words decide


def by_words(text: str) -> str | None:
    """The kind the document's words point to, or None when they do not clearly."""
    head = text[:3000]
    scores = {
        kind: sum(1 for m in marks if re.search(re.escape(m), head, re.I))
        for kind, marks in _MARKS.items()
    }
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    (best, top), (_, second) = ranked[0], ranked[1]
    if top >= _CLEAR and top >= 2 * second + 1:
        return best
    return None


async def classify(ask: Ask, text: str, model: str) -> str:
    """The document's kind: by its words, else by the model (one of :data:`KINDS`)."""
    found = by_words(text)
    if found is not None:
        return found
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "system",
                "content": "判断单据类型：invoice（发票）、contract（合同）、"
                "bill_of_lading（提单）、bank_statement（银行对账单）或 other（其他）。"
                "只输出 JSON。",
            },
            {"role": "user", "content": text[:2000]},
        ],
        "temperature": 0,
        "max_tokens": 32,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "kind",
                "schema": {
                    "type": "object",
                    "properties": {"type": {"enum": list(KINDS)}},
                    "required": ["type"],
                    "additionalProperties": False,
                },
            },
        },
    }
    result = await ask(body)
    content = str(((result.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
    match = re.search(r'"type"\s*:\s*"(\w+)"', content)
    kind = match.group(1) if match else "other"
    return kind if kind in KINDS else "other"


async def schema_for(ask: Ask, text: str, model: str) -> tuple[str, Schema]:
    """The document's kind and its built-in schema; :class:`NotBuiltIn` for "other"."""
    kind = await classify(ask, text, model)
    if kind == "other":
        raise NotBuiltIn(kind)
    return kind, load_schema(kind)


async def classify_and_extract(
    ask: Ask, schema: Schema | None, text: str, model: str, max_chars: int
) -> tuple[str | None, Schema, Extraction]:
    """The fields of ``text`` by ``schema`` — or, when None (``auto``), by the built-in
    schema of its kind (:class:`NotBuiltIn` for "other"); and the kind found, if asked."""
    kind = None
    if schema is None:
        kind, schema = await schema_for(ask, text, model)
    return kind, schema, await extract(ask, schema, text, model, max_chars)
