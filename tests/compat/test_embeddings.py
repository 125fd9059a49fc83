"""Chat, embeddings and rerank from one gateway: a chat model and an embedding model
(the tiny model loaded to embed) side by side, through the clients RAG stacks use."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from heshi.config import HeshiConfig
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.engines.local import LocalModels
from heshi.gateway.app import create_app
from tests.compat.test_tools import client
from tests.conftest import TINY_NAME, tiny_engine_config
from tests.governance.conftest import GatewayFactory, Upstream, gateway_config
from tests.loopback import serve_app

EMBEDDER = "tiny-embed"
RERANKER = "tiny-rerank"
DOCS = ["退货需要在签收后七天内申请", "信用卡挂失请拨打客服热线", "快递一般三天内送达"]


@pytest.fixture
def rag_url(tiny_gguf: Path, tmp_path: Path) -> Iterator[str]:
    chat = tiny_engine_config(tiny_gguf)
    embed = tiny_engine_config(tiny_gguf, name=EMBEDDER, embeddings=True, parallel=1)
    rerank = tiny_engine_config(tiny_gguf, name=RERANKER, pooling="rank", parallel=1)
    config = HeshiConfig(home=tmp_path / "home", engine=chat, models=[embed, rerank])
    local = LocalModels(
        {m.name: LlamaCppEngine(m.name, tiny_gguf, m) for m in config.local_models()}
    )
    with serve_app(create_app(config, {"local": local})) as url:
        yield url


def test_one_gateway_chats_and_embeds(rag_url: str) -> None:
    c = client(rag_url)
    assert (
        c.chat.completions.create(
            model=TINY_NAME, messages=[{"role": "user", "content": "你好"}], max_tokens=3
        )
        .choices[0]
        .message.content
    )
    out = c.embeddings.create(model=EMBEDDER, input=DOCS)
    assert [d.index for d in out.data] == [0, 1, 2]
    vectors = [d.embedding for d in out.data]
    assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) == 64  # the hidden size
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)  # normalised
    assert vectors[0] != vectors[1]
    assert out.usage.prompt_tokens > 0
    ids = {m.id for m in c.models.list().data}
    assert {TINY_NAME, EMBEDDER} <= ids


def test_a_chat_model_asked_to_embed_says_how_to_load_an_embedder(rag_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client(rag_url).embeddings.create(model=TINY_NAME, input="你好")
    assert err.value.code == "capability_missing" and "embeddings: true" in err.value.message


def test_rerank_in_jina_and_cohere_shape(rag_url: str) -> None:
    body = {"model": EMBEDDER, "query": DOCS[1], "documents": DOCS, "top_n": 2}
    r = httpx.post(rag_url + "/v1/rerank", json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    results = answer["results"]
    assert results[0]["index"] == 1  # the document the query repeats comes first
    assert len(results) == 2
    assert results[0]["relevance_score"] == pytest.approx(1.0, abs=1e-4)
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert results[0]["document"] == {"text": DOCS[1]}
    assert answer["usage"]["total_tokens"] > 0 and answer["model"] == EMBEDDER

    objects = [{"text": d} for d in DOCS]
    bare = httpx.post(rag_url + "/rerank", json={"model": EMBEDDER, "query": DOCS[2],
                      "documents": objects, "return_documents": False}, timeout=60)  # fmt: skip
    assert bare.status_code == 200, bare.text
    results = bare.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2] and results[0]["index"] == 2
    assert "document" not in results[0]


def test_a_cross_encoder_reranker_scores_the_pairs_itself(rag_url: str) -> None:
    """``pooling: rank`` runs llama.cpp's rerank (the tiny model's scores are arbitrary but
    fixed: the same pairs rank the same way twice)."""
    body = {"model": RERANKER, "query": "怎么退货", "documents": DOCS}
    first = httpx.post(rag_url + "/v1/rerank", json=body, timeout=60)
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    again = httpx.post(rag_url + "/v1/rerank", json=body, timeout=60).json()["results"]
    assert [x["index"] for x in again] == [x["index"] for x in results]
    with pytest.raises(openai.BadRequestError) as err:
        client(rag_url).embeddings.create(model=RERANKER, input="你好")
    assert "reranker" in err.value.message


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": TINY_NAME, "query": "q", "documents": ["a"]}, 400, "model"),
        ({"model": EMBEDDER, "query": "", "documents": ["a"]}, 400, "query"),
        ({"model": EMBEDDER, "query": "q", "documents": []}, 400, "documents"),
        ({"model": EMBEDDER, "query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
        ({"model": "nope", "query": "q", "documents": ["a"]}, 404, "model"),
    ],
)
def test_bad_rerank_requests(rag_url: str, body: dict, status: int, param: str) -> None:
    r = httpx.post(rag_url + "/v1/rerank", json=body, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_langchain_and_llamaindex_embed(rag_url: str) -> None:
    from langchain_openai import OpenAIEmbeddings
    from llama_index.embeddings.openai import OpenAIEmbedding

    lc = OpenAIEmbeddings(
        model=EMBEDDER, base_url=rag_url + "/v1", api_key="unused",  # type: ignore[arg-type]
        check_embedding_ctx_length=False, max_retries=0,
    )  # fmt: skip
    docs = lc.embed_documents(DOCS)
    query = lc.embed_query(DOCS[0])
    assert len(docs) == 3 and query == pytest.approx(docs[0], abs=1e-5)

    li = OpenAIEmbedding(
        model_name=EMBEDDER, api_base=rag_url + "/v1", api_key="unused", max_retries=0
    )
    vector = li.get_text_embedding(DOCS[0])
    assert vector == pytest.approx(docs[0], abs=1e-5)


def test_a_remote_reranker_gets_the_request_unchanged(
    upstream: Upstream, start_gateway: GatewayFactory, home: Path
) -> None:
    gw = start_gateway(gateway_config(home, upstream.base_url))
    body = {"model": upstream.state.model, "query": "退货", "documents": DOCS, "top_n": 2}
    r = httpx.post(gw.url + "/v1/rerank", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert upstream.state.bodies[-1] == body
    assert [x["index"] for x in r.json()["results"]] == [0, 1]  # the fake ranks by length
