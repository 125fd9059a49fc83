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
from decimal import Decimal


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


_CURRENCY = re.compile(r"^(人民币|RMB|CNY|¥|￥)\s*|\s*(元|圆|圓|块)$", re.IGNORECASE)
_MARKS = "ⓧ⊗Ⓧ×"  # printed before an invoice's amount in capitals
_MINUS = ("-", "−", "－", "负")


def amount(value: object) -> Decimal:
    """A figure as written (``¥12,800.00``, ``12800元``, ``1.28万``, ``-¥3.50``,
    ``(12,800.00)``) or a capital amount (``壹万贰仟捌佰元整``) → a finite Decimal."""
    if isinstance(value, bool):
        raise Unreadable(f"不是金额 / not an amount: {value!r}")
    if isinstance(value, int | float):
        return _finite(Decimal(str(value)), value)
    text = str(value).strip().strip(_MARKS).strip()
    text = text.replace(",", "").replace("，", "").replace(" ", "")
    if text and all(c in _CAPITAL_CHARS for c in text):
        return capital_amount(text)
    negative = False
    if (text.startswith("(") and text.endswith(")")) or (
        text.startswith("（") and text.endswith("）")
    ):
        negative, text = True, text[1:-1]
    if text.startswith(_MINUS):
        negative, text = not negative, text[1:]
    multiplier = Decimal(1)
    text = _CURRENCY.sub("", _CURRENCY.sub("", text))
    if text.endswith("万"):
        text, multiplier = text[:-1], Decimal(10_000)
    elif text.endswith("亿"):
        text, multiplier = text[:-1], Decimal(100_000_000)
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", text):
        raise Unreadable(f"不是金额 / not an amount: {value!r}"[:200])
    number = Decimal(text) * multiplier
    return _finite(-number if negative else number, value)


def _finite(number: Decimal, value: object) -> Decimal:
    """No NaN, no infinity, nothing past 10^15 (no business document holds it)."""
    if not number.is_finite() or abs(number) >= Decimal(10) ** 15:
        raise Unreadable(f"不是金额 / not an amount: {value!r}"[:200])
    return number


_DIGITS = {"零": 0, "壹": 1, "贰": 2, "叁": 3, "肆": 4, "伍": 5, "陆": 6, "柒": 7, "捌": 8, "玖": 9}
_DIGITS |= {"〇": 0, "两": 2, "貳": 2, "參": 3, "叄": 3, "陸": 6}
_SMALL = {"拾": 10, "佰": 100, "仟": 1000}
_LARGE = ("万", "萬", "亿", "億")
_FRACTION = {"角": Decimal("0.1"), "分": Decimal("0.01"), "厘": Decimal("0.001")}
_UNIT = ("元", "圆", "圓")
_CAPITAL_CHARS = frozenset(
    "".join(_DIGITS) + "".join(_SMALL) + "".join(_LARGE) + "".join(_FRACTION)
    + "".join(_UNIT) + "整正人民币负"
)  # fmt: skip


def capital_amount(text: str) -> Decimal:
    """An amount in capitals, as written on invoices and cheques: ``壹万贰仟捌佰元整`` →
    12800, ``叁佰肆拾伍元陆角柒分`` → 345.67, ``零元伍角`` → 0.5. Anything that is not a
    well-formed amount (units out of order or repeated, two digits in a row, a unit with no
    digit) is unreadable: nothing is guessed."""
    rest = text.strip().strip(_MARKS).strip().removeprefix("人民币")
    negative = rest.startswith("负")
    rest = rest.removeprefix("负").removesuffix("整").removesuffix("正")
    if not any(c in _DIGITS or c == "拾" for c in rest):  # 拾元: ten
        raise Unreadable(f"大写金额没有数字 / no digit in the capital amount: {text!r}")
    unit = next((u for u in _UNIT if u in rest), None)
    if unit is not None:
        whole_part, _, fraction_part = rest.partition(unit)
        if any(u in fraction_part for u in _UNIT):
            raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    elif any(f in rest for f in _FRACTION):  # all of it is the fraction: 伍角
        whole_part, fraction_part = "", rest
    else:
        whole_part, fraction_part = rest, ""
    total = Decimal(_whole(whole_part, text)) if whole_part else Decimal(0)
    total += _fraction(fraction_part, text)
    return -total if negative else total


def _fraction(part: str, text: str) -> Decimal:
    total, digit, last = Decimal(0), None, Decimal(1)
    for char in part:
        if char in _DIGITS:
            if digit not in (None, 0):
                raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
            digit = _DIGITS[char]
        elif char in _FRACTION and digit is not None and _FRACTION[char] < last:
            total += digit * _FRACTION[char]
            digit, last = None, _FRACTION[char]
        else:
            raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    if digit not in (None, 0):
        raise Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")
    return total


def _whole(part: str, text: str) -> int:
    """The yuan of a capital amount: sections of 仟佰拾 under 万 and 亿, each unit once
    and in falling order within its section."""

    def bad() -> Unreadable:
        return Unreadable(f"大写金额无法读取 / unreadable capital amount: {text!r}")

    yi, wan, section, digit = 0, 0, 0, None
    last_small = 10_000  # the last small unit seen in this section
    seen_wan = False
    previous = ""
    for char in part:
        if char in _DIGITS:
            if previous in _DIGITS and _DIGITS[previous] != 0:
                raise bad()  # two digits in a row (伍伍); a 零 may stand before one
            digit = _DIGITS[char]
        elif char in _SMALL:
            if _SMALL[char] >= last_small or (digit is None and (char != "拾" or section)):
                raise bad()
            section += (1 if digit is None else digit) * _SMALL[char]
            digit, last_small = None, _SMALL[char]
        elif char in ("万", "萬"):
            if seen_wan or (section == 0 and not digit):
                raise bad()
            wan = (section + (digit or 0)) * 10_000
            section, digit, last_small, seen_wan = 0, None, 10_000, True
        elif char in ("亿", "億"):
            if yi or (section == 0 and not digit and not wan):
                raise bad()
            yi = (wan + section + (digit or 0)) * 100_000_000
            wan, section, digit, last_small, seen_wan = 0, 0, None, 10_000, False
        else:
            raise bad()
        previous = char
    return yi + wan + section + (digit or 0)
