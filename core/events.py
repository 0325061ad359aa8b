"""Events: the facts an adapter reports to the engine.

Each event is a small immutable record (:func:`~heirline.core.message.message`).
The current time is *not* part of an event: it is the second argument of
``Engine.handle(event, now)``, in integer milliseconds on whatever clock the
host chooses (virtual in tests). Identity fields arrive as strings, exactly as
the channel showed them; the engine parses them, so a malformed JID becomes an
explicit rejection rather than a silent "no identity".

Sockets are named by ``attempt``: every ``OpenSocket`` carries a number unique
within the account (it only grows), and every fact about that socket echoes
it, so the engine tells a late fact about an older socket from a fact about
the current one by comparing numbers, whatever order the transport used.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from heirline.core.message import message
from heirline.core.timers import Timer


class ActivityKind(StrEnum):
    """What an :class:`Activity` fact saw."""

    FRAME = "frame"
    """A transport frame (a keepalive, a receipt, any bytes): feeds the watchdog."""
    INBOUND = "inbound"
    """An inbound message was handled: feeds the watchdog and the health stale rule."""


@message
class Event:
    """Base class of every event. ``type`` is the tag used in the JSON form."""

    type: ClassVar[str] = "event"


@message
class Start(Event):
    """Start a new controller generation for ``account`` (it replaces the current one)."""

    type: ClassVar[str] = "start"
    account: str


@message
class Stop(Event):
    """The owner shuts controller ``generation`` of ``account`` down."""

    type: ClassVar[str] = "stop"
    account: str
    generation: int
    reason: str = "owner"


@message
class SocketOpened(Event):
    """Socket ``attempt`` of the controller is open and logged in as this self identity.

    All three identity forms may be missing (an unauthenticated socket).
    """

    type: ClassVar[str] = "socket_opened"
    account: str
    generation: int
    attempt: int
    pn: str | None = None
    lid: str | None = None
    e164: str | None = None


@message
class SocketClosed(Event):
    """Socket ``attempt`` closed, with the channel's status code if it gave one."""

    type: ClassVar[str] = "socket_closed"
    account: str
    generation: int
    attempt: int
    status: int | None = None


@message
class Activity(Event):
    """Socket ``attempt`` showed life: a transport frame, or an inbound message handled."""

    type: ClassVar[str] = "activity"
    account: str
    generation: int
    attempt: int
    kind: ActivityKind = ActivityKind.FRAME


@message
class WatchdogSilence(Event):
    """An adapter's own watchdog saw no traffic on socket ``attempt`` for ``silent_ms``.

    The engine runs a watchdog of its own from :class:`Activity` facts; this
    event is for hosts whose transport library already has one.
    """

    type: ClassVar[str] = "watchdog_silence"
    account: str
    generation: int
    attempt: int
    silent_ms: int


@message
class TimerFired(Event):
    """A deadline the engine asked for (``StartTimer``) has been reached."""

    type: ClassVar[str] = "timer_fired"
    timer: Timer


@message
class HealthCheck(Event):
    """The host asks the health policy to evaluate every controller now."""

    type: ClassVar[str] = "health_check"


@message
class MappingLearned(Event):
    """A phone-number JID and a LID belong to the same user (auth dir or live update)."""

    type: ClassVar[str] = "mapping_learned"
    pn: str
    lid: str


@message
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


@message
class ReplyReady(Event):
    """The reply's content is ready: route it and send it."""

    type: ClassVar[str] = "reply_ready"
    reply_id: str
    payload: str = ""


@message
class TransmitAcked(Event):
    """The channel acknowledged the transmission of ``reply_id`` through socket ``attempt``."""

    type: ClassVar[str] = "transmit_acked"
    reply_id: str
    generation: int
    attempt: int


@message
class TransmitFailed(Event):
    """A transmission through socket ``attempt`` did not complete.

    ``io_started`` is false only when the adapter knows no byte left the
    process (for instance the socket was already closed); otherwise the
    receiver may or may not have the message.
    """

    type: ClassVar[str] = "transmit_failed"
    reply_id: str
    generation: int
    attempt: int
    io_started: bool
    error: str = ""


@message
class RegistryAnswer(Event):
    """An external registry answered a ``RegisterRequest`` for ``generation`` of ``account``.

    Only an engine built with an external registry (``EngineConfig.external_registry``)
    asks; the in-memory registry answers within the same step. ``granted``
    false means another owner holds the account (``reason`` says why).
    """

    type: ClassVar[str] = "registry_answer"
    account: str
    generation: int
    granted: bool
    reason: str = ""


@message
class Shutdown(Event):
    """The host is going away: stop every controller and end every open reply, once.

    A reply that never started I/O fails with ``reason``; one that may have
    reached the receiver ends ``unknown``. The engine accepts nothing after it.
    """

    type: ClassVar[str] = "shutdown"
    reason: str = "shutdown"


EVENT_TYPES: tuple[type[Event], ...] = (
    Start,
    Stop,
    SocketOpened,
    SocketClosed,
    Activity,
    WatchdogSilence,
    TimerFired,
    HealthCheck,
    MappingLearned,
    ReplyCaptured,
    ReplyReady,
    TransmitAcked,
    TransmitFailed,
    RegistryAnswer,
    Shutdown,
)
