"""What keyword search matches on: Chinese words, and the sound of them.

Words come from ``rjieba`` (jieba's segmentation, in Rust), one segmenter per knowledge
base so its user dictionary (product names, model numbers) stays its own. Beside the
words, every run of Chinese is also written as pinyin syllable pairs (``保修期`` →
``bao_xiu xiu_qi``), and a query word typed in pinyin (``tuihuo``) is split into
syllables the same way, so a homophone typo (保修期多旧) or a word typed in pinyin (怎么
tuihuo) still meets the document's words.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable
from functools import cache

from heshi.pinyin import split_pinyin

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"^[a-z]+$")
_KEEP = re.compile(r"[\w\u3400-\u9fff]")
# Words that say nothing about what is asked (a short list: BM25's idf does the rest).
_STOP_TEXT = (
    "的 了 吗 呢 吧 啊 呀 哦 嘛 么 是 在 和 与 及 或 我 你 您 他 她 它 我们 你们 这 那 这个 那个 "
    "就 都 也 还 又 要 想 会 能 可以 请问 请 一下 怎么 怎么样 怎样 如何 什么 多少 哪些 哪个 "
    "有 没有 吗 呗 啥 咋 给 让 把 被 对 从 到 为 以 之 而 但 如果 因为 所以 上 下 中 个 些 "
    "the a an of to and or is are what how"
)
STOPWORDS = frozenset(_STOP_TEXT.split())


class Segmenter:
    """Text → the terms BM25 indexes (words + pinyin pairs), with a user dictionary."""

    def __init__(self, user_words: Iterable[str] = ()) -> None:
        import rjieba

        self._jieba = rjieba.Jieba()
        for word in user_words:
            if word.strip():
                self._jieba.add_word(word.strip(), None, None)

    def cut(self, text: str) -> list[str]:
        """The segmenter's words, all of them (punctuation and stopwords included)."""
        return list(self._jieba.cut(unicodedata.normalize("NFKC", text), False))

    def words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        return [
            w.strip()
            for w in self._jieba.cut(text, False)
            if w.strip() and _KEEP.search(w) and w.strip() not in STOPWORDS
        ]

    def terms(self, text: str) -> list[str]:
        """The words, then ``_``-joined pinyin pairs of each run of Chinese (and of words
        written in pinyin)."""
        words = self.words(text)
        syllables: list[str] = []
        out = list(words)
        for word in words:
            if _CJK.search(word):
                syllables.extend(pinyin_of(word))
                continue
            split = split_pinyin(word) if _LATIN.match(word) else None
            if split:
                syllables.extend(split)
                continue
            out.extend(_pairs(syllables))
            syllables = []
        out.extend(_pairs(syllables))
        return out


def _pairs(syllables: list[str]) -> list[str]:
    if len(syllables) == 1:
        return [syllables[0]]
    return [f"{a}_{b}" for a, b in itertools.pairwise(syllables)]


@cache
def pinyin_of(word: str) -> tuple[str, ...]:
    """Toneless pinyin syllables of the Chinese characters in ``word``."""
    from pypinyin import Style, lazy_pinyin

    return tuple(s for s in lazy_pinyin(word, style=Style.NORMAL, errors="ignore") if s)
