"""Personal information in Chinese text: find it, then redact, mask or pseudonymize it.

Detection runs on a same-length normalized copy of the text (full-width digits, letters
and punctuation folded to ASCII, the ideographic space and zero-width characters to a
space), so every finding's ``start``/``end`` are character offsets into the original.
Candidates come from patterns that allow a space or dash between any two digits (cards a
slash too: 6222/0212/…), however the digits are grouped; checksummed identifiers are
accepted only when their check passes (resident ID: region, real date not in the future,
MOD 11-2; USCC: both check characters). A bank card needs a card-number cue word nearby
(卡号, 账号… — legacy numbers without a Luhn digit included), or a Luhn check *and* an
issuer it could come from (UnionPay 62, Visa 4, Mastercard 51–55 / 2221–2720, JCB, the
domestic 95…, each at its lengths) and not the shape of a resident ID; digits glued to
letters (JD6222…, …7890A) are a code, not a card. Names and addresses need context: a
surname plus a cue (先生, 女士, 姓名：, 联系人是…), an address at least two administrative
levels deep, or a district with a road and a house number (朝阳区建国路88号院3号楼).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from heshi.guard.ids import id_shaped, luhn_valid, plausible_card, valid_resident_id, valid_uscc
from heshi.guard.pii_words import (
    ADDRESS_START,
    CARD_CUES,
    COMPOUND_SURNAMES,
    NAME_AFTER_CUES,
    NAME_BEFORE_CUES,
    PLATE_PROVINCES,
    SINGLE_SURNAMES,
)

TYPES = (
    "cn_resident_id",
    "cn_uscc",
    "bank_card",
    "cn_mobile",
    "cn_landline",
    "email",
    "ipv4",
    "ipv6",
    "cn_passport",
    "hk_macau_permit",
    "cn_license_plate",
    "person_name",
    "address",
)
LABELS = {
    "cn_resident_id": "身份证号",
    "cn_uscc": "统一社会信用代码",
    "bank_card": "银行卡号",
    "cn_mobile": "手机号",
    "cn_landline": "电话号码",
    "email": "邮箱",
    "ipv4": "IP地址",
    "ipv6": "IP地址",
    "cn_passport": "护照号",
    "hk_macau_permit": "港澳通行证号",
    "cn_license_plate": "车牌号",
    "person_name": "姓名",
    "address": "地址",
}

# Full-width forms that can be part of an identifier: digits, letters, + - . @ and the
# ideographic space. Other full-width punctuation (，：（）) is frequent in Chinese prose
# and never inside an identifier, so it is left alone (and costs nothing).
_FOLD = {chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF1A)}  # ０-９
_FOLD.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF21, 0xFF3B)})  # Ａ-Ｚ
_FOLD.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF41, 0xFF5B)})  # ａ-ｚ
_FOLD.update({"＋": "+", "－": "-", "．": ".", "＠": "@", "\u3000": " "})
_FOLD.update({"—": "-", "–": "-", "‐": "-", "（": "(", "）": ")", "［": "[", "］": "]"})
# Zero-width characters hidden inside an identifier (110105\u200b1990…) read as a space.
_FOLD.update({c: " " for c in "\u200b\u200c\u200d\u2060\ufeff"})
_NEEDS_FOLD = re.compile("[" + "".join(re.escape(c) for c in _FOLD) + "]")


def normalize(text: str) -> str:
    """Full-width forms folded to ASCII, one character for one: offsets are kept."""
    return _NEEDS_FOLD.sub(lambda m: _FOLD[m.group()], text)


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int
    text: str

    def as_json(self) -> dict[str, object]:
        return {"type": self.type, "start": self.start, "end": self.end, "text": self.text}


_SEP = r"[ \-]?"
_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"
_NOT_DIGIT_BEFORE = r"(?<![0-9])"
_NOT_DIGIT_AFTER = r"(?![0-9])"


def _digits(found: str) -> str:
    return re.sub(r"[ \-/]", "", found)


_RESIDENT_ID = re.compile(
    _NOT_ALNUM_BEFORE + r"(\d(?:" + _SEP + r"\d){16}" + _SEP + r"[0-9Xx]|\d{15})"
    + _NOT_ALNUM_AFTER
)  # fmt: skip
_USCC = re.compile(_NOT_ALNUM_BEFORE + r"([0-9A-HJ-NP-RTUW-Y]{18})" + _NOT_ALNUM_AFTER)
_CARD = re.compile(_NOT_ALNUM_BEFORE + r"(\d(?:[ \-/]?\d){15,18})" + _NOT_ALNUM_AFTER)
_MOBILE = re.compile(
    r"(?<![0-9+])((?:\+86|0086)[ \-]?)?(1[3-9](?:" + _SEP + r"\d){9})" + _NOT_DIGIT_AFTER
)  # fmt: skip
_LANDLINE = re.compile(
    _NOT_DIGIT_BEFORE
    # with the area code set apart, any local number (010-12345678 too); run together,
    # one that starts 2–9 (as real local numbers do), so digit runs are not taken
    + r"((?:(?:\(0\d{2,3}\)[ \-]?|0\d{2,3}[ \-])[1-9]\d{6,7}|0\d{2,3}[2-9]\d{6,7})"
    + r"(?:[ \-]?(?:转|ext\.?|-)\d{1,5})?"
    + r"|[48]00[ \-]?\d{3}[ \-]?\d{4})"
    + _NOT_DIGIT_AFTER
)
_AT = r"(?:@|[ ]?[(\[][ ]?at[ ]?[)\]][ ]?)"  # name@x, name(at)x, name [at] x
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+" + _AT
    + r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    re.IGNORECASE,
)  # fmt: skip
_OBFUSCATED_AT = re.compile(r"[(\[] ?at ?[)\]]", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z_:])")
_PASSPORT = re.compile(_NOT_ALNUM_BEFORE + r"([EGDSP]\d{8}|E[A-HJ-NP-Z]\d{7})" + _NOT_ALNUM_AFTER)
_PERMIT = re.compile(_NOT_ALNUM_BEFORE + r"([CW]\d{8}|C[A-HJ-NP-Z]\d{7})" + _NOT_ALNUM_AFTER)
_PLATE = re.compile(
    "([" + PLATE_PROVINCES + r"][A-HJ-NP-Z][·• ]?"
    r"(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳]))"
    + _NOT_ALNUM_AFTER
)


def _surname_pattern() -> str:
    compound = "|".join(sorted(COMPOUND_SURNAMES, key=len, reverse=True))
    return f"(?:{compound}|[{SINGLE_SURNAMES}])"


_SURNAME = _surname_pattern()
_NAME_BEFORE = re.compile(
    "(?:" + "|".join(NAME_BEFORE_CUES) + r")[:：\s]*(?:是|为|叫|写的是|填的是)?[:：\s]*("
    + _SURNAME + r"[\u4e00-\u9fa5]{1,2})(?![\u4e00-\u9fa5]{2})"
)  # fmt: skip
_HONORIFIC_START = re.compile("|".join(NAME_AFTER_CUES))
_AFTER_CUE = re.compile("|".join(NAME_AFTER_CUES))
_NAME_TAIL = re.compile("(" + _SURNAME + r"[\u4e00-\u9fa5]{0,2})$")
# Runs of ASCII-ish characters: every detector but plates, names and addresses needs one,
# so Chinese prose is skipped at regex speed instead of being tried by each pattern.
_ASCII_RUN = re.compile(r"[0-9A-Za-z+(\[][0-9A-Za-z@._%+\-:()\[\]/ ]{4,}")
# An address without a province or city: a district (区/县) with a road and a house
# number. The district's first character is not one of the words that lead into an
# address (寄到, 住在, 位于…), so they are not taken as part of its name.
_DISTRICT_MARK = re.compile("[区县]")
_DISTRICT_ADDRESS = re.compile(
    r"((?![在住于到至往从位是的和及寄送发去回来我你他她您址把请])[\u4e00-\u9fa5]{1,3}(?:新区|区|县)"
    r"[\u4e00-\u9fa5]{1,8}?(?:路|街|大道|大街|巷|弄|胡同|里)\d{1,5}(?:号院|号楼|号|弄)"
    r"(?:院|[\dA-Za-z]{1,5}(?:号楼|号院|号|栋|幢|座|楼|层|单元|室))*)"
)
_ADDRESS = re.compile(
    "((?:" + "|".join(ADDRESS_START) + r")"
    r"(?:[\u4e00-\u9fa5]{1,12}?(?:省|自治区|市|自治州|地区|盟|区|县|旗|镇|乡|街道|村|路|街|大道|巷|弄)"
    r"|[\dA-Za-z]{1,5}(?:号楼|号院|号|弄|栋|幢|座|楼|层|单元|室)){1,10})"
)


def _ascii_findings(
    norm: str, lo: int, hi: int, today: date | None
) -> Iterator[tuple[str, int, int]]:
    """Detectors of digits-and-letters identifiers, within one ASCII run [lo, hi)."""
    run = norm[lo:hi]
    digits = sum(c.isdigit() for c in run)
    if digits >= 7:
        yield from _numbers(norm, lo, hi, today, long_run=digits >= 15 or len(run) >= 18)
    if "@" in run or _OBFUSCATED_AT.search(run):
        for m in _EMAIL.finditer(norm, lo, hi):
            yield "email", m.start(), m.end()
    if "." in run:
        for m in _IPV4.finditer(norm, lo, hi):
            octets = m.group().split(".")
            if all(int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in octets):
                yield "ipv4", m.start(), m.end()
    if ":" in run:
        yield from _ipv6(norm, lo, hi)
    if digits >= 7 and any(c.isupper() for c in run):
        for m in _PASSPORT.finditer(norm, lo, hi):
            yield "cn_passport", m.start(1), m.end(1)
        for m in _PERMIT.finditer(norm, lo, hi):
            yield "hk_macau_permit", m.start(1), m.end(1)


def _ipv6(norm: str, lo: int, hi: int) -> Iterator[tuple[str, int, int]]:
    for m in _IPV6.finditer(norm, lo, hi):
        if sum(1 for g in m.group().split(":") if g) < 2:
            continue  # "::", "d::" — too little of an address to be one (code, times)
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:
            continue
        yield "ipv6", m.start(), m.end()


def _numbers(
    norm: str, lo: int, hi: int, today: date | None, *, long_run: bool
) -> Iterator[tuple[str, int, int]]:
    """Resident IDs, USCCs and cards (15+ digits), phones (7+)."""
    if long_run:
        yield from _long_numbers(norm, lo, hi, today)
    for m in _MOBILE.finditer(norm, lo, hi):
        yield "cn_mobile", m.start(), m.end()
    for m in _LANDLINE.finditer(norm, lo, hi):
        yield "cn_landline", m.start(1), m.end(1)


def _long_numbers(
    norm: str, lo: int, hi: int, today: date | None
) -> Iterator[tuple[str, int, int]]:
    for m in _RESIDENT_ID.finditer(norm, lo, hi):
        if valid_resident_id(_digits(m.group(1)), today):
            yield "cn_resident_id", m.start(1), m.end(1)
    for m in _USCC.finditer(norm, lo, hi):
        if valid_uscc(m.group(1)):
            yield "cn_uscc", m.start(1), m.end(1)
    for m in _CARD.finditer(norm, lo, hi):
        digits = _digits(m.group(1))
        before = norm[max(0, m.start() - 12) : m.start()].lower()
        if any(cue in before for cue in CARD_CUES) or (
            luhn_valid(digits) and plausible_card(digits) and not id_shaped(digits)
        ):
            yield "bank_card", m.start(1), m.end(1)


def _chinese_findings(norm: str) -> Iterator[tuple[str, int, int]]:
    """Detectors anchored on Chinese characters: plates, names, addresses."""
    for m in _PLATE.finditer(norm):
        yield "cn_license_plate", m.start(1), m.end(1)
    for m in _NAME_BEFORE.finditer(norm):
        end = m.end(1)  # 联系人：张伟先生 — the name stops where an honorific starts
        title = _HONORIFIC_START.search(norm, m.start(1) + 2, end + 3)
        if title is not None and title.start() < end:
            end = title.start()
        yield "person_name", m.start(1), end
    for cue in _AFTER_CUE.finditer(norm):
        tail = _NAME_TAIL.search(norm, max(0, cue.start() - 5), cue.start())
        if tail is not None:
            yield "person_name", tail.start(1), tail.end(1)
    for m in _ADDRESS.finditer(norm):
        yield "address", m.start(1), m.end(1)
    for mark in _DISTRICT_MARK.finditer(norm):  # only where a 区 or 县 is: prose is fast
        for start in range(max(0, mark.start() - 3), mark.start()):
            found = _DISTRICT_ADDRESS.match(norm, start)
            if found is not None:
                yield "address", found.start(1), found.end(1)
                break


# When two findings overlap, the more specific (checksummed, longer) one wins.
_PRIORITY = {t: i for i, t in enumerate(TYPES)}


def scan(
    text: str, types: frozenset[str] | None = None, today: date | None = None
) -> list[Finding]:
    """Every piece of personal information in ``text``, in order, without overlaps."""
    norm = normalize(text)
    raw = list(_chinese_findings(norm))
    for run in _ASCII_RUN.finditer(norm):
        raw.extend(_ascii_findings(norm, run.start(), run.end(), today))
    if types is not None:
        raw = [r for r in raw if r[0] in types]
    raw.sort(key=lambda r: (_PRIORITY[r[0]], -(r[2] - r[1]), r[1]))
    taken = bytearray(len(text))  # characters already inside a kept finding
    kept: list[Finding] = []
    for kind, start, end in raw:
        if any(taken[start:end]):
            continue
        taken[start:end] = b"\x01" * (end - start)
        kept.append(Finding(kind, start, end, text[start:end]))
    return sorted(kept, key=lambda f: f.start)


def _keep(value: str, keep_start: int, keep_end: int) -> str:
    """Mask every letter and digit but the first ``keep_start`` and last ``keep_end``;
    separators stay, so the shape of the value is still readable."""
    positions = [i for i, c in enumerate(value) if c.isalnum()]
    if keep_start + keep_end >= len(positions):
        keep_start, keep_end = min(keep_start, 1), 0
    hidden = set(positions[keep_start : len(positions) - keep_end])
    return "".join("*" if i in hidden else c for i, c in enumerate(value))


_COUNTRY_PREFIX = re.compile(r"(?:\+86|0086)[ \-]?")
_KEEP = {  # (leading, trailing) characters a partial mask leaves visible
    "cn_resident_id": (6, 4),
    "bank_card": (4, 4),
    "cn_uscc": (4, 4),
    "cn_mobile": (3, 4),
    "cn_landline": (3, 2),
    "cn_passport": (1, 2),
    "hk_macau_permit": (1, 2),
    "cn_license_plate": (2, 1),
    "ipv4": (3, 0),
    "ipv6": (4, 0),
    "person_name": (1, 0),
    "address": (6, 0),
}


def mask_value(finding: Finding) -> str:
    """Partial mask (``110105********002X``, ``138****8000``, ``张**``)."""
    value = finding.text
    if finding.type == "email":
        at = value.find("@")
        return value[:1] + "*" * max(at - 1, 1) + value[at:]
    if finding.type == "cn_mobile":
        country = _COUNTRY_PREFIX.match(normalize(value))
        prefix = value[: country.end()] if country else ""
        return prefix + _keep(value[len(prefix) :], 3, 4)
    if finding.type == "address":
        return value[:6] + "*" * max(len(value) - 6, 0)
    lead, tail = _KEEP.get(finding.type, (1, 1))
    return _keep(value, lead, tail)


def redact(text: str, findings: list[Finding], mode: str = "redact") -> str:
    """``text`` with each finding replaced: ``redact`` → ``[身份证号]``, ``mask`` → partial."""
    out, pos = [], 0
    for f in findings:
        out.append(text[pos : f.start])
        out.append(f"[{LABELS[f.type]}]" if mode == "redact" else mask_value(f))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def masked(text: str) -> str:
    """``text`` with the personal information found in it masked (``138****8000``): what
    the audit log and log lines keep."""
    return redact(text, scan(text), "mask")
