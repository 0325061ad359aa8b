"""The JSON form of every event and effect is lossless and strictly checked."""

from __future__ import annotations

import dataclasses
import json
import types
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.errors import WireError
from heirline.core.wire import MAX_WIRE_INT, decode_effect, decode_event, encode, message_schema

_text = st.text(max_size=12)
_int = st.integers(min_value=-MAX_WIRE_INT, max_value=MAX_WIRE_INT)
_scalar = st.one_of(st.none(), st.booleans(), _int, _text)


def _strategy(cls: type) -> st.SearchStrategy[object]:
    """Any message of ``cls`` the wire can carry (integers within +-MAX_WIRE_INT)."""
    hints = typing.get_type_hints(cls)
    overrides: dict[str, st.SearchStrategy[object]] = {
        name: st.one_of(st.none(), _int) if type(None) in typing.get_args(hints[name]) else _int
        for name in _int_fields(cls)
    }
    if cls is fx.Log:
        overrides["fields"] = st.dictionaries(_text, _scalar, max_size=3)
    return st.builds(cls, **overrides)


@pytest.mark.parametrize("cls", ev.EVENT_TYPES, ids=lambda c: c.type)
@given(data=st.data())
def test_every_event_round_trips_through_json(cls: type[ev.Event], data: st.DataObject) -> None:
    event = data.draw(_strategy(cls))
    assert isinstance(event, ev.Event)
    text = json.dumps(encode(event))
    assert decode_event(json.loads(text)) == event


@pytest.mark.parametrize("cls", fx.EFFECT_TYPES, ids=lambda c: c.type)
@given(data=st.data())
def test_every_effect_round_trips_through_json(cls: type[fx.Effect], data: st.DataObject) -> None:
    effect = data.draw(_strategy(cls))
    assert isinstance(effect, fx.Effect)
    text = json.dumps(encode(effect))
    assert decode_effect(json.loads(text)) == effect


def test_the_type_tag_comes_first_and_names_the_message() -> None:
    encoded = encode(ev.SocketClosed(account="a", generation=1, status=408))
    assert list(encoded) == ["type", "account", "generation", "status"]
    assert encoded["type"] == "socket_closed"


def test_omitted_optional_fields_take_their_defaults() -> None:
    event = decode_event({"type": "socket_closed", "account": "a", "generation": 2})
    assert event == ev.SocketClosed(account="a", generation=2, status=None)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ([], "expected a JSON object"),
        ({"account": "a"}, "unknown type None"),
        ({"type": "nope"}, "unknown type 'nope'"),
        ({"type": "start"}, "start.account: missing required field"),
        ({"type": "start", "account": 5}, "start.account: expected str, got int 5"),
        ({"type": "start", "account": "a", "extra": 1}, "unknown field(s) extra"),
        ({"type": "stop", "account": "a", "generation": True}, "expected int, got bool"),
        ({"type": "stop", "account": "a", "generation": 1.5}, "expected int, got float"),
        ({"type": "stop", "account": "a", "generation": None}, "must not be null"),
        (
            {"type": "transmit_failed", "reply_id": "r", "generation": 1, "io_started": 1},
            "expected bool, got int 1",
        ),
    ],
)
def test_bad_events_name_the_field_and_the_problem(message: object, complaint: str) -> None:
    with pytest.raises(WireError) as caught:
        decode_event(message)
    assert complaint in str(caught.value)


def test_log_fields_must_be_an_object_of_scalars() -> None:
    bad = {"type": "log", "level": "info", "code": "c", "message": "m", "fields": {"a": [1]}}
    with pytest.raises(WireError, match=r"log\.fields: expected an object of scalars"):
        decode_effect(bad)


def test_schema_lists_required_fields_and_forbids_unknown_ones() -> None:
    schema = message_schema(ev.SocketOpened)
    assert schema["required"] == ["type", "account", "generation"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["pn"] == {"type": ["string", "null"]}
    assert props["generation"] == {"type": "integer"}
    assert props["type"] == {"const": "socket_opened"}


def _int_fields(cls: type) -> list[str]:
    """The fields of ``cls`` that hold an integer (``int`` or ``int | None``)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if int in args:
            out.append(f.name)
    return out


_MESSAGE_TYPES: tuple[type[ev.Event] | type[fx.Effect], ...] = (*ev.EVENT_TYPES, *fx.EFFECT_TYPES)
_INT_FIELDS = [(cls, name) for cls in _MESSAGE_TYPES for name in _int_fields(cls)]


def test_there_are_integer_fields_to_check() -> None:
    names = {(cls.type, name) for cls, name in _INT_FIELDS}
    assert {("stop", "generation"), ("reply_captured", "deadline_ms")} <= names


@pytest.mark.parametrize(
    ("cls", "name"), _INT_FIELDS, ids=[f"{c.type}.{n}" for c, n in _INT_FIELDS]
)
@given(data=st.data())
def test_every_integer_field_holds_exactly_what_every_binding_holds(
    cls: type[ev.Event] | type[fx.Effect], name: str, data: st.DataObject
) -> None:
    """One rule for every integer field: |n| <= 2**53-1 decodes, anything larger is a WireError."""
    decode = decode_event if issubclass(cls, ev.Event) else decode_effect
    drawn = data.draw(_strategy(cls))
    assert isinstance(drawn, ev.Event | fx.Effect)
    message = encode(drawn)
    inside = data.draw(st.sampled_from([MAX_WIRE_INT, -MAX_WIRE_INT, 0]))
    outside = data.draw(
        st.sampled_from([MAX_WIRE_INT + 1, -MAX_WIRE_INT - 1, 2**64, -(2**63), 10**4000])
    )
    assert getattr(decode({**message, name: inside}), name) == inside
    with pytest.raises(WireError) as caught:
        decode({**message, name: outside})
    assert f"{cls.type}.{name}: integer" in str(caught.value)
    assert "2**53-1" in str(caught.value)


def test_integers_inside_log_fields_are_bounded_too() -> None:
    log = {"type": "log", "level": "info", "code": "c", "message": "m", "fields": {"n": 2**53}}
    with pytest.raises(WireError, match=r"log\.fields\.n: integer 9007199254740992 is outside"):
        decode_effect(log)
    assert decode_effect({**log, "fields": {"n": MAX_WIRE_INT}}) == fx.Log(
        level="info", code="c", message="m", fields={"n": MAX_WIRE_INT}
    )
