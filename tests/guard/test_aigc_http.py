"""AIGC labels on gateway responses: explicit in the text, implicit in body/header/stream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from heshi.config import AigcConfig
from heshi.guard.aigc import ImplicitLabel, verify_reserved_code
from heshi.store.keys import KeyStore
from tests.governance.conftest import GatewayFactory, Upstream, bearer, chat_body, gateway_config

KEY = "a-test-signing-key-of-enough-length"
WORDING = "本内容由人工智能生成 / AI-generated content"


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HESHI_AIGC_KEY", KEY)
    return KEY


def _config(home: Path, upstream: Upstream, explicit: str = "end") -> object:
    aigc = AigcConfig(enabled=True, uscc="91350100M000100Y43", explicit=explicit)  # type: ignore[arg-type]
    return gateway_config(home, upstream.base_url).model_copy(update={"aigc": aigc})


def test_plain_answers_carry_both_labels(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
    signing_key: str,
) -> None:  # fmt: skip
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.reply = "杭州是浙江省会。"
    gw = start_gateway(_config(home, upstream))  # type: ignore[arg-type]
    r = httpx.post(
        gw.url + "/v1/chat/completions", json=chat_body("杭州"), headers=bearer(plaintext)
    )
    body = r.json()
    content = body["choices"][0]["message"]["content"]
    assert content == f"杭州是浙江省会。\n\n{WORDING}"
    label = ImplicitLabel.from_json(body["AIGC"])
    assert label.content_producer.startswith("001191350100M000100Y43")
    assert len(label.content_producer) == 27
    assert verify_reserved_code(label, content, signing_key)
    assert not verify_reserved_code(label, content + "!", signing_key)
    assert ImplicitLabel.from_json(json.loads(r.headers["x-aigc-label"])) == label


def test_streams_get_the_label_in_text_and_a_last_aigc_chunk(
    upstream: Upstream, start_gateway: GatewayFactory, keys: KeyStore, home: Path,
    signing_key: str,
) -> None:  # fmt: skip
    plaintext, _ = keys.create("acme", "cs")
    upstream.state.reply = "西湖很美。"
    gw = start_gateway(_config(home, upstream, explicit="start"))  # type: ignore[arg-type]
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        json=chat_body("西湖", stream=True),
        headers=bearer(plaintext),
    )
    chunks = [
        json.loads(line[6:])
        for line in r.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    text = "".join(
        (c["choices"][0].get("delta") or {}).get("content") or "" for c in chunks if c["choices"]
    )
    assert text == f"{WORDING}\n\n西湖很美。"
    label = ImplicitLabel.from_json(chunks[-1]["AIGC"])
    assert label.produce_id == r.headers["x-aigc-produce-id"]
    assert verify_reserved_code(label, text, signing_key)


def test_missing_key_or_uscc_stops_startup(home: Path, upstream: Upstream) -> None:
    from heshi.errors import ConfigError
    from heshi.guard.labels import Labeller

    with pytest.raises(ConfigError, match="uscc"):
        Labeller(AigcConfig(enabled=True))
    with pytest.raises(ConfigError, match="HESHI_AIGC_KEY_MISSING"):
        Labeller(
            AigcConfig(enabled=True, uscc="91350100M000100Y43", key_env="HESHI_AIGC_KEY_MISSING")
        )
    with pytest.raises(ConfigError):
        Labeller(AigcConfig(enabled=True, uscc="91350100M000100Y44"))  # bad check character
