"""The delivery machine: one :class:`Reply` per captured reply.

A reply is *pending* from capture until its content is ready, then *waiting*
for a usable route or *in flight* through exactly one socket, and ends exactly
once: *delivered*, *refused* (never sent: wrong or unknown identity), *failed*
(never sent: deadline, shutdown, or every attempt failed before any I/O) or
*unknown* (a transmission may have reached the receiver but was never
acknowledged, and resending is not allowed or no longer possible).

As for the lifecycle, guards live outside the table: the reply book first
decides (route, identity verdict, resend rule) and then fires one fine-grained
trigger through :meth:`Reply._set_state`, the one place a reply changes state.
"""

# No `from __future__ import annotations` here: beartype resolves NamedTuple field hints
# at run time, and postponed (string) annotations of a NamedTuple cannot be resolved.
from enum import StrEnum
from typing import NamedTuple

from heirline.core.controller import Controller
from heirline.core.errors import InvalidTransition
from heirline.core.identity import Keys, SelfIdentity, identity_keys
from heirline.core.machine import MachineSpec, Transition


class ReplyState(StrEnum):
    """Where a reply is in its delivery."""

    PENDING = "pending"
    WAITING = "waiting"
    IN_FLIGHT = "in_flight"
    DELIVERED = "delivered"
    REFUSED = "refused"
    FAILED = "failed"
    UNKNOWN = "unknown"


class ReplyTrigger(StrEnum):
    """The classified inputs of the delivery machine."""

    TRANSMIT = "transmit"
    """A route exists: send through it."""
    HOLD = "hold"
    """No usable route yet: wait for an event."""
    REFUSE = "refuse"
    """Routing refuses: identity different, conflicting or never authenticated."""
    REFUSE_UNCLEAR = "refuse_unclear"
    """Routing refuses, but an earlier attempt may have reached the receiver."""
    ACK = "ack"
    """The channel acknowledged a transmission of this reply."""
    LOST_BEFORE_IO = "lost_before_io"
    """The attempt failed before any byte left: free to route again."""
    LOST_RESENDABLE = "lost_resendable"
    """I/O may have started; resend allowed with the same message id."""
    LOST_UNRESENDABLE = "lost_unresendable"
    """I/O may have started and this kind may not be resent."""
    GIVE_UP = "give_up"
    """Attempts exhausted, none of them ever started I/O."""
    DEADLINE = "deadline"
    """Time is up, nothing was ever sent."""
    DEADLINE_UNCLEAR = "deadline_unclear"
    """Time is up, and an earlier attempt may have reached the receiver."""
    SHUTDOWN = "shutdown"
    """The host shut down, nothing was ever sent."""
    SHUTDOWN_UNCLEAR = "shutdown_unclear"
    """The host shut down, and a transmission may have reached the receiver."""


#: The outcomes a reply can end in; exactly one per reply.
TERMINAL_STATES: frozenset[ReplyState] = frozenset(
    {ReplyState.DELIVERED, ReplyState.REFUSED, ReplyState.FAILED, ReplyState.UNKNOWN}
)

#: Operation kinds every socket consumer routes through the same decision.
KINDS = frozenset({"text", "media", "group_metadata", "read_receipt"})

_S = ReplyState
_G = ReplyTrigger
_T = Transition

DELIVERY: MachineSpec[ReplyState, ReplyTrigger] = MachineSpec(
    name="delivery",
    states=tuple(ReplyState),
    initial=_S.PENDING,
    terminal=TERMINAL_STATES,
    triggers=tuple(ReplyTrigger),
    transitions=(
        _T(_S.PENDING, _G.TRANSMIT, _S.IN_FLIGHT),
        _T(_S.PENDING, _G.HOLD, _S.WAITING),
        _T(_S.PENDING, _G.REFUSE, _S.REFUSED),
        _T(_S.PENDING, _G.DEADLINE, _S.FAILED),
        _T(_S.PENDING, _G.SHUTDOWN, _S.FAILED),
        _T(_S.WAITING, _G.TRANSMIT, _S.IN_FLIGHT),
        _T(_S.WAITING, _G.HOLD, _S.WAITING),
        _T(_S.WAITING, _G.REFUSE, _S.REFUSED),
        _T(_S.WAITING, _G.REFUSE_UNCLEAR, _S.UNKNOWN),
        _T(_S.WAITING, _G.ACK, _S.DELIVERED),  # a late ack of an earlier attempt
        _T(_S.WAITING, _G.DEADLINE, _S.FAILED),
        _T(_S.WAITING, _G.DEADLINE_UNCLEAR, _S.UNKNOWN),
        _T(_S.WAITING, _G.SHUTDOWN, _S.FAILED),
        _T(_S.WAITING, _G.SHUTDOWN_UNCLEAR, _S.UNKNOWN),
        _T(_S.IN_FLIGHT, _G.ACK, _S.DELIVERED),
        _T(_S.IN_FLIGHT, _G.LOST_BEFORE_IO, _S.WAITING),
        _T(_S.IN_FLIGHT, _G.LOST_RESENDABLE, _S.WAITING),
        _T(_S.IN_FLIGHT, _G.LOST_UNRESENDABLE, _S.UNKNOWN),
        _T(_S.IN_FLIGHT, _G.GIVE_UP, _S.FAILED),
        _T(_S.IN_FLIGHT, _G.DEADLINE_UNCLEAR, _S.UNKNOWN),
        _T(_S.IN_FLIGHT, _G.SHUTDOWN_UNCLEAR, _S.UNKNOWN),
    ),
)

TABLE = DELIVERY.compile()
_ROWS = TABLE.table


class Reply:
    """One captured reply and its delivery state; mutated only by its book.

    ``origin`` is the capturing controller and ``via`` the one a transmission
    is in flight through (socket ``via_attempt``): both are held while the reply
    is open, so neither generation can be forgotten under it. ``sent`` maps
    every socket attempt that ever carried a transmission to its generation.
    """

    __slots__ = (
        "account",
        "changed",
        "chat",
        "deadline_ms",
        "identity",
        "io_ever_started",
        "keys",
        "kind",
        "message_id",
        "origin",
        "payload",
        "reply_id",
        "sent",
        "state",
        "transmissions",
        "via",
        "via_attempt",
        "wait_reason",
    )

    def __init__(
        self,
        reply_id: str,
        origin: Controller,
        chat: str,
        kind: str,
        message_id: str,
        identity: SelfIdentity,
        deadline_ms: int,
    ) -> None:
        self.reply_id = reply_id
        self.account = origin.account
        self.origin = origin
        self.chat = chat
        self.kind = kind
        self.message_id = message_id
        self.deadline_ms = deadline_ms
        self.identity = identity
        self.keys: Keys = identity_keys(identity)
        self.state = ReplyState.PENDING
        self.payload = ""
        self.via: Controller | None = None
        self.via_attempt: int | None = None
        self.transmissions = 0
        self.io_ever_started = False
        self.sent: dict[int, int] = {}
        self.wait_reason = ""
        #: Where the book collects replies whose durable state changed (``None``: no journal).
        self.changed: dict[str, Reply] | None = None

    def __repr__(self) -> str:
        return f"Reply({self.reply_id!r}, state={self.state.value!r}, via={self.via_attempt})"

    def _set_state(self, trigger: ReplyTrigger) -> None:
        """The one place a reply changes state; raises ``InvalidTransition`` changing nothing."""
        try:
            self.state = _ROWS[self.state][trigger]
        except KeyError:
            raise InvalidTransition(DELIVERY.name, self.state, trigger) from None
        changed = self.changed
        if changed is not None:  # every durable change of a reply comes with a state change
            changed[self.reply_id] = self


class EndedReply(NamedTuple):
    """What is remembered of a reply after it ended: enough to judge a late fact about it."""

    state: ReplyState
    #: Socket attempt -> generation, for every transmission the reply ever had.
    sent: dict[int, int]
    #: The socket attempt whose ack delivered it, if any.
    acked_attempt: int | None
    #: The message id every transmission carried.
    message_id: str
