"""The lossless JSON form of events and effects, and its JSON Schema.

One mechanism serves every message type: the dataclass fields and their
annotations are read once into a small field table, which drives encoding,
strict decoding (wrong type, missing or unknown field -> :class:`WireError`
naming the field) and the generated schema. Nothing here does I/O; turning
the dicts into bytes is the adapter's job.

Two field kinds have a JSON form of their own, encoded here and only here: a
timer identity is a string key (:func:`timer_key`: ``health``,
``retry/<account>/<generation>``, ``watchdog/<account>/<attempt>``,
``deadline/<reply_id>``), and an enumeration is its value.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from typing import Final, TypeVar

from heirline.core.effects import EFFECT_TYPES, Effect
from heirline.core.errors import WireError
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

M = TypeVar("M", Event, Effect)

_SCALARS: Final = (str, int, float, bool)

#: The largest integer magnitude a message may carry: every binding holds it exactly
#: (JavaScript's numbers are doubles, exact up to ``2**53 - 1`` = ``Number.MAX_SAFE_INTEGER``).
MAX_WIRE_INT: Final = 2**53 - 1


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kinds: tuple[type, ...]  # allowed scalar types; dict for a mapping of scalars
    optional: bool  # None allowed
    required: bool  # no default
    codec: str = ""  # "timer": a timer key string; "enum": the value of ``kinds[0]``


def _field_table(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    table: list[_Field] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        origin_args = tuple(typing.get_origin(a) or a for a in args)
        kinds = tuple(a for a in origin_args if a is not type(None))
        codec = ""
        if set(kinds) == set(TIMER_TYPES):
            codec, kinds = "timer", (str,)
        elif len(kinds) == 1 and issubclass(kinds[0], enum.Enum):
            codec = "enum"
        table.append(
            _Field(
                name=f.name,
                kinds=kinds,
                optional=type(None) in origin_args,
                required=f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING,
                codec=codec,
            )
        )
    return tuple(table)


_EVENTS: Final[dict[str, type[Event]]] = {cls.type: cls for cls in EVENT_TYPES}
_EFFECTS: Final[dict[str, type[Effect]]] = {cls.type: cls for cls in EFFECT_TYPES}
_FIELDS: Final[dict[type, tuple[_Field, ...]]] = {
    cls: _field_table(cls) for cls in (*EVENT_TYPES, *EFFECT_TYPES)
}


def encode(message: Event | Effect) -> dict[str, JsonValue]:
    """The JSON object of an event or effect: ``{"type": ..., <fields>}``."""
    out: dict[str, JsonValue] = {"type": message.type}
    for f in _FIELDS[type(message)]:
        value = getattr(message, f.name)
        if f.codec == "timer":
            value = timer_key(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[f.name] = dict(value) if isinstance(value, dict) else value
    return out


def wire_int_ok(value: object) -> bool:
    """Whether ``value`` is not an integer, or one within ``-MAX_WIRE_INT..MAX_WIRE_INT``."""
    return isinstance(value, bool) or not isinstance(value, int) or abs(value) <= MAX_WIRE_INT


def _check(cls: type, f: _Field, value: object) -> object:
    where = f"{getattr(cls, 'type', cls.__name__)}.{f.name}"
    if value is None:
        if f.optional:
            return None
        raise WireError(f"{where}: must not be null")
    if dict in f.kinds:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, _SCALARS)) for k, v in value.items()
        ):
            raise WireError(f"{where}: expected an object of scalars, got {value!r}")
        for k, v in value.items():
            if not wire_int_ok(v):
                raise WireError(f"{where}.{k}: integer {v} is outside +-{MAX_WIRE_INT} (2**53-1)")
        return dict(value)
    if f.codec == "enum":
        allowed = [m.value for m in typing.cast(type[enum.Enum], f.kinds[0])]
        if not isinstance(value, str) or value not in allowed:
            raise WireError(f"{where}: expected one of {allowed}, got {value!r}")
        return f.kinds[0](value)
    if f.codec == "timer":
        if not isinstance(value, str):
            raise WireError(f"{where}: expected a timer key string, got {value!r}")
        return parse_timer_key(value)
    # bool is an int in Python; JSON keeps them apart and so do we.
    if isinstance(value, bool) != (bool in f.kinds) or not isinstance(value, f.kinds):
        names = " or ".join(k.__name__ for k in f.kinds)
        raise WireError(f"{where}: expected {names}, got {type(value).__name__} {value!r}")
    # One rule for every integer field: only values every binding holds exactly.
    if not wire_int_ok(value):
        raise WireError(f"{where}: integer {value} is outside +-{MAX_WIRE_INT} (2**53-1)")
    return value


def _decode(data: object, registry: Mapping[str, type[M]], what: str) -> M:
    if not isinstance(data, Mapping):
        raise WireError(f"{what}: expected a JSON object, got {type(data).__name__}")
    tag = data.get("type")
    cls = registry.get(tag) if isinstance(tag, str) else None
    if cls is None:
        known = ", ".join(sorted(registry))
        raise WireError(f"{what}: unknown type {tag!r} (known: {known})")
    table = _FIELDS[cls]
    names = {f.name for f in table}
    unknown = sorted(set(data) - names - {"type"})
    if unknown:
        raise WireError(f"{tag}: unknown field(s) {', '.join(unknown)}")
    kwargs: dict[str, object] = {}
    for f in table:
        if f.name in data:
            kwargs[f.name] = _check(cls, f, data[f.name])
        elif f.required:
            raise WireError(f"{tag}.{f.name}: missing required field")
    return cls(**kwargs)


def decode_event(data: object) -> Event:
    """The event described by a JSON object; :class:`WireError` if it is not one."""
    return _decode(data, _EVENTS, "event")


def decode_effect(data: object) -> Effect:
    """The effect described by a JSON object; :class:`WireError` if it is not one."""
    return _decode(data, _EFFECTS, "effect")


_SCHEMA_TYPES: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
}


def message_schema(cls: type[Event] | type[Effect]) -> dict[str, JsonValue]:
    """The JSON Schema (draft 2020-12) of one message type, derived from its fields."""
    props: dict[str, JsonValue] = {"type": {"const": cls.type}}
    required: list[JsonValue] = ["type"]
    for f in _FIELDS[cls]:
        if f.codec == "enum":
            members = typing.cast(type[enum.Enum], f.kinds[0])
            props[f.name] = {"enum": [m.value for m in members]}
            if f.required:
                required.append(f.name)
            continue
        names: list[JsonValue] = [_SCHEMA_TYPES[k] for k in f.kinds]
        if f.optional:
            names.append("null")
        prop: dict[str, JsonValue] = {"type": names[0] if len(names) == 1 else names}
        if f.codec == "timer":
            prop["description"] = (
                "a timer key: health, retry/<account>/<generation>, "
                "watchdog/<account>/<attempt> or deadline/<reply_id>"
            )
        if dict in f.kinds:
            prop["additionalProperties"] = {"type": ["string", "number", "boolean", "null"]}
        props[f.name] = prop
        if f.required:
            required.append(f.name)
    return {
        "title": cls.__name__,
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
