"""The ``pricing`` section of ``heshi.yaml``: what tokens cost, so spend is in money.

Prices are CNY per million tokens, keyed by the model name clients send (an alias, a
local model, ``kb:NAME``). A request's cost is fixed when its ledger row is written, at
the prices of that moment, in micro-yuan (one millionth of a yuan, an integer): with the
price per million tokens that is exactly ``tokens × price``. Models without a price cost
nothing in these figures. Local hardware costs the same whether it is busy or idle, so it
is a cost per hour shown beside the per-request spend, never spread over requests.
"""

from __future__ import annotations

from pydantic import Field

from heshi.config.base import Strict


class ModelPrice(Strict):
    """CNY per million tokens."""

    input: float = Field(ge=0, le=100_000)
    output: float = Field(ge=0, le=100_000)

    def micro_yuan(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The cost of one request in micro-yuan (CNY × 10⁻⁶)."""
        return round(prompt_tokens * self.input + completion_tokens * self.output)


class PricingConfig(Strict):
    """Prices per model and the local hardware's cost per hour."""

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    local_cost_per_hour: float | None = Field(default=None, ge=0)  # e.g. server lease + power
