"""The admin API's request and response models: they are its OpenAPI schema."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from heshi.admin.tokens import AdminToken
from heshi.store.keys import ApiKey

Label = Annotated[str, Field(min_length=1, max_length=64)]


class WhoAmI(BaseModel):
    name: str
    role: Literal["admin", "auditor"]
    via: str


class KeyOut(BaseModel):
    id: str
    tenant: str
    name: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    status: Literal["active", "suspended", "revoked"]
    status_reason: str | None
    models: list[str] | None = Field(description="allowed models; null = every model")
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    budget_cny: float | None = Field(description="lifetime spend limit in yuan; null = none")
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, key: ApiKey) -> "KeyOut":
        return cls(
            id=key.id,
            tenant=key.tenant,
            name=key.name,
            prefix=key.prefix,
            status=key.status,
            status_reason=key.status_reason,
            models=None if key.models is None else list(key.models),
            rpm=key.rpm,
            tpm=key.tpm,
            budget_tokens=key.budget_tokens,
            budget_cny=key.budget_cny,
            expires_at=key.expires_at,
            created_at=key.created_at,
            updated_at=key.updated_at,
        )


ModelLabel = Annotated[str, Field(min_length=1, max_length=128)]
BIG = 2**62  # beyond any real limit, within a signed 64-bit column


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # misspelt or mistyped: refused

    tenant: Label
    name: Label
    models: Annotated[list[ModelLabel], Field(max_length=256)] | None = None
    rpm: int | None = Field(default=None, ge=1, le=BIG)
    tpm: int | None = Field(default=None, ge=1, le=BIG)
    budget_tokens: int | None = Field(default=None, ge=0, le=BIG)
    budget_cny: Annotated[float, Field(strict=False, ge=0, le=1e9, allow_inf_nan=False)] | None = (
        None
    )
    expires_at: Annotated[datetime, Field(strict=False)] | None = None

    @field_validator("expires_at")
    @classmethod
    def _sane(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 2000 <= value.year <= 2200:
            raise ValueError("expires_at must be between the years 2000 and 2200")
        return value


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, never stored")
    first_key: bool = Field(
        default=False,
        description="true when this was the database's first key: from now on every gateway "
        "on it requires a key on /v1 (unless started --open)",
    )


class Suspend(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    reason: Annotated[str, Field(max_length=500)] | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    role: Literal["admin", "auditor"]
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: AdminToken) -> "TokenOut":
        return cls(**{k: getattr(token, k) for k in cls.model_fields})


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    name: Label
    role: Literal["admin", "auditor"] = "auditor"


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, never stored")


class UsageGroup(BaseModel):
    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int
    mean_latency_ms: float | None
    mean_ttft_ms: float | None
    cost: float | None = Field(description="spend in the pricing currency; null: unpriced")


class AuditRecordOut(BaseModel):
    seq: int
    ts: datetime
    tenant: str | None
    key_id: str | None
    request_id: str | None
    client_ip: str | None
    input: str | None
    output: str | None
    verdicts: list[dict[str, str]]
    policy_version: str | None
    produce_id: str | None
    hash: str


class AuditIssue(BaseModel):
    seq: int
    kind: str
    detail: str
    explained: str


class VerifyOut(BaseModel):
    intact: bool
    records: int
    signed_records: int
    checkpoints: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    issue_count: int
    issues: list[AuditIssue]
    summary: str


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=256)]


class SessionOut(BaseModel):
    name: str
    role: Literal["admin", "auditor"]
    csrf: str = Field(description="send it back in the x-heshi-csrf header on every change")
    expires_at: datetime


class PriceOut(BaseModel):
    input: float = Field(description="per million input tokens")
    output: float = Field(description="per million output tokens")


class PricingOut(BaseModel):
    currency: str
    models: dict[str, PriceOut]
    local_cost_per_hour: float | None
