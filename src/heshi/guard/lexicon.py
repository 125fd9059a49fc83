"""Lexicon files: terms per category, each category mapped to a TC260-003 risk.

Format (``heshi/guard/data/seed_lexicon.txt`` is one; docs/guard.md):

- ``@name`` / ``@version`` — recorded in the audit log with the file's digest;
- ``@soften WORD …`` — words that, in the sentence of a ``block`` match, make it a
  ``flag``: 举报, 危害, 戒 … mark a question about a harm, not a request for it;
- ``[name risk=A6 action=flag]`` — the terms below belong to this category (risk: a
  TC260 risk id, default A8; action: ``block`` by default, ``replace`` or ``flag``);
- ``term`` — one per line; ``{a|b|}`` alternatives expand to every combination, so
  ``{怎么|如何}{做|制作}炸弹`` is four terms (an empty alternative: the part may be absent);
- ``!phrase`` — an allowed phrase: matches inside it are ignored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from heshi.errors import ConfigError

ACTIONS = ("block", "replace", "flag")
_SECTION = re.compile(r"^\[([A-Za-z0-9_.\-]+)((?:\s+\w+=\S+)*)\]$")
_GROUP = re.compile(r"\{([^{}]*)\}")
MAX_EXPANSION = 5000  # terms one template line may make: a typo must not explode memory


@cache
def tc260_risks() -> dict[str, str]:
    """Risk id (``A1`` … ``E2``) → its name in TC260-003 appendix A."""
    raw = resources.files("heshi.guard").joinpath("data").joinpath("tc260_risks.json")
    risks: dict[str, str] = json.loads(raw.read_text("utf-8"))["risks"]
    return risks


def expand(template: str) -> list[str]:
    """Every term a line stands for: ``{a|b}`` groups multiplied out, in order."""
    parts: list[list[str]] = []
    at = 0
    for group in _GROUP.finditer(template):
        parts.append([template[at : group.start()]])
        parts.append(group.group(1).split("|"))
        at = group.end()
    parts.append([template[at:]])
    if any("{" in p or "}" in p for options in parts for p in options):
        raise ValueError("{ } 不配对 / unbalanced { }")
    count = 1
    for options in parts:
        count *= len(options)
    if count > MAX_EXPANSION:
        raise ValueError(f"一行展开 {count} 个词 / {count} terms from a line (max {MAX_EXPANSION})")
    return [t for t in ("".join(c) for c in itertools.product(*parts)) if t]


@dataclass
class Lexicon:
    name: str
    version: str
    digest: str  # sha256 of the file: which exact list judged a request (audit)
    terms: dict[str, str] = field(default_factory=dict)  # term → category
    risks: dict[str, str] = field(default_factory=dict)  # category → TC260 risk id
    actions: dict[str, str] = field(default_factory=dict)  # category → its file's action
    allowed: list[str] = field(default_factory=list)
    soften: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, origin: str = "<lexicon>") -> Lexicon:
        lex = cls(name=origin, version="", digest=hashlib.sha256(text.encode()).hexdigest())
        category: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{origin}:{number}"
            if line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                if key == "name":
                    lex.name = value.strip()
                elif key == "version":
                    lex.version = value.strip()
                elif key == "soften":
                    lex.soften.extend(value.split())
                continue
            if line.startswith("!"):
                lex.allowed.extend(_expanded(line[1:].strip(), where))
            elif line.startswith("["):
                category = lex._section(line, where)
            elif category is None:
                raise ConfigError(f"{where}: 词条前需要 [类别] / term before any [category]")
            else:
                lex.terms.update(dict.fromkeys(_expanded(line, where), category))
        return lex

    def _section(self, line: str, where: str) -> str:
        section = _SECTION.match(line)
        if not section:
            raise ConfigError(
                f"{where}: 类别行格式为 [名称 risk=A8 action=block] / a category line looks "
                f"like [name risk=A8 action=block], got {line!r}"
            )
        category = section.group(1)
        options = dict(o.split("=", 1) for o in section.group(2).split())
        unknown = set(options) - {"risk", "action"}
        risk = options.get("risk", "A8")
        if unknown:
            raise ConfigError(
                f"{where}: 未知选项 / unknown option {sorted(unknown)[0]!r} (risk, action)"
            )
        if risk not in tc260_risks():
            raise ConfigError(f"{where}: 未知的 TC260 风险 / unknown TC260 risk {risk!r}")
        if options.get("action", "block") not in ACTIONS:
            raise ConfigError(f"{where}: 动作无效 / action must be one of {ACTIONS}")
        self.risks[category] = risk
        self.actions[category] = options.get("action", "block")
        return category

    def merge(self, other: Lexicon) -> None:
        """``other``'s terms, categories and phrases added (its own win on a clash)."""
        self.terms.update(other.terms)
        self.risks.update(other.risks)
        self.actions.update(other.actions)
        self.allowed.extend(other.allowed)
        self.soften.extend(other.soften)
        self.version = f"{self.version}+{other.name}@{other.version}"
        self.digest = hashlib.sha256(f"{self.digest}+{other.digest}".encode()).hexdigest()

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        try:
            return cls.parse(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ConfigError(f"无法读取词库 / cannot read lexicon {path}: {exc.strerror}") from exc

    @classmethod
    def seed(cls) -> Lexicon:
        data = resources.files("heshi.guard").joinpath("data").joinpath("seed_lexicon.txt")
        return cls.parse(data.read_text("utf-8"), "seed_lexicon.txt")


def _expanded(line: str, where: str) -> list[str]:
    try:
        return expand(line)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


@cache
def common_words() -> frozenset[str]:
    data = resources.files("heshi.guard").joinpath("data").joinpath("words.txt")
    words: set[str] = set()
    for line in data.read_text("utf-8").splitlines():
        words.update(line.split("#", 1)[0].split())
    return frozenset(words)
