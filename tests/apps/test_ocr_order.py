"""OCR's text boxes put back into the lines of the page: a table row stays one line on a
page photographed at a slant; lines come top to bottom, boxes left to right."""

from __future__ import annotations

import math

from heshi.apps.kb.ocr import reading_order


def box(x: float, y: float, width: float, height: float, degrees: float = 0.0) -> list[
    tuple[float, float]
]:  # fmt: skip
    """The corners of a box at (x, y), turned ``degrees`` about the page's origin."""
    corners = [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]
    a = math.radians(degrees)
    return [(cx * math.cos(a) - cy * math.sin(a), cx * math.sin(a) + cy * math.cos(a))
            for cx, cy in corners]  # fmt: skip


ROWS = [
    [(100, "项目名称"), (400, "数量"), (600, "金额")],
    [(100, "*服务*软件维护费"), (400, "1"), (600, "11327.43")],
    [(100, "合计"), (600, "¥11,327.43")],
]


def page(degrees: float) -> tuple[list[list[tuple[float, float]]], list[str]]:
    boxes, texts = [], []
    for row, cells in enumerate(ROWS):
        for x, text in reversed(cells):  # OCR's order is not the page's
            boxes.append(box(x, 100 + 60 * row, 30 * len(text) + 40, 32, degrees))
            texts.append(text)
    return boxes[::-1] if degrees < 0 else boxes, texts[::-1] if degrees < 0 else texts


def test_rows_of_a_straight_page() -> None:
    boxes, texts = page(0)
    assert reading_order(boxes, texts) == [
        "项目名称 数量 金额", "*服务*软件维护费 1 11327.43", "合计 ¥11,327.43",
    ]  # fmt: skip


def test_rows_of_a_page_turned_five_degrees_either_way() -> None:
    for degrees in (5.0, -5.0, 2.5):
        boxes, texts = page(degrees)
        # at 5° the right end of a row sits ~50 px below its start: a line apart
        assert reading_order(boxes, texts) == [
            "项目名称 数量 金额", "*服务*软件维护费 1 11327.43", "合计 ¥11,327.43",
        ], degrees  # fmt: skip


def test_empty_and_blank_text_is_dropped() -> None:
    assert reading_order([], []) == []
    assert reading_order([box(0, 0, 50, 20)], ["  "]) == []
