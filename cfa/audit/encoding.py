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


def canonical_json(obj: Any) -> tuple[str, int]:
    """Canonical payload text of ``obj`` and the number of secrets redacted from it.

    Fast path: one C-encoder pass; the slower sanitising walk runs only when the text mentions
    a secret word anywhere or the value holds a non-finite float or a key JSON cannot sort.
    Raises :class:`AuditError` for values that are not storable.
    """
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
