"""Effects: everything the engine wants done or wants known.

The engine never does I/O; ``Engine.handle`` returns a list of effects and the
adapter carries them out in order. Effects are frozen, slotted dataclasses with
a lossless JSON form (see :mod:`heirline.core.wire`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

#: Scalar values allowed in a log record's ``fields``.
LogValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Effect:
    """Base class of every effect. ``type`` is the tag used in the JSON form."""

    type: ClassVar[str] = "effect"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSocket(Effect):
    """Open a fresh socket for controller ``generation`` of ``account``."""

    type: ClassVar[str] = "open_socket"
    account: str
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseSocket(Effect):
    """Close the controller's socket (``status`` is what to report, e.g. 499 for the watchdog)."""

    type: ClassVar[str] = "close_socket"
    account: str
    generation: int
    status: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(Effect):
    """Report ``TimerFired(key)`` at ``deadline_ms`` (absolute); replaces a timer of that key."""

    type: ClassVar[str] = "start_timer"
    key: str
    deadline_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(Effect):
    """Forget the timer ``key`` if it has not fired."""

    type: ClassVar[str] = "cancel_timer"
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(Effect):
    """``generation`` is now the current controller of ``account`` (``predecessor`` it replaced)."""

    type: ClassVar[str] = "registered"
    account: str
    generation: int
    predecessor: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered(Effect):
    """``generation`` is no longer the current controller of ``account``."""

    type: ClassVar[str] = "unregistered"
    account: str
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmit(Effect):
    """Send the reply through controller ``generation``'s socket, with ``message_id``.

    ``message_id`` is stable across attempts of one reply, so a receiver that
    deduplicates by id never shows it twice.
    """

    type: ClassVar[str] = "transmit"
    reply_id: str
    account: str
    generation: int
    message_id: str
    chat: str
    kind: str
    payload: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyDelivered(Effect):
    """Terminal: the reply was acknowledged through ``generation`` (``via`` origin or successor)."""

    type: ClassVar[str] = "reply_delivered"
    reply_id: str
    generation: int
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyFailed(Effect):
    """Terminal: the reply did not go out (``outcome`` refused or failed) or may have (unknown)."""

    type: ClassVar[str] = "reply_failed"
    reply_id: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Log(Effect):
    """A structured log record; ``message`` is the human line, ``fields`` the data behind it."""

    type: ClassVar[str] = "log"
    level: str
    code: str
    message: str
    account: str | None = None
    generation: int | None = None
    fields: dict[str, LogValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(Effect):
    """The input was not acceptable; the engine state is unchanged. ``code`` is stable."""

    type: ClassVar[str] = "rejected"
    code: str
    message: str


EFFECT_TYPES: tuple[type[Effect], ...] = (
    OpenSocket,
    CloseSocket,
    StartTimer,
    CancelTimer,
    Registered,
    Unregistered,
    Transmit,
    ReplyDelivered,
    ReplyFailed,
    Log,
    Rejected,
)
