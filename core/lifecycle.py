"""The connection controller's lifecycle, declared once: states, triggers, transitions.

:data:`LIFECYCLE` is the single declaration; :class:`LifecycleConfig` the
settings every controller of a deployment shares. The controller that runs the
machine is :class:`heirline.core.controller.Controller`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from heirline.core.backoff import BackoffConfig
from heirline.core.effects import (
    LogLevel,
)
from heirline.core.errors import ConfigError
from heirline.core.machine import MachineSpec, Transition
from heirline.core.policy import DEFAULT_STATUS_POLICY, CloseAction, StatusPolicy


class State(StrEnum):
    """Where a controller generation is in its life."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    BACKOFF = "backoff"
    LOGGED_OUT = "logged_out"
    REPLACED = "replaced"
    FORBIDDEN = "forbidden"
    EXHAUSTED = "exhausted"
    STOPPED = "stopped"


class Trigger(StrEnum):
    """The classified inputs of the lifecycle machine."""

    START = "start"
    OPENED = "opened"
    CLOSE_RETRY = "close_retry"
    CLOSE_RECONNECT = "close_reconnect"
    CLOSE_EXHAUSTED = "close_exhausted"
    CLOSE_LOGGED_OUT = "close_logged_out"
    CLOSE_REPLACED = "close_replaced"
    CLOSE_FORBIDDEN = "close_forbidden"
    RETRY_DUE = "retry_due"
    WATCHDOG = "watchdog"
    STOP = "stop"


TERMINAL_STATES: frozenset[State] = frozenset(
    {State.LOGGED_OUT, State.REPLACED, State.FORBIDDEN, State.EXHAUSTED, State.STOPPED}
)
"""States a controller never leaves; its generation is over."""

#: States in which the controller has a socket being connected, open, or being closed.
SOCKET_STATES: frozenset[State] = frozenset({State.CONNECTING, State.OPEN, State.CLOSING})

#: The close trigger for each policy action (``CLOSE_EXHAUSTED`` is chosen by the retry count).
CLOSE_TRIGGERS: dict[CloseAction, Trigger] = {
    CloseAction.RETRY: Trigger.CLOSE_RETRY,
    CloseAction.RECONNECT: Trigger.CLOSE_RECONNECT,
    CloseAction.LOGGED_OUT: Trigger.CLOSE_LOGGED_OUT,
    CloseAction.REPLACED: Trigger.CLOSE_REPLACED,
    CloseAction.FORBIDDEN: Trigger.CLOSE_FORBIDDEN,
}

_CLOSE_DESTS: tuple[tuple[Trigger, State], ...] = (
    (Trigger.CLOSE_RETRY, State.BACKOFF),
    (Trigger.CLOSE_RECONNECT, State.CONNECTING),
    (Trigger.CLOSE_EXHAUSTED, State.EXHAUSTED),
    (Trigger.CLOSE_LOGGED_OUT, State.LOGGED_OUT),
    (Trigger.CLOSE_REPLACED, State.REPLACED),
    (Trigger.CLOSE_FORBIDDEN, State.FORBIDDEN),
)

#: The closes of a socket that never opened: all but ``close_reconnect``.
_CLOSE_DESTS_UNOPENED = tuple(p for p in _CLOSE_DESTS if p[0] is not Trigger.CLOSE_RECONNECT)

_T = Transition

LIFECYCLE: MachineSpec[State, Trigger] = MachineSpec(
    name="lifecycle",
    states=tuple(State),
    initial=State.IDLE,
    terminal=TERMINAL_STATES,
    triggers=tuple(Trigger),
    transitions=(
        _T(State.IDLE, Trigger.START, State.CONNECTING),
        _T(State.CONNECTING, Trigger.OPENED, State.OPEN),
        # A socket that never opened cannot be restarted at once (no close_reconnect):
        # a 515 there is classified as a retry, so a server that answers every connect
        # with 515 costs attempts instead of spinning the controller.
        *(_T(State.CONNECTING, trigger, dest) for trigger, dest in _CLOSE_DESTS_UNOPENED),
        *(_T(State.OPEN, trigger, dest) for trigger, dest in _CLOSE_DESTS),
        _T(State.OPEN, Trigger.WATCHDOG, State.CLOSING),
        *(_T(State.CLOSING, trigger, dest) for trigger, dest in _CLOSE_DESTS),
        _T(State.BACKOFF, Trigger.RETRY_DUE, State.CONNECTING),
        *(
            _T(state, Trigger.STOP, State.STOPPED)
            for state in (State.IDLE, State.CONNECTING, State.OPEN, State.CLOSING, State.BACKOFF)
        ),
    ),
)
"""The controller lifecycle, declared once (compiled for the hot path, rendered to docs)."""

_TABLE = LIFECYCLE.compile()
_ROWS = _TABLE.table


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Backoff, close policy and watchdog of the controllers of one deployment.

    ``watchdog_ms``: an open socket with no activity (a frame, an inbound
    message, a capture, an ack) for this long is closed with status 499 and
    reconnects; ``None``
    turns the engine's watchdog off (openclaw's transport watchdog: 5 min).
    ``log_level``: records below it are not built at all.
    """

    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    status_policy: StatusPolicy = DEFAULT_STATUS_POLICY
    watchdog_ms: int | None = 300_000
    #: The lowest level of the controllers' log records to build (the engine sets it).
    log_level: LogLevel = LogLevel.DEBUG

    def __post_init__(self) -> None:
        w = self.watchdog_ms
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ConfigError(f"LifecycleConfig.watchdog_ms must be an int >= 1 or None, got {w!r}")
