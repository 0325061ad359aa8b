"""The delivery machine: one per captured reply.

A reply is *pending* from capture until its content is ready, then *waiting*
for a usable route or *in flight* through exactly one controller generation,
and ends exactly once: *delivered*, *refused* (never sent: wrong or unknown
identity), *failed* (never sent: deadline, or every attempt failed before any
I/O) or *unknown* (a transmission may have reached the receiver but was never
acknowledged, and resending is not allowed or no longer possible).

As for the lifecycle, guards live outside the table: the engine first decides
(route, identity verdict, resend rule) and then fires one fine-grained trigger.
"""

from __future__ import annotations

from heirline.core.machine import MachineSpec, Transition

PENDING = "pending"
WAITING = "waiting"
IN_FLIGHT = "in_flight"
DELIVERED = "delivered"
REFUSED = "refused"
FAILED = "failed"
UNKNOWN = "unknown"

#: The outcomes a reply can end in; exactly one per reply.
TERMINAL_STATES = frozenset({DELIVERED, REFUSED, FAILED, UNKNOWN})

#: Operation kinds every socket consumer routes through the same decision.
KINDS = frozenset({"text", "media", "group_metadata", "read_receipt"})

_T = Transition

DELIVERY = MachineSpec(
    name="delivery",
    states=(PENDING, WAITING, IN_FLIGHT, DELIVERED, REFUSED, FAILED, UNKNOWN),
    initial=PENDING,
    terminal=TERMINAL_STATES,
    triggers=(
        "transmit",  # a route exists: send through it
        "hold",  # no usable route yet: wait for an event
        "refuse",  # routing refuses: identity different, conflicting or never authenticated
        "refuse_unclear",  # routing refuses, but an earlier attempt may have reached the receiver
        "ack",  # the channel acknowledged a transmission of this reply
        "lost_before_io",  # the attempt failed before any byte left: free to route again
        "lost_resendable",  # I/O may have started; resend allowed with the same message id
        "lost_unresendable",  # I/O may have started and this kind may not be resent
        "give_up",  # attempts exhausted, none of them ever started I/O
        "deadline",  # time is up, nothing was ever sent
        "deadline_unclear",  # time is up, and an earlier attempt may have reached the receiver
    ),
    transitions=(
        _T(PENDING, "transmit", IN_FLIGHT),
        _T(PENDING, "hold", WAITING),
        _T(PENDING, "refuse", REFUSED),
        _T(PENDING, "deadline", FAILED),
        _T(WAITING, "transmit", IN_FLIGHT),
        _T(WAITING, "hold", WAITING),
        _T(WAITING, "refuse", REFUSED),
        _T(WAITING, "refuse_unclear", UNKNOWN),
        _T(WAITING, "ack", DELIVERED),  # a late ack of an earlier attempt
        _T(WAITING, "deadline", FAILED),
        _T(WAITING, "deadline_unclear", UNKNOWN),
        _T(IN_FLIGHT, "ack", DELIVERED),
        _T(IN_FLIGHT, "lost_before_io", WAITING),
        _T(IN_FLIGHT, "lost_resendable", WAITING),
        _T(IN_FLIGHT, "lost_unresendable", UNKNOWN),
        _T(IN_FLIGHT, "give_up", FAILED),
        _T(IN_FLIGHT, "deadline_unclear", UNKNOWN),
    ),
)

TABLE = DELIVERY.compile()
