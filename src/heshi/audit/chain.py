"""Checking a hash chain row by row, naming every record that does not fit.

Rows are fed in sequence order. After a problem the checker carries on from the stored
values of the offending row, so one edited record is reported once, not once per
record after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from heshi.audit.records import (
    CHECKPOINT,
    GENESIS_HASH,
    AuditRecord,
    checked_key,
    signature_ok,
)

IssueKind = Literal[
    "hash_mismatch",  # the content no longer matches the stored hash: edited
    "broken_link",  # prev_hash is not the hash of the record before it
    "inserted",  # a record the next one does not link to: forged and slipped in
    "gap",  # sequence numbers are missing: deleted
    "bad_signature",  # a record's or checkpoint's HMAC does not verify: forged or rewritten
    "unsigned",  # a record without a signature where the key is known: forged
    "misplaced_checkpoint",  # a checkpoint anywhere but at the start of the log
    "truncated",  # the newest records the head file vouches for are gone
    "head_mismatch",  # the record at the head file's seq is not the one it vouches for
    "bad_head",  # the head file is missing, unreadable or its HMAC does not verify
]
MAX_ISSUES = 1000  # kept in the report; further ones are only counted

_EXPLAIN = {
    "hash_mismatch": "内容与哈希不符（记录被修改）/ hash mismatch: the record was edited",
    "broken_link": "链接断裂 / broken link: prev_hash is not the previous record's hash",
    "inserted": "插入的记录 / inserted record: the next record does not link to it",
    "gap": "序号缺失（记录被删除）/ gap in sequence: records were deleted",
    "bad_signature": "签名无效（记录被伪造或改写）/ bad signature: the record was forged or "
    "rewritten",
    "unsigned": "记录没有签名 / unsigned record: written without the audit key (forged?)",
    "misplaced_checkpoint": "检查点不在日志开头 / checkpoint not at the start of the log",
    "truncated": "最新的记录被删除（若是有意换了新数据库：heshi audit rehead --yes）/ truncated: "
    "the newest records were deleted (a database replaced on purpose: heshi audit rehead --yes)",
    "head_mismatch": "与链头文件不符（若是有意换了新数据库：heshi audit rehead --yes）/ the record "
    "differs from the one the head file vouches for (a database replaced on purpose: heshi "
    "audit rehead --yes)",
    "bad_head": "链头文件无效 / the head file is missing or not signed with the audit key",
}


@dataclass(frozen=True)
class Issue:
    """One problem, at the sequence number of the record it concerns."""

    seq: int
    kind: IssueKind
    detail: str = ""

    def __str__(self) -> str:
        text = f"seq {self.seq}: {_EXPLAIN[self.kind]}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class VerifyReport:
    """What a verification found: counts, where the chain starts and ends, and issues."""

    records: int = 0
    unsigned_before_keying: int = 0  # records written before records were signed
    signed_records: int = 0
    checkpoints: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None  # the newest hash: note it elsewhere to detect truncation
    anchor_seq: int | None = None  # the checkpoint the chain starts from; None = genesis
    issues: list[Issue] = field(default_factory=list)
    issue_count: int = 0  # every issue, including those beyond MAX_ISSUES

    @property
    def intact(self) -> bool:
        """True when no issue was found."""
        return self.issue_count == 0

    def summary(self) -> str:
        """One bilingual line for operators."""
        if self.first_seq is None:
            return "审计日志为空 / the audit log is empty"
        start = (
            f"from checkpoint seq {self.anchor_seq} (检查点)"
            if self.anchor_seq is not None
            else "from genesis (创世)"
        )
        state = (
            "审计日志完整 / audit log intact"
            if self.intact
            else f"审计日志有 {self.issue_count} 个问题 / audit log has {self.issue_count} issues"
        )
        legacy = (
            f"; {self.unsigned_before_keying} written before records were signed "
            "(签名之前写入，仅哈希链校验 / hash chain only)"
            if self.unsigned_before_keying
            else ""
        )
        return (
            f"{state}: {self.records} records, seq {self.first_seq}–{self.last_seq}, "
            f"{start}, head hash {self.head_hash}{legacy}"
        )


class ChainChecker:
    """Feeds rows in ``seq`` order into a ``VerifyReport``.

    ``key`` checks every signature: a record without one, after the first signed record,
    is ``unsigned`` (the ones before it were written before records were signed — an
    upgraded log — and are counted, their hash chain checked; the head file still catches
    a rewrite of them). Without a key only the hashes are checked, and a signed row
    (checkpoint or record) raises
    ``AuditKeyMissing`` rather than passing unchecked.
    """

    def __init__(self, key: bytes | None) -> None:
        self.report = VerifyReport()
        self._key = key
        self._prev: AuditRecord | None = None
        self._before_prev_hash: str | None = None  # the hash prev linked to
        self._seen_signed = False  # a signed record was met: every later one must be

    def feed(self, rec: AuditRecord) -> None:
        """Check ``rec`` against the rows fed before it."""
        report = self.report
        if rec.kind == CHECKPOINT:
            report.checkpoints += 1
        else:
            report.records += 1
        if report.first_seq is None:
            report.first_seq = rec.seq
        report.last_seq, report.head_hash = rec.seq, rec.hash
        if self._prev is None:
            self._start(rec)
        else:
            self._follow(self._prev, rec)
        self._before_prev_hash = self._prev.hash if self._prev else None
        self._prev = rec

    def _start(self, rec: AuditRecord) -> None:
        if rec.kind == CHECKPOINT:
            if self._signed(rec):
                self.report.anchor_seq = rec.seq
            return
        if rec.seq != 1:
            self.issue(
                rec.seq,
                "gap",
                f"seq 1–{rec.seq - 1} missing and no signed checkpoint replaces them / "
                f"缺少 seq 1–{rec.seq - 1} 且无签名检查点",
            )
        elif rec.prev_hash != GENESIS_HASH:
            self.issue(rec.seq, "broken_link", "the first record must link to the genesis hash")
        self._check_hash(rec)

    def _follow(self, prev: AuditRecord, rec: AuditRecord) -> None:
        if rec.seq != prev.seq + 1:
            missing = (
                f"seq {prev.seq + 1}"
                if rec.seq == prev.seq + 2
                else f"seq {prev.seq + 1}–{rec.seq - 1}"
            )
            self.issue(prev.seq + 1, "gap", f"{missing} missing / 缺失")
        elif rec.kind == CHECKPOINT:
            self.issue(rec.seq, "misplaced_checkpoint")
            self._signed(rec)
            return
        elif rec.prev_hash != prev.hash:
            if prev.kind != CHECKPOINT and rec.prev_hash == self._before_prev_hash:
                self.issue(
                    prev.seq,
                    "inserted",
                    f"seq {rec.seq} links to seq {prev.seq - 1}, skipping seq {prev.seq}",
                )
            else:
                self.issue(rec.seq, "broken_link")
        if rec.kind == CHECKPOINT:  # after a gap: a checkpoint still needs its signature
            self._signed(rec)
            return
        self._check_hash(rec)

    def _signed(self, rec: AuditRecord) -> bool:
        key = checked_key(self._key, zh="检查审计检查点", en="checking an audit checkpoint")
        if signature_ok(key, rec):
            return True
        self.issue(rec.seq, "bad_signature")
        return False

    def _check_hash(self, rec: AuditRecord) -> None:
        """The record's content against its hash, and its hash against its signature."""
        computed = rec.computed_hash()
        if computed != rec.hash:
            self.issue(
                rec.seq, "hash_mismatch", f"stored {rec.hash[:12]}…, computed {computed[:12]}…"
            )
        if self._key is None and rec.signature is None:
            return  # an unkeyed log, checked for its hashes only
        if rec.signature is not None:
            self._seen_signed = True
            self.report.signed_records += 1
            self._signed(rec)
        elif self._seen_signed:
            self.issue(rec.seq, "unsigned")
        else:
            self.report.unsigned_before_keying += 1

    def issue(self, seq: int, kind: IssueKind, detail: str = "") -> None:
        self.report.issue_count += 1
        if len(self.report.issues) < MAX_ISSUES:
            self.report.issues.append(Issue(seq, kind, detail))
