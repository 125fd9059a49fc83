"""The name table: what /v1/models lists, and configurations refused at startup."""

from __future__ import annotations

import re
from typing import Any

import pytest

from heshi.errors import ConfigError, ModelNotFound
from heshi.routing import PublicModel, Router
from heshi.routing.names import header_label
from tests.routing.routing_fakes import ScriptedEngine, routing_config


def engines() -> dict[str, ScriptedEngine]:
    return {
        "local": ScriptedEngine("qwen2.5-1.5b", ["qwen2.5-1.5b"]),
        "vllm-a": ScriptedEngine("vllm-a", ["Qwen/Qwen3-32B"]),
        "vllm-b": ScriptedEngine("vllm-b", ["Qwen/Qwen3-32B-AWQ"]),
    }


ROUTES: dict[str, Any] = {
    "qwen-large": {
        "targets": [
            {"backend": "vllm-a", "model": "Qwen/Qwen3-32B"},
            {"backend": "vllm-b", "model": "Qwen/Qwen3-32B-AWQ"},
        ],
        "fallback": ["small"],
    },
}
ALIASES = {"small": {"backend": "local", "model": "qwen2.5-1.5b"}}
AUTO = {"small": "small", "large": "qwen-large"}


def test_public_models_list_models_aliases_routes_and_auto() -> None:
    router = Router(routing_config(routes=ROUTES, aliases=ALIASES, auto=AUTO), engines())
    assert router.public_models() == [
        PublicModel("Qwen/Qwen3-32B", "model", "vllm-a", 4096, ("vllm-a",)),
        PublicModel("Qwen/Qwen3-32B-AWQ", "model", "vllm-b", 4096, ("vllm-b",)),
        PublicModel("auto", "auto", "heshi", None, ("local", "vllm-a", "vllm-b")),
        PublicModel("qwen-large", "route", "heshi", 4096, ("vllm-a", "vllm-b")),
        PublicModel("qwen2.5-1.5b", "model", "qwen2.5-1.5b", 4096, ("local",)),
        PublicModel("small", "alias", "local", 4096, ("local",)),
    ]


def test_unknown_model_lists_every_public_name() -> None:
    router = Router(routing_config(routes=ROUTES, aliases=ALIASES, auto=AUTO), engines())
    with pytest.raises(ModelNotFound) as info:
        router.plan("gpt-4o", {})
    assert info.value.available == sorted(
        ["Qwen/Qwen3-32B", "Qwen/Qwen3-32B-AWQ", "auto", "qwen-large", "qwen2.5-1.5b", "small"]
    )


def test_auto_is_an_ordinary_unknown_name_when_not_configured() -> None:
    router = Router(routing_config(aliases=ALIASES), engines())
    with pytest.raises(ModelNotFound):
        router.plan("auto", {"messages": []})


def test_fallbacks_chain_transitively_in_order_each_once() -> None:
    routes = {
        "a": {"targets": [{"backend": "vllm-a", "model": "x"}], "fallback": ["b", "c"]},
        "b": {"targets": [{"backend": "vllm-b", "model": "y"}], "fallback": ["c", "small"]},
        "c": {"targets": [{"backend": "local", "model": "z"}]},
    }
    router = Router(routing_config(routes=routes, aliases=ALIASES), engines())
    plan = router.plan("a", {})
    assert [e.name for e in plan.chain] == ["a", "b", "c", "small"]
    assert router.plan("a", {}) is plan  # fixed names reuse one precomputed plan


BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"aliases": {"Qwen/Qwen3-32B": ALIASES["small"]}}, "declared by both backend vllm-a"),
    ({"aliases": {"x": {"backend": "vllm-z", "model": "m"}}}, "unknown backend 'vllm-z'"),
    (
        {"routes": {"r": {"targets": [{"backend": "nope", "model": "m"}]}}},
        r"routing.routes.r.targets\[0\] points at unknown backend 'nope'",
    ),
    (
        {
            "aliases": ALIASES,
            "routes": {"small": {"targets": [{"backend": "local", "model": "m"}]}},
        },
        "declared by both aliases and routing.routes",
    ),
    (
        {"routes": {"r": {"targets": [{"backend": "local", "model": "m"}], "fallback": ["gone"]}}},
        "routing.routes.r.fallback names unknown model 'gone'",
    ),
    (
        {
            "routes": {
                "a": {"targets": [{"backend": "vllm-a", "model": "m"}], "fallback": ["b"]},
                "b": {"targets": [{"backend": "vllm-b", "model": "m"}], "fallback": ["a"]},
            }
        },
        "fallback chain forms a cycle: a -> b -> a",
    ),
    (
        {"aliases": ALIASES, "auto": {"small": "small", "large": "huge"}},
        "routing.auto.large names unknown model 'huge'",
    ),
    (
        {"aliases": {**ALIASES, "auto": ALIASES["small"]}, "auto": AUTO, "routes": ROUTES},
        "the name 'auto' is already used by aliases",
    ),
    (
        {"aliases": ALIASES, "routes": ROUTES, "auto": {**AUTO, "cues": ["math:/(unclosed/"]}},
        "regular expression '/\\(unclosed/' is invalid",
    ),
]


@pytest.mark.parametrize(("sections", "message"), BAD_CONFIGS)
def test_bad_names_are_config_errors_naming_the_entry(
    sections: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Router(routing_config(**sections), engines())
    chinese, _, english = info.value.message.partition("/ ")
    assert re.search("[\u4e00-\u9fff]", chinese), "operators in China read it first"
    assert english


def test_header_labels_are_ascii_and_keep_separators_unambiguous() -> None:
    assert header_label("qwen-large") == "qwen-large"
    assert header_label("客服") == "%E5%AE%A2%E6%9C%8D"
    assert header_label("a;b (c)") == "a%3Bb%20%28c%29"
