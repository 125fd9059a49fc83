"""Reversible pseudonymization for one request: the model sees placeholders, the caller
gets the real values back, streaming included.

``Pseudonymizer.protect`` replaces each piece of personal information with a placeholder
such as ``[手机号_1]`` — the same value always gets the same placeholder within the
request, so the model can refer to it consistently — and ``restore`` puts the values
back. ``StreamRestorer`` does the same over a stream of chunks: it holds back only a
trailing fragment that could still grow into a placeholder (from an unclosed ``[``, at
most ``max_placeholder`` characters), so text without placeholders passes with no delay.
"""

from __future__ import annotations

import re

from heshi.guard.pii import LABELS, Finding, scan

_PLACEHOLDER = re.compile(r"\[([^\[\]\s]{1,12}_\d{1,4})\]")


class Pseudonymizer:
    """Placeholders for one request (create one per request; not shared between callers)."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, finding: Finding) -> str:
        key = (finding.type, finding.text)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        label = LABELS[finding.type]
        self._counts[label] = self._counts.get(label, 0) + 1
        token = f"[{label}_{self._counts[label]}]"
        self._by_value[key] = token
        self._by_placeholder[token] = finding.text
        return token

    def protect(self, text: str, findings: list[Finding] | None = None) -> str:
        """``text`` with every finding replaced by its placeholder."""
        found = scan(text) if findings is None else findings
        out, pos = [], 0
        for f in found:
            out.append(text[pos : f.start])
            out.append(self.placeholder(f))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Placeholders of this request back to their values (others are left alone)."""
        if not self._by_placeholder:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    @property
    def active(self) -> bool:
        return bool(self._by_placeholder)

    @property
    def max_placeholder(self) -> int:
        return max((len(p) for p in self._by_placeholder), default=0)


class StreamRestorer:
    """Restores placeholders in streamed text, holding back at most one partial one."""

    def __init__(self, pseudonymizer: Pseudonymizer) -> None:
        self._p = pseudonymizer
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """The restored text that is safe to send now."""
        if not self._p.active:
            return chunk
        text = self._pending + chunk
        cut = text.rfind("[")
        if cut != -1 and "]" not in text[cut:] and len(text) - cut < self._p.max_placeholder:
            self._pending, text = text[cut:], text[:cut]
        else:
            self._pending = ""
        return self._p.restore(text)

    def flush(self) -> str:
        """Whatever was held back (the stream ended)."""
        rest, self._pending = self._pending, ""
        return self._p.restore(rest)
