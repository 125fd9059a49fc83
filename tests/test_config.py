"""heshi.yaml parsing: defaults, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from heshi.config import DEFAULT_MODEL_REF, HeshiConfig, load_config
from heshi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_serve_the_embedded_model_on_loopback() -> None:
    cfg = load_config(None)
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8000
    assert cfg.engine.model == DEFAULT_MODEL_REF and cfg.engine.enabled


def _example_with_blocks(tmp_path: Path) -> Path:
    """heshi.example.yaml with its ``#|`` example blocks switched on."""
    text = (ROOT / "heshi.example.yaml").read_text(encoding="utf-8").replace("#|", "")
    path = tmp_path / "heshi.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_is_valid_and_expands_home(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "heshi.example.yaml")
    assert cfg.home == Path.home() / ".cache" / "heshi"
    assert cfg == HeshiConfig(home=cfg.home)  # as copied: the defaults, nothing else
    cfg = load_config(_example_with_blocks(tmp_path))
    assert cfg.aliases["qwen-large"].backend == "vllm-gpu"
    assert cfg.backends["vllm-gpu"].base_url == "http://10.0.0.5:8000/v1"


def test_heshi_home_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HESHI_HOME", str(tmp_path))
    assert HeshiConfig().home == tmp_path


def test_overrides_ignore_unset_flags_and_validate() -> None:
    cfg = HeshiConfig().with_overrides(**{"engine.ctx": 8192, "server.port": None})
    assert cfg.engine.ctx == 8192 and cfg.server.port == 8000
    with pytest.raises(ConfigError, match=r"engine\.parallel"):
        HeshiConfig().with_overrides(**{"engine.parallel": 0})


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("server: [1, 2", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
        ("server:\n  prot: 80\n", "server.prot"),
        ("backends:\n  x:\n    base_url: ftp://h\n", "backends.x.base_url"),
        ("engine:\n  name: 'bad name!'\n", "engine.name"),
        (
            "backends:\n  x:\n    base_url: http://h/v1\n    chat_template_kwargs:\n"
            "      enable_thinking: 'false'\n",
            "write false without quotes",
        ),
        (
            "backends:\n  x:\n    base_url: http://h/v1\n    chat_template_kwargs:\n"
            "      a: {b: 1}\n",
            "chat_template_kwargs.a .*must be true, false, a number or a string",
        ),
        (
            "backends:\n  x:\n    base_url: http://h/v1\n    chat_template_kwargs: {"
            + ", ".join(f"k{i}: 1" for i in range(17))
            + "}\n",
            "至多 16 项.*at most 16 keys",
        ),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "heshi.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Path("/nonexistent/heshi.yaml"))


def test_example_file_routes_resolve(tmp_path: Path) -> None:
    from heshi.engines.base import Engine
    from heshi.engines.llamacpp import LlamaCppEngine
    from heshi.engines.openai_http import OpenAIHTTPEngine
    from heshi.routing.router import Router

    cfg = load_config(_example_with_blocks(tmp_path))
    engines: dict[str, Engine] = {
        "local": LlamaCppEngine(cfg.engine.name, Path("unused.gguf"), cfg.engine)
    }
    engines.update({n: OpenAIHTTPEngine(n, b) for n, b in cfg.backends.items()})
    router = Router(cfg, engines)  # raises ConfigError on a dangling name
    names = {m.id for m in router.public_models()}
    assert {"auto", "qwen-ha", "qwen-cloud", "qwen-large", cfg.engine.name} <= names
    assert router.plan("auto", {"messages": [{"role": "user", "content": "你好"}]}).resolved == (
        cfg.engine.name
    )


def test_store_urls_can_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Secret holds the URLs with their passwords; heshi.yaml only names the variables."""
    path = tmp_path / "heshi.yaml"
    path.write_text("store:\n  url_env: DB_URL\n  redis_url_env: QUOTA_REDIS\n", "utf-8")
    config = load_config(path)
    monkeypatch.delenv("DB_URL", raising=False)
    monkeypatch.delenv("QUOTA_REDIS", raising=False)
    with pytest.raises(ConfigError, match="DB_URL"):
        config.store.sql_url(config.home)
    with pytest.raises(ConfigError, match="QUOTA_REDIS"):
        config.store.redis_address()
    monkeypatch.setenv("DB_URL", "postgresql+psycopg://heshi:s3cret@db:5432/heshi")
    monkeypatch.setenv("QUOTA_REDIS", "redis://:s3cret@redis:6379/0")
    assert config.store.sql_url(config.home) == "postgresql+psycopg://heshi:s3cret@db:5432/heshi"
    assert config.store.redis_address() == "redis://:s3cret@redis:6379/0"
    assert "s3cret" not in path.read_text("utf-8")
    both = tmp_path / "both.yaml"
    both.write_text("store:\n  redis_url: redis://r:6379/0\n  redis_url_env: QUOTA_REDIS\n")
    with pytest.raises(ConfigError, match="redis_url_env"):
        load_config(both)
