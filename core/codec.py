"""One mechanism for typed JSON documents: strict decoding, encoding and JSON Schema.

A :class:`Shape` is built once from a type annotation (:func:`shape_of`) --
usually a dataclass, whose field annotations say everything -- and then
decodes JSON values into typed Python values, encodes them back, and
describes them as JSON Schema (draft 2020-12). The same shapes serve the
protocol's events and effects (:mod:`heirline.core.wire`), the stdio hello and
the engine configuration (:mod:`heirline.adapters.config`) and scenario files
(:mod:`heirline.adapters.scenario_read`), so the three agree by construction.

Decoding is strict: a boolean is not an integer, an integer is at most
``2**53 - 1`` in magnitude (what every binding holds exactly), a float must be
finite, an unknown field or a missing required one is an error. Every error is
a :class:`~heirline.core.errors.ValidationError` whose ``where`` is the full
path of the bad value (``engine.health.retry_grace_ms``, ``steps[3].account``).

Supported annotations: ``str``, ``int``, ``float``, ``bool``, ``X | None``,
unions of members a JSON value's type tells apart, ``Literal[...]``, enums
(a ``StrEnum`` by value, any other enum by its lowercase name), ``tuple[X, ...]``,
``frozenset[X]``, ``tuple[X, X]`` (a fixed-length array), ``dict[str, X]``,
dataclasses, and ``Annotated[X, Bounds(...), Describe(...)]``. A caller maps
any other annotation to a :class:`Custom` shape through ``hooks``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from heirline.core.errors import HeirlineError, ValidationError

__all__ = [
    "MAX_INT",
    "Bounds",
    "Custom",
    "Describe",
    "Field",
    "Record",
    "SchemaNote",
    "Shape",
    "Tagged",
    "ValidationError",
    "shape_of",
]

#: The largest integer magnitude a document may hold: every binding holds it exactly
#: (JavaScript's numbers are doubles, exact up to ``Number.MAX_SAFE_INTEGER``).
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


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a :class:`Record`: its name, shape, whether it must be given, and what
    its schema says besides its shape (a description, more keywords)."""

    name: str
    shape: Shape
    required: bool
    notes: Mapping[str, object] | None = None


class Record(Shape):
    """An object with known fields, read into a value by ``build(**fields)``.

    ``tag`` is a ``(key, value)`` the object carries besides its fields (a
    message's ``type``, a step's ``action``): allowed, written first, in the
    schema as a constant. Absent optional fields are left to ``build``'s
    defaults. An error out of ``build`` (a dataclass checking itself) is a
    :class:`ValidationError` at the record's path (or deeper, if it says so).
    """

    json_types = (dict,)
    expected = "an object"

    def __init__(
        self,
        fields: Sequence[Field],
        build: Callable[..., object],
        *,
        title: str,
        description: str = "",
        tag: tuple[str, str] | None = None,
    ) -> None:
        self.fields = tuple(fields)
        self.build = build
        self.title = title
        self.description = description
        self.tag = tag
        self.by_name = {f.name: f for f in self.fields}
        self.known = ", ".join(self.by_name) or "none"
        # Fields whose JSON form is the value itself are copied, the others converted.
        self._encoders = tuple(
            (f.name, None if type(f.shape).encode is Shape.encode else f.shape.encode)
            for f in self.fields
        )

    @classmethod
    def of(
        cls,
        dataclass_: type,
        *,
        skip: frozenset[str] = frozenset(),
        hooks: Mapping[object, Shape] | None = None,
        false_is_null: bool = False,
        tag: tuple[str, str] | None = None,
    ) -> Record:
        """The record of a dataclass's init fields (less ``skip``)."""
        hints = typing.get_type_hints(dataclass_, include_extras=True)
        fields = []
        for f in dataclasses.fields(dataclass_):
            if not f.init or f.name in skip:
                continue
            shape = shape_of(hints[f.name], hooks=hooks, false_is_null=false_is_null)
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            fields.append(Field(f.name, shape, required, _notes(hints[f.name])))
        doc = (dataclass_.__doc__ or "").strip()
        first = doc.splitlines()[0] if doc and not doc.startswith(dataclass_.__name__ + "(") else ""
        return cls(fields, dataclass_, title=dataclass_.__name__, description=first, tag=tag)

    def decode(self, value: Json) -> object:
        if not isinstance(value, dict):
            raise _wrong("an object", value)
        by_name = self.by_name
        tag = None
        if self.tag is not None:
            tag, tag_value = self.tag
            if tag not in value:
                raise ValidationError("missing required field", [tag])
            if value[tag] != tag_value:
                raise ValidationError(f"expected {tag_value!r}, got {value[tag]!r}", [tag])
        for key in value:
            if key not in by_name and key != tag:
                raise ValidationError(f"unknown field (known: {self.known})", [key])
        kwargs: dict[str, object] = {}
        for f in self.fields:
            if f.name in value:
                try:
                    kwargs[f.name] = f.shape.decode(value[f.name])
                except ValidationError as exc:
                    exc.path.insert(0, f.name)
                    raise
            elif f.required:
                raise ValidationError("missing required field", [f.name])
        try:
            return self.build(**kwargs)
        except ValidationError:
            raise
        except (HeirlineError, ValueError) as exc:
            raise ValidationError(str(exc)) from None

    def encode(self, value: object) -> Json:
        out: dict[str, Json] = {}
        if self.tag is not None:
            out[self.tag[0]] = self.tag[1]
        for name, encode in self._encoders:
            item = getattr(value, name)
            out[name] = item if encode is None else encode(item)
        return out

    def schema(self) -> dict[str, Json]:
        props: dict[str, Json] = {}
        required: list[Json] = []
        if self.tag is not None:
            props[self.tag[0]] = {"const": self.tag[1]}
            required.append(self.tag[0])
        for f in self.fields:
            prop = f.shape.schema()
            if f.notes:
                prop = {**prop, **f.notes}
            props[f.name] = prop
            if f.required:
                required.append(f.name)
        out: dict[str, Json] = {"title": self.title}
        if self.description:
            out["description"] = self.description
        out.update(type="object", properties=props, required=required, additionalProperties=False)
        return out


class Tagged(Shape):
    """One of several records, chosen by a tag field (a step's ``action``): each record
    carries its ``(key, value)`` tag. An unknown or missing tag is an error at the tag."""

    json_types = (dict,)
    expected = "an object"

    def __init__(self, key: str, records: Sequence[Record], what: str) -> None:
        self.key = key
        self.what = what
        self.records: dict[str, Record] = {}
        for record in records:
            if record.tag is None or record.tag[0] != key:
                raise TypeError(f"record {record.title} is not tagged by {key!r}")
            self.records[record.tag[1]] = record

    def decode(self, value: Json) -> object:
        if not isinstance(value, dict):
            raise _wrong("an object", value)
        if self.key not in value:
            raise ValidationError("missing required field", [self.key])
        tag = value[self.key]
        record = self.records.get(tag) if isinstance(tag, str) else None
        if record is None:
            known = ", ".join(self.records)
            raise ValidationError(f"unknown {self.what} {tag!r} (known: {known})", [self.key])
        return record.decode(value)

    def encode(self, value: object) -> Json:
        for record in self.records.values():
            if isinstance(value, record.build):  # type: ignore[arg-type]
                return record.encode(value)
        raise TypeError(f"no record for {value!r}")  # pragma: no cover

    def schema(self) -> dict[str, Json]:
        return {"oneOf": [record.schema() for record in self.records.values()]}


def _notes(hint: object) -> dict[str, object] | None:
    """What ``Annotated`` metadata adds to a field's schema."""
    if typing.get_origin(hint) is not typing.Annotated:
        return None
    notes: dict[str, object] = {}
    for meta in typing.get_args(hint)[1:]:
        if isinstance(meta, Describe):
            notes["description"] = meta.text
        elif isinstance(meta, SchemaNote):
            notes.update(meta.keywords)
    return notes or None


_SEQUENCES: Final[dict[object, Callable[[list[object]], object]]] = {
    tuple: tuple,
    frozenset: frozenset,
    list: list,
}


def shape_of(
    hint: object, *, hooks: Mapping[object, Shape] | None = None, false_is_null: bool = False
) -> Shape:
    """The shape of values annotated ``hint`` (see the module docstring for what is supported).

    ``hooks`` maps annotations to shapes of their own (checked first, at every level);
    ``false_is_null`` lets ``false`` stand for null wherever null is allowed.
    """
    if hooks and hint in hooks:
        return hooks[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def again(inner: object) -> Shape:
        return shape_of(inner, hooks=hooks, false_is_null=false_is_null)

    if origin is typing.Annotated:
        base, *meta = args
        bounds = next((m for m in meta if isinstance(m, Bounds)), None)
        if bounds is None:
            return again(base)
        if base is str:
            return _Str(bounds)
        if base in (int, float):
            return _Number(base is int, bounds)
        if typing.get_origin(base) in _SEQUENCES:
            inner = again(base)
            assert isinstance(inner, _Array)
            return _Array(inner.item, inner.build, bounds)
        raise TypeError(f"Bounds do not apply to {base!r}")
    if origin is typing.Union or isinstance(hint, types.UnionType):
        members = [a for a in args if a is not type(None)]
        inner = again(members[0]) if len(members) == 1 else _Union([again(m) for m in members])
        return _Nullable(inner, false_is_null) if len(members) < len(args) else inner
    if origin is Literal:
        return _Choice(list(args), list(args))
    if hint is str:
        return _Str()
    if hint is bool:
        return _Bool()
    if hint in (int, float):
        return _Number(hint is int)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        by_value = issubclass(hint, str)
        labels = [m.value if by_value else m.name.lower() for m in hint]
        return _Choice(labels, list(hint))
    if origin in _SEQUENCES:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(set(args)) != 1:  # pragma: no cover - no such field today
                raise TypeError(f"a fixed tuple must hold one type, got {hint!r}")
            return _Array(again(args[0]), tuple, Bounds(len(args), len(args)))
        return _Array(again(args[0]), _SEQUENCES[origin], None)
    if origin is dict and args[0] is str:
        return _Map(again(args[1]))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return Record.of(hint, hooks=hooks, false_is_null=false_is_null)
    raise TypeError(f"no JSON form for {hint!r}")
