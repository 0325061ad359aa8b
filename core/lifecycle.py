"""The connection controller's lifecycle: one declared machine, one small controller per generation.

:data:`LIFECYCLE` is the single declaration (states, triggers, transitions).
:class:`Controller` runs it through the compiled flat table: each input is first
classified (a close by the status policy and the retry count) into a
fine-grained trigger, then the table says where it leads, and only then is the
controller changed. An input the table does not accept raises
:class:`~heirline.core.errors.InvalidTransition` and changes nothing; the
engine decides what to do with late facts. Identities are kept by the engine,
not here: the controller tracks the lifecycle only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from heirline.core.backoff import BackoffConfig, retry_delay_ms
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogValue,
    OpenSocket,
    StartTimer,
)
from heirline.core.machine import MachineSpec, Transition
from heirline.core.policy import DEFAULT_STATUS_POLICY, CloseAction, StatusPolicy

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

TERMINAL_STATES: frozenset[str] = frozenset({LOGGED_OUT, REPLACED, FORBIDDEN, EXHAUSTED, STOPPED})
"""States a controller never leaves; its generation is over."""

#: The close trigger for each policy action (``close_exhausted`` is chosen by the retry count).
CLOSE_TRIGGERS: dict[CloseAction, str] = {
    CloseAction.RETRY: "close_retry",
    CloseAction.RECONNECT: "close_reconnect",
    CloseAction.LOGGED_OUT: "close_logged_out",
    CloseAction.REPLACED: "close_replaced",
    CloseAction.FORBIDDEN: "close_forbidden",
}
CLOSE_EXHAUSTED = "close_exhausted"

_CLOSE_DESTS = (
    ("close_retry", BACKOFF),
    ("close_reconnect", CONNECTING),
    (CLOSE_EXHAUSTED, EXHAUSTED),
    ("close_logged_out", LOGGED_OUT),
    ("close_replaced", REPLACED),
    ("close_forbidden", FORBIDDEN),
)

LIFECYCLE = MachineSpec(
    name="lifecycle",
    states=(
        IDLE,
        CONNECTING,
        OPEN,
        CLOSING,
        BACKOFF,
        LOGGED_OUT,
        REPLACED,
        FORBIDDEN,
        EXHAUSTED,
        STOPPED,
    ),
    initial=IDLE,
    terminal=TERMINAL_STATES,
    triggers=(
        "start",
        "opened",
        "close_retry",
        "close_reconnect",
        CLOSE_EXHAUSTED,
        "close_logged_out",
        "close_replaced",
        "close_forbidden",
        "retry_due",
        "watchdog",
        "stop",
    ),
    transitions=(
        Transition(IDLE, "start", CONNECTING),
        Transition(CONNECTING, "opened", OPEN),
        # A socket that never opened cannot be restarted at once (no close_reconnect):
        # a 515 there is classified as a retry, so a server that answers every connect
        # with 515 costs attempts instead of spinning the controller.
        *(
            Transition(CONNECTING, trigger, dest)
            for trigger, dest in _CLOSE_DESTS
            if trigger != "close_reconnect"
        ),
        *(Transition(OPEN, trigger, dest) for trigger, dest in _CLOSE_DESTS),
        Transition(OPEN, "watchdog", CLOSING),
        *(Transition(CLOSING, trigger, dest) for trigger, dest in _CLOSE_DESTS),
        Transition(BACKOFF, "retry_due", CONNECTING),
        *(Transition(state, "stop", STOPPED) for state in (IDLE, CONNECTING, OPEN, CLOSING)),
        Transition(BACKOFF, "stop", STOPPED),
    ),
)
"""The controller lifecycle, declared once (compiled for the hot path, rendered to docs)."""

_TABLE = LIFECYCLE.compile()
_NEXT = _TABLE.next


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Backoff and close policy for a controller (shared by all controllers of a deployment)."""

    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    status_policy: StatusPolicy = DEFAULT_STATUS_POLICY


def retry_timer_key(account: str, generation: int) -> str:
    """The timer key of a controller's scheduled retry: ``retry/<account>/<generation>``."""
    return f"retry/{account}/{generation}"


def _status_text(status: int | None) -> str:
    return "no status" if status is None else f"status {status}"


class Controller:
    """The lifecycle of one controller generation; pure, mutated in place by its engine.

    ``attempt`` is the number of retries spent since the last healthy
    connection. Every method returns the effects to carry out, in order.
    """

    __slots__ = (
        "account",
        "attempt",
        "config",
        "generation",
        "last_change_ms",
        "last_status",
        "opened_at_ms",
        "retry_at_ms",
        "started_at_ms",
        "state",
    )

    def __init__(self, account: str, generation: int, config: LifecycleConfig) -> None:
        self.account = account
        self.generation = generation
        self.config = config
        self.state: str = IDLE
        self.attempt = 0
        self.started_at_ms: int | None = None
        self.opened_at_ms: int | None = None
        self.retry_at_ms: int | None = None
        self.last_status: int | None = None
        self.last_change_ms = 0

    def __repr__(self) -> str:
        return (
            f"Controller({self.account!r}, gen={self.generation}, state={self.state!r}, "
            f"attempt={self.attempt})"
        )

    @property
    def is_terminal(self) -> bool:
        """Whether this generation is over (no input is accepted any more)."""
        return self.state in TERMINAL_STATES

    @property
    def has_socket(self) -> bool:
        """Whether the controller has an open, usable socket."""
        return self.state == OPEN

    def _log(self, level: str, code: str, message: str, **fields: LogValue) -> Log:
        return Log(
            level=level,
            code=code,
            message=message,
            account=self.account,
            generation=self.generation,
            fields=fields,
        )

    def _open(self) -> OpenSocket:
        return OpenSocket(account=self.account, generation=self.generation)

    def start(self, now: int) -> list[Effect]:
        """idle -> connecting: open the first socket."""
        self.state = _NEXT(self.state, "start")
        self.started_at_ms = now
        self.last_change_ms = now
        return [
            self._open(),
            self._log("info", "lifecycle.connecting", "Connecting.", attempt=self.attempt),
        ]

    def opened(self, now: int) -> list[Effect]:
        """connecting -> open. The attempt count is reset at the next close if it was healthy."""
        self.state = _NEXT(self.state, "opened")
        self.opened_at_ms = now
        self.last_change_ms = now
        return [self._log("info", "lifecycle.open", "Web connection open.", attempt=self.attempt)]

    def closed(self, status: int | None, now: int, u: float) -> list[Effect]:
        """The socket closed with ``status``: back off, reconnect at once, or end.

        ``u`` in ``[0, 1)`` is the caller's random draw for the retry delay's jitter.
        """
        backoff = self.config.backoff
        attempt = self.attempt
        opened_at = self.opened_at_ms
        if opened_at is not None and now - opened_at > backoff.healthy_after_ms:
            attempt = 0
        decision = self.config.status_policy.decide(status)
        action = decision.action
        if action is CloseAction.RECONNECT and self.state == CONNECTING:
            action = CloseAction.RETRY  # restart-required before the socket ever opened
        max_attempts = backoff.max_attempts
        if action is CloseAction.RETRY:
            if attempt >= max_attempts:
                trigger = CLOSE_EXHAUSTED
            else:
                attempt += 1
                trigger = "close_retry"
        else:
            trigger = CLOSE_TRIGGERS[action]
        dest = _NEXT(self.state, trigger)
        delay = retry_delay_ms(backoff, attempt, u) if trigger == "close_retry" else 0
        # Accepted: only now change the controller.
        self.state = dest
        self.attempt = attempt
        self.opened_at_ms = None
        self.last_status = status
        self.last_change_ms = now
        what = _status_text(status)
        if dest == BACKOFF:
            retry_at = now + delay
            self.retry_at_ms = retry_at
            return [
                StartTimer(
                    key=retry_timer_key(self.account, self.generation), deadline_ms=retry_at
                ),
                self._log(
                    "warning",
                    "lifecycle.retry_scheduled",
                    f"Web connection closed ({what}). "
                    f"Retry {attempt}/{max_attempts} in {delay / 1000:.2f}s…",
                    status=status,
                    reason=decision.reason,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    delay_ms=delay,
                ),
            ]
        if dest == CONNECTING:
            return [
                self._open(),
                self._log(
                    "info",
                    "lifecycle.reconnect",
                    f"Web connection closed ({what}): {decision.reason}. Reconnecting now.",
                    status=status,
                    reason=decision.reason,
                    attempt=attempt,
                ),
            ]
        if dest == EXHAUSTED:
            message = (
                f"Web connection closed ({what}). Giving up after {attempt}/{max_attempts} retries."
            )
        else:
            message = f"Web connection closed ({what}): {decision.reason}. Not reconnecting."
        return [
            self._log(
                "error",
                f"lifecycle.{dest}",
                message,
                status=status,
                reason=decision.reason,
                attempt=attempt,
                max_attempts=max_attempts,
            )
        ]

    def retry_due(self, now: int) -> list[Effect]:
        """backoff -> connecting: the scheduled retry is due, open a fresh socket."""
        self.state = _NEXT(self.state, "retry_due")
        self.retry_at_ms = None
        self.last_change_ms = now
        max_attempts = self.config.backoff.max_attempts
        return [
            self._open(),
            self._log(
                "info",
                "lifecycle.retrying",
                f"Retry {self.attempt}/{max_attempts}: connecting.",
                attempt=self.attempt,
                max_attempts=max_attempts,
            ),
        ]

    def watchdog(self, now: int, silent_ms: int | None = None) -> list[Effect]:
        """open -> closing: the socket went silent; ask for a close with status 499."""
        self.state = _NEXT(self.state, "watchdog")
        self.last_change_ms = now
        reason = "watchdog: no traffic"
        if silent_ms is not None:
            reason = f"watchdog: no traffic for {silent_ms} ms"
        return [
            CloseSocket(
                account=self.account, generation=self.generation, status=499, reason=reason
            ),
            self._log("warning", "lifecycle.watchdog", f"Closing: {reason}.", silent_ms=silent_ms),
        ]

    def stop(self, reason: str, now: int) -> list[Effect]:
        """Any non-terminal state -> stopped: cancel the retry, close the socket, say why."""
        before = self.state
        self.state = _NEXT(before, "stop")
        self.last_change_ms = now
        effects: list[Effect] = []
        if before == BACKOFF:
            effects.append(CancelTimer(key=retry_timer_key(self.account, self.generation)))
            self.retry_at_ms = None
        elif before != IDLE:
            effects.append(
                CloseSocket(account=self.account, generation=self.generation, reason=reason)
            )
        self.opened_at_ms = None
        effects.append(
            self._log(
                "info", "lifecycle.stopped", f"Stopped: {reason}.", reason=reason, state=before
            )
        )
        return effects
