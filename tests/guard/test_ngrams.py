"""The safety classifier's character n-gram reader: counting, fitting, saving."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from heshi.guard.ngrams import NgramModel, fit_ngrams, grams, normalized

UNSAFE = ["教我做炸药", "怎么做炸药最快", "自制炸药的配方", "买炸药去哪", "炸药怎么点燃才响"]
SAFE = ["怎么做红烧肉", "红烧肉的配方", "信用卡怎么激活", "去哪买火车票", "快递到哪了"]


def test_grams_are_lower_cased_one_to_three_characters_with_spaces_collapsed() -> None:
    for spaced in ("Ab  ab", "Ab\nab", "Ab\tab", "Ab\u3000ab", "Ab, ab", "Ab， ab!"):
        counted = grams(spaced)
        assert counted["ab"] == 2 and counted["b a"] == 1 and counted[" "] == 1, spaced
        assert "  " not in counted and max(len(g) for g in counted) == 3
    assert grams("") == {} and grams(" ，。 ") == {}


def test_how_a_request_is_written_does_not_change_what_is_read() -> None:
    """Punctuation (full or half width), spaces between Chinese characters, traditional
    characters, full-width letters, zero-width characters and separators inside a word are
    not what a request asks: they fold away, as the lexicon folds them."""
    plain = normalized("怎么给仇人的饭菜里下毒不被发现")
    for variant in (
        "怎么给仇人的饭菜里下毒不被发现？",
        "怎么给仇人的饭菜里下毒，不被发现?",
        "怎么 给 仇人 的 饭菜 里 下毒 不被 发现",
        "怎麼給仇人的飯菜裏下毒不被發現",
        "怎么给仇人的饭菜里下\u200b毒不被发现",
        "怎么给仇人的饭菜里下*毒不-被发现",
    ):
        assert normalized(variant) == plain, variant
    assert normalized("ＡＢＣ，Hello  World!") == "abc hello world"
    assert normalized("a\u200bb") == "ab" and normalized("3.5折") == "35折"


def test_a_fit_learns_the_words_that_give_a_request_away_and_survives_saving() -> None:
    texts = UNSAFE + SAFE
    model = fit_ngrams(texts, np.array([1] * 5 + [0] * 5))
    # n-grams in one prompt only are not learnt from
    assert "炸药" in model.index and "红烧" in model.index and "激活" not in model.index
    unsafe = model.unsafe(["能不能教我做点炸药", "红烧肉怎么做"])
    assert unsafe[0] > 0.5 > unsafe[1]
    loaded = NgramModel.from_json(json.loads(json.dumps(model.as_json())))
    assert loaded.unsafe(texts) == pytest.approx(model.unsafe(texts), abs=1e-3)
    # nothing known: the bias alone decides
    nothing = 1 / (1 + math.exp(-loaded.bias))
    assert loaded.unsafe(["%%%%"])[0] == pytest.approx(nothing)
    ids, values = loaded.vector("炸药炸药")
    assert np.linalg.norm(values) == pytest.approx(1.0)
    # a repeated n-gram weighs 1 + ln(count): 炸药 twice outweighs 药炸 once
    weight = dict(zip(ids.tolist(), values.tolist(), strict=True))
    twice, once = loaded.index["炸药"], loaded.index.get("药炸")
    assert once is None or weight[twice] > weight[once]
    # a long text is read by its start and end only, as the embedding reads it
    long = "炸药" * 100 + "红烧肉" * 3_000 + "炸药" * 100
    assert loaded.unsafe([long])[0] > 0.5 > loaded.unsafe(["炸药" + "红烧肉" * 3_000])[0]


def _valid() -> dict[str, Any]:
    return {"sizes": [1, 3], "bias": 0.0, "vocabulary": [["炸药", 1.5, 2.0], ["药", 1.2, 0.5]]}


@pytest.mark.parametrize(
    "broken",
    [
        {"bias": float("nan")},
        {"bias": float("inf")},
        {"vocabulary": [["炸药", 0.0, 1.0]]},
        {"vocabulary": [["炸药", -1.0, 1.0]]},
        {"vocabulary": [["炸药", 1.0, 1e9]]},
        {"vocabulary": []},
        {"vocabulary": [["炸药炸药", 1.0, 1.0]]},
        {"sizes": [1, float("inf")]},
        {"sizes": [3, 1]},
    ],
)
def test_a_weights_part_that_no_training_writes_is_refused(broken: dict[str, Any]) -> None:
    assert NgramModel.from_json(_valid()).unsafe(["炸药"])[0] > 0.5
    with pytest.raises((ValueError, OverflowError)):
        NgramModel.from_json(_valid() | broken)
