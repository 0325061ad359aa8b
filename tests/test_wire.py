"""The JSON form of every event and effect is lossless and strictly checked; timer identities
travel as string keys and enumerations as their values, and nothing else."""

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
from heirline.core.events import ActivityKind
from heirline.core.timers import (
    HEALTH,
    TIMER_TYPES,
    DeadlineTimer,
    HealthTimer,
    RetryTimer,
    Timer,
    WatchdogTimer,
)
from heirline.core.wire import (
    MAX_WIRE_INT,
    decode_effect,
    decode_event,
    encode,
    message_schema,
    parse_timer_key,
    timer_key,
)

#: Integers every binding holds exactly (JavaScript's Number.MAX_SAFE_INTEGER).
SAFE = 2**53 - 1
_text = st.text(max_size=12)
_int = st.integers(min_value=-MAX_WIRE_INT, max_value=MAX_WIRE_INT)
_scalar = st.one_of(st.none(), st.booleans(), _int, _text)
#: Generation and attempt numbers: issued from 1 up, never more than every binding holds.
_number = st.integers(min_value=1, max_value=SAFE)

TIMERS: st.SearchStrategy[Timer] = st.one_of(
    st.just(HEALTH),
    st.builds(RetryTimer, account=_text, generation=_number),
    st.builds(WatchdogTimer, account=_text, attempt=_number),
    st.builds(DeadlineTimer, reply_id=_text),
)

MESSAGE_TYPES: tuple[type[ev.Event] | type[fx.Effect], ...] = (*ev.EVENT_TYPES, *fx.EFFECT_TYPES)


def _hint_strategy(hint: object) -> st.SearchStrategy[object]:
    """A strategy for one field annotation; a type nobody wrote a strategy for fails loudly."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if set(args) == set(TIMER_TYPES):
        return TIMERS
    if type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        assert len(rest) == 1, hint
        return st.none() | _hint_strategy(rest[0])
    if hint is str:
        return _text
    if hint is int:
        return _int
    if hint is bool:
        return st.booleans()
    if hint is ActivityKind:
        return st.sampled_from(ActivityKind)
    if typing.get_origin(hint) is dict:
        return st.dictionaries(_text, _scalar, max_size=3)
    raise AssertionError(f"no strategy for field type {hint!r}: add one")


def _strategy(cls: type) -> st.SearchStrategy[object]:
    """Any message of ``cls``, every field drawn (defaults included, unlike ``st.builds``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: _hint_strategy(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


@pytest.mark.parametrize("cls", ev.EVENT_TYPES, ids=lambda c: c.type)
@given(data=st.data())
def test_every_event_round_trips_through_json(cls: type[ev.Event], data: st.DataObject) -> None:
    event = data.draw(_strategy(cls))
    assert isinstance(event, cls)
    text = json.dumps(encode(event))
    decoded = decode_event(json.loads(text))
    assert decoded == event
    assert type(decoded) is cls


@pytest.mark.parametrize("cls", fx.EFFECT_TYPES, ids=lambda c: c.type)
@given(data=st.data())
def test_every_effect_round_trips_through_json(cls: type[fx.Effect], data: st.DataObject) -> None:
    effect = data.draw(_strategy(cls))
    assert isinstance(effect, cls)
    text = json.dumps(encode(effect))
    decoded = decode_effect(json.loads(text))
    assert decoded == effect
    assert type(decoded) is cls


def test_the_round_trips_cover_timers_and_enumerations() -> None:
    """The messages above include every timer field and every enumeration field."""
    with_timer = {c.type for c in MESSAGE_TYPES if "timer" in typing.get_type_hints(c)}
    assert with_timer == {"timer_fired", "start_timer", "cancel_timer"}
    with_kind = {
        c.type for c in MESSAGE_TYPES if typing.get_type_hints(c).get("kind") is ActivityKind
    }
    assert with_kind == {"activity"}


# -- timers: typed values inside, string keys on the wire -------------------------------------


@pytest.mark.parametrize(
    ("timer", "key"),
    [
        (HEALTH, "health"),
        (RetryTimer("acct", 3), "retry/acct/3"),
        (RetryTimer("x/y", 10), "retry/x/y/10"),
        (WatchdogTimer("acct", 17), "watchdog/acct/17"),
        (WatchdogTimer("a/b/7", 2), "watchdog/a/b/7/2"),
        (DeadlineTimer("r1"), "deadline/r1"),
        (DeadlineTimer("r/1/x"), "deadline/r/1/x"),
        (RetryTimer("acct", SAFE), f"retry/acct/{SAFE}"),
        # The engine accepts an empty account or reply id: their timers must come back too.
        (RetryTimer("", 1), "retry//1"),
        (WatchdogTimer("", 5), "watchdog//5"),
        (DeadlineTimer(""), "deadline/"),
        (DeadlineTimer("/"), "deadline//"),
        (RetryTimer("/", 2), "retry///2"),
    ],
)
def test_timer_keys_by_hand(timer: Timer, key: str) -> None:
    assert timer_key(timer) == key
    assert parse_timer_key(key) == timer
    assert type(parse_timer_key(key)) is type(timer)


def test_a_timer_field_is_its_key_on_the_wire() -> None:
    start = fx.StartTimer(timer=RetryTimer("acct", 3), deadline_ms=5)
    assert encode(start) == {"type": "start_timer", "timer": "retry/acct/3", "deadline_ms": 5}
    assert encode(fx.CancelTimer(timer=HEALTH)) == {"type": "cancel_timer", "timer": "health"}
    fired = decode_event({"type": "timer_fired", "timer": "watchdog/acct/4"})
    assert fired == ev.TimerFired(timer=WatchdogTimer("acct", 4))


@pytest.mark.parametrize("value", [5, ["health"], {"kind": "health"}, True])
def test_a_timer_field_must_be_a_key_string(value: object) -> None:
    with pytest.raises(WireError) as caught:
        decode_event({"type": "timer_fired", "timer": value})
    assert str(caught.value) == f"timer_fired.timer: expected a timer key string, got {value!r}"
    with pytest.raises(WireError, match=r"^timer_fired\.timer: must not be null$"):
        decode_event({"type": "timer_fired", "timer": None})


@pytest.mark.parametrize(
    "key",
    [
        "",
        "HEALTH",
        "health/",
        "healthy",
        "retry",
        "retry/",
        "retry/acct",
        "retry/acct/",
        "retry/acct/0",
        "retry/acct/01",
        "retry/acct/-1",
        "retry/acct/+1",
        "retry/acct/1.0",
        "retry/acct/1e3",
        "retry/acct/ 1",
        "retry/a/²",  # the fuzzer's find: a digit to str.isdigit, not to int()
        "retry/a/\u0661",  # an Arabic-Indic digit one
        "retry/acct/12345678901234567",  # 17 digits: more than any generation can be
        "watchdog/acct/x",
        "watchdog",
        "deadline",
        "timer/acct/1",
        "Retry/acct/1",
    ],
)
def test_malformed_timer_keys_are_wire_errors(key: str) -> None:
    with pytest.raises(WireError, match=r"^timer key "):
        parse_timer_key(key)
    with pytest.raises(WireError):
        decode_event({"type": "timer_fired", "timer": key})


@given(st.text(max_size=40) | st.from_regex(r"(retry|watchdog|deadline)/.{0,10}/?[0-9]{0,18}"))
def test_any_string_is_a_timer_whose_key_it_is_or_a_wire_error(key: str) -> None:
    try:
        timer = parse_timer_key(key)
    except WireError:
        return
    assert isinstance(timer, TIMER_TYPES)
    assert timer_key(timer) == key  # every accepted key is the canonical key of its timer


@given(TIMERS)
def test_every_timer_the_engine_can_name_round_trips_through_its_key(timer: Timer) -> None:
    assert parse_timer_key(timer_key(timer)) == timer


def test_the_timer_types_are_the_four_kinds() -> None:
    assert [t.kind for t in TIMER_TYPES] == ["health", "retry", "watchdog", "deadline"]
    assert HealthTimer() == HEALTH
    assert len({HEALTH, RetryTimer("a", 1), RetryTimer("a", 1), WatchdogTimer("a", 1)}) == 3


# -- enumerations: their values on the wire --------------------------------------------------


def test_an_activity_kind_is_its_value_on_the_wire() -> None:
    inbound = ev.Activity(account="a", generation=1, attempt=2, kind=ActivityKind.INBOUND)
    assert encode(inbound)["kind"] == "inbound"
    decoded = decode_event(encode(inbound))
    assert isinstance(decoded, ev.Activity)
    assert decoded.kind is ActivityKind.INBOUND
    frame = decode_event({"type": "activity", "account": "a", "generation": 1, "attempt": 2})
    assert isinstance(frame, ev.Activity)
    assert frame.kind is ActivityKind.FRAME  # omitted: the default


@pytest.mark.parametrize("value", ["INBOUND", "message", "", 1, True, ["frame"]])
def test_an_unknown_activity_kind_names_the_field_and_the_allowed_values(value: object) -> None:
    with pytest.raises(WireError) as caught:
        decode_event(
            {"type": "activity", "account": "a", "generation": 1, "attempt": 2, "kind": value}
        )
    assert (
        str(caught.value) == f"activity.kind: expected one of ['frame', 'inbound'], got {value!r}"
    )


def test_a_status_member_is_its_number_on_the_wire() -> None:
    from heirline.core.policy import Status

    close = fx.CloseSocket(account="a", generation=1, attempt=3, status=Status.WATCHDOG, reason="w")
    encoded = encode(close)
    assert encoded["status"] == 499
    assert type(encoded["status"]) is int
    assert json.dumps(encoded["status"]) == "499"
    assert decode_effect(encoded) == close


# -- strict decoding --------------------------------------------------------------------------


def test_the_type_tag_comes_first_and_names_the_message() -> None:
    encoded = encode(ev.SocketClosed(account="a", generation=1, attempt=4, status=408))
    assert list(encoded) == ["type", "account", "generation", "attempt", "status"]
    assert encoded["type"] == "socket_closed"


def test_omitted_optional_fields_take_their_defaults() -> None:
    event = decode_event({"type": "socket_closed", "account": "a", "generation": 2, "attempt": 7})
    assert event == ev.SocketClosed(account="a", generation=2, attempt=7, status=None)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ([], "event: expected a JSON object, got list"),
        ({"account": "a"}, "event: unknown type None"),
        ({"type": "nope"}, "event: unknown type 'nope'"),
        ({"type": "start"}, "start.account: missing required field"),
        ({"type": "start", "account": 5}, "start.account: expected str, got int 5"),
        (
            {"type": "start", "account": "a", "extra": 1},
            "start.extra: unknown field (known: account)",
        ),
        ({"type": "stop", "account": "a", "generation": True}, "expected int, got bool"),
        ({"type": "stop", "account": "a", "generation": 1.5}, "expected int, got float"),
        ({"type": "stop", "account": "a", "generation": None}, "must not be null"),
        (
            {"type": "socket_closed", "account": "a", "generation": 1},
            "socket_closed.attempt: missing required field",
        ),
        (
            {"type": "transmit_acked", "reply_id": "r", "generation": 1},
            "transmit_acked.attempt: missing required field",
        ),
        (
            {
                "type": "transmit_failed",
                "reply_id": "r",
                "generation": 1,
                "attempt": 1,
                "io_started": 1,
            },
            "transmit_failed.io_started: expected bool, got int 1",
        ),
        ({"type": "timer_fired"}, "timer_fired.timer: missing required field"),
        (
            {"type": "timer_fired", "key": "health"},
            "timer_fired.key: unknown field (known: timer)",
        ),
    ],
)
def test_bad_events_name_the_field_and_the_problem(message: object, complaint: str) -> None:
    with pytest.raises(WireError) as caught:
        decode_event(message)
    assert complaint in str(caught.value)


def test_log_fields_must_be_an_object_of_scalars() -> None:
    bad = {"type": "log", "level": "info", "code": "c", "message": "m", "fields": {"a": [1]}}
    with pytest.raises(
        WireError, match=r"^log\.fields\.a: expected str or int or float or bool, got"
    ):
        decode_effect(bad)
    with pytest.raises(WireError, match=r"^log\.fields: expected an object, got list"):
        decode_effect({**bad, "fields": [1]})


def test_an_effect_is_not_an_event_and_the_reverse() -> None:
    with pytest.raises(WireError, match=r"event: unknown type 'start_timer'"):
        decode_event(encode(fx.StartTimer(timer=HEALTH, deadline_ms=1)))
    with pytest.raises(WireError, match=r"effect: unknown type 'start'"):
        decode_effect(encode(ev.Start(account="a")))


# -- the schema -------------------------------------------------------------------------------


def test_schema_lists_required_fields_and_forbids_unknown_ones() -> None:
    schema = message_schema(ev.SocketOpened)
    assert schema["required"] == ["type", "account", "generation", "attempt"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["pn"] == {"type": ["string", "null"]}
    # every integer is bounded to what every binding holds, in the schema as in the decoder
    bounded = {"type": "integer", "minimum": -MAX_WIRE_INT, "maximum": MAX_WIRE_INT}
    assert props["generation"] == bounded
    assert props["attempt"] == bounded
    assert props["type"] == {"const": "socket_opened"}


@pytest.mark.parametrize("cls", [ev.TimerFired, fx.StartTimer, fx.CancelTimer])
def test_schema_lists_a_timer_field_as_a_string(cls: type[ev.Event] | type[fx.Effect]) -> None:
    schema = message_schema(cls)
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["timer"] == {
        "type": "string",
        "description": "a timer key: health, retry/<account>/<generation>, "
        "watchdog/<account>/<attempt> or deadline/<reply_id>",
    }
    required = schema["required"]
    assert isinstance(required, list)
    assert "timer" in required


def test_schema_lists_an_enumeration_as_enum_of_its_values() -> None:
    schema = message_schema(ev.Activity)
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["kind"] == {"enum": ["frame", "inbound"]}
    assert schema["required"] == ["type", "account", "generation", "attempt"]  # kind defaults


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.type)
def test_every_field_of_every_message_is_in_its_schema(
    cls: type[ev.Event] | type[fx.Effect],
) -> None:
    schema = message_schema(cls)
    props = schema["properties"]
    assert isinstance(props, dict)
    assert set(props) == {"type"} | {f.name for f in dataclasses.fields(cls)}
    assert schema["title"] == cls.__name__


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


_INT_FIELDS = [(cls, name) for cls in MESSAGE_TYPES for name in _int_fields(cls)]


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


def test_a_timer_key_number_is_bounded_like_every_wire_integer() -> None:
    assert parse_timer_key(f"retry/a/{MAX_WIRE_INT}") == RetryTimer("a", MAX_WIRE_INT)
    with pytest.raises(WireError, match=r"outside 1\.\.9007199254740991"):
        parse_timer_key(f"watchdog/a/{MAX_WIRE_INT + 1}")
