"""What an audit record holds, and how its hash and a checkpoint's signature are computed.

The hash of a record is ``sha256`` over the canonical JSON (sorted keys, UTF-8, no
spaces) of its fields, its sequence number and the previous record's hash
(``prev_hash``). Anyone holding an export can recompute it with ``record_hash``.

A hash chain alone stops no one who can write to the database: rewrite a record,
recompute every later hash, and the chain is whole again. So each record is also signed
(``signature``: HMAC-SHA256 under the audit key over ``{"kind": "record", "seq", "hash"}``
in canonical JSON); without the key no record can be forged, rewritten or appended.

A checkpoint takes the place of the last record removed by retention pruning: it
carries that record's sequence number and hash, so the next record still links to it,
and it is signed with HMAC-SHA256 under a server key because nothing before it remains
to vouch for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from heshi.errors import ConfigError, HeshiError

GENESIS_HASH = "0" * 64  # prev_hash of the very first record
MIN_KEY_BYTES = 32
RECORD: Literal["record"] = "record"
CHECKPOINT: Literal["checkpoint"] = "checkpoint"
VERDICT_FIELDS = ("category", "risk", "level", "action")


class AuditKeyMissing(ConfigError):
    """A checkpoint must be signed or checked but no usable HMAC key was given."""

    code = "audit_key_missing"


class AuditChainBroken(HeshiError):
    """The audit log failed verification where an intact chain is required (pruning)."""

    code = "audit_chain_broken"


@dataclass(frozen=True)
class AuditVerdict:
    """One screening verdict: the category hit, its TC260 risk, a level and the action."""

    category: str
    risk: str
    level: str
    action: str

    @classmethod
    def of(cls, value: AuditVerdict | Mapping[str, Any]) -> AuditVerdict:
        """``value`` itself, or a mapping with exactly the four fields (as strings)."""
        if isinstance(value, AuditVerdict):
            return value
        if set(value) != set(VERDICT_FIELDS) or not all(
            isinstance(value[f], str) for f in VERDICT_FIELDS
        ):
            raise ValueError(
                f"审计结论须为 {{category, risk, level, action}} 字符串 / a verdict needs exactly "
                f"the string fields category, risk, level, action; got {dict(value)!r}"
            )
        return cls(**{f: value[f] for f in VERDICT_FIELDS})

    def as_dict(self) -> dict[str, str]:
        """The verdict as a plain JSON object."""
        return {f: getattr(self, f) for f in VERDICT_FIELDS}


@dataclass(frozen=True)
class AuditEntry:
    """What the caller records about one request. Input and output must be masked already.

    ``ts`` defaults to the time of writing; a batch writer passes the request's own time.
    """

    tenant: str
    request_id: str
    input: str | None = None  # masked prompt text
    output: str | None = None  # masked completion text
    verdicts: Sequence[AuditVerdict | Mapping[str, Any]] = ()
    key_id: str | None = None
    client_ip: str | None = None
    lexicon_version: str | None = None
    policy_version: str | None = None
    model_version: str | None = None
    produce_id: str | None = None  # the GB 45438 label's ProduceID of the answer
    ts: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdicts", tuple(AuditVerdict.of(v) for v in self.verdicts))
        if self.ts is not None and self.ts.tzinfo is None:
            raise ValueError(f"naive datetime {self.ts!r}: use an aware UTC datetime")


@dataclass(frozen=True)
class AuditRecord:
    """One row of the log: a record (``kind="record"``) or a checkpoint."""

    seq: int
    kind: str
    ts: datetime
    hash: str
    prev_hash: str | None = None
    tenant: str | None = None
    key_id: str | None = None
    request_id: str | None = None
    client_ip: str | None = None
    input: str | None = None
    output: str | None = None
    verdicts: list[dict[str, str]] = field(default_factory=list)
    lexicon_version: str | None = None
    policy_version: str | None = None
    model_version: str | None = None
    produce_id: str | None = None
    signature: str | None = None  # HMAC-SHA256 hex under the audit key

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> AuditRecord:
        """A record from a database row (``audit_log`` column names)."""
        return cls(
            seq=int(row["seq"]),
            kind=row["kind"],
            ts=row["ts"],
            hash=row["hash"],
            prev_hash=row["prev_hash"],
            tenant=row["tenant"],
            key_id=row["key_id"],
            request_id=row["request_id"],
            client_ip=row["client_ip"],
            input=row["input"],
            output=row["output"],
            verdicts=list(row["verdicts"] or []),
            lexicon_version=row["lexicon_version"],
            policy_version=row["policy_version"],
            model_version=row["model_version"],
            produce_id=row.get("produce_id"),
            signature=row["signature"],
        )

    def as_json(self) -> dict[str, Any]:
        """Every column as JSON-ready values (times as ISO 8601 UTC)."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "ts": iso(self.ts),
            "tenant": self.tenant,
            "key_id": self.key_id,
            "request_id": self.request_id,
            "client_ip": self.client_ip,
            "input": self.input,
            "output": self.output,
            "verdicts": self.verdicts,
            "lexicon_version": self.lexicon_version,
            "policy_version": self.policy_version,
            "model_version": self.model_version,
            "produce_id": self.produce_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "signature": self.signature,
        }

    def hashed_fields(self) -> dict[str, Any]:
        """The fields a record's hash covers: everything but ``hash`` and ``signature``,
        and ``produce_id`` only when it has a value (records written before it existed
        keep their hashes)."""
        fields = self.as_json()
        del fields["hash"], fields["signature"]
        if fields["produce_id"] is None:
            del fields["produce_id"]
        return fields

    def computed_hash(self) -> str:
        """The hash this record's content should have."""
        return record_hash(self.hashed_fields())


def iso(ts: datetime) -> str:
    """An aware time as ISO 8601 UTC with microseconds (what the hash and exports use)."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 (non-ASCII characters kept as they are)."""
    text = json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8")


def record_hash(fields: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of a record's fields (including ``prev_hash``)."""
    return hashlib.sha256(canonical_json(dict(fields))).hexdigest()


def new_record(
    entry: AuditEntry, *, seq: int, prev_hash: str, now: datetime, key: bytes | None = None
) -> AuditRecord:
    """The record ``entry`` becomes at position ``seq`` after a record hashed
    ``prev_hash``, signed when a ``key`` is given."""
    ts = (entry.ts or now).astimezone(UTC)
    draft = AuditRecord(
        seq=seq,
        kind=RECORD,
        ts=ts,
        hash="",
        prev_hash=prev_hash,
        tenant=entry.tenant,
        key_id=entry.key_id,
        request_id=entry.request_id,
        client_ip=entry.client_ip,
        input=entry.input,
        output=entry.output,
        verdicts=[AuditVerdict.of(v).as_dict() for v in entry.verdicts],
        lexicon_version=entry.lexicon_version,
        policy_version=entry.policy_version,
        model_version=entry.model_version,
        produce_id=entry.produce_id,
    )
    digest = draft.computed_hash()
    signature = None if key is None else sign_record(key, seq, digest)
    return AuditRecord(**{**draft.__dict__, "hash": digest, "signature": signature})


def checked_key(key: bytes | str | None, *, zh: str, en: str) -> bytes:
    """``key`` as bytes; ``AuditKeyMissing`` when it is absent or shorter than 32 bytes."""
    if key is None or not key:
        raise AuditKeyMissing(
            f"{zh}需要审计签名密钥：请设置环境变量 HESHI_AUDIT_KEY，或使用网关所在的 "
            f"HESHI_HOME（其中的 audit.key）/ {en} needs the audit signing key: set "
            f"HESHI_AUDIT_KEY, or use the gateway's HESHI_HOME (its audit.key)"
        )
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) < MIN_KEY_BYTES:
        raise AuditKeyMissing(
            f"审计签名密钥过短（至少 {MIN_KEY_BYTES} 字节）/ the audit signing key is too "
            f"short ({len(raw)} bytes; at least {MIN_KEY_BYTES} needed)"
        )
    return raw


def checkpoint_payload(seq: int, anchor_hash: str, ts: datetime) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return canonical_json({"kind": CHECKPOINT, "seq": seq, "hash": anchor_hash, "ts": iso(ts)})


def sign_checkpoint(key: bytes, seq: int, anchor_hash: str, ts: datetime) -> str:
    """HMAC-SHA256 hex of the checkpoint's payload."""
    return hmac.new(key, checkpoint_payload(seq, anchor_hash, ts), hashlib.sha256).hexdigest()


def sign_record(key: bytes, seq: int, digest: str) -> str:
    """HMAC-SHA256 hex over a record's place and hash: ``{"hash", "kind": "record",
    "seq"}`` in canonical JSON. The hash covers ``prev_hash``, so the signatures vouch
    for the order of the chain as well as each record's content."""
    payload = canonical_json({"kind": RECORD, "seq": seq, "hash": digest})
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, record: AuditRecord) -> bool:
    """Whether a record's or checkpoint's signature is right under ``key``."""
    if record.kind == CHECKPOINT:
        expected = sign_checkpoint(key, record.seq, record.hash, record.ts)
    else:
        expected = sign_record(key, record.seq, record.hash)
    return hmac.compare_digest(expected, record.signature or "")
