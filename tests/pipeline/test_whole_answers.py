"""A whole (non-streamed) answer on the embedded engine stops when its client leaves, and
what was decoded by then is charged: a client that gave up must not keep a slot busy,
and leaving must not make an answer free."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from heshi.config import HeshiConfig, StoreConfig
from heshi.engines.base import CALL, CallControl
from heshi.engines.llamacpp import LlamaCppEngine
from heshi.errors import ClientGone
from heshi.gateway.app import create_app
from heshi.gateway.governance import Governance
from heshi.store.db import Database
from heshi.store.keys import KeyStore
from tests.conftest import TINY_NAME, tiny_engine_config
from tests.fakes.waiting import wait_until
from tests.governance.conftest import bearer, ledger_rows
from tests.loopback import serve_app
from tests.pipeline.conftest import raw_chat_post, wait_recorded_and_freed
from tests.tinymodel import build_tiny_qwen2_gguf

CTX = 16384
LONG = 16000  # at a long context: more than a minute of decoding on one thread


@pytest.fixture(scope="module")
def long_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a context long enough for an answer that takes seconds."""
    path = tmp_path_factory.mktemp("models") / "tiny-long.gguf"
    return build_tiny_qwen2_gguf(path, context_length=CTX)


def _body(max_tokens: int = LONG) -> dict[str, object]:
    return {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "讲一个很长的故事"}],
        "max_tokens": max_tokens,
        "temperature": 0,  # the tiny model then cycles through its text, never ending it
    }


def test_a_client_that_leaves_stops_its_whole_answer_and_is_charged_what_was_decoded(
    long_gguf: Path, keys: KeyStore, store_db: Database, home: Path
) -> None:
    plaintext, _ = keys.create("acme", "impatient", budget_tokens=100_000)
    config = HeshiConfig(
        home=home,
        engine=tiny_engine_config(long_gguf, ctx=CTX, parallel=1),
        store=StoreConfig(ledger_flush_seconds=0.05),
    )
    local = LlamaCppEngine(TINY_NAME, long_gguf, config.engine)
    gov = Governance(config)
    with serve_app(create_app(config, {"local": local}, gov)) as url:
        port = int(url.rsplit(":", 1)[1])
        before = local.stats()["tokens_predicted_total"]
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(raw_chat_post(json.dumps(_body()).encode(), plaintext))
            wait_until(
                lambda: local.stats()["requests_processing"] == 1,
                timeout=20,
                interval=0.01,
                message="the answer never started",
            )
        # the client is gone: the slot is freed and the request recorded
        wait_recorded_and_freed(gov, store_db, local, "the abandoned answer")
        decoded = local.stats()["tokens_predicted_total"] - before
        # and the one slot answers the next client
        r = httpx.post(
            url + "/v1/chat/completions", json=_body(3), headers=bearer(plaintext), timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 3
    row = ledger_rows(store_db)[0]
    assert (row["status"], row["reason"]) == (499, "client_gone")
    assert row["prompt_tokens"] > 0
    # stopped long before its end, and charged what the engine decoded, not nothing
    assert 0 < row["completion_tokens"] <= decoded < LONG


async def test_the_engine_stops_a_whole_answer_when_told_and_reports_its_usage(
    long_gguf: Path,
) -> None:
    engine = LlamaCppEngine(TINY_NAME, long_gguf, tiny_engine_config(long_gguf, ctx=CTX))
    await engine.start()
    try:
        # told before it starts: nothing is generated
        gone = CallControl()
        gone.stop()
        token = CALL.set(gone)
        with pytest.raises(ClientGone):
            await engine.chat(_body())
        CALL.reset(token)
        assert gone.spent is None

        # told while it generates: it ends early with what it decoded
        control = CallControl()
        token = CALL.set(control)
        task = asyncio.ensure_future(engine.chat(_body()))
        CALL.reset(token)
        for _ in range(2000):  # until the slot is decoding (at most 20 s)
            if engine.stats()["requests_processing"]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        control.stop()
        with pytest.raises(ClientGone):
            await task
        assert control.spent is not None
        assert 0 < control.spent["completion_tokens"] < LONG
        assert control.spent["prompt_tokens"] > 0

        # not told: the whole answer, with the usage it reports
        control = CallControl()
        token = CALL.set(control)
        out = await engine.chat(_body(7))
        CALL.reset(token)
        assert out["usage"]["completion_tokens"] == 7
        assert out["choices"][0]["finish_reason"] == "length"
        assert control.spent is not None and control.spent["completion_tokens"] == 7
    finally:
        await engine.close()


async def test_an_answer_stopped_while_it_waits_for_a_slot_never_starts(long_gguf: Path) -> None:
    """One slot, busy: a second answer waits for it; stopped while it waits, it ends at
    once and the engine never processes its prompt."""
    config = tiny_engine_config(long_gguf, ctx=CTX, parallel=1)
    engine = LlamaCppEngine(TINY_NAME, long_gguf, config)
    await engine.start()
    try:
        first, second = CallControl(), CallControl()
        token = CALL.set(first)
        busy = asyncio.ensure_future(engine.chat(_body()))
        CALL.reset(token)
        for _ in range(2000):
            if engine.stats()["requests_processing"]:
                break
            await asyncio.sleep(0.01)
        token = CALL.set(second)
        waiting = asyncio.ensure_future(engine.chat(_body()))
        CALL.reset(token)
        await asyncio.sleep(0.2)
        assert not waiting.done()
        second.stop()
        with pytest.raises(ClientGone):
            await waiting
        assert not busy.done()  # the first still holds the slot
        assert second.spent is None
        first.stop()
        with pytest.raises(ClientGone):
            await busy
        assert first.spent is not None and first.spent["completion_tokens"] < LONG
    finally:
        await engine.close()


async def test_a_whole_answer_is_what_llama_cpp_answers_whole(tiny_engine: LlamaCppEngine) -> None:
    """Joined from the stream, the answer has the text, finish reason, usage and log-
    probabilities llama.cpp's own non-streaming reply has; a request with a stop string
    is asked for whole (the stream would drop text held back for it: here all of it)."""
    server = tiny_engine._require_server()

    def direct(handler: Any, body: dict[str, Any]) -> dict[str, Any]:
        out: list[bytes] = []
        handler(json.dumps(body | {"stream": False}).encode(), lambda d: out.append(d) and False)
        return dict(json.loads(out[0]))

    chat = {
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 1,
    }
    ours, theirs = await tiny_engine.chat(chat), direct(server.handle_chat_completions, chat)
    assert ours["object"] == theirs["object"] == "chat.completion"
    assert ours["choices"][0]["message"] == theirs["choices"][0]["message"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]
    assert ours["choices"][0]["logprobs"] == theirs["choices"][0]["logprobs"]
    assert ours["usage"].keys() == theirs["usage"].keys()
    assert ours["usage"]["completion_tokens"] == theirs["usage"]["completion_tokens"] == 6
    for stop in ([], ["你好"]):
        text = {"prompt": "\n", "max_tokens": 6, "temperature": 0, "stop": stop}
        ours, theirs = await tiny_engine.completion(text), direct(server.handle_completions, text)
        assert ours["choices"][0]["text"] == theirs["choices"][0]["text"] == "你你"
        assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]
