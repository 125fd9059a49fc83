"""The public model names a gateway answers to, checked once when the router is built.

Four kinds of name, all in one namespace (a name may be used only once):

- **model**: every model an engine serves, under the engine's own name for it;
- **alias** (``aliases:``): one public name → one backend's upstream model;
- **route** (``routing.routes:``): several targets with a balancing rule and a
  ``fallback`` list of other public names, tried in order when the targets fail;
- **auto** (``routing.auto``): picks the ``small`` or ``large`` public name per request.

Fallbacks chain: if route ``a`` falls back to ``b`` and ``b`` to ``c``, a request for
``a`` may end on ``c``. Cycles are a configuration error, found here rather than at
request time. Everything a request needs (the chain of names) is precomputed so that
resolving a name is one dict lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from heshi.config import HeshiConfig, RouteConfig
from heshi.engines.base import Engine, ServedModel
from heshi.errors import ConfigError, ModelNotFound

AUTO = "auto"
Balance = Literal["weighted", "least-busy"]
Kind = Literal["model", "alias", "route", "auto"]
_HEADER_SAFE = frozenset(range(0x21, 0x7F)) - {ord(";"), ord(","), ord("("), ord(")")}


def header_label(name: str) -> str:
    """``name`` made safe for an ASCII header value: other bytes become ``%XX``.

    Model and backend names are free text in ``heshi.yaml`` (Chinese is allowed), but
    HTTP header values are ASCII, and our own separators must stay unambiguous.
    """
    if all(ord(ch) in _HEADER_SAFE for ch in name):
        return name
    return "".join(
        ch if ord(ch) in _HEADER_SAFE else "".join(f"%{b:02X}" for b in ch.encode()) for ch in name
    )


@dataclass(frozen=True, slots=True)
class Target:
    """One backend model that can answer: the engine's name and the upstream model name."""

    backend: str  # the key of the engine (``local`` or a key of ``backends:``)
    model: str  # the model name sent upstream in the request body
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class NameEntry:
    """One public model name and the targets behind it."""

    name: str
    kind: Kind
    targets: tuple[Target, ...]
    balance: Balance = "least-busy"
    fallback: tuple[str, ...] = ()
    label: str = ""  # header-safe form of ``name``


@dataclass(frozen=True, slots=True)
class PublicModel:
    """One entry of ``GET /v1/models``."""

    id: str
    kind: Kind
    owned_by: str
    context_length: int | None
    backends: tuple[str, ...]  # engines that may answer, in configuration order


class NameTable:
    """Every public name, validated; raises ``ConfigError`` naming the offending entry."""

    def __init__(self, config: HeshiConfig, engines: Mapping[str, Engine]) -> None:
        self._engines = engines
        self._entries: dict[str, NameEntry] = {}
        self._served: dict[tuple[str, str], ServedModel] = {}
        self._owner: dict[str, str] = {}  # name → who declared it, for collision messages
        for backend, engine in engines.items():
            for served in engine.served_models():
                self._served[(backend, served.name)] = served
                target = Target(backend, served.name)
                self._add(NameEntry(served.name, "model", (target,)), f"backend {backend}")
        for name, alias in config.aliases.items():
            self._check_backend(alias.backend, f"aliases.{name}")
            target = Target(alias.backend, alias.model)
            self._add(NameEntry(name, "alias", (target,)), "aliases")
        for name, route in config.routing.routes.items():
            self._add(self._route_entry(name, route), "routing.routes")
        self.auto = config.routing.auto
        if self.auto is not None:
            self._check_auto()
        self._chains = {name: self._chain(name) for name in self._entries}
        self._public_models = self._list_public_models()  # the table never changes

    # ------------------------------------------------------------------ lookups

    def chain(self, name: str) -> tuple[NameEntry, ...]:
        """The entry for ``name`` followed by its fallbacks (transitively, each once)."""
        chain = self._chains.get(name)
        if chain is None:
            # knowledge bases belong to tenants: the gateway, which knows the caller, names
            # the ones its key may use (Gateway.refusal); no other tenant's is ever listed
            raise ModelNotFound(name, [n for n in self.names() if not n.startswith("kb:")])
        return chain

    def names(self) -> list[str]:
        """Every public name, including ``auto`` when it is configured."""
        names = list(self._entries)
        if self.auto is not None:
            names.append(AUTO)
        return names

    def public_models(self) -> list[PublicModel]:
        """What ``GET /v1/models`` lists, sorted by name."""
        return list(self._public_models)

    def _list_public_models(self) -> list[PublicModel]:
        models = [self._public(entry) for entry in self._entries.values()]
        if self.auto is not None:
            small, large = self._entries[self.auto.small], self._entries[self.auto.large]
            backends = _unique(t.backend for e in (small, large) for t in e.targets)
            models.append(PublicModel(AUTO, "auto", "heshi", None, backends))
        return sorted(models, key=lambda m: m.id)

    def _public(self, entry: NameEntry) -> PublicModel:
        served = [self._served.get((t.backend, t.model)) for t in entry.targets]
        # a target its backend does not list by name (an alias or route onto a backend
        # without ``models``) still has that backend's window
        windows = [
            s.context_length if s is not None else self._window(t)
            for s, t in zip(served, entry.targets, strict=True)
        ]
        known = [w for w in windows if w]
        # A route is only as roomy as its smallest target: any of them may answer.
        context = min(known) if known and len(known) == len(served) else None
        if entry.kind == "model" and served[0] is not None:
            owner = served[0].owned_by
        elif entry.kind == "alias":
            owner = entry.targets[0].backend
        else:
            owner = "heshi"
        return PublicModel(
            entry.name, entry.kind, owner, context, _unique(t.backend for t in entry.targets)
        )

    def _window(self, target: Target) -> int | None:
        """A backend's window for a model it does not list (None: not said)."""
        cap = getattr(self._engines[target.backend], "completion_cap", None)
        window = cap(0, target.model) if cap is not None else None
        return window if isinstance(window, int) and window > 0 else None

    # ------------------------------------------------------------------ building

    def _add(self, entry: NameEntry, declared_by: str) -> None:
        other = self._owner.get(entry.name)
        if other is not None:
            raise ConfigError(
                f"模型名 '{entry.name}' 重复（{other} 与 {declared_by}），请改名或加别名 / "
                f"model name '{entry.name}' is declared by both {other} and {declared_by}; "
                "rename one or give it an alias"
            )
        self._owner[entry.name] = declared_by
        self._entries[entry.name] = _labelled(entry)

    def _check_backend(self, backend: str, where: str) -> None:
        if backend not in self._engines:
            known = ", ".join(sorted(self._engines)) or "(none)"
            raise ConfigError(
                f"{where} 指向未知后端 '{backend}'（已知：{known}）/ "
                f"{where} points at unknown backend '{backend}' (known: {known})"
            )

    def _route_entry(self, name: str, route: RouteConfig) -> NameEntry:
        for i, target in enumerate(route.targets):
            self._check_backend(target.backend, f"routing.routes.{name}.targets[{i}]")
        targets = tuple(Target(t.backend, t.model, t.weight) for t in route.targets)
        return NameEntry(name, "route", targets, route.balance, tuple(route.fallback))

    def _check_auto(self) -> None:
        assert self.auto is not None
        if AUTO in self._entries:
            raise ConfigError(
                f"routing.auto 已配置，但 'auto' 已被 {self._owner[AUTO]} 使用 / "
                f"routing.auto is configured but the name 'auto' is already used by "
                f"{self._owner[AUTO]}"
            )
        for tier, name in (("small", self.auto.small), ("large", self.auto.large)):
            if name not in self._entries:
                raise ConfigError(
                    f"routing.auto.{tier} 指向未知模型名 '{name}'（已知：{self._known()}）/ "
                    f"routing.auto.{tier} names unknown model '{name}' "
                    f"(known: {self._known()})"
                )

    def _known(self) -> str:
        return ", ".join(sorted(self._entries)) or "(none)"

    def _chain(self, name: str) -> tuple[NameEntry, ...]:
        """Depth-first expansion of fallbacks; a name met again on the path is a cycle."""
        order: list[NameEntry] = []
        seen: set[str] = set()

        def visit(current: str, path: tuple[str, ...]) -> None:
            if current in path:
                cycle = " -> ".join((*path[path.index(current) :], current))
                raise ConfigError(f"回退链形成环：{cycle} / fallback chain forms a cycle: {cycle}")
            entry = self._entries.get(current)
            if entry is None:
                where = f"routing.routes.{path[-1]}.fallback"
                raise ConfigError(
                    f"{where} 指向未知模型名 '{current}'（已知：{self._known()}）/ "
                    f"{where} names unknown model '{current}' (known: {self._known()})"
                )
            if current not in seen:
                seen.add(current)
                order.append(entry)
            for nxt in entry.fallback:
                visit(nxt, (*path, current))

        visit(name, ())
        return tuple(order)


def _labelled(entry: NameEntry) -> NameEntry:
    return NameEntry(
        entry.name,
        entry.kind,
        entry.targets,
        entry.balance,
        entry.fallback,
        header_label(entry.name),
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
