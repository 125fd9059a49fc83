"""One request, from the HTTP edge to its ledger row: the :class:`Exchange`.

The edge creates it before it reads anything, every stage records what it decided on it
(the key, the reservation, the route taken, the guard's verdict, the usage), and the
pipeline's last step turns it into exactly one ledger row, one set of metrics and, when
the guard ran, one audit record. Nothing about a request lives on exception objects or
in local variables of a handler.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

from heshi.engines.base import JSON, CallControl
from heshi.errors import HeshiError
from heshi.routing.router import RouteFacts

if TYPE_CHECKING:
    from heshi.gateway.quota import Reservation
    from heshi.guard.stage import Inbound
    from heshi.routing.router import RoutePlan
    from heshi.store.keys import ApiKey

Endpoint = Literal["chat", "completions", "embeddings", "rerank", "guard", "docs", "-"]


@dataclass(slots=True)
class Sizing:
    """What admission reserved for a request, and how it counted it."""

    prompt: int = 0  # prompt tokens reserved
    completion: int = 0  # completion tokens reserved
    exact: bool = False  # the prompt was counted with the engine's own tokenizer

    @property
    def total(self) -> int:
        """Tokens reserved in all."""
        return self.prompt + self.completion


@dataclass(slots=True)
class Usage:
    """What a request cost, as the backend reported it or as Heshi counted it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0  # reported, or estimated from the answer's text
    reported_prompt: bool = False  # the backend said how long the prompt was
    reported_completion: bool = False  # the backend said how many tokens it generated
    # The streamed text received, in tokens estimated from above: what is charged when a
    # stream ends before its usage was reported.
    text_tokens: int = 0

    def report(self, usage: Any) -> None:
        """Take an OpenAI ``usage`` object as the truth (a later report replaces it)."""
        if not isinstance(usage, dict):
            return
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if isinstance(prompt, int) and prompt > 0:
            self.prompt_tokens, self.reported_prompt = prompt, True
        if isinstance(completion, int) and completion >= 0:
            self.completion_tokens, self.reported_completion = completion, True


@dataclass(eq=False)
class Exchange:
    """Everything Heshi knows about one request. See the module docstring."""

    endpoint: Endpoint
    received: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: f"req_{uuid.uuid4().hex}")
    client_ip: str | None = None
    internal: bool = False  # a request Heshi makes itself (the guard model's)
    # An internal request following work already done (the guard judging an answer that
    # was generated and charged): it reserves nothing and is charged what it used, so a
    # budget it would overrun by a classifier call does not withhold a paid-for answer.
    must_run: bool = False
    # -- who is asking
    key: ApiKey | None = None
    authenticated: bool = False  # the caller passed authentication (or none was needed)
    # -- what is asked
    body: JSON = field(default_factory=dict)
    model: str = "-"  # the public name asked for
    stream: bool = False
    include_usage: bool = False  # the client asked for the usage chunk of a stream
    plan: RoutePlan | None = None
    # -- admission
    sizing: Sizing = field(default_factory=Sizing)
    reservation: Reservation | None = None  # tokens
    spend: Reservation | None = None  # micro-yuan, in the money budgets
    # -- what happened
    route: RouteFacts = field(default_factory=RouteFacts)
    guard: Inbound | None = None
    guard_header: str | None = None  # x-heshi-guard
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    produce_id: str | None = None  # the AIGC label's ProduceID of the answer
    generated: bool = False  # a backend started answering: its work is charged
    usage: Usage = field(default_factory=Usage)
    # the control of a whole (non-streamed) answer: stops it when the client leaves and
    # holds what the engine did, to charge a stopped answer (``engines.base.CallControl``)
    control: CallControl = field(default_factory=CallControl)
    first_token_at: float | None = None
    status: int = 200
    reason: str = "ok"
    finished: bool = False
    in_flight: bool = False  # counted in the in-flight gauge
    children: int = 0  # internal requests made for this one (guard-model calls)
    span: Any = None  # the request's trace span, when tracing is enabled

    @property
    def tenant(self) -> str:
        """The caller's tenant, ``-`` without a key."""
        return self.key.tenant if self.key is not None else "-"

    @property
    def key_id(self) -> str | None:
        """The caller's key id, None without a key."""
        return self.key.id if self.key is not None else None

    def child(self, endpoint: Endpoint, *, internal: bool = True) -> Exchange:
        """A request made on behalf of this one, charged to the same caller: internal (the
        guard model's), or ``internal=False`` for one that goes the public way."""
        self.children += 1
        return Exchange(
            endpoint=endpoint,
            request_id=f"{self.request_id}.{endpoint}{self.children}",
            client_ip=self.client_ip,
            internal=internal,
            must_run=self.generated,
            key=self.key,
            authenticated=True,
        )

    def fail(self, exc: BaseException) -> None:
        """Record how the request failed (status and reason), once: the first cause wins."""
        if self.status >= 400:
            return
        if isinstance(exc, HeshiError):
            self.status, self.reason = exc.status_code, exc.reason
        elif isinstance(exc, anyio.get_cancelled_exc_class()):
            self.status, self.reason = 499, "client_gone"
        else:
            self.status, self.reason = 500, "internal_error"

    def charged(self) -> tuple[int, int]:
        """(prompt, completion) tokens to charge.

        Nothing when no backend started answering (refused, failed before the first
        byte). Otherwise what the backend reported, and where it did not report (a stream
        abandoned or cut before its usage chunk): the prompt as reserved and the text
        received, in tokens estimated from above.
        """
        if not self.generated:
            return 0, 0
        usage = self.usage
        prompt = usage.prompt_tokens if usage.reported_prompt else self.sizing.prompt
        if usage.reported_completion:
            return prompt, usage.completion_tokens
        return prompt, max(usage.completion_tokens, usage.text_tokens)

    def response_headers(self) -> dict[str, str]:
        """The headers every answer carries: request id, the route taken, the guard's
        verdict and what stages added (AIGC labels)."""
        out = {"x-request-id": self.request_id}
        if self.route.route:
            out["x-heshi-backend"] = self.route.backend_header
            out["x-heshi-route"] = self.route.route
        if self.guard_header is not None:
            out["x-heshi-guard"] = self.guard_header
        out.update(self.headers)
        return out
