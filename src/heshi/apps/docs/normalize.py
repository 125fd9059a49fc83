"""Values as Chinese business documents write them, read into what a schema asks for.

Dates (2026年3月5日, 2026/3/5, 2026.03.05, 20260305) become ISO 8601 ``2026-03-05``;
amounts (¥12,800.00, 12800元, 1.28万) become numbers; amounts in capitals
(壹万贰仟捌佰元整, 人民币叁佰肆拾伍元陆角柒分) are read exactly, so an invoice's two totals can
be compared. Anything that cannot be read raises :class:`Unreadable` with the reason —
nothing is guessed.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation


class Unreadable(ValueError):
    """A value that is not what its field asks for (the message says why)."""


_DATE_PARTS = re.compile(
    r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\s*$|^\s*(\d{4})(\d{2})(\d{2})\s*$"
)


def iso_date(text: str) -> str:
    """``2026年3月5日`` → ``2026-03-05``; an impossible date (2月30日) is unreadable."""
    match = _DATE_PARTS.match(str(text))
    if match is None:
        raise Unreadable(f"不是日期 / not a date: {text!r}")
    parts = [g for g in match.groups() if g is not None]
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2])).isoformat()
    except ValueError as exc:
        raise Unreadable(f"日期不存在 / no such date: {text!r}") from exc


_CURRENCY = re.compile(r"^(人民币|RMB|CNY|¥|￥)\s*|\s*(元|圆|块)$", re.IGNORECASE)


def amount(value: object) -> Decimal:
    """A figure as written (``¥12,800.00``, ``12800元``, ``1.28万``, ``-3.5``) or a capital
    amount (``壹万贰仟捌佰元整``) → a Decimal."""
    if isinstance(value, bool):
        raise Unreadable(f"不是金额 / not an amount: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip().replace(",", "").replace("，", "").replace(" ", "")
    if text and all(c in _CAPITAL_CHARS for c in text):
        return capital_amount(text)
    multiplier = Decimal(1)
    text = _CURRENCY.sub("", _CURRENCY.sub("", text))
    if text.endswith("万"):
        text, multiplier = text[:-1], Decimal(10_000)
    elif text.endswith("亿"):
        text, multiplier = text[:-1], Decimal(100_000_000)
    try:
        return Decimal(text) * multiplier
    except InvalidOperation as exc:
        raise Unreadable(f"不是金额 / not an amount: {value!r}") from exc


_DIGITS = {"零": 0, "壹": 1, "贰": 2, "叁": 3, "肆": 4, "伍": 5, "陆": 6, "柒": 7, "捌": 8, "玖": 9}
_DIGITS |= {"〇": 0, "两": 2, "貳": 2, "參": 3, "陸": 6}
_SMALL = {"拾": 10, "佰": 100, "仟": 1000}
_LARGE = ("万", "萬", "亿", "億")
_FRACTION = {"角": Decimal("0.1"), "分": Decimal("0.01"), "厘": Decimal("0.001")}
_UNIT = ("元", "圆")
_CAPITAL_CHARS = frozenset(
    "".join(_DIGITS) + "".join(_SMALL) + "".join(_LARGE) + "".join(_FRACTION)
    + "".join(_UNIT) + "整正人民币负"
)  # fmt: skip


def capital_amount(text: str) -> Decimal:
    """An amount in capitals, as written on invoices and cheques: ``壹万贰仟捌佰元整`` →
    12800, ``叁佰肆拾伍元陆角柒分`` → 345.67, ``零元伍角`` → 0.5."""
    rest = text.strip().removeprefix("人民币")
    negative = rest.startswith("负")
    rest = rest.removeprefix("负").removesuffix("整").removesuffix("正")
    if not rest:
        raise Unreadable(f"大写金额为空 / empty capital amount: {text!r}")
    whole_part, _, fraction_part = (
        rest.partition(_UNIT[0]) if _UNIT[0] in rest else rest.partition(_UNIT[1])
    )
    no_yuan = not fraction_part and not any(u in rest for u in _UNIT)
    if no_yuan and any(f in rest for f in _FRACTION):  # all of it is the fraction: 伍角
        whole_part, fraction_part = "", rest
    total = Decimal(_whole(whole_part, text)) if whole_part else Decimal(0)
    digit: int | None = None
    for char in fraction_part:
        if char in _DIGITS:
            digit = _DIGITS[char]
        elif char in _FRACTION and digit is not None:
            total += digit * _FRACTION[char]
            digit = None
        else:
            raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    if digit not in (None, 0):
        raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    return -total if negative else total


def _whole(part: str, text: str) -> int:
    """The yuan of a capital amount: sections of 仟佰拾 under 万 and 亿."""
    yi, wan, section, digit = 0, 0, 0, None
    for char in part:
        if char in _DIGITS:
            digit = _DIGITS[char]
        elif char in _SMALL:
            section += (1 if digit is None else digit) * _SMALL[char]
            digit = None
        elif char in ("万", "萬"):
            wan = (section + (digit or 0)) * 10_000
            section, digit = 0, None
        elif char in ("亿", "億"):
            yi = (yi + wan + section + (digit or 0)) * 100_000_000
            wan, section, digit = 0, 0, None
        else:
            raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    return yi + wan + section + (digit or 0)
