"""The JSON form of every event and effect is lossless and strictly checked."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heirline.core import effects as fx
from heirline.core import events as ev
from heirline.core.errors import WireError
from heirline.core.wire import decode_effect, decode_event, encode, message_schema

_text = st.text(max_size=12)
_int = st.integers(min_value=-(2**53), max_value=2**53)
_scalar = st.one_of(st.none(), st.booleans(), _int, _text)


def _strategy(cls: type) -> st.SearchStrategy[object]:
    overrides: dict[str, st.SearchStrategy[object]] = {}
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
