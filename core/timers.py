"""Timer identities: small typed values, one class per kind of deadline.

The engine asks for a timer with ``StartTimer(timer, deadline_ms)`` and hears
back ``TimerFired(timer)``; it dispatches on the class, never on a string.
Each identity is hashable, so a runtime can key its pending timers by it, and
starting a timer with an identity that is pending replaces it. The string form
(``retry/<account>/<generation>`` ...) exists only at the wire edge
(:mod:`heirline.core.wire`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final


@dataclass(frozen=True, slots=True)
class HealthTimer:
    """The engine's own periodic health check (there is one)."""

    kind: ClassVar[str] = "health"


@dataclass(frozen=True, slots=True)
class RetryTimer:
    """A controller generation's scheduled reconnect after a backoff delay."""

    kind: ClassVar[str] = "retry"
    account: str
    generation: int


@dataclass(frozen=True, slots=True)
class WatchdogTimer:
    """The transport watchdog of one socket (``attempt``) of ``account``."""

    kind: ClassVar[str] = "watchdog"
    account: str
    attempt: int


@dataclass(frozen=True, slots=True)
class DeadlineTimer:
    """A captured reply's deadline: by then it has ended, one way or another."""

    kind: ClassVar[str] = "deadline"
    reply_id: str


#: Every timer identity the engine uses.
Timer = HealthTimer | RetryTimer | WatchdogTimer | DeadlineTimer

#: The one health timer.
HEALTH: Final = HealthTimer()

TIMER_TYPES: Final[tuple[type[HealthTimer | RetryTimer | WatchdogTimer | DeadlineTimer], ...]] = (
    HealthTimer,
    RetryTimer,
    WatchdogTimer,
    DeadlineTimer,
)
