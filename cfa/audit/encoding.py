"""Canonical values: the payload JSON rule, the secrets rule and per-column normalisation.

Everything the audit store writes passes through here first, at :meth:`AuditStore.append` time,
so a bad value fails at the caller's line and not later inside a batch.

**Canonical payload JSON** (columns of type ``json``: ``payload``, ``detail``, ``arguments``,
``result``). A payload is any JSON-like Python value; its stored text is
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
after these conversions:

* ``Decimal`` → its string (``Decimal("0.0100")`` → ``"0.0100"``): money stays exact;
* non-finite floats → the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (never JSON NaN);
* ``Enum`` → its ``value``; dataclasses → a dict of their fields; ``datetime``/``date`` →
  ISO 8601 text; paths → text; tuples → lists; sets → sorted lists; non-string dict keys →
  JSON's key text.
  Anything else (bytes, arbitrary objects) is rejected with :class:`AuditError`.

Pass Python objects, not JSON text: a ``str`` payload is stored as a JSON string.

**Secrets rule.** Secrets are never written. In every payload, at any depth, the value of a dict
key whose lower-cased name contains one of :data:`SECRET_WORDS` (``key``, ``secret``,
``password``, ``passwd``, ``token``, ``credential``, ``authorization``, ``signature``) is replaced
by :data:`REDACTED`. One exception keeps LLM usage accounting: a key containing ``tokens``
(plural) and no other secret word — ``prompt_tokens``, ``completion_tokens``, ``total_tokens``,
``max_tokens``, ``prompt_tokens_details`` — is kept when its value is a number, ``None``, a dict
or a list (dicts and lists are checked recursively); a string value is still redacted. The rule
applies to keys only: free-text columns (``reason``, ...) are written as given, so never put a
secret in one. Redactions are counted in :attr:`AuditStore.stats`.

**Typed event batches.** A ``market_events`` payload built by :func:`cfa.audit.records.events_row`
from typed events is an :class:`EventBatch`: ``{"events": [...], "n": len}`` whose items are the
compact arrays of :mod:`cfa.audit.records` (fixed positions, no free dict keys). It is encoded by
orjson when that is provably byte-identical to the rule above, with no secret scan (there is no
key to scan); see :func:`event_batch_json` for the guards. Any other payload (a plain dict from
anywhere) takes the general path and is scanned.

**Typed columns** are normalised so that what SQLite stores (and later returns to the chain
verifier) is exactly what was hashed: ``int`` columns take ints (bools and ``IntEnum`` become
ints), ``real`` columns take finite floats (ints become floats; NaN and ±inf are rejected),
``text`` columns take ``str`` (an ``Enum`` becomes its value), ``money`` columns take
``Decimal``/``int``/``str``/``float`` dollars and store the exact decimal text, ``bool`` columns
store 0/1.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from json import encoder as _json_encoder
from typing import Any, Final

from cfa.audit.errors import AuditError

try:  # a declared dependency; without it every payload takes the (identical, slower) stdlib path
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

REDACTED: Final = "[REDACTED]"
"""What a secret value is replaced with."""

SECRET_WORDS: Final = (
    "key",
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "authorization",
    "signature",
)
"""A payload key whose lower-cased name contains one of these is a secret (see module doc)."""


def _mentions_secret(text: str) -> bool:
    """Whether ``text`` contains a secret word in any case (a cheap pre-check)."""
    lo = text.lower()
    return (
        "key" in lo
        or "token" in lo
        or "secret" in lo
        or "passw" in lo
        or "credential" in lo
        or "authorization" in lo
        or "signature" in lo
    )


def is_secret_key(key: str, value: Any) -> bool:
    """True when ``key`` names a secret under the secrets rule (``value`` decides token counts)."""
    k = key.lower()
    if not any(w in k for w in SECRET_WORDS):
        return False
    if "tokens" in k and not any(w in k.replace("tokens", "") for w in SECRET_WORDS):
        # Token-usage accounting (prompt_tokens, total_tokens, ...): numbers and containers stay.
        is_number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
        return not (is_number or value is None or isinstance(value, Mapping | list | tuple))
    return True


def _default(o: Any) -> Any:
    """JSON fallback for non-JSON types (see module doc); raises TypeError otherwise."""
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, enum.Enum):
        return o.value
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    if isinstance(o, _dt.datetime | _dt.date | _dt.time):
        return o.isoformat()
    if isinstance(o, set | frozenset):
        return sorted(o)
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"a {type(o).__name__} is not JSON-serialisable")


def _make_encoder(default: Callable[[Any], Any], sort_keys: bool, ascii_only: bool) -> Any:
    """A one-shot JSON encoder ``obj -> str``: compact separators, no NaN (C speed if present)."""
    c_make = getattr(_json_encoder, "c_make_encoder", None)
    if c_make is not None:
        escape = (
            _json_encoder.encode_basestring_ascii if ascii_only else _json_encoder.encode_basestring
        )
        c_enc = c_make(None, default, escape, None, ":", ",", sort_keys, False, False)

        def encode(obj: Any) -> str:
            return "".join(c_enc(obj, 0))

        return encode
    py_enc = json.JSONEncoder(
        separators=(",", ":"),
        sort_keys=sort_keys,
        ensure_ascii=ascii_only,
        allow_nan=False,
        default=default,
        check_circular=False,
    )
    return py_enc.encode


_encode_payload: Callable[[Any], str] = _make_encoder(_default, sort_keys=True, ascii_only=False)


def _key_text(k: Any) -> str:
    if isinstance(k, str):
        return str.__str__(k)
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    if isinstance(k, enum.Enum):
        return _key_text(k.value)
    if isinstance(k, int):
        return int.__repr__(k)
    if isinstance(k, float) and math.isfinite(k):
        return float.__repr__(k)
    raise AuditError(f"payload dict key {k!r} cannot be a JSON key")


def _nonfinite_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def _sanitize(obj: Any, redactions: list[int], depth: int = 0) -> Any:
    """A JSON-safe copy of ``obj``: secrets redacted, non-finite floats as strings."""
    if depth > 200:
        raise AuditError("payload nests deeper than 200 levels (a cycle?)")
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _nonfinite_text(obj)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            ks = _key_text(k)
            if is_secret_key(ks, v):
                out[ks] = REDACTED
                redactions[0] += 1
            else:
                out[ks] = _sanitize(v, redactions, depth + 1)
        return out
    if isinstance(obj, list | tuple):
        return [_sanitize(v, redactions, depth + 1) for v in obj]
    try:
        converted = _default(obj)
    except TypeError as exc:
        raise AuditError(f"payload value not storable: {exc}") from None
    return _sanitize(converted, redactions, depth + 1)


class EventBatch(Mapping[str, Any]):
    """The payload of one ``market_events`` row: ``{"events": events, "n": len(events)}``.

    ``events`` are compact event arrays made by :func:`cfa.audit.records.encode_event` (a list
    per event: a kind letter, then fixed fields: str, int, float, bool, None, str enums, and
    lists of ``[price, size]`` pairs; a ``"m"`` item may hold a market dict). Read like the dict
    it stands for; its canonical text is :func:`event_batch_json`. The list is not copied:
    do not change it after the row was appended.
    """

    __slots__ = ("events",)

    def __init__(self, events: list[list[Any]]) -> None:
        self.events = events

    def __getitem__(self, key: str) -> Any:
        if key == "events":
            return self.events
        if key == "n":
            return len(self.events)
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter(("events", "n"))

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"EventBatch(n={len(self.events)})"


_ORJSON_STRICT: Final = (
    0
    if _orjson is None
    else _orjson.OPT_PASSTHROUGH_DATETIME
    | _orjson.OPT_PASSTHROUGH_DATACLASS
    | _orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""orjson options under which every type it does not encode exactly like the stdlib rule
(datetimes, dataclasses, str/int/dict/list subclasses other than enums) raises instead."""

_ORJSON_FLOAT_MIN: Final = 1e-4
"""orjson writes a float exactly as Python's ``repr`` when it is finite and ``0`` or of
magnitude ``>= 1e-4`` (below, ``repr`` uses ``1e-05`` and orjson ``0.00001``; non-finite
floats become ``null``, which the rule forbids)."""

_TS_AT_2: Final = frozenset(("d", "s"))
"""Event kinds whose ``ts`` is item[2] (after ``seq``); the others have it at item[1]."""


def event_batch_json(items: list[list[Any]]) -> tuple[str, int]:
    """Canonical text of ``{"events": items, "n": len(items)}`` (and 0 redactions, or the
    general path's count), byte-identical to :func:`canonical_json` of that dict.

    Fast path (orjson, no secret scan) only when all of these hold, else the general path:

    * orjson encodes the items under :data:`_ORJSON_STRICT` (it raises for ints beyond 64 bits,
      non-str keys, ``Decimal``, bytes, datetimes, dataclasses, subclasses of str/int other
      than enums, which then take the general path); str enums are written as their values,
      as the stdlib encoder writes them (their str data);
    * the text holds no ``{``: no dict at any depth (so no key that could name a secret, no
      market dict of an ``"m"`` item with floats inside) and no ``{`` in any string;
    * every item's ``ts`` (the float field of each kind) is finite and ``>= 1e-4``
      (:data:`_ORJSON_FLOAT_MIN`).

    **Precondition (not checked: it would cost as much as the encoding):** the other fields
    have the types of the event dataclasses (ints, strings, bools, None). A float in an int
    field is a type error of the producer; it is still written exactly unless it is
    non-finite or of magnitude below 1e-4 (orjson would write ``null`` or ``1e-7`` where the
    rule writes ``"NaN"`` or ``1e-07``). The simulator, the Kalshi decoders and
    :func:`~cfa.audit.records.decode_event` produce the declared types.
    """
    if _orjson is not None and items:
        try:
            body = _orjson.dumps(items, option=_ORJSON_STRICT)
        except (TypeError, ValueError):
            body = b"{"
        if b"{" not in body:
            try:
                ts = [it[2] if it[0] in _TS_AT_2 else it[1] for it in items]
                ok = min(ts) >= _ORJSON_FLOAT_MIN and math.isfinite(sum(ts))
            except (TypeError, IndexError):
                ok = False
            if ok:
                text = body.decode()
                return f'{{"events":{text},"n":{len(items)}}}', 0
    return canonical_json({"events": items, "n": len(items)})


def canonical_json(obj: Any) -> tuple[str, int]:
    """Canonical payload text of ``obj`` and the number of secrets redacted from it.

    An :class:`EventBatch` takes :func:`event_batch_json`. Otherwise: one C-encoder pass; the
    slower sanitising walk runs only when the text mentions a secret word anywhere or the value
    holds a non-finite float or a key JSON cannot sort.
    Raises :class:`AuditError` for values that are not storable.
    """
    if type(obj) is EventBatch:
        return event_batch_json(obj.events)
    try:
        text = _encode_payload(obj)
    except (ValueError, TypeError, RecursionError):
        return _canonical_json_slow(obj)
    if _mentions_secret(text):
        return _canonical_json_slow(obj)
    if not text.isascii():
        _check_unicode(text)
    return text, 0


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditError(f"payload holds text that is not valid Unicode: {exc}") from None


def _canonical_json_slow(obj: Any) -> tuple[str, int]:
    redactions = [0]
    clean = _sanitize(obj, redactions)
    try:
        text = _encode_payload(clean)
    except (ValueError, TypeError, RecursionError) as exc:
        raise AuditError(f"payload not storable as JSON: {exc}") from None
    if not text.isascii():
        _check_unicode(text)
    return text, redactions[0]


# --- typed columns -------------------------------------------------------------------------


class ColType(enum.StrEnum):
    """Column kinds of the audit schema and their SQLite storage class."""

    INT = "int"
    """INTEGER: prices (price units), counts (count units), ms timestamps, sequence numbers."""
    REAL = "real"
    """REAL: finite floats (parameter values such as γ and σ)."""
    TEXT = "text"
    """TEXT: identifiers, enumerations, free text."""
    MONEY = "money"
    """TEXT holding an exact decimal number of dollars (``"0.0175"``)."""
    BOOL = "bool"
    """INTEGER 0/1."""
    JSON = "json"
    """TEXT holding canonical JSON (see module doc)."""
    ZJSON = "zjson"
    """BLOB holding a ``json`` column's canonical text compressed (:mod:`cfa.audit.compact`)."""


def norm_int(v: Any, what: str) -> int:
    """An ``int`` column value (bools and int enums become plain ints)."""
    if type(v) is int:
        return v
    if isinstance(v, int):  # bool, IntEnum
        return int(v)
    raise AuditError(f"{what}: expected an int, got {type(v).__name__} {v!r}")


def norm_real(v: Any, what: str) -> float:
    """A ``real`` column value: a finite float."""
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        x = float(v)
    else:
        raise AuditError(f"{what}: expected a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(x):
        raise AuditError(f"{what}: {v!r} is not finite")
    return x


def _checked_text(v: str, what: str) -> str:
    if "\x00" in v:  # PostgreSQL's text cannot hold it; refused on every backend alike
        raise AuditError(f"{what}: text holds a NUL character: {v!r}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise AuditError(f"{what}: text is not valid Unicode: {exc}") from None
    return v


def norm_text(v: Any, what: str) -> str:
    """A ``text`` column value (an ``Enum`` becomes its value)."""
    if type(v) is str:
        return _checked_text(v, what)
    if isinstance(v, enum.Enum):
        v = v.value
    if isinstance(v, str):
        return _checked_text(str.__str__(v), what)
    raise AuditError(f"{what}: expected text, got {type(v).__name__} {v!r}")


def norm_money(v: Any, what: str) -> str:
    """A ``money`` column value: exact decimal dollars as text."""
    try:
        if isinstance(v, Decimal):
            d = v
        elif isinstance(v, float):
            d = Decimal(repr(v))
        elif isinstance(v, int | str) and not isinstance(v, bool):
            d = Decimal(v)
        else:
            raise AuditError(f"{what}: expected dollars, got {type(v).__name__} {v!r}")
    except InvalidOperation:
        raise AuditError(f"{what}: not a number: {v!r}") from None
    if not d.is_finite():
        raise AuditError(f"{what}: {v!r} is not finite")
    return str(d)


def norm_bool(v: Any, what: str) -> int:
    """A ``bool`` column value stored as 0/1."""
    if v is True or v is False or v in (0, 1):
        return 1 if v else 0
    raise AuditError(f"{what}: expected a bool, got {type(v).__name__} {v!r}")


def _not_a_column_value(o: Any) -> Any:
    raise TypeError(f"not a column value: {type(o).__name__} {o!r}")


_ROW_ENCODE: Callable[[Any], str] = _make_encoder(
    _not_a_column_value, sort_keys=False, ascii_only=False
)


def encode_row_values(values: Sequence[Any]) -> str:
    """Compact JSON array (non-ASCII kept) of normalised column values (the chain's body)."""
    return _ROW_ENCODE(values)


_ROW_OPTS: Final = 0 if _orjson is None else _ORJSON_STRICT
_FLOAT = float


def row_values_bytes(values: Sequence[Any]) -> bytes | None:
    """UTF-8 of :func:`encode_row_values` by orjson, or None when orjson cannot be trusted to
    write the same bytes (then the caller uses :func:`encode_row_values`).

    Column values are None, ints, strs and finite floats (what SQLite returns). orjson writes
    str exactly as the stdlib encoder with ``ensure_ascii=False`` (the same escapes: a backslash
    before a quote or a backslash, the short forms of backspace, form feed, newline, return and
    tab, ``u00XX`` for the other controls below 0x20; everything else as UTF-8)
    and ints as their digits; it raises for ints beyond 64 bits, bytes, lone surrogates and
    subclasses, and a float is handed to the stdlib unless it is ``0`` or of magnitude in
    ``[1e-4, inf)`` (:data:`_ORJSON_FLOAT_MIN`).
    """
    if _orjson is None:
        return None
    for v in values:
        if type(v) is _FLOAT and not (v == 0.0 or _ORJSON_FLOAT_MIN <= abs(v) < math.inf):
            return None
    try:
        out: bytes = _orjson.dumps(values, option=_ROW_OPTS)
    except (TypeError, ValueError):
        return None
    return out
