"""Effects: everything the engine wants done or wants known.

The engine never does I/O; ``Engine.handle`` returns a list of effects and the
adapter carries them out in order. Effects are frozen, slotted dataclasses with
a lossless JSON form (see :mod:`heirline.core.wire`).
"""

from __future__ import annotations

from dataclasses import field
from enum import IntEnum
from typing import ClassVar

from heirline.core.message import message
from heirline.core.timers import Timer

#: Scalar values allowed in a log record's ``fields``.
LogValue = str | int | float | bool | None


class LogLevel(IntEnum):
    """How much the engine says: it builds a ``Log`` only at or above its configured level.

    A log record costs as much as the rest of a lifecycle event; an embedder who
    does not read debug records does not pay for them. ``OFF`` builds none.
    """

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    OFF = 100

    @property
    def label(self) -> str:
        """The level as a ``Log`` record names it (``"debug"`` ... ``"error"``)."""
        return self.name.lower()


@message
class Effect:
    """Base class of every effect. ``type`` is the tag used in the JSON form."""

    type: ClassVar[str] = "effect"


@message
class OpenSocket(Effect):
    """Open a fresh socket, number ``attempt``, for controller ``generation`` of ``account``.

    ``attempt`` is unique within the account and only grows; every fact about
    this socket echoes it.
    """

    type: ClassVar[str] = "open_socket"
    account: str
    generation: int
    attempt: int


@message
class CloseSocket(Effect):
    """Close socket ``attempt`` (``status`` is what to report, e.g. 499 for the watchdog)."""

    type: ClassVar[str] = "close_socket"
    account: str
    generation: int
    attempt: int
    status: int | None = None
    reason: str = ""


@message
class StartTimer(Effect):
    """Report ``TimerFired(timer)`` at ``deadline_ms`` (absolute); replaces a pending ``timer``."""

    type: ClassVar[str] = "start_timer"
    timer: Timer
    deadline_ms: int


@message
class CancelTimer(Effect):
    """Forget ``timer`` if it has not fired."""

    type: ClassVar[str] = "cancel_timer"
    timer: Timer


@message
class Registered(Effect):
    """``generation`` is now the current controller of ``account`` (``predecessor`` it replaced)."""

    type: ClassVar[str] = "registered"
    account: str
    generation: int
    predecessor: int | None = None


@message
class RegisterRequest(Effect):
    """Ask the external registry to make ``generation`` the owner of ``account``.

    Only an engine with an external registry emits it; the answer comes back as
    a ``RegistryAnswer`` event, and the controller opens no socket before it.
    """

    type: ClassVar[str] = "register_request"
    account: str
    generation: int


@message
class Unregistered(Effect):
    """``generation`` is no longer the current controller of ``account``."""

    type: ClassVar[str] = "unregistered"
    account: str
    generation: int


@message
class Transmit(Effect):
    """Send the reply through socket ``attempt`` of controller ``generation``, as ``message_id``.

    ``message_id`` is stable across transmissions of one reply, so a receiver
    that deduplicates by id never shows it twice. ``transmission`` counts this
    reply's transmissions (1, 2, ...).
    """

    type: ClassVar[str] = "transmit"
    reply_id: str
    account: str
    generation: int
    attempt: int
    message_id: str
    chat: str
    kind: str
    payload: str
    transmission: int


@message
class ReplyDelivered(Effect):
    """Terminal: the reply was acknowledged through ``generation`` (``via`` origin or successor)."""

    type: ClassVar[str] = "reply_delivered"
    reply_id: str
    generation: int
    via: str


@message
class ReplyFailed(Effect):
    """Terminal: the reply did not go out (``outcome`` refused or failed) or may have (unknown)."""

    type: ClassVar[str] = "reply_failed"
    reply_id: str
    outcome: str
    reason: str


@message
class Log(Effect):
    """A structured log record; ``message`` is the human line, ``fields`` the data behind it."""

    type: ClassVar[str] = "log"
    level: str
    code: str
    message: str
    account: str | None = None
    generation: int | None = None
    fields: dict[str, LogValue] = field(default_factory=dict)


@message
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
    RegisterRequest,
    Unregistered,
    Transmit,
    ReplyDelivered,
    ReplyFailed,
    Log,
    Rejected,
)
