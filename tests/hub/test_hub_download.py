"""Pulls from Hugging Face / ModelScope URL layouts, against a loopback server."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from hub_loopback_server import LoopbackHub

from heshi.errors import HubError, ModelFileError
from heshi.hub import HubSettings, ModelStore

HF_PATH = "/Qwen/Tiny-GGUF/resolve/main/sub/tiny.gguf"
HF_REF = "hf:Qwen/Tiny-GGUF/sub/tiny.gguf"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_hf_pull_follows_redirect_and_verifies_linked_etag(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload, linked_etag=_sha(payload))

    path = store.pull(HF_REF, progress=False)

    assert path == store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "sub" / "tiny.gguf"
    assert path.read_bytes() == payload
    assert [s.path for s in hub.seen] == [HF_PATH, "/cdn" + HF_PATH]
    [cached] = store.list()
    assert (cached.ref, cached.size, cached.sha256) == (HF_REF, len(payload), _sha(payload))
    assert store.resolve(HF_REF) == path


def test_modelscope_pull_uses_its_layout_and_named_revision(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve("/models/Qwen/Tiny-GGUF/resolve/v1.0/tiny.gguf", payload)

    path = store.pull("modelscope:Qwen/Tiny-GGUF@v1.0/tiny.gguf", progress=False)

    assert path.read_bytes() == payload
    assert path == store.root / "modelscope" / "Qwen" / "Tiny-GGUF" / "v1.0" / "tiny.gguf"


def test_modelscope_default_revision_is_master(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve("/models/Qwen/Tiny-GGUF/resolve/master/tiny.gguf", payload)
    store.pull("modelscope:Qwen/Tiny-GGUF/tiny.gguf", progress=False)
    # Naming the default explicitly is the same cached model.
    assert store.resolve("modelscope:Qwen/Tiny-GGUF@master/tiny.gguf").read_bytes() == payload


def test_interrupted_pull_is_invisible_then_resumes_with_range(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    half = len(payload) // 2
    hub.serve(HF_PATH, payload, etag=_sha(payload))
    hub.behaviour.drop_after = half

    with pytest.raises(HubError, match="resume"):
        store.pull(HF_REF, progress=False)

    partial = store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "sub" / "tiny.gguf.part"
    assert partial.stat().st_size == half
    assert store.list() == []
    with pytest.raises(ModelFileError, match="heshi models pull"):
        store.resolve(HF_REF)

    path = store.pull(HF_REF, progress=False)

    assert hub.seen[-1].range == f"bytes={half}-"
    assert path.read_bytes() == payload
    assert not partial.exists()
    assert store.list()[0].sha256 == _sha(payload)


def test_server_ignoring_range_restarts_the_file(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload)
    hub.behaviour.ignore_range = True
    dest = store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "sub" / "tiny.gguf"
    dest.parent.mkdir(parents=True)
    dest.with_name("tiny.gguf.part").write_bytes(b"stale bytes from another file")

    path = store.pull(HF_REF, sha256=_sha(payload), progress=False)

    assert hub.seen[0].range == "bytes=29-"
    assert path.read_bytes() == payload


def test_complete_part_file_is_verified_without_downloading_again(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload, etag=_sha(payload))
    dest = store.root / "hf" / "Qwen" / "Tiny-GGUF" / "main" / "sub" / "tiny.gguf"
    dest.parent.mkdir(parents=True)
    dest.with_name("tiny.gguf.part").write_bytes(payload)

    assert store.pull(HF_REF, progress=False).read_bytes() == payload
    assert hub.seen[0].range == f"bytes={len(payload)}-"


def test_explicit_sha256_mismatch_deletes_the_download(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload)
    wrong = _sha(b"something else")

    with pytest.raises(HubError) as caught:
        store.pull(HF_REF, sha256=wrong.upper(), progress=False)

    assert wrong in caught.value.message
    assert _sha(payload) in caught.value.message
    assert _files(store.root) == []
    assert store.list() == []


def test_wrong_bytes_against_advertised_etag_leave_nothing_behind(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, b"GGUF corrupted by a bad mirror", linked_etag=_sha(payload))

    with pytest.raises(HubError, match="checksum mismatch"):
        store.pull(HF_REF, progress=False)

    assert _files(store.root) == []
    with pytest.raises(ModelFileError):
        store.resolve(HF_REF)


def test_missing_file_is_a_clear_404(hub: LoopbackHub, store: ModelStore) -> None:
    with pytest.raises(HubError) as caught:
        store.pull("hf:Qwen/Tiny-GGUF/nope.gguf", progress=False)
    assert "HTTP 404" in caught.value.message
    assert "/Qwen/Tiny-GGUF/resolve/main/nope.gguf" in caught.value.message
    assert store.list() == []


def test_token_is_sent_as_bearer_and_never_shown(
    hub: LoopbackHub, settings: HubSettings, tmp_path: Path, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload)
    hub.behaviour.required_token = "hf_right"
    wrong = ModelStore(tmp_path / "a", settings=_with_token(settings, "hf_wrong_secret"))
    right = ModelStore(tmp_path / "b", settings=_with_token(settings, "hf_right"))

    with pytest.raises(HubError) as caught:
        wrong.pull(HF_REF, progress=False)
    assert "HF_TOKEN" in caught.value.message
    assert "hf_wrong_secret" not in caught.value.message

    assert right.pull(HF_REF, progress=False).read_bytes() == payload
    assert hub.seen[-1].authorization == "Bearer hf_right"


def test_a_stalled_server_times_out_instead_of_hanging(
    hub: LoopbackHub, settings: HubSettings, tmp_path: Path
) -> None:
    hub.behaviour.stalling = True
    impatient = HubSettings(hf_endpoint=hub.url, connect_timeout=1.0, read_timeout=0.3)

    with pytest.raises(HubError, match="timed out"):
        ModelStore(tmp_path, settings=impatient).pull(HF_REF, progress=False)


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = HubSettings(hf_endpoint=f"http://127.0.0.1:{port}", connect_timeout=1.0)

    with pytest.raises(HubError, match=r"cannot connect to 127\.0\.0\.1"):
        ModelStore(tmp_path, settings=closed).pull(HF_REF, progress=False)


def test_second_pull_is_a_no_op_and_checks_a_given_sha256(
    hub: LoopbackHub, store: ModelStore, payload: bytes
) -> None:
    hub.serve(HF_PATH, payload)
    store.pull(HF_REF, progress=False)

    store.pull(HF_REF, sha256=_sha(payload), progress=False)
    assert len(hub.seen) == 1
    with pytest.raises(HubError, match="heshi models rm"):
        store.pull(HF_REF, sha256=_sha(b"other"), progress=False)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _with_token(settings: HubSettings, token: str) -> HubSettings:
    return HubSettings(
        hf_endpoint=settings.hf_endpoint,
        modelscope_endpoint=settings.modelscope_endpoint,
        hf_token=token,
        read_timeout=settings.read_timeout,
    )
