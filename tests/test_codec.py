"""The one validation mechanism (heirline.core.codec): strict, path-naming, and its schemas say
exactly what its decoder accepts -- for the wire's messages, judged by ``jsonschema``."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from heirline.core.codec import MAX_INT, Bounds, Record, Tagged, shape_of
from heirline.core.effects import EFFECT_TYPES
from heirline.core.errors import ValidationError
from heirline.core.events import EVENT_TYPES
from heirline.core.wire import _RECORDS


class Color(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True, slots=True)
class Inner:
    n: int
    ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class Outer:
    name: str
    inner: Inner
    items: tuple[Inner, ...] = ()
    off: Annotated[int, Bounds(0, 10)] | None = 5
    color: Color = Color.RED
    level: Level = Level.LOW
    mode: Literal["a", "b"] = "a"
    tags: frozenset[str] = frozenset()
    pair: tuple[str, str] | None = None
    extra: dict[str, int] = field(default_factory=dict)


OUTER = Record.of(Outer)
LENIENT = Record.of(Outer, false_is_null=True)
GOOD = {"name": "x", "inner": {"n": 1}}


def _error(data: object, record: Record = OUTER) -> str:
    with pytest.raises(ValidationError) as caught:
        record.decode(data)
    return str(caught.value)


def test_a_document_decodes_into_the_dataclass_with_defaults() -> None:
    got = OUTER.decode({**GOOD, "tags": ["b", "a"], "pair": ["p", "l"], "level": "high"})
    assert got == Outer(
        "x", Inner(1), tags=frozenset({"a", "b"}), pair=("p", "l"), level=Level.HIGH
    )
    assert OUTER.encode(got) == {
        "name": "x",
        "inner": {"n": 1, "ratio": 1.0},
        "items": [],
        "off": 5,
        "color": "red",
        "level": "high",
        "mode": "a",
        "tags": ["a", "b"],
        "pair": ["p", "l"],
        "extra": {},
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**GOOD, "inner": {"n": True}}, "inner.n: expected int, got bool True"),
        ({**GOOD, "inner": {"n": 1.0}}, "inner.n: expected int, got float 1.0"),
        ({**GOOD, "inner": {"n": MAX_INT + 1}}, "inner.n: integer 9007199254740992 is outside"),
        ({**GOOD, "inner": {"n": 1, "ratio": float("nan")}}, "inner.ratio: expected a finite"),
        ({**GOOD, "items": [{"n": 1}, {"n": "2"}]}, "items[1].n: expected int, got str '2'"),
        ({**GOOD, "items": [{"n": 1, "x": 0}]}, "items[0].x: unknown field (known: n, ratio)"),
        ({"inner": {"n": 1}}, "name: missing required field"),
        ({**GOOD, "name": None}, "name: must not be null"),
        ({**GOOD, "off": 11}, "off: must be <= 10, got 11"),
        ({**GOOD, "off": False}, "off: expected int, got bool False"),
        ({**GOOD, "color": "RED"}, "color: expected one of ['red'], got 'RED'"),
        ({**GOOD, "level": 2}, "level: expected one of ['low', 'high'], got 2"),
        ({**GOOD, "mode": "c"}, "mode: expected one of ['a', 'b'], got 'c'"),
        ({**GOOD, "pair": ["p"]}, "pair: expected 2 items, got 1: ['p']"),
        ({**GOOD, "extra": {"k": "v"}}, "extra.k: expected int, got str 'v'"),
        ([], "expected an object, got list []"),
    ],
)
def test_every_problem_names_the_full_path(data: object, message: str) -> None:
    assert _error(data).startswith(message)


def test_false_means_null_only_where_asked_and_only_for_non_booleans() -> None:
    assert LENIENT.decode({**GOOD, "off": False}) == Outer("x", Inner(1), off=None)
    assert LENIENT.decode({**GOOD, "off": None}) == Outer("x", Inner(1), off=None)
    assert _error({**GOOD, "off": True}, LENIENT).startswith("off: expected int, got bool True")
    assert _error({**GOOD, "name": False}, LENIENT).startswith("name: expected str")


@dataclass(frozen=True)
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class Holder:
    values: tuple[Positive, ...]


@dataclass(frozen=True)
class A:
    x: int


def test_a_dataclass_that_refuses_its_values_is_an_error_at_its_path() -> None:
    holder = Record.of(Holder, hooks={Positive: Record.of(Positive)})
    assert _error({"values": [{"n": 1}, {"n": 0}]}, holder) == "values[1]: n must be >= 1, got 0"


def test_a_tagged_union_names_the_unknown_tag() -> None:
    tagged = Tagged("kind", [Record.of(A, tag=("kind", "a"))], "kind")
    assert tagged.decode({"kind": "a", "x": 1}) == A(1)
    with pytest.raises(ValidationError) as caught:
        tagged.decode({"kind": "b"})
    assert str(caught.value) == "kind: unknown kind 'b' (known: a)"
    with pytest.raises(ValidationError, match=r"^kind: missing required field$"):
        tagged.decode({"x": 1})


def test_an_annotation_without_a_json_form_is_refused_when_the_shape_is_built() -> None:
    with pytest.raises(TypeError, match="no JSON form"):
        shape_of(set[int])
    assert dataclasses.is_dataclass(Outer)


# --------------------------------------------------------------------------- schema == decoder

# 1.0 is left out: JSON Schema counts it an integer, the decoder (like Python's json, which
# reads it as a float) does not -- the one place the two differ, on the strict side.
_POOL = st.sampled_from(
    [
        *(0, 1, -1, 7, MAX_INT, -MAX_INT, MAX_INT + 1, -MAX_INT - 1, 2**64, True, False, None),
        *("", "x", "inbound", "frame", "open", 1.5, -0.5, [], ["x"], {}, {"a": 1}, {"a": [1]}),
    ]
)


def _valid_and_field(message_type: type) -> st.SearchStrategy[tuple[dict[str, object], str]]:
    record = _RECORDS[message_type]
    names = [f.name for f in record.fields if f.name != "timer"]  # a timer key has its own form
    base = {"type": message_type.type}  # type: ignore[attr-defined]
    for f in record.fields:
        base[f.name] = {"timer": "health", "kind": "frame"}.get(f.name, _sample(f.shape))
    return st.tuples(st.just(base), st.sampled_from(names or ["type"]))


def _sample(shape: object) -> object:
    """A valid JSON value for a field (the mutation then replaces one field at random)."""
    schema = shape.schema()  # type: ignore[attr-defined]
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "enum" in schema:
        return schema["enum"][0]
    if "integer" in kinds:
        return 1
    if "boolean" in kinds:
        return True
    if "object" in kinds:
        return {}
    return "s"


@pytest.mark.parametrize("message_type", [*EVENT_TYPES, *EFFECT_TYPES], ids=lambda t: t.type)
@given(data=st.data())
def test_the_schema_accepts_exactly_what_the_decoder_accepts(
    message_type: type, data: st.DataObject
) -> None:
    record = _RECORDS[message_type]
    base, name = data.draw(_valid_and_field(message_type))
    document = dict(base)
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace":
        document[name] = data.draw(_POOL)
    elif action == "drop":
        document.pop(name, None)
    else:
        document[data.draw(st.sampled_from(["extra", name]))] = data.draw(_POOL)
    schema_ok = Draft202012Validator(record.schema()).is_valid(document)
    try:
        record.decode(document)
    except ValidationError:
        decoder_ok = False
    else:
        decoder_ok = True
    assert schema_ok == decoder_ok, (document, schema_ok)
