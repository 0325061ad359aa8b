"""The building blocks of :mod:`heirline.core.codec`: one :class:`Shape` per kind of value.

Each shape reads a JSON value strictly (raising
:class:`~heirline.core.errors.ValidationError` with the problem; the caller adds
the path), writes a typed value back, and describes itself as JSON Schema.
:func:`heirline.core.codec.shape_of` builds them from annotations; nothing
here is needed directly but :class:`Custom` and the ``Annotated`` metadata.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from heirline.core.errors import HeirlineError, ValidationError

__all__ = ["MAX_INT", "Bounds", "Custom", "Describe", "Json", "SchemaNote", "Shape"]

MAX_INT: Final = 2**53 - 1

#: A JSON value, as the decoder sees it (kept loose: beartype cannot check recursive aliases).
Json = object


@dataclass(frozen=True, slots=True)
class Bounds:
    """``Annotated`` metadata: limits of a number's value, or of a string's or array's length."""

    minimum: int | float | None = None
    maximum: int | float | None = None


@dataclass(frozen=True, slots=True)
class Describe:
    """``Annotated`` metadata: the field's description in the generated schema."""

    text: str


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashable, as Annotated needs
class SchemaNote:
    """``Annotated`` metadata: keywords added to the field's generated schema (a schema
    may promise more than the decoder checks, e.g. the protocol versions a server speaks)."""

    keywords: Mapping[str, object]


def _wrong(expected: str, value: object) -> ValidationError:
    if value is None:
        return ValidationError("must not be null")
    return ValidationError(f"expected {expected}, got {type(value).__name__} {value!r}")


class Shape:
    """How one kind of value is read from JSON, written back, and described."""

    #: Python types of the JSON values this shape reads (a union dispatches on them).
    json_types: tuple[type, ...] = ()
    #: What the shape expects, for an error message ("int", "one of [...]").
    expected: str = "a value"

    def decode(self, value: Json) -> object:
        """The typed value of ``value``; :class:`ValidationError` if it is not one."""
        raise NotImplementedError

    def encode(self, value: object) -> Json:
        """The JSON value of a typed value."""
        return value

    def passes_through(self) -> bool:
        """Whether :meth:`encode` returns every value unchanged (a record copies it)."""
        return type(self).encode is Shape.encode

    def schema(self) -> dict[str, Json]:
        """The JSON Schema of the values this shape reads."""
        raise NotImplementedError


def _check_bounds(shape_bounds: Bounds, measure: int | float, what: str, value: object) -> None:
    low, high = shape_bounds.minimum, shape_bounds.maximum
    if low is not None and measure < low:
        raise ValidationError(f"{what} must be >= {low}, got {value!r}".lstrip())
    if high is not None and measure > high:
        raise ValidationError(f"{what} must be <= {high}, got {value!r}".lstrip())


class _Str(Shape):
    json_types = (str,)
    expected = "str"

    def __init__(self, bounds: Bounds | None = None) -> None:
        self.bounds = bounds

    def decode(self, value: Json) -> object:
        if not isinstance(value, str):
            raise _wrong("str", value)
        if self.bounds is not None:
            _check_bounds(self.bounds, len(value), "length", value)
        return value

    def encode(self, value: object) -> Json:
        return value if type(value) is str else str(value)  # a StrEnum member: its value

    def schema(self) -> dict[str, Json]:
        out: dict[str, Json] = {"type": "string"}
        if self.bounds is not None and self.bounds.minimum is not None:
            out["minLength"] = self.bounds.minimum
        if self.bounds is not None and self.bounds.maximum is not None:
            out["maxLength"] = self.bounds.maximum
        return out


class _Bool(Shape):
    json_types = (bool,)
    expected = "bool"

    def decode(self, value: Json) -> object:
        if not isinstance(value, bool):
            raise _wrong("bool", value)
        return value

    def schema(self) -> dict[str, Json]:
        return {"type": "boolean"}


class _Number(Shape):
    """``int`` (integers only) or ``float`` (any finite number, read as a float)."""

    def __init__(self, integral: bool, bounds: Bounds | None = None) -> None:
        self.integral = integral
        self.bounds = bounds
        self.json_types = (int,) if integral else (int, float)
        self.expected = "int" if integral else "float"

    def decode(self, value: Json) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(self.expected, value)
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                raise ValidationError(f"integer {value} is outside +-{MAX_INT} (2**53-1)")
        elif self.integral:
            raise _wrong("int", value)
        elif not math.isfinite(value):
            raise ValidationError(f"expected a finite number, got {value}")
        if self.bounds is not None:
            _check_bounds(self.bounds, value, "", value)
        return value if self.integral else float(value)

    def encode(self, value: object) -> Json:
        kind = type(value)
        if kind is int or kind is float:
            return value
        assert isinstance(value, int | float)  # an IntEnum member (a close status): its number
        return int(value) if self.integral else float(value)

    def schema(self) -> dict[str, Json]:
        low: int | float | None = -MAX_INT if self.integral else None
        high: int | float | None = MAX_INT if self.integral else None
        if self.bounds is not None:
            low = low if self.bounds.minimum is None else self.bounds.minimum
            high = high if self.bounds.maximum is None else self.bounds.maximum
        out: dict[str, Json] = {"type": "integer" if self.integral else "number"}
        if low is not None:
            out["minimum"] = low
        if high is not None:
            out["maximum"] = high
        return out


class _Choice(Shape):
    """One of fixed values: a ``Literal``, or an enum (by value, or by lowercase name)."""

    def __init__(self, labels: Sequence[str | int], members: Sequence[object]) -> None:
        self.labels = list(labels)
        self.by_label = dict(zip(labels, members, strict=True))
        self.by_member = {m: label for label, m in self.by_label.items()}
        self.json_types = tuple({type(label) for label in labels})
        self.expected = f"one of {self.labels}"

    def decode(self, value: Json) -> object:
        member = self.by_label.get(value) if isinstance(value, str | int) else None
        if member is None or isinstance(value, bool) != isinstance(self.labels[0], bool):
            raise ValidationError(f"expected one of {self.labels}, got {value!r}")
        return member

    def encode(self, value: object) -> Json:
        return self.by_member[value]

    def schema(self) -> dict[str, Json]:
        return {"enum": list(self.labels)}


class _Nullable(Shape):
    """``X | None``; with ``false_is_null``, ``false`` means null too (TOML has no null)."""

    def __init__(self, inner: Shape, false_is_null: bool) -> None:
        self.inner = inner
        self.false_is_null = false_is_null and bool not in inner.json_types
        self.json_types = (*inner.json_types, type(None), *((bool,) if self.false_is_null else ()))
        self.expected = inner.expected

    def decode(self, value: Json) -> object:
        if value is None or (value is False and self.false_is_null):
            return None
        return self.inner.decode(value)

    def encode(self, value: object) -> Json:
        return None if value is None else self.inner.encode(value)

    def passes_through(self) -> bool:
        return self.inner.passes_through()

    def schema(self) -> dict[str, Json]:
        inner = self.inner.schema()
        kind = inner.get("type")
        if isinstance(kind, str):
            out = {**inner, "type": [kind, "null"]}
        elif "enum" in inner and isinstance(inner["enum"], list):
            out = {**inner, "enum": [*inner["enum"], None]}
        else:
            out = {"anyOf": [inner, {"type": "null"}]}
        if self.false_is_null:
            return {"anyOf": [out, {"const": False}], "description": "null or false: off"}
        return out


class _Union(Shape):
    """Members told apart by the type of the JSON value (the first member claiming it)."""

    def __init__(self, members: Sequence[Shape]) -> None:
        self.members = list(members)
        self.by_type: dict[type, Shape] = {}
        for member in members:
            for kind in member.json_types:
                self.by_type.setdefault(kind, member)
        self.json_types = tuple(self.by_type)
        self.expected = " or ".join(m.expected for m in members)

    def decode(self, value: Json) -> object:
        member = self.by_type.get(type(value))
        if member is None:
            raise _wrong(self.expected, value)
        return member.decode(value)

    def encode(self, value: object) -> Json:
        for member in self.members:
            if isinstance(value, member.json_types):
                return member.encode(value)
        return value  # pragma: no cover - a member always claims an encodable value

    def schema(self) -> dict[str, Json]:
        return {"anyOf": [m.schema() for m in self.members]}


class _Array(Shape):
    """``tuple[X, ...]``, ``frozenset[X]``, ``list[X]``; or ``tuple[X, X]`` (a fixed length)."""

    json_types = (list,)

    def __init__(self, item: Shape, build: Callable[[list[object]], object], size: Bounds | None):
        self.item = item
        self.build = build
        self.size = size
        self.expected = "an array"

    def decode(self, value: Json) -> object:
        if not isinstance(value, list):
            raise _wrong("an array", value)
        size = self.size
        if size is not None and size.minimum == size.maximum and len(value) != size.minimum:
            raise ValidationError(f"expected {size.minimum} items, got {len(value)}: {value!r}")
        if size is not None:
            _check_bounds(size, len(value), "length", value)
        out = []
        decode = self.item.decode
        for i, item in enumerate(value):
            try:
                out.append(decode(item))
            except ValidationError as exc:
                exc.path.insert(0, i)
                raise
        return self.build(out)

    def encode(self, value: object) -> Json:
        assert isinstance(value, tuple | frozenset | list)
        items = sorted(value) if isinstance(value, frozenset) else value
        return [self.item.encode(v) for v in items]

    def schema(self) -> dict[str, Json]:
        out: dict[str, Json] = {"type": "array", "items": self.item.schema()}
        if self.size is not None and self.size.minimum is not None:
            out["minItems"] = self.size.minimum
        if self.size is not None and self.size.maximum is not None:
            out["maxItems"] = self.size.maximum
        return out


class _Map(Shape):
    """``dict[str, X]``: an object whose keys are free."""

    json_types = (dict,)
    expected = "an object"

    def __init__(self, value: Shape) -> None:
        self.value = value

    def decode(self, value: Json) -> object:
        if not isinstance(value, dict):
            raise _wrong("an object", value)
        out = {}
        for key, item in value.items():
            try:
                out[key] = self.value.decode(item)
            except ValidationError as exc:
                exc.path.insert(0, key)
                raise
        return out

    def encode(self, value: object) -> Json:
        assert isinstance(value, dict)
        return {k: self.value.encode(v) for k, v in value.items()}

    def schema(self) -> dict[str, Json]:
        return {"type": "object", "additionalProperties": self.value.schema()}


class Custom(Shape):
    """A value with a JSON form of its own: ``decode`` raises ValueError (or
    :class:`ValidationError`) for a bad one; ``schema`` describes its JSON form."""

    def __init__(
        self,
        json_types: tuple[type, ...],
        expected: str,
        decode: Callable[[Any], object],
        encode: Callable[[Any], Json],
        schema: dict[str, Json],
    ) -> None:
        self.json_types = json_types
        self.expected = expected
        self._decode = decode
        self._encode = encode
        self._schema = schema

    def decode(self, value: Json) -> object:
        if not isinstance(value, self.json_types) or isinstance(value, bool) != (
            bool in self.json_types
        ):
            raise ValidationError(
                "must not be null" if value is None else f"expected {self.expected}, got {value!r}"
            )
        try:
            return self._decode(value)
        except ValidationError:
            raise
        except (HeirlineError, ValueError) as exc:
            raise ValidationError(str(exc)) from None

    def encode(self, value: object) -> Json:
        return self._encode(value)

    def schema(self) -> dict[str, Json]:
        return dict(self._schema)
