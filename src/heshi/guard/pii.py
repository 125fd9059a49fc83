"""Personal information in Chinese text: find it, then redact, mask or pseudonymize it.

Detection runs on a same-length normalized copy of the text (full-width digits, letters
and punctuation folded to ASCII, the ideographic space to a space), so every finding's
``start``/``end`` are character offsets into the original; invisible characters are
taken out first and the findings mapped back onto the original.
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

import bisect
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from heshi.guard.ids import id_shaped, luhn_valid, plausible_card, valid_resident_id, valid_uscc
from heshi.guard.pii_context import addresses, names
from heshi.guard.pii_words import (
    CARD_CUES,
    PLATE_PROVINCES,
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

# Full-width forms that can be part of an identifier: digits, letters, + - . @ ( ) [ ]
# and the ideographic space. Other full-width punctuation (，：) is frequent in Chinese
# prose and never inside an identifier, so it is left alone (and costs nothing).
_FOLD = {chr(c): chr(c - 0xFEE0) for c in range(0xFF10, 0xFF1A)}  # ０-９
_FOLD.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF21, 0xFF3B)})  # Ａ-Ｚ
_FOLD.update({chr(c): chr(c - 0xFEE0) for c in range(0xFF41, 0xFF5B)})  # ａ-ｚ
_FOLD.update({"＋": "+", "－": "-", "．": ".", "＠": "@", "\u3000": " "})
_FOLD.update({"—": "-", "–": "-", "‐": "-", "（": "(", "）": ")", "［": "[", "］": "]"})
# Zero-width characters hidden inside an identifier (110105\u200b1990…) are taken out
# before detection (scan maps the findings back onto the original text).
_ZERO_WIDTH = re.compile(  # invisible: soft hyphen, grapheme joiner, zero-width, bidi marks
    "[\u00ad\u034f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
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
    r"(?<![0-9+])((?:\+86|0086)[ \-]?)?"
    # as written: run together, 3-4-4, 4-3-4 or 3-3-5 (not any split: 19670620 054 is not one)
    r"(1[3-9]\d(?:\d{8}|[ \-]\d{4}[ \-]\d{4}|\d[ \-]\d{3}[ \-]\d{4}|[ \-]\d{3}[ \-]\d{5}))"
    + _NOT_ALNUM_AFTER
)  # fmt: skip
_LANDLINE = re.compile(
    _NOT_DIGIT_BEFORE
    # with the area code set apart, any local number (010-12345678 too); run together,
    # one that starts 2–9 (as real local numbers do), so digit runs are not taken
    + r"((?:(?:\(0[1-9]\d{1,2}\)[ \-]?|0[1-9]\d{1,2}[ \-])[1-9]\d{2,3}[ \-]?\d{4}"
    + r"|0[1-9]\d{1,2}[2-9]\d{6,7})"
    + r"(?:[ \-]?(?:转|ext\.?|-)\d{1,5})?"
    + r"|[48]00(?:[ \-]?\d){7})"
    + _NOT_DIGIT_AFTER
)
_AT = r"(?:@|[ ]?[(\[][ ]?at[ ]?[)\]][ ]?)"  # name@x, name(at)x, name [at] x
_DOT = r"(?:\.|[ ]?[(\[][ ]?dot[ ]?[)\]][ ]?)"  # x.com, x(dot)com
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+" + _AT
    + r"[A-Za-z0-9-]+(?:" + _DOT + r"[A-Za-z0-9-]+)*" + _DOT + r"[A-Za-z]{2,}",
    re.IGNORECASE,
)  # fmt: skip
_NOT_PHONE_CUES = ("代码", "编号", "流水", "单号", "发票号")  # 发票代码 0333…: not a phone
_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "pdf", "txt",
                        "doc", "docx", "xls", "xlsx", "zip", "js", "css", "html"})  # fmt: skip
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


# Runs of ASCII-ish characters: every detector but plates, names and addresses needs one,
# so Chinese prose is skipped at regex speed instead of being tried by each pattern.
_ASCII_RUN = re.compile(r"[0-9A-Za-z+(\[][0-9A-Za-z@._%+\-:()\[\]/ ]{4,}")


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
            if m.group().rsplit(".", 1)[-1].lower() not in _FILE_TLDS:  # icon@2x.png
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
        if not any(cue in norm[max(0, m.start() - 6) : m.start()] for cue in _NOT_PHONE_CUES):
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
    yield from names(norm)
    yield from addresses(norm)


# When two findings overlap, the more specific (checksummed, longer) one wins.
_PRIORITY = {t: i for i, t in enumerate(TYPES)}


def scan(
    text: str, types: frozenset[str] | None = None, today: date | None = None
) -> list[Finding]:
    """Every piece of personal information in ``text``, in order, without overlaps."""
    if _ZERO_WIDTH.search(text):
        return _without_zero_width(text, types, today)
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


def _without_zero_width(
    text: str, types: frozenset[str] | None, today: date | None
) -> list[Finding]:
    """``scan`` of the text with its zero-width characters taken out, the findings put
    back onto the original (a finding's text keeps the characters hidden in it)."""
    # q[i]: where the i-th removed character would sit in the stripped text; a stripped
    # offset j is j plus the number of removed characters at or before it.
    q = [m.start() - i for i, m in enumerate(_ZERO_WIDTH.finditer(text))]
    out = []
    for f in scan(_ZERO_WIDTH.sub("", text), types, today):
        start = f.start + bisect.bisect_right(q, f.start)
        end = f.end - 1 + bisect.bisect_right(q, f.end - 1) + 1
        out.append(Finding(f.type, start, end, text[start:end]))
    return out


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
