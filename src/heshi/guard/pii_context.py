"""Personal information that needs context to be found: names and street addresses.

A name is a surname (single or compound) that a cue points to — 姓名：, 联系人是, 投诉人,
客户经理 before it; 先生, 女士, 经理 after it; "，段洋收。" after an address. An address is
a province or city followed by at least one more level down to the street (路, 号, 楼…),
a district with a road and a house number (朝阳区建国路88号院3号楼), or a road with a house
number alone (科华北路53号). Both run on the normalized text of :mod:`heshi.guard.pii`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from heshi.guard.pii_words import (
    ADDRESS_START,
    COMPOUND_SURNAMES,
    NAME_AFTER_CUES,
    NAME_BEFORE_CUES,
    NOT_NAMES,
    SINGLE_SURNAMES,
)


def _surname_pattern() -> str:
    compound = "|".join(sorted(COMPOUND_SURNAMES, key=len, reverse=True))
    return f"(?:{compound}|[{SINGLE_SURNAMES}])"


_SURNAME = _surname_pattern()
_NAME_BEFORE = re.compile(
    # bounded runs: two unbounded ones around an optional word backtrack quadratically
    "(?:" + "|".join(NAME_BEFORE_CUES) + r")[:：\s]{0,4}"
    r"(?:(?:是|为|叫|写的是|填的是)[:：\s]{0,4})?("
    + _SURNAME + r"[\u4e00-\u9fa5]{1,2})"
)  # fmt: skip
_CJK = re.compile(r"[\u4e00-\u9fa5]{2}")
# 投诉人毛文博称…, 用户反馈：董辉（…: the sentence goes on after the name. Not 的: 客户关心的问题.
_GOES_ON = frozenset("称说办（(")
_HONORIFIC_START = re.compile("|".join(NAME_AFTER_CUES))
# "…寄到XX路1号，段洋收。" — the addressee after an address
_NAME_RECEIVES = re.compile(
    r"(?<=[，,：:\s])(" + _SURNAME + r"[\u4e00-\u9fa5]{1,2}?)收(?=[。.！!，,\s]|$)"
)
_AFTER_CUE = re.compile("|".join(NAME_AFTER_CUES))
_STREET_LEVEL = frozenset("路街道巷弄号村组楼室栋幢座")
_THANKS = frozenset({"谢谢", "感谢", "多谢"})
_NAME_TAIL = re.compile("(" + _SURNAME + r"[\u4e00-\u9fa5]{0,2})$")
# An address without a province or city: a district (区/县) with a road and a house
# number. The district's first character is not one of the words that lead into an
# address (寄到, 住在, 位于…), so they are not taken as part of its name.
_DISTRICT_MARK = re.compile("[区县]")
_ROOM = r"(?:(?<=[座栋幢元])\d{3,5}(?![\d号]))?"  # A座2014: the room without 室
# An address with neither: a road (at least two characters of name) and a house number.
_ROAD_MARK = re.compile("路|街|大道|巷|弄|胡同")
_SECTION_START = frozenset("一二三四五六七八九十东西南北中")
_LEAD_IN = "在住于到至往从位是的及寄送发去回来我你他她您址把请成为搬改填写了就：:，,"
_ROAD_ADDRESS = re.compile(
    r"([^" + _LEAD_IN + r"\W\d]{2,6}?(?:路|街|大道|大街|巷|弄|胡同)"
    r"(?:[一二三四五六七八九十东西南北中]{1,2}段)?\d{1,5}号(?:院|楼)?"
    r"(?:[\dA-Za-z]{1,5}(?:号楼|号院|号|栋|幢|座|楼|层|单元|室))*" + _ROOM + ")"
)
_DISTRICT_ADDRESS = re.compile(
    r"((?![在住于到至往从位是的及寄送发去回来我你他她您址把请成为])[\u4e00-\u9fa5]{1,3}(?:新区|区|县)"
    r"[\u4e00-\u9fa5]{1,8}?(?:路|街|大道|大街|巷|弄|胡同|里)\d{1,5}(?:号院|号楼|号|弄)"
    r"(?:院|[\dA-Za-z]{1,5}(?:号楼|号院|号|栋|幢|座|楼|层|单元|室))*" + _ROOM + ")"
)
_ADDRESS = re.compile(
    "((?:" + "|".join(ADDRESS_START) + r")"
    r"(?:[\u4e00-\u9fa5]{1,12}?(?:省|自治区|市|自治州|地区|盟|区|县|旗|镇|乡|街道|村|路|街|大道|巷|弄)"
    r"|[\dA-Za-z]{1,5}(?:号楼|号院|号|弄|栋|幢|座|楼|层|单元|室)){1,10}" + _ROOM + ")"
)


def _name_end(norm: str, start: int, longest: int) -> int | None:
    """Where a name after a cue ends: before an honorific (联系人：张伟先生 → 张伟); where
    the phrase ends, or where the sentence goes on with 的, 称, （… — else no name."""
    title = _HONORIFIC_START.search(norm, start + 2, longest + 3)
    if title is not None and title.start() < longest:
        return title.start()
    for end in range(longest, start + 1, -1):
        if not _CJK.match(norm, end) or norm[end : end + 1] in _GOES_ON:
            return end
    return None


def names(norm: str) -> Iterator[tuple[str, int, int]]:
    """(type, start, end) of every name a cue word points to."""
    for m in _NAME_BEFORE.finditer(norm):
        start = m.start(1)
        end = _name_end(norm, start, m.end(1))
        if end is not None and not norm.startswith(NOT_NAMES, start):  # 本人信息: no name
            yield "person_name", start, end
    for m in _NAME_RECEIVES.finditer(norm):
        yield "person_name", m.start(1), m.end(1)
    for cue in _AFTER_CUE.finditer(norm):
        tail = _NAME_TAIL.search(norm, max(0, cue.start() - 5), cue.start())
        if tail is None:
            continue
        start = tail.start(1)
        if norm[start - 1 : start + 1] in _THANKS and cue.start() - start > 2:
            start += 1  # 谢谢袁伟经理: 谢谢 is thanks, not a surname
        yield "person_name", start, tail.end(1)


def addresses(norm: str) -> Iterator[tuple[str, int, int]]:
    """(type, start, end) of every street address."""
    for m in _ADDRESS.finditer(norm):
        if any(c in _STREET_LEVEL for c in m.group(1)):  # 青岛市南区 is a place, not an address
            yield "address", m.start(1), m.end(1)
    for marks, pattern, reach in (
        (_DISTRICT_MARK, _DISTRICT_ADDRESS, 3), (_ROAD_MARK, _ROAD_ADDRESS, 6),
    ):  # fmt: skip
        for mark in marks.finditer(norm):  # only where a 区 or 路 is: prose stays fast
            after = norm[mark.end() : mark.end() + 1]
            if marks is _ROAD_MARK and not (after.isdigit() or after in _SECTION_START):
                continue  # a road's house number (or 四段) follows it at once: not 路径
            for start in range(max(0, mark.start() - reach), mark.start()):
                found = pattern.match(norm, start)
                if found is not None:
                    yield "address", found.start(1), found.end(1)
                    break
