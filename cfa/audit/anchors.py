"""Signed anchors: the chain head, Ed25519-signed, in an append-only file outside the database.

The hash chain (:mod:`cfa.audit.chain`) is unkeyed: whoever can write the database can rewrite
every row after an edit with fresh hashes, or cut rows off the end, and the chain still checks
out. An **anchor** records, outside the database, what the chain looked like at a moment — its
last seq and head hash — signed with a key the database does not hold. ``cfa audit verify
--anchors FILE`` compares them (:func:`check_anchors`).

**The anchor file** (default ``<db>.anchors``, next to the database) holds one JSON object per
line (compact, keys sorted, ASCII), appended under an exclusive ``flock``, each ``fsync``-ed::

    {"db": "cfa.db", "first": "<hash of seq 1>", "hash": "<head hash>", "host": "...",
     "key_id": "<16 hex>", "kind": "checkpoint", "pid": 4242, "prev": "<sha256 of line before>",
     "public_key": "<base64 raw Ed25519>", "rows": 1234, "run_id": "...", "seq": 1234,
     "sig": "<base64 Ed25519 signature>", "ts": "2026-05-14T04:38:08.123Z",
     "ts_ms": 1778733488123, "v": 1, "writer": "<8 hex, one per open store>"}

* ``kind`` — ``open`` (the head found when a store opened the file), ``checkpoint`` (a flush
  advanced the chain; at most one per ``interval`` seconds, default 5), ``end`` (a run ended),
  ``close`` (the store closed cleanly: this writer adds nothing after it);
* ``seq`` = ``rows`` — the chain's last seq, which is also its row count (seqs run 1..n);
  ``hash`` its hash; ``first`` the hash of seq 1 (null while the chain is empty);
* ``ts``/``ts_ms`` — wall clock (UTC) when the anchor was written, never the simulated clock;
* ``public_key``/``key_id`` — the signing key (so the file can be checked on its own);
  ``prev`` — SHA-256 (hex) of the previous line's bytes (64 zeros on the first line), so lines
  removed, inserted or reordered inside the file are detected;
* ``sig`` — Ed25519 over the line's canonical JSON without ``sig``.

**The key** is an Ed25519 private key, PEM (PKCS#8), created on first use with mode 0600 in a
0700 directory: ``$CFA_ANCHOR_KEY`` if set, else ``$XDG_CONFIG_HOME/cfa/anchor.key`` (default
``~/.config/cfa/anchor.key``) — deliberately not next to the database, so a copy of the
database directory does not carry the key. A key file readable by group or others is refused.
Pin the public key (``cfa audit key`` prints it) with ``cfa audit verify --public-key`` so an
anchor file rewritten with someone else's key is caught; see ``docs/audit.md``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from cfa.audit import postgres
from cfa.audit.chain import (
    GENESIS,
    ChainHead,
    VerifyResult,
    connect_readonly,
    store_name,
    verify,
)
from cfa.audit.errors import DB_ERRORS, AuditError, AuditIntegrityError
from cfa.audit.schema import chained_tables, quote_ident

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VERSION: Final = 1
KEY_ENV: Final = "CFA_ANCHOR_KEY"
DEFAULT_INTERVAL_S: Final = 5.0
"""Checkpoint anchors are written at most this often, wall seconds."""
KINDS: Final = ("open", "checkpoint", "end", "close")
_FIELDS: Final = (
    "v",
    "kind",
    "run_id",
    "seq",
    "rows",
    "hash",
    "first",
    "ts",
    "ts_ms",
    "public_key",
    "key_id",
    "prev",
    "writer",
    "sig",
)
_TAIL_BYTES: Final = 16_384


# --- keys ------------------------------------------------------------------------------------


def default_key_path() -> Path:
    """``$CFA_ANCHOR_KEY``, else ``$XDG_CONFIG_HOME/cfa/anchor.key`` (``~/.config/...``)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "cfa" / "anchor.key"


def default_anchor_path(db: str | os.PathLike[str]) -> Path:
    """The anchor file of the database at ``db``: ``<db>.anchors`` next to a SQLite file; for a
    PostgreSQL URL ``<host>-<database>[-<schema>].anchors`` in the working directory (anchors
    belong outside the database, on the host that signs them)."""
    text = os.fspath(db)
    if postgres.is_url(text):
        return Path(f"{postgres.slug(text)}.anchors")
    return Path(f"{text}.anchors")


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key_b64: str) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:16]


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> Ed25519PrivateKey:
    """The Ed25519 signing key at ``path`` (default :func:`default_key_path`), created if absent.

    A new key is written as PEM (PKCS#8, unencrypted) with mode 0600, its directory created
    with mode 0700; two processes creating it at once end up with the same key. Raises
    :class:`AuditError` naming the path when the file is readable by group or others, is not an
    Ed25519 key, or cannot be read or written. The key itself never appears in a message.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path) if path is not None else default_key_path()
    if not p.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created by another process meanwhile: use that one
        except OSError as exc:
            raise AuditError(f"cannot create anchor key {str(p)!r}: {exc.strerror}") from None
        else:
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            return key
    try:
        st = p.stat()
        if not stat.S_ISREG(st.st_mode):
            raise AuditError(f"anchor key {str(p)!r} is not a file")
        if st.st_mode & 0o077:
            raise AuditError(
                f"anchor key {str(p)!r} is readable by others (mode {st.st_mode & 0o777:o}); "
                f"run: chmod 600 {p}"
            )
        data = p.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read anchor key {str(p)!r}: {exc.strerror}") from None
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise AuditError(f"anchor key {str(p)!r} is not an unencrypted PEM private key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditError(f"anchor key {str(p)!r} is not an Ed25519 key")
    return loaded


def public_key_of(key: Ed25519PrivateKey) -> str:
    """The public half of ``key``: base64 of its 32 raw bytes (what anchors record)."""
    return base64.b64encode(_raw_public(key)).decode()


def parse_public_key(text: str) -> str:
    """A pinned public key given by the user: base64 of the 32 raw bytes (as ``cfa audit key``
    prints it), a PEM public key, or the path of a file holding either. Returns the base64 form;
    :class:`AuditError` when it is none of these."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    value = text.strip()
    with contextlib.suppress(OSError, ValueError):
        p = Path(value).expanduser()
        if len(value) < 4096 and p.is_file():
            value = p.read_text().strip()
    if "BEGIN" in value:
        try:
            pub = serialization.load_pem_public_key(value.encode())
        except ValueError:
            raise AuditError("--public-key: not a readable PEM public key") from None
        if not isinstance(pub, Ed25519PublicKey):
            raise AuditError("--public-key: not an Ed25519 public key")
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    value = value.removeprefix("ed25519:")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise AuditError(
            "--public-key: expected base64 of a 32-byte Ed25519 key (see `cfa audit key`), "
            "a PEM public key, or a file holding one"
        )
    return base64.b64encode(raw).decode()


# --- lines -----------------------------------------------------------------------------------


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes an anchor's signature covers / a line holds: compact, sorted, ASCII JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@contextlib.contextmanager
def _shared_lock(f: Any) -> Iterator[None]:
    """Hold a shared ``flock`` on open file ``f``: no append is half-way while we read."""
    if fcntl is None:
        yield
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _tail(path: Path, *, locked: bool = False) -> tuple[bytes | None, bool]:
    """The last complete line of ``path`` (without its newline) and whether the file ends with
    a newline (False: a torn last write). ``locked``: the caller holds the file's lock."""
    try:
        with open(path, "rb") as f, contextlib.nullcontext() if locked else _shared_lock(f):
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None, True
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            data = f.read()
            while b"\n" not in data[:-1] and start > 0:  # a line longer than the window
                start = max(0, start - _TAIL_BYTES)
                f.seek(start)
                data = f.read()
    except FileNotFoundError:
        return None, True
    ends = data.endswith(b"\n")
    lines = data.split(b"\n")
    if ends:
        lines.pop()
    if not ends:
        lines.pop()  # the torn piece
    lines = [ln for ln in lines if ln.strip()]
    return (lines[-1] if lines else None), ends


class AnchorLog:
    """Appends signed anchors to one anchor file. Thread-safe; several processes may share a
    file (appends are serialised with ``flock``). Create with :meth:`open`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        key: Ed25519PrivateKey,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        key_path: Path | None = None,
    ) -> None:
        if not interval >= 0:
            raise AuditError(f"anchor interval must be >= 0 seconds, got {interval!r}")
        self.path = Path(path)
        self.key_path = key_path
        self.interval = interval
        """Checkpoints at most this often (wall seconds; 0: at every flush)."""
        self._key = key
        self.public_key = public_key_of(key)
        self.key_id = key_id(self.public_key)
        self.writer = secrets.token_hex(4)
        """Identifies this log's appends (one per open store) in the file."""
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.written = 0
        self.seconds = 0.0
        """Wall time spent in :meth:`append` (signing, writing, fsync), total."""

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key_path: str | os.PathLike[str] | None = None,
        *,
        interval: float = DEFAULT_INTERVAL_S,
    ) -> AnchorLog:
        """An anchor log writing to ``path`` and signing with the key at ``key_path`` (default
        :func:`default_key_path`, created on first use). Raises :class:`AuditError` naming the
        path when the key cannot be used or the anchor file's directory does not exist."""
        kp = Path(key_path) if key_path is not None else default_key_path()
        key = load_or_create_key(kp)
        p = Path(path)
        if not p.parent.is_dir():
            raise AuditError(
                f"cannot write anchor file {str(p)!r}: directory {str(p.parent)!r} does not exist"
            )
        if p.is_dir():
            raise AuditError(f"cannot write anchor file {str(p)!r}: it is a directory")
        return cls(p, key, interval=interval, key_path=kp)

    def last(self) -> dict[str, Any] | None:
        """The last anchor in the file, parsed but not checked (None if the file has none).
        Raises :class:`AuditIntegrityError` when the last line is not an anchor."""
        line, _ = _tail(self.path)
        if line is None:
            return None
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not all(k in obj for k in _FIELDS):
            raise AuditIntegrityError(f"anchor file {str(self.path)!r}: last line is not an anchor")
        return obj

    def append(
        self,
        kind: Literal["open", "checkpoint", "end", "close"],
        head: ChainHead,
        *,
        run_id: str | None,
        first: str | None,
        db: str,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Sign and append one anchor of ``head``; returns it. ``now``: wall epoch seconds.

        Durable when this returns (written with one ``write`` and ``fsync``-ed). Raises
        :class:`AuditError` naming the file when it cannot be written (e.g. the disk is full).
        """
        if kind not in KINDS:
            raise AuditError(f"anchor kind must be one of {KINDS}, not {kind!r}")
        t0 = time.perf_counter()
        ts_ms = round((time.time() if now is None else now) * 1000)
        with self._lock:
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                fd = self._fd
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    prev_line, clean = _tail(self.path, locked=True)
                    body: dict[str, Any] = {
                        "v": VERSION,
                        "kind": kind,
                        "run_id": run_id,
                        "seq": head.seq,
                        "rows": head.seq,
                        "hash": head.hash,
                        "first": first,
                        "db": db,
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "ts": _iso(ts_ms / 1000),
                        "ts_ms": ts_ms,
                        "public_key": self.public_key,
                        "key_id": self.key_id,
                        "prev": GENESIS if prev_line is None else _line_hash(prev_line),
                        "writer": self.writer,
                    }
                    sig = base64.b64encode(self._key.sign(canonical(body))).decode()
                    line = canonical({**body, "sig": sig}) + b"\n"
                    os.write(fd, line if clean else b"\n" + line)
                    os.fsync(fd)
                finally:
                    if fcntl is not None:
                        fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as exc:
                raise AuditError(
                    f"cannot write anchor file {str(self.path)!r}: {exc.strerror or exc}"
                ) from None
            self.written += 1
            self.seconds += time.perf_counter() - t0
        return {**body, "sig": sig}

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def first_hash(conn: Any) -> str | None:
    """The hash of the chain's row with seq 1 (None when the chain is empty); after a
    retention cut, the one recorded for the archived row 1 (:mod:`cfa.audit.cut`)."""
    for t in chained_tables(conn):
        r = conn.execute(f"SELECT hash FROM {quote_ident(t)} WHERE seq = 1").fetchone()
        if r is not None:
            return str(r[0])
    from cfa.audit.cut import original_first_hash

    return original_first_hash(conn)


def recorded_anchor_file(conn: Any) -> tuple[str, str] | None:
    """``(anchor file, key id)`` that the latest anchored run of the file recorded in its start
    row (``audit_anchors``: ``file``, ``signer``, ``signer_pub``), or None when none did."""
    try:
        rows = conn.execute(
            "SELECT payload FROM runs WHERE kind = 'start' AND payload LIKE ? ORDER BY seq DESC",
            ['%"audit_anchors"%'],
        )
        for (payload,) in rows:
            try:
                rec = json.loads(payload).get("audit_anchors") or {}
            except (ValueError, AttributeError):
                continue
            if isinstance(rec, dict) and rec.get("file") is not None:
                return str(rec["file"]), str(rec.get("signer"))
    except DB_ERRORS:
        return None
    return None


def check_open(conn: Any, db: str, log: AnchorLog, head: ChainHead) -> None:
    """What an anchored writer checks when it opens ``db``: the anchor file's last anchor (if
    any) still matches the file, and an anchor file the database says it was anchored to has
    not vanished. O(1) in the size of both. Raises :class:`AuditIntegrityError` otherwise."""
    hint = (
        f"check with `cfa audit verify --db {db} --anchors {log.path}`; if {db} was replaced "
        f"on purpose, move {log.path} aside"
    )
    last = log.last()
    if last is None:
        rec = recorded_anchor_file(conn)
        if rec is not None and Path(rec[0]).resolve() == log.path.resolve():
            raise AuditIntegrityError(
                f"anchor file {str(log.path)!r} is missing or empty, but runs in {db} were "
                f"anchored to it (key {rec[1]}): deleted? Restore it, or pass another anchor "
                "file to start a new one"
            )
        return
    seq, want = int(last["seq"]), str(last["hash"])
    where = f"its last signed anchor ({log.path}, seq {seq}, {last['ts']})"
    if seq > head.seq:
        raise AuditIntegrityError(
            f"{db} ends at seq {head.seq} but {where} covers seq {seq}: rows cut from the end? "
            + hint
        )
    if seq == 0:
        return
    got = None
    for t in chained_tables(conn):
        r = conn.execute(f"SELECT hash FROM {quote_ident(t)} WHERE seq = ?", (seq,)).fetchone()
        if r is not None:
            got = r[0]
            break
    if got != want:
        raise AuditIntegrityError(f"{db} does not match {where}: the chain was rewritten? " + hint)


# --- reading and checking --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchor line, parsed (``line`` is 1-based)."""

    line: int
    kind: str
    run_id: str | None
    seq: int
    hash: str
    first: str | None
    ts: str
    key_id: str
    public_key: str
    writer: str
    data: dict[str, Any] = field(repr=False)


Level = Literal["fail", "warn", "note"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of :func:`check_anchors`: ``level`` fail (the trail is not what was signed),
    warn (not contradicted, but not covered either) or note; ``kind`` a stable keyword;
    ``message`` one line for people; ``first_seq``..``last_seq`` the rows concerned."""

    level: Level
    kind: str
    message: str
    first_seq: int | None = None
    last_seq: int | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class AnchorCheck:
    """Outcome of :func:`check_anchors`."""

    anchors: int
    """Anchor lines that parsed and carried a valid signature."""
    matched: int
    """Of those, how many the database matches."""
    keys: tuple[str, ...]
    """Key ids that signed the file, in order of first appearance."""
    last: Anchor | None
    findings: tuple[Finding, ...]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No ``fail`` finding."""
        return not any(f.level == "fail" for f in self.findings)

    def of(self, level: Level) -> list[Finding]:
        return [f for f in self.findings if f.level == level]


def _verify_sig(public_key: str, obj: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        sig = base64.b64decode(str(obj["sig"]), validate=True)
        body = {k: v for k, v in obj.items() if k != "sig"}
        pub.verify(sig, canonical(body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _lines(path: Path) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f, _shared_lock(f):
        data = f.read()
    return [
        (i, raw)
        for i, raw in enumerate(data.split(b"\n")[: -1 if data.endswith(b"\n") else None], 1)
    ]


def read_anchors(
    path: str | os.PathLike[str], public_key: str | None = None
) -> tuple[list[Anchor], list[Finding]]:
    """Parse and authenticate every line of the anchor file at ``path``.

    Each line must be an anchor (see the module doc) with a valid signature by the key it names
    — or by ``public_key`` (base64, :func:`parse_public_key`) when one is pinned — and must
    name the SHA-256 of the line before it in ``prev``. Returns the anchors that passed and a
    ``fail`` finding per line that did not. Raises :class:`AuditError` when the file cannot be
    read (a missing file: "deleted?").
    """
    p = Path(path)
    if not p.is_file():
        raise AuditError(
            f"anchor file {str(p)!r} does not exist (deleted or moved?); without it a rewrite "
            "or cut of the chain cannot be told from the original"
        )
    anchors: list[Anchor] = []
    findings: list[Finding] = []
    prev_hash = GENESIS
    pinned_id = key_id(public_key) if public_key else None
    last_seq = 0
    try:
        for n, raw in _lines(p):
            expected_prev, prev_hash = prev_hash, _line_hash(raw)
            if not raw.strip():
                findings.append(Finding("fail", "anchor_file", f"line {n} is empty", line=n))
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or not all(k in obj for k in _FIELDS):
                findings.append(
                    Finding("fail", "anchor_file", f"line {n} is not an anchor (edited?)", line=n)
                )
                continue
            if obj["kind"] not in KINDS or not isinstance(obj["seq"], int):
                findings.append(
                    Finding("fail", "anchor_file", f"line {n} is not an anchor (edited?)", line=n)
                )
                continue
            signer = str(obj["public_key"])
            if public_key is not None and signer != public_key:
                findings.append(
                    Finding(
                        "fail",
                        "pinned_key",
                        f"line {n} is signed by key {obj['key_id']}, not the pinned key "
                        f"{pinned_id}: the anchor file was rewritten or extended with another key",
                        line=n,
                    )
                )
                continue
            if not _verify_sig(signer, obj) or key_id(signer) != obj["key_id"]:
                findings.append(
                    Finding(
                        "fail",
                        "signature",
                        f"line {n}: the signature does not match its content (edited?)",
                        line=n,
                    )
                )
                continue
            if obj["prev"] != expected_prev:
                what = (
                    "lines before it were removed"
                    if n == 1
                    else f"it does not follow line {n - 1}: lines removed, inserted or reordered"
                )
                findings.append(Finding("fail", "anchor_file", f"line {n}: {what}", line=n))
            if obj["seq"] < last_seq:
                findings.append(
                    Finding(
                        "fail",
                        "anchor_file",
                        f"line {n} anchors seq {obj['seq']} after an anchor of seq {last_seq}: "
                        "the chain went backwards (cut and refilled?)",
                        obj["seq"],
                        last_seq,
                        n,
                    )
                )
            last_seq = max(last_seq, int(obj["seq"]))
            anchors.append(
                Anchor(
                    n,
                    str(obj["kind"]),
                    obj["run_id"],
                    int(obj["seq"]),
                    str(obj["hash"]),
                    obj["first"],
                    str(obj["ts"]),
                    str(obj["key_id"]),
                    signer,
                    str(obj["writer"]),
                    obj,
                )
            )
    except OSError as exc:
        raise AuditError(f"cannot read anchor file {str(p)!r}: {exc.strerror or exc}") from None
    return anchors, findings


def _hashes_at(conn: Any, seqs: Sequence[int]) -> dict[int, str]:
    want = sorted(set(seqs))
    out: dict[int, str] = {}
    for t in chained_tables(conn):
        for i in range(0, len(want), 500):  # portable IN lists, under SQLite's variable limit
            part = want[i : i + 500]
            marks = ", ".join("?" * len(part))
            for s, h in conn.execute(
                f"SELECT seq, hash FROM {quote_ident(t)} WHERE seq IN ({marks})", part
            ).fetchall():
                out.setdefault(int(s), str(h))
    return out


def _archived_hashes(
    conn: Any, db: str, base: ChainHead, anchors: Sequence[Anchor], have: dict[int, str]
) -> list[Finding]:
    """Fill ``have`` for the anchors of rows archived by a retention cut (seq <= ``base.seq``):
    from the archive files when present (:func:`cfa.audit.cut.archives_of`), the cut's own
    recorded hash for ``base.seq``; anchors of archived rows that no archive present can check
    are accepted (taken as matching) with a note saying so."""
    from cfa.audit.cut import archives_of

    want = sorted({a.seq for a in anchors if 0 < a.seq <= base.seq})
    if not want:
        return []
    have[base.seq] = base.hash
    notes: list[Finding] = []
    unchecked = set(want) - {base.seq}
    for lo, hi, path in archives_of(conn, db):
        part = [s for s in want if lo <= s <= hi]
        if not part:
            continue
        if path is None:
            notes.append(
                Finding(
                    "note",
                    "archived",
                    f"{len(part)} anchor(s) of rows {lo}..{hi} not checked: their archive is "
                    "not at hand (rows archived; the cut's recorded hash is checked)",
                    lo,
                    hi,
                )
            )
            continue
        c = connect_readonly(path)
        try:
            got = _hashes_at(c, part)
        finally:
            c.close()
        for s_, h in got.items():
            if s_ != base.seq:
                have[s_] = h
                unchecked.discard(s_)
        notes.append(
            Finding(
                "note",
                "archived",
                f"anchors of rows {lo}..{hi} checked against the archive {path}",
                lo,
                hi,
            )
        )
    for s_ in unchecked:  # no archive at hand for them: accepted, as the notes say
        for a in anchors:
            if a.seq == s_:
                have[s_] = a.hash
                break
    return notes


def _tables_between(conn: Any, lo: int, hi: int) -> str:
    parts = []
    for t in chained_tables(conn):
        n = conn.execute(
            f"SELECT count(*) FROM {quote_ident(t)} WHERE seq BETWEEN ? AND ?", (lo, hi)
        ).fetchone()[0]
        if n:
            parts.append(f"{t} x{n}")
    return ", ".join(parts) or "none"


def _span(lo: int, hi: int) -> str:
    return f"seq {lo}" if lo == hi else f"seq {lo}..{hi}"


def check_anchors(
    db: str | os.PathLike[str],
    anchors_path: str | os.PathLike[str],
    *,
    public_key: str | None = None,
    chain: VerifyResult | None = None,
    writer_alive: bool | None = None,
) -> AnchorCheck:
    """Compare the audit store ``db`` with the signed anchors in ``anchors_path``.

    ``public_key`` pins the signing key (base64; lines signed by another key fail); without it,
    each line is checked against the key it carries. ``chain`` is :func:`verify`'s result for
    ``db`` (computed when omitted); ``writer_alive`` says whether a session is writing the file
    now (:func:`cfa.audit.heartbeat.session_status`; looked up when omitted).

    Findings (see :class:`Finding`), fail unless noted:

    * ``anchor_file``/``signature``/``pinned_key`` — a line that is not an anchor, whose
      signature fails, signed by another than the pinned key, or out of sequence;
    * ``broken_chain`` — the chain itself does not verify (an edit without recomputing hashes):
      the anchors are not compared then;
    * ``rewritten`` — the row at an anchor's seq has another hash: the chain was rewritten from
      a row between the last anchor that still matches and that anchor;
    * ``cut_tail`` — an anchor covers rows beyond the last one: rows removed from the end;
    * ``unanchored_tail`` — rows after the final anchor when every writer had closed (forged, or
      appended by a tool that does not anchor); ``unattested_gap`` — the same between a close
      and the next writer's open;
    * warn ``not_closed`` — the last writer never closed (killed — or the database and the
      anchor file were both cut back to one of its checkpoints), with or without rows after its
      last anchor (still running: a note ``running`` instead); note ``never_closed`` — an
      earlier writer that never closed.

    Raises :class:`AuditError` when either file cannot be read.
    """
    t0 = time.perf_counter()
    dbp = os.fspath(db)
    anchors, findings = read_anchors(anchors_path, public_key)
    keys = tuple(dict.fromkeys(a.key_id for a in anchors))
    if chain is None:
        chain = verify(dbp)
    last = anchors[-1] if anchors else None
    if not anchors:
        if not findings:
            findings.append(
                Finding("fail", "anchor_file", f"anchor file {anchors_path} holds no anchors")
            )
        return AnchorCheck(0, 0, keys, None, tuple(findings), time.perf_counter() - t0)
    if not chain.ok:
        findings.append(
            Finding(
                "fail",
                "broken_chain",
                f"the chain itself is broken at seq {chain.first_bad_seq}; anchors not compared",
                chain.first_bad_seq,
            )
        )
        return AnchorCheck(len(anchors), 0, keys, last, tuple(findings), time.perf_counter() - t0)
    assert chain.head is not None and last is not None
    top = chain.head.seq
    conn = connect_readonly(dbp)
    try:
        have = _hashes_at(conn, [a.seq for a in anchors if 0 < a.seq <= top])
        from cfa.audit.cut import archive_meta

        meta = archive_meta(conn)
        sealed = meta is not None and int(meta["last_seq"]) == top  # nobody writes an archive
        base = chain.base.seq
        if base:
            findings.extend(_archived_hashes(conn, dbp, chain.base, anchors, have))
        db_first = have.get(1) or first_hash(conn)
        matched = 0
        first_bad: Anchor | None = None
        for a in anchors:
            if (a.seq == 0 and a.hash == GENESIS) or (a.seq <= top and have.get(a.seq) == a.hash):
                matched += 1
            elif a.seq <= top and (first_bad is None or a.seq < first_bad.seq):
                first_bad = a
        if first_bad is not None:
            good_below = max(
                (a.seq for a in anchors if a.seq < first_bad.seq and have.get(a.seq) == a.hash),
                default=0,
            )
            lo, hi = good_below + 1, first_bad.seq
            detail = (
                f"rows 1..{good_below} match the anchors" if good_below else "no anchor matches"
            )
            if first_bad.first is not None and db_first != first_bad.first:
                detail += "; even row 1 differs (rewritten from the start, or another database)"
            findings.append(
                Finding(
                    "fail",
                    "rewritten",
                    f"REWRITTEN: the chain was rewritten from a row in {_span(lo, hi)}: {detail}; "
                    f"seq {hi} differs from the anchor of {first_bad.ts} (line {first_bad.line}, "
                    f"run {first_bad.run_id or '-'}), though the rewritten chain is "
                    "self-consistent",
                    lo,
                    hi,
                    first_bad.line,
                )
            )
        beyond = [a for a in anchors if a.seq > top]
        if beyond:
            far = max(beyond, key=lambda a: a.seq)
            findings.append(
                Finding(
                    "fail",
                    "cut_tail",
                    f"CUT: rows {top + 1}..{far.seq} were removed from the end: the anchor of "
                    f"{far.ts} (line {far.line}, run {far.run_id or '-'}) covers seq {far.seq}, "
                    f"the database ends at seq {top}",
                    top + 1,
                    far.seq,
                    far.line,
                )
            )
        # Writers: who had the file open when. Rows appended while none was open are unattested.
        open_writers: dict[str, Anchor] = {}
        covered = 0
        for a in anchors:
            if not open_writers and a.kind in ("open", "checkpoint") and a.seq > covered > 0:
                lo, hi = covered + 1, a.seq
                if not beyond and first_bad is None:
                    findings.append(
                        Finding(
                            "fail",
                            "unattested_gap",
                            f"UNANCHORED: rows {lo}..{hi} ({_tables_between(conn, lo, hi)}) were "
                            f"appended after every anchored writer had closed and before line "
                            f"{a.line} ({a.ts}): forged, or written by a tool that does not "
                            "anchor",
                            lo,
                            hi,
                            a.line,
                        )
                    )
            covered = max(covered, a.seq)
            if a.kind == "close":
                open_writers.pop(a.writer, None)
            else:
                open_writers[a.writer] = a
        last_writer = max(open_writers.values(), key=lambda a: a.line, default=None)
        for w in open_writers.values():
            if w is not last_writer:
                findings.append(
                    Finding(
                        "note",
                        "never_closed",
                        f"the writer of run {w.run_id or '-'} (pid {w.data.get('pid')}, last "
                        f"anchor line {w.line}, {w.ts}) never closed: killed? (rows appended "
                        "after that while it seemed open cannot be told from its own)",
                        line=w.line,
                    )
                )
        if top > covered and not beyond and first_bad is None:
            lo, hi = covered + 1, top
            tables = _tables_between(conn, lo, hi)
            if not open_writers:
                findings.append(
                    Finding(
                        "fail",
                        "unanchored_tail",
                        f"UNANCHORED: rows {lo}..{hi} ({tables}) come after the final anchor "
                        f"(line {last.line}, {last.ts}: every writer had closed at seq "
                        f"{covered}): forged, or appended by a tool that does not anchor",
                        lo,
                        hi,
                        last.line,
                    )
                )
            elif last_writer is not None:
                w = last_writer
                if writer_alive is None:
                    from cfa.audit.heartbeat import session_status

                    writer_alive = session_status(dbp)[0]
                if writer_alive:
                    findings.append(
                        Finding(
                            "note",
                            "running",
                            f"rows {lo}..{hi} are newer than the last anchor: a session is "
                            "writing this file now and anchors them at its next checkpoint",
                            lo,
                            hi,
                        )
                    )
                else:
                    findings.append(
                        Finding(
                            "warn",
                            "not_closed",
                            f"rows {lo}..{hi} ({tables}) come after the last checkpoint of run "
                            f"{w.run_id or '-'} (line {w.line}, {w.ts}), which never closed "
                            "(killed?): not covered by any anchor",
                            lo,
                            hi,
                            w.line,
                        )
                    )
        elif last_writer is not None and not beyond and first_bad is None and sealed:
            findings.append(
                Finding(
                    "note",
                    "archive",
                    f"an archive (rows ..{top}): the writer of run {last_writer.run_id or '-'} "
                    "went on in the live store after the cut",
                    line=last_writer.line,
                )
            )
        elif last_writer is not None and not beyond and first_bad is None:
            if writer_alive is None:
                from cfa.audit.heartbeat import session_status

                writer_alive = session_status(dbp)[0]
            if not writer_alive:
                w = last_writer
                findings.append(
                    Finding(
                        "warn",
                        "not_closed",
                        f"the last anchored writer (run {w.run_id or '-'}, line {w.line}, {w.ts}) "
                        "never closed: it was killed, or the database and the anchor file were "
                        "both cut back to its last checkpoint",
                        line=w.line,
                    )
                )
    except DB_ERRORS as exc:
        raise AuditError(f"cannot read audit store {store_name(dbp)!r}: {exc}") from None
    finally:
        conn.close()
    return AnchorCheck(len(anchors), matched, keys, last, tuple(findings), time.perf_counter() - t0)
