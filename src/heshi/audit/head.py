"""The audit key, and the chain's head kept outside the database.

**The key.** ``HESHI_AUDIT_KEY`` (at least 32 bytes) when set — every gateway replica
writing one database must have the same one. Otherwise ``$HESHI_HOME/audit.key``: a
random key the first gateway to start on this machine writes (mode 0600) and every
process with the same home reads. Whoever can read it can sign records: keep it off the
database host, or set the variable from a secret store.

**The head.** Signatures stop a forger who lacks the key from rewriting or appending,
but deleting the newest records leaves a shorter chain that is still whole. So after each
batch it writes, the gateway notes the newest record it wrote — its ``seq`` and ``hash``,
signed — in a file of the home, outside the database (:func:`head_path`: one per
database, so work against another database never touches this one's). ``heshi audit verify``
then finds the record the head names: gone is ``truncated``, different is
``head_mismatch``. The file's signature is HMAC-SHA256 under the audit key over
``{"hash", "kind": "head", "seq"}`` in canonical JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from heshi.audit.records import canonical_json, checked_key
from heshi.config import home_database_url

KEY_ENV = "HESHI_AUDIT_KEY"
KEY_FILE = "audit.key"
HEAD_FILE = "audit-head.json"
HEADS_DIR = "audit-heads"


def store_identity(url: URL | str) -> str:
    """Which database ``url`` names, without its password: ``sqlite:///<absolute path>``,
    or ``<backend>://<user>@<host>:<port>/<database>`` (the driver left out)."""
    parsed = make_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        name = parsed.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            name = str(Path(name).expanduser().resolve())
        return f"sqlite:///{name}"
    return (
        f"{backend}://{parsed.username or ''}@{parsed.host or ''}:{parsed.port or ''}"
        f"/{parsed.database or ''}"
    )


def head_path(home: Path, url: URL | str) -> Path:
    """The head file of the database at ``url``: ``home/audit-head.json`` for the home's
    own database (``home/heshi.db``, the default store), else
    ``home/audit-heads/<first 16 hex of SHA-256 of store_identity(url)>.json``. One file
    per database: a gateway or command run against another database neither reads nor
    moves this one's head."""
    identity = store_identity(url)
    if identity == store_identity(home_database_url(home)):
        return home / HEAD_FILE
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return home / HEADS_DIR / f"{digest}.json"


def audit_key(home: Path, *, create: bool = False) -> bytes | None:
    """The audit key: ``HESHI_AUDIT_KEY``, else ``home/audit.key`` — written with a new
    random key when ``create`` and there is none yet; ``None`` when neither exists."""
    value = os.environ.get(KEY_ENV)
    if value:
        return checked_key(value, zh="读取审计密钥", en="reading the audit key")
    path = home / KEY_FILE
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        if not create:
            return None
        home.mkdir(parents=True, exist_ok=True)
        text = secrets.token_hex(32)
        fd, tmp = tempfile.mkstemp(prefix=".audit.key.", dir=home)  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)  # whole or not at all; the first process to link wins
        except FileExistsError:
            text = path.read_text("utf-8").strip()
        finally:
            Path(tmp).unlink(missing_ok=True)
    return checked_key(text, zh=f"读取 {path}", en=f"reading {path}")


@dataclass(frozen=True)
class Head:
    """The newest record a gateway on this machine wrote."""

    seq: int
    hash: str


def head_signature(key: bytes, seq: int, digest: str) -> str:
    """HMAC-SHA256 hex over ``{"hash", "kind": "head", "seq"}`` in canonical JSON."""
    payload = canonical_json({"kind": "head", "seq": seq, "hash": digest})
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


class HeadInvalid(Exception):
    """The head file cannot be read or its signature does not verify."""


def read_head(path: Path, key: bytes) -> Head | None:
    """The head ``path`` holds; ``None`` when there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HeadInvalid(f"{path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
        head = Head(int(data["seq"]), str(data["hash"]))
        signature = str(data["signature"])
    except Exception as exc:
        raise HeadInvalid(f"{path}: not a head file ({type(exc).__name__})") from exc
    if not hmac.compare_digest(head_signature(key, head.seq, head.hash), signature):
        raise HeadInvalid(f"{path}: signature does not verify under the audit key")
    return head


def write_head(path: Path, key: bytes, head: Head, *, store: str | None = None) -> None:
    """Note ``head`` in ``path`` (replaced whole, never half-written) unless the file
    already names a later record. Several processes may share the file: a lock file
    beside it orders them, and each moves it forward only. ``store`` (unsigned, for
    people reading the file) names the database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        with contextlib.suppress(HeadInvalid):
            known = read_head(path, key)
            if known is not None and known.seq >= head.seq:
                return
        body: dict[str, object] = {"seq": head.seq, "hash": head.hash,
                "signature": head_signature(key, head.seq, head.hash)}  # fmt: skip
        if store is not None:
            body["store"] = store
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive lock on ``lock`` (flock, where the system has it)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: the forward-only rule alone
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
