"""ModelStore behaviour that does not need a download: local paths, list, remove."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hub_loopback_server import LoopbackHub
from hub_tiny_gguf import write_tiny_gguf

from heshi.errors import HubError, ModelFileError
from heshi.hub import ModelStore
from heshi.hub.pull_lock import pull_lock

REF = "hf:Qwen/Tiny-GGUF/tiny.gguf"


def test_local_path_resolves_in_place_and_must_be_gguf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "notes.txt").write_text("hello")
    monkeypatch.chdir(tmp_path)
    store = ModelStore(tmp_path / "home")

    assert store.resolve("tiny.gguf") == tmp_path / "tiny.gguf"
    assert store.pull("./tiny.gguf", progress=False) == tmp_path / "tiny.gguf"
    with pytest.raises(ModelFileError, match="not a GGUF"):
        store.resolve("notes.txt")
    with pytest.raises(ModelFileError, match="not found"):
        store.resolve("missing.gguf")
    assert store.list() == []


def test_remove_deletes_the_model_and_its_record(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve("/Qwen/Tiny-GGUF/resolve/main/tiny.gguf", payload)
    path = store.pull(REF, progress=False)

    assert store.remove(REF) == path
    assert not path.exists()
    assert store.list() == []
    # Empty per-model folders go too, the per-kind folder stays.
    assert list((store.root / "hf").iterdir()) == []
    with pytest.raises(ModelFileError, match="not in the cache"):
        store.remove(REF)


def test_remove_cleans_up_an_interrupted_pull(store: ModelStore) -> None:
    partial = store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "tiny.gguf.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"GGUF half")

    store.remove(REF)

    assert not partial.exists()


def test_local_files_are_never_removed(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(HubError, match="only removes models it pulled"):
        ModelStore(tmp_path / "home").remove(str(model))
    assert model.exists()


def test_a_model_whose_file_changed_after_the_pull_is_not_listed(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve("/Qwen/Tiny-GGUF/resolve/main/tiny.gguf", payload)
    path = store.pull(REF, progress=False)
    assert store.cached(REF) is not None
    assert store.list()[0].sha256 == hashlib.sha256(payload).hexdigest()

    path.write_bytes(payload[:100])

    assert store.list() == []
    with pytest.raises(ModelFileError, match="heshi models pull"):
        store.resolve(REF)


def test_a_second_pull_of_the_same_model_is_refused_while_one_runs(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve("/Qwen/Tiny-GGUF/resolve/main/tiny.gguf", payload)
    dest = store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "tiny.gguf"

    with pull_lock(store.home / "locks", dest, REF), pytest.raises(HubError, match="already"):
        store.pull(REF, progress=False)

    assert hub.seen == []
    assert store.pull(REF, progress=False).read_bytes() == payload


def test_pulling_a_local_path_checks_a_given_sha256(tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    store = ModelStore(tmp_path / "home")

    assert store.pull(str(model), sha256=digest, progress=False) == model
    with pytest.raises(HubError, match="checksum mismatch"):
        store.pull(str(model), sha256="f" * 64, progress=False)
    with pytest.raises(HubError, match="64 hex digits"):
        store.pull(str(model), sha256="abc", progress=False)
