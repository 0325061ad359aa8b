"""JSON in and out for every adapter, with the standard library only.

Reading is strict, as a wire must be: UTF-8 only (no other encoding is guessed,
no byte-order mark), no ``NaN`` / ``Infinity`` (not JSON), no lone UTF-16
surrogate escape (``"\\ud800"`` names no character and cannot be written back
out as UTF-8), and a document nested too deeply is an error, not a
``RecursionError``. Every problem is a :class:`JsonError` with one line saying
what is wrong. Integers keep their full value (the bound every binding holds is
the decoder's business, :mod:`heirline.core.codec`).

Writing is compact (``{"a":1,"b":[2]}``), UTF-8, keys in insertion order:
byte for byte what the protocol's conformance vectors hold. :func:`dumps_pretty`
is the indented form of the generated schemas and of ``--json`` outputs.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["JsonError", "dumps", "dumps_line", "dumps_pretty", "loads"]


class JsonError(ValueError):
    """The bytes are not one strict JSON document; the message says why and where."""


def _no_constant(name: str) -> object:
    raise JsonError(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    """Whether a decoded document holds a string with an unpaired surrogate (iterative)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def loads(data: bytes | str) -> object:
    """The one JSON document ``data`` holds; :class:`JsonError` if it is not strict JSON."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = data
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonError(
            f"{exc.msg}: line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except RecursionError:
        raise JsonError("nested too deeply") from None
    except JsonError:
        raise
    except ValueError as exc:  # Python's int() limit: an integer of more than 4300 digits
        raise JsonError(str(exc).split(";", 1)[0]) from None
    # A surrogate escape is rare: only then is the document walked.
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value):
        raise JsonError("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return value


def dumps(value: object) -> bytes:
    """The compact UTF-8 JSON text of ``value`` (no spaces, keys in insertion order)."""
    return _ENCODER.encode(value).encode("utf-8")


def dumps_line(value: object) -> bytes:
    """:func:`dumps` and a newline: one frame or one answer line."""
    return _ENCODER.encode(value).encode("utf-8") + b"\n"


def dumps_pretty(value: object) -> str:
    """Indented by two spaces, non-ASCII kept as is (schemas, ``--json`` outputs)."""
    return json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False)
