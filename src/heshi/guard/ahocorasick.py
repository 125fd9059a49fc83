"""Aho-Corasick multi-pattern matching: every occurrence of every term in one pass.

Built once per lexicon; matching costs O(text + matches) whatever the number of terms.
Pure Python with dict-based goto tables, which is fast enough for request-sized text
(benchmarks/guard.py measures it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Automaton(Generic[T]):
    """Find all (start, end, payload) of the added terms in a text."""

    def __init__(self, terms: Iterable[tuple[str, T]]) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        self._out: list[list[tuple[int, T]]] = [[]]  # (term length, payload) ending here
        for term, payload in terms:
            if term:
                self._add(term, payload)
        self._link()

    def _add(self, term: str, payload: T) -> None:
        state = 0
        for ch in term:
            nxt = self._goto[state].get(ch)
            if nxt is None:
                nxt = len(self._goto)
                self._goto[state][ch] = nxt
                self._goto.append({})
                self._fail.append(0)
                self._out.append([])
            state = nxt
        self._out[state].append((len(term), payload))

    def _link(self) -> None:
        queue: deque[int] = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for ch, nxt in self._goto[state].items():
                queue.append(nxt)
                fail = self._fail[state]
                while fail and ch not in self._goto[fail]:
                    fail = self._fail[fail]
                target = self._goto[fail].get(ch, 0)
                self._fail[nxt] = target if target != nxt else 0
                self._out[nxt] = self._out[nxt] + self._out[self._fail[nxt]]

    def iter(self, text: str) -> Iterator[tuple[int, int, T]]:
        """Every match, in order of its end position."""
        goto, fail, out = self._goto, self._fail, self._out
        state = 0
        for i, ch in enumerate(text):
            while state and ch not in goto[state]:
                state = fail[state]
            state = goto[state].get(ch, 0)
            for length, payload in out[state]:
                yield i + 1 - length, i + 1, payload

    @property
    def states(self) -> int:
        return len(self._goto)
