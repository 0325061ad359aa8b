"""The lossless JSON form of events and effects, and its JSON Schema.

One mechanism serves every message type (:mod:`heirline.core.codec`, the one
the stdio hello, the engine configuration and scenario files use too): the
dataclass fields and their annotations are read once into a record shape,
which drives encoding, strict decoding (wrong type, missing or unknown field
-> :class:`WireError` naming the field) and the generated schema. Nothing here
does I/O; turning the dicts into bytes is the adapter's job.

Two field kinds have a JSON form of their own, encoded here and only here: a
timer identity is a string key (:func:`timer_key`: ``health``,
``retry/<account>/<generation>``, ``watchdog/<account>/<attempt>``,
``deadline/<reply_id>``), and an enumeration is its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from heirline.core.codec import MAX_INT, Custom, Record
from heirline.core.effects import EFFECT_TYPES, Effect
from heirline.core.errors import ValidationError, WireError
from heirline.core.events import EVENT_TYPES, Event
from heirline.core.timers import (
    HEALTH,
    TIMER_TYPES,
    DeadlineTimer,
    HealthTimer,
    RetryTimer,
    Timer,
    WatchdogTimer,
)

#: A JSON value. Kept non-recursive: beartype cannot check recursive aliases yet.
JsonValue = object

#: The largest integer magnitude a message may carry: every binding holds it exactly
#: (JavaScript's numbers are doubles, exact up to ``2**53 - 1`` = ``Number.MAX_SAFE_INTEGER``).
MAX_WIRE_INT: Final = MAX_INT


def timer_key(timer: Timer) -> str:
    """The string form of a timer identity."""
    if isinstance(timer, RetryTimer):
        return f"retry/{timer.account}/{timer.generation}"
    if isinstance(timer, WatchdogTimer):
        return f"watchdog/{timer.account}/{timer.attempt}"
    if isinstance(timer, DeadlineTimer):
        return f"deadline/{timer.reply_id}"
    return timer.kind


def _key_number(key: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or text.startswith("0") or len(text) > 16:
        raise WireError(f"timer key {key!r}: {text!r} is not a positive decimal number")
    number = int(text)
    if number > MAX_WIRE_INT:
        raise WireError(f"timer key {key!r}: {number} is outside 1..{MAX_WIRE_INT} (2**53-1)")
    return number


def parse_timer_key(key: str) -> Timer:
    """The timer identity a string key names; :class:`WireError` if it names none."""
    if key == HealthTimer.kind:
        return HEALTH
    # The exact inverse of timer_key: an account or reply id may be any string, even empty
    # (the engine accepts those), so everything between the separators belongs to it.
    kind, sep, rest = key.partition("/")
    if sep:
        if kind == DeadlineTimer.kind:
            return DeadlineTimer(rest)
        if kind in (RetryTimer.kind, WatchdogTimer.kind):
            account, sep, number = rest.rpartition("/")
            if sep:
                n = _key_number(key, number)
                return (
                    RetryTimer(account, n) if kind == RetryTimer.kind else WatchdogTimer(account, n)
                )
    kinds = ", ".join(f"{t.kind}/..." if t is not HealthTimer else t.kind for t in TIMER_TYPES)
    raise WireError(f"timer key {key!r} names no timer (known forms: {kinds})")


def _timer_from_key(key: str) -> Timer:
    try:
        return parse_timer_key(key)
    except WireError as exc:
        raise ValidationError(str(exc)) from None


#: A timer identity on the wire: its string key (the one field kind with a codec of its own).
TIMER_KEY: Final = Custom(
    (str,),
    "a timer key string",
    _timer_from_key,
    timer_key,
    {
        "type": "string",
        "description": "a timer key: health, retry/<account>/<generation>, "
        "watchdog/<account>/<attempt> or deadline/<reply_id>",
    },
)

_EVENTS: Final[dict[str, Record]] = {
    cls.type: Record.of(cls, hooks={Timer: TIMER_KEY}, tag=("type", cls.type))
    for cls in EVENT_TYPES
}
_EFFECTS: Final[dict[str, Record]] = {
    cls.type: Record.of(cls, hooks={Timer: TIMER_KEY}, tag=("type", cls.type))
    for cls in EFFECT_TYPES
}
_RECORDS: Final[dict[type, Record]] = {
    **{cls: _EVENTS[cls.type] for cls in EVENT_TYPES},
    **{cls: _EFFECTS[cls.type] for cls in EFFECT_TYPES},
}


def encode(message: Event | Effect) -> dict[str, JsonValue]:
    """The JSON object of an event or effect: ``{"type": ..., <fields>}``."""
    out = _RECORDS[type(message)].encode(message)
    assert isinstance(out, dict)
    return out


def wire_int_ok(value: object) -> bool:
    """Whether ``value`` is not an integer, or one within ``-MAX_WIRE_INT..MAX_WIRE_INT``."""
    return isinstance(value, bool) or not isinstance(value, int) or abs(value) <= MAX_WIRE_INT


def _decode(data: object, registry: Mapping[str, Record], what: str) -> object:
    if not isinstance(data, Mapping):
        raise WireError(f"{what}: expected a JSON object, got {type(data).__name__}")
    tag = data.get("type")
    record = registry.get(tag) if isinstance(tag, str) else None
    if record is None:
        known = ", ".join(sorted(registry))
        raise WireError(f"{what}: unknown type {tag!r} (known: {known})")
    try:
        return record.decode(dict(data))
    except ValidationError as exc:
        exc.path.insert(0, str(tag))
        raise WireError(str(exc)) from None


def decode_event(data: object) -> Event:
    """The event described by a JSON object; :class:`WireError` if it is not one."""
    event = _decode(data, _EVENTS, "event")
    assert isinstance(event, Event)
    return event


def decode_effect(data: object) -> Effect:
    """The effect described by a JSON object; :class:`WireError` if it is not one."""
    effect = _decode(data, _EFFECTS, "effect")
    assert isinstance(effect, Effect)
    return effect


def message_schema(cls: type[Event] | type[Effect]) -> dict[str, JsonValue]:
    """The JSON Schema (draft 2020-12) of one message type, derived from its fields."""
    return _RECORDS[cls].schema()
