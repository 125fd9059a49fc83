"""Tool calling on the embedded engine: a chat request with ``tools`` answered as a text
completion of the rendered prompt, held to the tool-call grammar (see
:mod:`heshi.engines.toolcalls`), read back into ``tool_calls``; a made-up call refused,
and an answer in words that claims an action done replaced by the call
(:mod:`heshi.engines.toolgrounding`)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, NamedTuple, Protocol

from heshi.config import LocalEngineConfig
from heshi.engines.base import JSON, add_usage, asked_completion_tokens
from heshi.engines.llamacpp_requests import (
    SAMPLING,
    json_schema_to_grammar,
    llguidance_built,
    thought_of,
)
from heshi.engines.local_streams import read_tool_answer
from heshi.engines.reasoning import CLOSE as THINK_CLOSE
from heshi.engines.toolcalls import ToolRequest, prose_grammar, with_instructions
from heshi.engines.tooldecision import Decision, decision_question, read_decision
from heshi.engines.toolgrounding import (
    asked_after_call,
    assistant_text,
    claims_action,
    conversation_text,
    invented_values,
)
from heshi.errors import ContextLengthExceeded, InvalidRequest

# the which-function question's answers, at DEBUG: what an operator reads to judge the
# thresholds on their own traffic (function names and shares only, never the messages)
log = logging.getLogger(__name__)


class ToolPrompt(NamedTuple):
    """The text completion that answers a chat request with tools."""

    body: JSON
    opened: bool | None  # the answer begins inside a think block
    # where the which-function question left the answer to the model: the function it
    # ranked first, called instead of an answer in words that claims the action done
    undecided: str | None = None


class _Engine(Protocol):
    """What the tool-calling methods use of :class:`~heshi.engines.llamacpp.LlamaCppEngine`."""

    config: LocalEngineConfig
    model_name: str

    async def render_prompt(self, body: JSON) -> str: ...

    async def _call_once(self, handler: Any, body: JSON, *, charged: bool = True) -> JSON: ...

    def _require_server(self) -> Any: ...


class ToolCalling(_Engine):
    """The embedded engine's tool-calling methods."""

    def _tools(self, body: JSON) -> ToolRequest | None:
        tools = ToolRequest.of(body)
        if tools is not None:
            for name in ("grammar", "response_format"):
                if body.get(name) is not None:
                    raise InvalidRequest(
                        f"本地引擎不支持 {name} 与 tools 同用 / the embedded engine cannot "
                        f"combine {name} with tools",
                        param=name,
                    )
        return tools

    async def tool_completion_body(
        self,
        body: JSON,
        tools: ToolRequest,
        opened: bool | None,
        *,
        prose_only: bool = False,
        call: str | None = None,
    ) -> ToolPrompt:
        """The text completion that answers a chat request with tools. ``prose_only``: the
        answer may not be a call (the model's first answer made one up); ``call``: it must
        call that function (the first answer claimed in words to have done it)."""
        prompt = with_instructions(await self.render_prompt(body), self.config.tool_instructions)
        out: JSON = {k: body[k] for k in SAMPLING if body.get(k) is not None}
        asked = asked_completion_tokens(body)
        if asked is not None:
            out["max_tokens"] = asked
        gbnf = None if llguidance_built() else json_schema_to_grammar
        thought = thought_of(body, opened)
        thinking = thought != "none"  # a thinking model decides in its thought
        if gbnf is not None and thought != "none":  # GBNF cannot say "a thought, then a call"
            if opened:
                prompt += "\n" + THINK_CLOSE + "\n\n"  # so the block is closed, empty
                opened = False
            thought = "none"
        out.update(model=self.model_name, prompt=prompt)
        undecided = None
        if call is not None:
            tools = dataclasses.replace(tools, choice=call)
        elif not prose_only and not thinking and tools.choice == "auto":
            decision = await self._decision(prompt, body)
            verdict = "free" if decision is None else self._verdict(decision)
            if verdict == "words":
                prose_only = True
            elif verdict == "call" and decision is not None:
                tools = dataclasses.replace(tools, choice=decision.function)
            elif decision is not None:
                undecided = decision.function
        grammar = (
            prose_grammar(thought, gbnf=gbnf is not None)
            if prose_only
            else tools.grammar(constrain_auto=self.config.tool_grammar, gbnf=gbnf, thought=thought)
        )
        if grammar is not None:
            out["grammar"] = grammar
        return ToolPrompt(out, opened, undecided)

    async def _chat_with_tools(self, body: JSON, tools: ToolRequest, opened: bool | None) -> JSON:
        first = opened
        request, opened, undecided = await self.tool_completion_body(body, tools, first)
        completion = await self._call_once(self._require_server().handle_completions, request)
        message, called, reasoning = read_tool_answer(completion, tools, opened)
        if (
            not called
            and undecided is not None
            and self.claims(body, message.get("content"), undecided)
        ):
            # “我已经提交了” and nothing called: make the call the question ranked first
            completion, opened = await self._again(body, tools, first, completion, call=undecided)
            message, called, reasoning = read_tool_answer(completion, tools, opened)
        if called and self._invented(body, message.get("tool_calls") or []):
            # a call whose order/account/phone number the conversation never gave: ask
            # again for an answer in words (which may ask the user for the number)
            completion, opened = await self._again(body, tools, first, completion, prose_only=True)
            # words only: a call written into this answer's prose is not read as one
            message, called, reasoning = read_tool_answer(completion, tools, opened, calls=False)
        choice = completion["choices"][0]
        if reasoning:
            message["reasoning_content"] = reasoning
        finish = choice.get("finish_reason")
        result: JSON = {
            "id": completion.get("id"),
            "object": "chat.completion",
            "created": completion.get("created"),
            "model": completion.get("model", self.model_name),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if called and finish == "stop" else finish,
                }
            ],
        }
        for name in ("usage", "timings"):
            if name in completion:
                result[name] = completion[name]
        return result

    async def _again(
        self,
        body: JSON,
        tools: ToolRequest,
        opened: bool | None,
        given_up: JSON,
        **terms: Any,
    ) -> tuple[JSON, bool | None]:
        """A second answer on ``terms`` (see :meth:`tool_completion_body`), its usage
        counting the answer given up too."""
        request, opened, _ = await self.tool_completion_body(body, tools, opened, **terms)
        completion = await self._call_once(self._require_server().handle_completions, request)
        completion["usage"] = add_usage(given_up.get("usage"), completion.get("usage"))
        return completion, opened

    async def _decision(self, prompt: str, body: JSON) -> Decision | None:
        """The model's answer to the question put before an ``auto`` answer
        (``engine.tool_decision``; see :mod:`heshi.engines.tooldecision`), or None where it
        is not asked. Its tokens (the question's prompt, one generated token) are the
        engine's overhead, not in the request's usage; the conversation before it is
        reused from the slot's cache by the answer."""
        if not self.config.tool_decision or not self.config.tool_grammar:
            return None
        question = decision_question(prompt, body)
        if question is None:
            return None
        try:
            completion = await self._call_once(
                self._require_server().handle_completions,
                question.completion_body(self.model_name),
                charged=False,  # the engine's overhead, whether the client stays or not
            )
        except ContextLengthExceeded:  # the question did not fit; the answer alone may
            return None
        return read_decision(completion, question)

    def _verdict(self, decision: Decision) -> str:
        """What the engine does with ``decision`` under its thresholds, logged at DEBUG."""
        config = self.config
        verdict = decision.verdict(
            config.tool_decision_call_below, config.tool_decision_answer_above
        )
        log.debug(
            "tool decision: none share %.3f, first %s, verdict %s",
            decision.none_share, decision.function, verdict,
        )  # fmt: skip
        return verdict

    def claims(self, body: JSON, content: object, function: str) -> bool:
        """Whether an answer in words claims an action done that no call carried out, so
        that ``function`` (the question's first choice) is called instead — not when the
        user asks about a call of it already made (and only when the engine is told to
        check: ``engine.tool_call_grounding``)."""
        if not self.config.tool_call_grounding or body.get("tool_choice") not in (None, "auto"):
            return False
        if not isinstance(content, str) or asked_after_call(body, function):
            return False
        return claims_action(content, assistant_text(body))

    def _invented(self, body: JSON, calls: list[JSON]) -> bool:
        """Whether any call carries an identifier the conversation never gave (and the
        engine is told to check: ``engine.tool_call_grounding``)."""
        if not self.config.tool_call_grounding or body.get("tool_choice") not in (None, "auto"):
            return False
        said = conversation_text(body)
        return any(invented_values(c["function"]["arguments"], said) for c in calls)
