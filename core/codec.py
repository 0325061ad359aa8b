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
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from heirline.core.errors import HeirlineError, ValidationError
from heirline.core.shapes import (
    MAX_INT,
    Bounds,
    Custom,
    Describe,
    Json,
    SchemaNote,
    Shape,
    _Array,
    _Bool,
    _Choice,
    _Map,
    _Nullable,
    _Number,
    _Str,
    _Union,
    _wrong,
)

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
        # The generated function stands in for the method on this instance (mypy cannot
        # see that a plain function of one argument is what the bound method would be).
        self.encode = _compile_encoder(self)  # type: ignore[method-assign,assignment]

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
        """The JSON object of ``value`` (replaced per record by a compiled function)."""
        raise NotImplementedError  # pragma: no cover - __init__ installs the compiled one

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


def _compile_encoder(record: Record) -> Callable[[object], Json]:
    """One function that builds the record's JSON object in a single dict display.

    The wire's hot path (every effect of every answer line): as ``dataclasses``
    does for ``__init__``, the function is generated once per record from its
    field names (Python identifiers, by construction), so writing a message
    costs one attribute read per field instead of a loop over field encoders.
    Fields whose JSON form is the value itself are copied, the others converted.
    """
    namespace: dict[str, object] = {}
    items = [] if record.tag is None else [f"{record.tag[0]!r}: {record.tag[1]!r}"]
    for i, f in enumerate(record.fields):
        if not f.name.isidentifier():  # pragma: no cover - dataclass fields always are
            raise ValueError(f"field name {f.name!r} is not an identifier")
        if f.shape.passes_through():
            items.append(f"{f.name!r}: value.{f.name}")
        else:
            namespace[f"_encode_{i}"] = f.shape.encode
            items.append(f"{f.name!r}: _encode_{i}(value.{f.name})")
    source = "def encode(value):\n    return {" + ", ".join(items) + "}\n"
    exec(source, namespace)  # generated from field names only, as dataclasses does
    encode = namespace["encode"]
    assert callable(encode)
    return typing.cast(Callable[[object], Json], encode)


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
            build = record.build  # the dataclass a record of ``Record.of`` builds
            if isinstance(build, type) and isinstance(value, build):
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
