"""Extracted values checked against their schema and the document's own arithmetic.

Values are typed as the schema says (an amount written ``¥12,800.00`` becomes 12800.0, a
date ``2026年3月5日`` becomes ``2026-03-05``); a value that cannot be read, a tax id whose
check character is wrong, capitals that disagree with the figures, or totals that do not
add up are reported as problems — the value is returned as extracted, never "fixed".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from heshi.apps.docs.normalize import Unreadable, amount, capital_amount, iso_date
from heshi.apps.docs.schema import Schema
from heshi.guard.ids import valid_uscc

_FEN = Decimal("0.005")


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


def validate(schema: Schema, raw: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """The schema's top-level properties (null where absent), typed, and the problems."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    properties = schema.properties  # a copy each time it is read
    extra = [str(key) for key in raw if key not in properties]
    if extra:  # the grammar never allows this; a backend that ignores it may
        problems.append(
            Problem("*", f"模型输出了 schema 之外的字段 / not in the schema: {', '.join(extra)}")
        )
    for name, spec in properties.items():
        if name not in raw:  # unlike null ("the document does not say"): not answered
            problems.append(Problem(name, "模型输出中缺少该字段 / missing from the model's output"))
        value = raw.get(name)
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            values[name] = None
            continue
        try:
            values[name] = _typed(spec, value)
        except Unreadable as exc:
            values[name] = value
            problems.append(Problem(name, str(exc)))
            continue
        if spec.get("x-check") == "uscc":
            problem = _tax_id_problem(str(values[name]))
            if problem:
                problems.append(Problem(name, problem))
    problems += _capitals(schema, values) + _sums(schema, values)
    return values, problems


def _typed(spec: dict[str, Any], value: Any) -> Any:
    kind = spec.get("type")
    if isinstance(kind, list):  # ["number", "null"]: the type that is not null
        kind = next((k for k in kind if k != "null"), None)
    if kind in ("number", "integer"):
        number = amount(value)
        if kind == "integer":
            if number != number.to_integral_value():
                raise Unreadable(f"不是整数 / not a whole number: {value!r}")
            return int(number)
        return float(number)
    if kind == "string" and spec.get("format") == "date":
        return iso_date(str(value))
    if kind == "string" and not isinstance(value, str):
        # a number written for a text field may have lost digits (a 20-digit invoice
        # number as a float): returned as given, and said
        raise Unreadable(f"不是文本 / not text: {value!r}"[:200])
    return value


def _tax_id_problem(text: str) -> str | None:
    code = text.strip().upper()
    if len(code) == 18:
        if valid_uscc(code):
            return None
        return f"统一社会信用代码校验位不符 / unified social credit code check fails: {text}"
    if len(code) in (15, 17, 20) and code.isalnum():  # older taxpayer numbers: no check
        return None
    return f"税号长度不对 / a tax id is 15, 17, 18 or 20 characters: {text}"


def _capitals(schema: Schema, values: dict[str, Any]) -> list[Problem]:
    out = []
    for name, spec in schema.properties.items():
        other = spec.get("x-capital-of")
        if other is None or values.get(name) is None or values.get(other) is None:
            continue
        try:
            written = capital_amount(str(values[name]))
        except Unreadable as exc:
            out.append(Problem(name, str(exc)))
            continue
        figures = values[other]
        if not isinstance(figures, int | float) or abs(written - Decimal(str(figures))) > _FEN:
            out.append(
                Problem(
                    name,
                    f"大写金额 {written} 与 {other} {figures} 不符 / the amount in capitals "
                    f"({written}) differs from {other} ({figures})",
                )
            )
    return out


def _sums(schema: Schema, values: dict[str, Any]) -> list[Problem]:
    out = []
    for rule in schema.schema.get("x-sums") or []:
        plus, minus = list(rule.get("of") or []), list(rule.get("minus") or [])
        parts = [values.get(f) for f in [rule["field"], *plus, *minus]]
        if not all(isinstance(p, int | float) for p in parts):
            continue  # a part is missing: nothing to check
        total = sum(Decimal(str(values[f])) for f in plus) - sum(
            Decimal(str(values[f])) for f in minus
        )
        stated = Decimal(str(values[rule["field"]]))
        if abs(total - stated) > _FEN:
            terms = " + ".join(plus) + "".join(f" − {f}" for f in minus)
            out.append(
                Problem(
                    rule["field"],
                    f"{rule['field']} {stated} ≠ {terms} = {total} / does not add up",
                )
            )
    return out
