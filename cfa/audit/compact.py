"""Compressed JSON columns (``zjson``): the stored bytes of a payload's canonical text.

A ``zjson`` column (:class:`~cfa.audit.encoding.ColType.ZJSON`, SQLite ``BLOB``, PostgreSQL
``BYTEA``) *packs* a ``json`` column of the same table: ``market_events.payload_z`` packs
``market_events.payload``. A row stores its payload in one of the two, never both:

* old rows (and rows written by code that does not compress) hold the canonical JSON text in
  ``payload`` and NULL in ``payload_z``;
* new rows hold NULL in ``payload`` and, in ``payload_z``, the UTF-8 bytes of the *same*
  canonical text compressed: a Zstandard frame (level :data:`ZSTD_LEVEL`, content size in the
  header) when the ``zstandard`` package is present, else a zlib stream (level
  :data:`ZLIB_LEVEL`). Readers tell the two apart by their first bytes (the zstd magic
  ``28 b5 2f fd``; a zlib header's first byte is ``0x?8`` with a valid check), so either decodes
  anywhere the package is installed, and zlib needs only the standard library.

**The chain hashes the content, not the bytes** (:class:`cfa.audit.chain.RowHasher`): before
hashing, a packed value is decompressed into its text column and the ``zjson`` column counts as
NULL. A compressed row therefore hashes exactly like the same row stored as text under the
original rule, and re-compressing it (another codec, level or library version) never changes
its hash. Bytes that do not decompress to valid UTF-8, or a row holding both columns, fail the
row's hash check (``cfa audit verify`` names the row) instead of crashing the verifier.

Compression happens when a batch is committed (:class:`cfa.audit.sink.ChainWriter`, inline or
in the writer process), never at :meth:`AuditStore.append`.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from typing import Any, Final

from cfa.audit.errors import AuditError

try:  # a declared dependency (pyproject); without it new rows are zlib-compressed
    import zstandard as _zstd
except ImportError:  # pragma: no cover
    _zstd = None  # type: ignore[assignment]

ZSTD_LEVEL: Final = 1
"""Zstandard level of new rows: on the 1-market calm hour, 4.0x smaller at ~20 µs per 4.4 kB
row; zlib level 6 gives 4.1x at ~85 µs (``tools/bench_storage.py --codecs``)."""
ZLIB_LEVEL: Final = 6
"""zlib level when ``zstandard`` is not installed."""
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
MAX_TEXT_BYTES: Final = 256 * 1024 * 1024
"""Largest decompressed payload accepted (a corrupt or hostile frame cannot exhaust memory)."""

_local = threading.local()  # zstd (de)compressor objects are not safe to share between threads


def codec() -> str:
    """The codec new rows are written with: ``"zstd"`` or ``"zlib"``."""
    return "zstd" if _zstd is not None else "zlib"


def compress_text(text: str) -> bytes:
    """The stored bytes of canonical JSON ``text`` (see the module doc)."""
    data = text.encode()
    if _zstd is None:
        return zlib.compress(data, ZLIB_LEVEL)
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = _zstd.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    out: bytes = c.compress(data)
    return out


def decompress_text(blob: Any, what: str = "zjson value") -> str:
    """The canonical JSON text stored in ``blob`` (bytes from SQLite or PostgreSQL).

    Raises :class:`AuditError` naming ``what`` when the bytes are not a zstd frame or zlib
    stream, are truncated or corrupt, exceed :data:`MAX_TEXT_BYTES`, or are not UTF-8."""
    if isinstance(blob, memoryview):
        blob = blob.tobytes()
    if not isinstance(blob, bytes):
        raise AuditError(f"{what}: expected compressed bytes, got {type(blob).__name__}")
    try:
        if blob[:4] == ZSTD_MAGIC:
            if _zstd is None:
                raise AuditError(
                    f"{what}: a Zstandard frame, and the zstandard package is not installed"
                )
            d = getattr(_local, "d", None)
            if d is None:
                d = _local.d = _zstd.ZstdDecompressor()
            size = _zstd.frame_content_size(blob)
            if size < 0 or size > MAX_TEXT_BYTES:
                raise AuditError(f"{what}: zstd frame without a plausible content size ({size})")
            data = d.decompress(blob, max_output_size=size)
            if len(data) != size:
                raise AuditError(f"{what}: zstd frame decodes to {len(data)} of {size} bytes")
        else:
            z = zlib.decompressobj()
            data = z.decompress(blob, MAX_TEXT_BYTES)
            if not z.eof or z.unconsumed_tail or z.unused_data:
                raise AuditError(f"{what}: truncated or trailing bytes in the zlib stream")
        return data.decode()
    except AuditError:
        raise
    except (zlib.error, UnicodeDecodeError, ValueError, MemoryError) as exc:
        raise AuditError(f"{what}: compressed bytes are corrupt ({exc})") from None
    except Exception as exc:  # zstandard.ZstdError is not a ValueError
        if _zstd is not None and isinstance(exc, _zstd.ZstdError):
            raise AuditError(f"{what}: compressed bytes are corrupt ({exc})") from None
        raise


def packed_pairs(table: str, names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``(text index, packed index)`` within ``names`` of every ``zjson`` column of ``table``
    (per :data:`cfa.audit.schema.TABLES`) whose text column is also present; ``()`` for a
    table without one (old files, other tables)."""
    from cfa.audit.schema import TABLES

    spec = TABLES.get(table)
    if spec is None:
        return ()
    out = []
    for c in spec.columns:
        if c.packs is not None and c.name in names and c.packs in names:
            out.append((list(names).index(c.packs), list(names).index(c.name)))
    return tuple(out)


def unpack(values: Sequence[Any], pairs: tuple[tuple[int, int], ...], what: str) -> list[Any]:
    """``values`` with every packed value decompressed into its text column (the packed column
    then None): the row as the chain hashes it. :class:`AuditError` when a row holds both."""
    out = list(values)
    for ti, zi in pairs:
        z = out[zi]
        if z is None:
            continue
        if out[ti] is not None:
            raise AuditError(f"{what}: holds both the text and the compressed payload")
        out[ti] = decompress_text(z, what)
        out[zi] = None
    return out


def pack(values: Sequence[Any], pairs: tuple[tuple[int, int], ...]) -> tuple[Any, ...]:
    """``values`` with every text value of a packed column moved, compressed, into it (the
    row as it is stored)."""
    out = list(values)
    for ti, zi in pairs:
        t = out[ti]
        if t is not None:
            out[zi] = compress_text(t)
            out[ti] = None
    return tuple(out)
