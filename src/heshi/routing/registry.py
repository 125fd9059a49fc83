"""Public model names → (engine, upstream model name).

A model is reachable under the name its engine serves it by, and under any alias the
operator declares in ``heshi.yaml``. Later routing (tiers, fallbacks) builds on this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from heshi.config import AliasConfig
from heshi.engines.base import Engine, ServedModel
from heshi.errors import ConfigError, ModelNotFound


@dataclass(frozen=True)
class Route:
    """Where a request for ``public_name`` goes."""

    public_name: str
    engine: Engine
    upstream_model: str
    model: ServedModel


class ModelRegistry:
    """Resolves the ``model`` field of a request."""

    def __init__(self, engines: Mapping[str, Engine], aliases: Mapping[str, AliasConfig]) -> None:
        self.engines = dict(engines)
        self._routes: dict[str, Route] = {}
        for engine in self.engines.values():
            for served in engine.served_models():
                self._add(Route(served.name, engine, served.name, served))
        for public, alias in aliases.items():
            self._add_alias(public, alias)

    def _add(self, route: Route) -> None:
        if route.public_name in self._routes:
            other = self._routes[route.public_name].engine.name
            raise ConfigError(
                f"模型名 '{route.public_name}' 重复（{other} 与 {route.engine.name}）/ "
                f"model name '{route.public_name}' is served by both {other} and "
                f"{route.engine.name}; give one of them an alias"
            )
        self._routes[route.public_name] = route

    def _add_alias(self, public: str, alias: AliasConfig) -> None:
        engine = self.engines.get(alias.backend)
        if engine is None:
            known = ", ".join(sorted(self.engines)) or "(none)"
            raise ConfigError(
                f"别名 '{public}' 指向未知后端 '{alias.backend}'（已知：{known}）/ "
                f"alias '{public}' points at unknown backend '{alias.backend}' (known: {known})"
            )
        served = {m.name: m for m in engine.served_models()}
        model = served.get(alias.model, ServedModel(name=alias.model, owned_by=engine.name))
        self._add(Route(public, engine, alias.model, model))

    def resolve(self, name: str) -> Route:
        """The route for ``name``, or ``ModelNotFound`` listing what is available."""
        route = self._routes.get(name)
        if route is None:
            raise ModelNotFound(name, list(self._routes))
        return route

    def routes(self) -> list[Route]:
        """Every public name, sorted."""
        return [self._routes[k] for k in sorted(self._routes)]
