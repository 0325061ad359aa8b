"""One controller generation: the lifecycle machine run through its compiled table.

:class:`Controller` runs :data:`~heirline.core.lifecycle.LIFECYCLE`: each
input is first classified (a close by the status policy and the retry count)
into a fine-grained trigger, then the table says where it leads, and only then
is the controller changed, through :meth:`Controller._set_state`, the one place
a state changes. An input the table does not accept raises
:class:`~heirline.core.errors.InvalidTransition` and changes nothing.

A controller opens many sockets over its life (one per connect or retry);
each gets an ``attempt`` number from the account's counter, unique within the
account, and facts about an older socket are recognised by that number. The
controller also runs its socket's transport watchdog as a deadline: armed when
the socket opens, re-armed lazily from activity, and a close with status 499
when the socket stayed silent too long.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from heirline.core.backoff import retry_delay_ms
from heirline.core.effects import (
    CancelTimer,
    CloseSocket,
    Effect,
    Log,
    LogLevel,
    LogValue,
    OpenSocket,
    StartTimer,
)
from heirline.core.errors import InvalidTransition
from heirline.core.identity import NO_KEYS, Keys, SelfIdentity
from heirline.core.lifecycle import (
    _ROWS,
    CLOSE_TRIGGERS,
    LIFECYCLE,
    TERMINAL_STATES,
    LifecycleConfig,
    State,
    Trigger,
)
from heirline.core.policy import CloseAction, Status
from heirline.core.timers import RetryTimer, WatchdogTimer

# Module constants for the hot paths: reading an Enum member off its class is slow on 3.11.
_IDLE, _CONNECTING, _OPEN, _CLOSING, _BACKOFF = (
    State.IDLE,
    State.CONNECTING,
    State.OPEN,
    State.CLOSING,
    State.BACKOFF,
)
_EXHAUSTED = State.EXHAUSTED
_IDENTIFIED = frozenset({State.OPEN, State.CLOSING})
_RETRY, _RECONNECT = CloseAction.RETRY, CloseAction.RECONNECT
_T_START, _T_OPENED, _T_RETRY_DUE, _T_WATCHDOG, _T_STOP = (
    Trigger.START,
    Trigger.OPENED,
    Trigger.RETRY_DUE,
    Trigger.WATCHDOG,
    Trigger.STOP,
)
_T_CLOSE_RETRY, _T_CLOSE_EXHAUSTED = Trigger.CLOSE_RETRY, Trigger.CLOSE_EXHAUSTED
_DEBUG, _INFO, _WARNING, _ERROR = LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARNING, LogLevel.ERROR
_LABELS = {level: level.name.lower() for level in LogLevel}
_WATCHDOG_STATUS = Status.WATCHDOG


@runtime_checkable
class AttemptSource(Protocol):
    """Where socket attempt numbers come from: one counter per account, only growing."""

    def next_attempt(self) -> int:
        """A fresh attempt number, larger than every one issued before for the account."""
        ...


class AttemptCounter:
    """The simplest :class:`AttemptSource`: a counter starting at 1."""

    __slots__ = ("last_attempt",)

    def __init__(self, last_attempt: int = 0) -> None:
        self.last_attempt = last_attempt

    def next_attempt(self) -> int:
        """The next attempt number (1, 2, 3, ...)."""
        self.last_attempt += 1
        return self.last_attempt


def _status_text(status: int | None) -> str:
    return "no status" if status is None else f"status {status}"


class Controller:
    """One controller generation: its lifecycle, its socket and what the socket showed.

    Pure, mutated in place by its engine; every method returns the effects to
    carry out, in order. ``retries`` is the number of retries spent since the
    last healthy connection; ``socket`` the attempt number of the socket being
    connected, open or closed last (``None`` before the first). The identity
    fields are the engine's: ``identity`` of the open socket, ``last_identity``
    of the latest socket even after it closed (a reply captured just after a
    close keeps the identity its message came through), ``keys`` the identity
    resolved through the current mapping. ``activity_ms`` is the socket's last
    sign of life (any activity: the watchdog), ``event_ms`` the last inbound
    message, capture, transmission, ack or lifecycle fact (the health policy's
    stale rule). ``refs`` counts the open replies that
    name this generation (as origin or carrier): the engine forgets a
    generation only once nothing refers to it.
    """

    __slots__ = (
        "account",
        "activity_ms",
        "attempts",
        "config",
        "event_ms",
        "generation",
        "keys",
        "last_change_ms",
        "last_identity",
        "last_status",
        "opened_at_ms",
        "refs",
        "retries",
        "retry_at_ms",
        "retry_timer",
        "socket",
        "started_at_ms",
        "state",
    )

    def __init__(
        self, account: str, generation: int, config: LifecycleConfig, attempts: AttemptSource
    ) -> None:
        self.account = account
        self.generation = generation
        self.config = config
        self.attempts = attempts
        self.state = State.IDLE
        self.retries = 0
        self.socket: int | None = None
        self.started_at_ms: int | None = None
        self.opened_at_ms: int | None = None
        self.retry_at_ms: int | None = None
        self.last_status: int | None = None
        self.last_change_ms = 0
        self.activity_ms = 0  # last sign of life of the current socket (watchdog)
        self.event_ms = 0  # last activity or lifecycle fact (the health policy's stale rule)
        self.last_identity: SelfIdentity | None = None
        self.keys: Keys = NO_KEYS
        self.refs = 0
        self.retry_timer: RetryTimer | None = None  # built at the first backoff, then reused

    def __repr__(self) -> str:
        return (
            f"Controller({self.account!r}, gen={self.generation}, state={self.state.value!r}, "
            f"socket={self.socket}, retries={self.retries})"
        )

    @property
    def is_terminal(self) -> bool:
        """Whether this generation is over (no input is accepted any more)."""
        return self.state in TERMINAL_STATES

    @property
    def has_socket(self) -> bool:
        """Whether the controller has an open, usable socket."""
        return self.state is _OPEN

    @property
    def identity(self) -> SelfIdentity | None:
        """The self identity of the socket while it is open (or being closed); else ``None``."""
        return self.last_identity if self.state in _IDENTIFIED else None

    # ------------------------------------------------------------------ internals

    def _set_state(self, trigger: Trigger, now: int) -> State:
        """The one place a controller changes state: apply the table, record when.

        Raises :class:`~heirline.core.errors.InvalidTransition` (changing
        nothing) when ``trigger`` is not accepted in the current state.
        """
        before = self.state
        try:
            self.state = _ROWS[before][trigger]
        except KeyError:
            raise InvalidTransition(LIFECYCLE.name, before, trigger) from None
        self.last_change_ms = now
        return before

    def _log(self, level: LogLevel, code: str, message: str, **fields: LogValue) -> Log:
        return Log(_LABELS[level], code, message, self.account, self.generation, fields)

    def _open(self) -> OpenSocket:
        attempt = self.attempts.next_attempt()
        self.socket = attempt
        return OpenSocket(self.account, self.generation, attempt)

    def _retry_timer(self) -> RetryTimer:
        timer = self.retry_timer
        if timer is None:
            timer = self.retry_timer = RetryTimer(self.account, self.generation)
        return timer

    def _watchdog_timer(self) -> WatchdogTimer:
        assert self.socket is not None
        return WatchdogTimer(self.account, self.socket)

    # ------------------------------------------------------------------ inputs

    def start(self, now: int) -> list[Effect]:
        """idle -> connecting: open the first socket."""
        self._set_state(_T_START, now)
        self.started_at_ms = now
        out: list[Effect] = [self._open()]
        if self.config.log_level <= _INFO:
            out.append(self._log(_INFO, "lifecycle.connecting", "Connecting.", retry=self.retries))
        return out

    def opened(self, now: int) -> list[Effect]:
        """connecting -> open; arm the watchdog. The retry count resets at a healthy close."""
        self._set_state(_T_OPENED, now)
        self.opened_at_ms = now
        self.activity_ms = now
        out: list[Effect] = []
        watchdog_ms = self.config.watchdog_ms
        if watchdog_ms is not None:
            out.append(StartTimer(self._watchdog_timer(), now + watchdog_ms))
        if self.config.log_level <= _INFO:
            out.append(
                self._log(_INFO, "lifecycle.open", "Web connection open.", retry=self.retries)
            )
        return out

    def activity(self, now: int) -> None:
        """The open socket showed life: push the watchdog's deadline back (lazily)."""
        if now > self.activity_ms:
            self.activity_ms = now

    def watchdog_due(self, now: int) -> list[Effect]:
        """The watchdog timer fired: close a socket silent for too long, else re-arm it."""
        limit = self.config.watchdog_ms
        assert limit is not None
        assert self.state is _OPEN
        silent = now - self.activity_ms
        if silent < limit:
            return [StartTimer(self._watchdog_timer(), self.activity_ms + limit)]
        return self.watchdog(now, silent, fired=True)

    def closed(self, status: int | None, now: int, u: float) -> list[Effect]:
        """The socket closed with ``status``: back off, reconnect at once, or end.

        ``u`` in ``[0, 1)`` is the caller's random draw for the retry delay's jitter.
        """
        backoff = self.config.backoff
        retries = self.retries
        opened_at = self.opened_at_ms
        if opened_at is not None and now - opened_at > backoff.healthy_after_ms:
            retries = 0
        decision = self.config.status_policy.decide(status)
        action = decision.action
        if action is _RECONNECT and self.state is _CONNECTING:
            action = _RETRY  # restart-required before the socket ever opened
        max_attempts = backoff.max_attempts
        if action is _RETRY:
            if retries >= max_attempts:
                trigger = _T_CLOSE_EXHAUSTED
            else:
                retries += 1
                trigger = _T_CLOSE_RETRY
        else:
            trigger = CLOSE_TRIGGERS[action]
        delay = retry_delay_ms(backoff, retries, u) if trigger is _T_CLOSE_RETRY else 0
        was_open = self.state is _OPEN
        # Classified; the table accepts it or raises before anything changes.
        self._set_state(trigger, now)
        dest = self.state
        self.retries = retries
        self.opened_at_ms = None
        self.last_status = status
        out: list[Effect] = []
        if was_open and self.config.watchdog_ms is not None:
            out.append(CancelTimer(self._watchdog_timer()))
        if dest is _BACKOFF:
            retry_at = now + delay
            self.retry_at_ms = retry_at
            out.append(StartTimer(self._retry_timer(), retry_at))
            if self.config.log_level <= _WARNING:
                out.append(
                    self._log(
                        _WARNING,
                        "lifecycle.retry_scheduled",
                        f"Web connection closed ({_status_text(status)}). "
                        f"Retry {retries}/{max_attempts} in {delay / 1000:.2f}s…",
                        status=status,
                        reason=decision.reason,
                        retry=retries,
                        max_attempts=max_attempts,
                        delay_ms=delay,
                    )
                )
            return out
        if dest is _CONNECTING:
            out.append(self._open())
            if self.config.log_level <= _INFO:
                out.append(
                    self._log(
                        _INFO,
                        "lifecycle.reconnect",
                        f"Web connection closed ({_status_text(status)}): {decision.reason}. "
                        "Reconnecting now.",
                        status=status,
                        reason=decision.reason,
                        retry=retries,
                    )
                )
            return out
        if self.config.log_level <= _ERROR:
            what = _status_text(status)
            if dest is _EXHAUSTED:
                message = (
                    f"Web connection closed ({what}). "
                    f"Giving up after {retries}/{max_attempts} retries."
                )
            else:
                message = f"Web connection closed ({what}): {decision.reason}. Not reconnecting."
            out.append(
                self._log(
                    _ERROR,
                    f"lifecycle.{dest.value}",
                    message,
                    status=status,
                    reason=decision.reason,
                    retry=retries,
                    max_attempts=max_attempts,
                )
            )
        return out

    def retry_due(self, now: int) -> list[Effect]:
        """backoff -> connecting: the scheduled retry is due, open a fresh socket."""
        self._set_state(_T_RETRY_DUE, now)
        self.retry_at_ms = None
        out: list[Effect] = [self._open()]
        if self.config.log_level <= _INFO:
            max_attempts = self.config.backoff.max_attempts
            out.append(
                self._log(
                    _INFO,
                    "lifecycle.retrying",
                    f"Retry {self.retries}/{max_attempts}: connecting.",
                    retry=self.retries,
                    max_attempts=max_attempts,
                )
            )
        return out

    def watchdog(self, now: int, silent_ms: int | None = None, fired: bool = False) -> list[Effect]:
        """open -> closing: the socket went silent; ask for a close with status 499.

        ``fired``: the engine's own watchdog timer is what fired (so there is none to cancel);
        otherwise an adapter's watchdog reported the silence and the engine's timer is cancelled.
        """
        self._set_state(_T_WATCHDOG, now)
        reason = "watchdog: no traffic"
        if silent_ms is not None:
            reason = f"watchdog: no traffic for {silent_ms} ms"
        socket = self.socket
        assert socket is not None
        out: list[Effect] = []
        if not fired and self.config.watchdog_ms is not None:
            out.append(CancelTimer(self._watchdog_timer()))
        out.append(CloseSocket(self.account, self.generation, socket, _WATCHDOG_STATUS, reason))
        if self.config.log_level <= _WARNING:
            out.append(
                self._log(
                    _WARNING,
                    "lifecycle.watchdog",
                    f"Closing: {reason}.",
                    silent_ms=silent_ms,
                )
            )
        return out

    def stop(self, reason: str, now: int) -> list[Effect]:
        """Any non-terminal state -> stopped: cancel the retry, close the socket, say why."""
        before = self.state
        self._set_state(_T_STOP, now)
        effects: list[Effect] = []
        if before is _BACKOFF:
            effects.append(CancelTimer(self._retry_timer()))
            self.retry_at_ms = None
        elif before is not _IDLE:
            socket = self.socket
            assert socket is not None
            if before is _OPEN and self.config.watchdog_ms is not None:
                effects.append(CancelTimer(self._watchdog_timer()))
            effects.append(CloseSocket(self.account, self.generation, socket, None, reason))
        self.opened_at_ms = None
        if self.config.log_level <= _INFO:
            effects.append(
                self._log(
                    _INFO,
                    "lifecycle.stopped",
                    f"Stopped: {reason}.",
                    reason=reason,
                    state=before.value,
                )
            )
        return effects
