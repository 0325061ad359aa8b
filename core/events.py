"""Events: the facts an adapter reports to the engine.

Each event is a small frozen, slotted dataclass. The current time is *not* part
of an event: it is the second argument of ``Engine.handle(event, now)``, in
integer milliseconds on whatever clock the host chooses (virtual in tests).
Identity fields arrive as strings, exactly as the channel showed them; the
engine parses them, so a malformed JID becomes an explicit error effect rather
than a silent "no identity".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every event. ``type`` is the tag used in the JSON form."""

    type: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True, kw_only=True)
class Start(Event):
    """Start a new controller generation for ``account`` (it replaces the current one)."""

    type: ClassVar[str] = "start"
    account: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop(Event):
    """The owner shuts controller ``generation`` of ``account`` down."""

    type: ClassVar[str] = "stop"
    account: str
    generation: int
    reason: str = "owner"


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketOpened(Event):
    """The controller's socket is open and logged in as this self identity.

    All three identity forms may be missing (an unauthenticated socket).
    """

    type: ClassVar[str] = "socket_opened"
    account: str
    generation: int
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketClosed(Event):
    """The controller's socket closed, with the channel's status code if it gave one."""

    type: ClassVar[str] = "socket_closed"
    account: str
    generation: int
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchdogSilence(Event):
    """The adapter's watchdog saw no traffic on the socket for ``silent_ms``."""

    type: ClassVar[str] = "watchdog_silence"
    account: str
    generation: int
    silent_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    """A deadline the engine asked for (``StartTimer``) has been reached."""

    type: ClassVar[str] = "timer_fired"
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck(Event):
    """The host asks the health policy to evaluate every controller now."""

    type: ClassVar[str] = "health_check"


@dataclass(frozen=True, slots=True, kw_only=True)
class MappingLearned(Event):
    """A phone-number JID and a LID belong to the same user (auth dir or live update)."""

    type: ClassVar[str] = "mapping_learned"
    pn: str
    lid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyCaptured(Event):
    """An inbound message was handled by ``generation``: capture the reply context.

    The origin's self identity is snapshotted (and resolved) now. ``kind`` is the
    operation: ``text``, ``media``, ``group_metadata`` or ``read_receipt``.
    ``deadline_ms`` is absolute; when omitted the engine's default applies.
    ``message_id`` is the id every transmission of this reply carries (the
    receiver deduplicates by it); when omitted it is the ``reply_id``.
    """

    type: ClassVar[str] = "reply_captured"
    reply_id: str
    account: str
    generation: int
    chat: str
    kind: str = "text"
    deadline_ms: int | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyReady(Event):
    """The reply's content is ready: route it and send it."""

    type: ClassVar[str] = "reply_ready"
    reply_id: str
    payload: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransmitAcked(Event):
    """The channel acknowledged the transmission of ``reply_id`` through ``generation``."""

    type: ClassVar[str] = "transmit_acked"
    reply_id: str
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransmitFailed(Event):
    """A transmission did not complete.

    ``io_started`` is false only when the adapter knows no byte left the
    process (for instance the socket was already closed); otherwise the
    receiver may or may not have the message.
    """

    type: ClassVar[str] = "transmit_failed"
    reply_id: str
    generation: int
    io_started: bool
    error: str = ""


EVENT_TYPES: tuple[type[Event], ...] = (
    Start,
    Stop,
    SocketOpened,
    SocketClosed,
    WatchdogSilence,
    TimerFired,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    TransmitAcked,
    TransmitFailed,
)
