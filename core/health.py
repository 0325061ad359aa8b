"""The health policy: from controller snapshots and the time, decide restart or not.

Pure: time comes in as integer milliseconds, nothing is read from a clock. A
:class:`HealthMonitor` keeps only per-account restart history (for cooldown
and the restart-intensity limit), mutated in place by its owner: at most the
restarts within the window per account, and nothing once the owner stops the
account or hands it over (:meth:`HealthMonitor.forget`).

What is wanted, from a snapshot (first match wins):

* account not expected to run -> HEALTHY (nothing to restart);
* ``logged_out`` / ``replaced`` / ``forbidden`` -> HOLD with that reason: a
  restart cannot fix them, and restarting on 440 is how two gateways fight;
* ``exhausted`` -> restart GAVE_UP; ``stopped`` -> restart STOPPED;
* ``open`` with no activity for longer than ``stale_after_ms`` -> restart STALE
  (activity: inbound messages, captures, transmissions, acks -- a busy socket
  is never stale);
* any other state younger than ``connect_grace_ms`` -> HEALTHY (still starting);
* ``retries >= gave_up_attempts``, only when the controller's own retry budget
  is unknown (``max_attempts`` is ``None``) -> restart GAVE_UP; a controller
  that knows its budget gives up by itself (``exhausted``), so the monitor
  never cuts its remaining retries short;
* ``connecting`` for longer than ``connect_grace_ms`` -> restart STUCK;
* ``backoff`` / ``closing`` / ``idle`` -> restart DISCONNECTED.

A wanted restart is then held (HOLD, same reason, detail says why) by, in this
order: the monitor's start-up grace, the retry grace (DISCONNECTED only: a
retry of the controller's own due or overdue within the grace, or a close it
asked for itself -- the watchdog's -- within the grace), the per-account
cooldown, the restart-intensity limit. See ``docs/health.md``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import partial

from heirline.core.errors import ConfigError, HeirlineError
from heirline.core.lifecycle import State

#: Controller states the lifecycle machine reports.
CONTROLLER_STATES: frozenset[State] = frozenset(State)
_DISCONNECTED_STATES = frozenset({State.BACKOFF, State.CLOSING, State.IDLE})


class HealthInputError(HeirlineError, ValueError):
    """An input to the health policy is unusable.

    A snapshot with an unknown state or a negative retry count, or a restart
    recorded before the previous one of the same account (time went backwards).
    """

    code = "bad_health_input"


class HealthReason(StrEnum):
    """Why a restart is wanted (or why a controller is held although unhealthy)."""

    DISCONNECTED = "disconnected"
    STALE = "stale-socket"
    STUCK = "stuck"
    GAVE_UP = "gave-up"
    STOPPED = "stopped"
    # Unhealthy, but never restarted: a restart cannot fix these.
    LOGGED_OUT = "logged-out"
    REPLACED = "replaced"
    FORBIDDEN = "forbidden"


class HealthAction(StrEnum):
    """What the owner should do about one controller."""

    HEALTHY = "healthy"
    RESTART = "restart"
    #: Not healthy, but no restart now (cooldown, intensity, a grace, or unfixable by restart).
    HOLD = "hold"


_NOT_RESTARTABLE: dict[State, tuple[HealthReason, str]] = {
    State.LOGGED_OUT: (HealthReason.LOGGED_OUT, "logged out (401): relink the account"),
    State.REPLACED: (
        HealthReason.REPLACED,
        "replaced (440): another session holds the account; restarting would fight it",
    ),
    State.FORBIDDEN: (HealthReason.FORBIDDEN, "forbidden (403): the account is barred"),
}


def _healthy(snap: ControllerSnapshot, detail: str) -> HealthDecision:
    # Module level, not a closure in _wanted: beartype's import hook (armed in the tests)
    # decorates a nested function anew on every call, ~4 ms per health evaluation.
    return HealthDecision(HealthAction.HEALTHY, snap.account, snap.generation, None, detail)


def _secs(ms: int) -> str:
    """Milliseconds as a short human duration: ``30s``, ``2.03s``."""
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms / 1000:.2f}s"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """Thresholds of the health policy; defaults are openclaw's monitor (times in ms).

    ``retry_grace_ms``: a controller in backoff whose own retry is due (or
    overdue) within this window, or closing on its own watchdog's request for
    less than this long, is not torn down; ``None`` turns the grace off
    (openclaw's behaviour, which reproduces the 114 ms incident).
    ``gave_up_attempts`` applies only to snapshots that do not say how many
    retries the controller itself allows. ``max_restarts=0`` makes the monitor
    report only, never restart.
    """

    check_interval_ms: int = 300_000
    startup_grace_ms: int = 60_000
    connect_grace_ms: int = 120_000
    stale_after_ms: int = 1_800_000
    cooldown_ms: int = 600_000
    max_restarts: int = 10
    window_ms: int = 3_600_000
    gave_up_attempts: int = 10
    retry_grace_ms: int | None = 30_000

    def __post_init__(self) -> None:
        minimum = {
            "check_interval_ms": 1,
            "startup_grace_ms": 0,
            "connect_grace_ms": 0,
            "stale_after_ms": 1,
            "cooldown_ms": 0,
            "max_restarts": 0,
            "window_ms": 1,
            "gave_up_attempts": 1,
            "retry_grace_ms": 0,
        }
        for f in fields(self):
            value: object = getattr(self, f.name)
            if value is None and f.name == "retry_grace_ms":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"HealthConfig.{f.name} must be an int, got {value!r}")
            if value < minimum[f.name]:
                raise ConfigError(
                    f"HealthConfig.{f.name} must be >= {minimum[f.name]}, got {value!r}"
                )


@dataclass(frozen=True, slots=True)
class ControllerSnapshot:
    """What the health policy sees of one controller generation (times in ms).

    ``last_event_ms``: last activity or lifecycle fact seen for this controller.
    ``connecting_since_ms``: when the current connect began (defaults to
    ``started_at_ms``). ``retry_at_ms``: when the controller's own retry is due
    (backoff). ``closing_since_ms``: when the controller asked for its own
    socket's close (the watchdog), while ``closing``. ``retries``: retries
    spent; ``max_attempts``: how many the controller allows itself (``None``:
    unknown). ``expected``: whether the owner still wants the account running.
    """

    account: str
    generation: int
    state: State
    started_at_ms: int
    last_event_ms: int
    opened_at_ms: int | None = None
    retry_at_ms: int | None = None
    retries: int = 0
    connecting_since_ms: int | None = None
    closing_since_ms: int | None = None
    max_attempts: int | None = None
    expected: bool = True

    def __post_init__(self) -> None:
        # The policy compares states by identity (``is State.BACKOFF``): a caller without
        # type checks may pass the plain value ("backoff"), which must mean that member.
        try:
            state = State(self.state)
        except (ValueError, TypeError):
            raise HealthInputError(
                f"snapshot of {self.account!r}: unknown controller state {self.state!r}"
            ) from None
        object.__setattr__(self, "state", state)
        if self.retries < 0:
            raise HealthInputError(f"snapshot of {self.account!r}: retries {self.retries} < 0")


@dataclass(frozen=True, slots=True)
class HealthDecision:
    """The policy's answer for one controller; ``detail`` is one human sentence."""

    action: HealthAction
    account: str
    generation: int
    reason: HealthReason | None
    detail: str


class HealthMonitor:
    """Pure health policy with per-account restart history, mutated in place by its owner."""

    __slots__ = ("_config", "_last", "_restarts", "_started_at_ms")

    def __init__(self, config: HealthConfig, started_at_ms: int) -> None:
        self._config = config
        self._started_at_ms = started_at_ms
        self._restarts: dict[str, deque[int]] = {}
        self._last: dict[str, int] = {}

    @property
    def config(self) -> HealthConfig:
        """The thresholds this monitor applies."""
        return self._config

    def evaluate(self, snap: ControllerSnapshot, now: int) -> HealthDecision:
        """Decide for one controller; records nothing (call :meth:`record_restart`)."""
        wanted = self._wanted(snap, now)
        if isinstance(wanted, HealthDecision):
            return wanted
        reason, why = wanted
        hold = self._held(snap, reason, now)
        if hold is not None:
            return HealthDecision(HealthAction.HOLD, snap.account, snap.generation, reason, hold)
        return HealthDecision(HealthAction.RESTART, snap.account, snap.generation, reason, why)

    def record_restart(self, account: str, now: int) -> None:
        """Count a restart attempt of ``account`` at ``now``, successful or failed."""
        last = self._last.get(account)
        if last is not None and now < last:
            raise HealthInputError(
                f"restart of {account!r} at {now} is before the last one at {last}"
            )
        self._last[account] = now
        history = self._restarts.setdefault(account, deque())
        history.append(now)
        self._prune(history, now)

    def check(self, snaps: Iterable[ControllerSnapshot], now: int) -> list[HealthDecision]:
        """Evaluate every snapshot at ``now`` (in order); records nothing."""
        return [self.evaluate(snap, now) for snap in snaps]

    def restarts_in_window(self, account: str, now: int) -> int:
        """Restarts of ``account`` counted against the intensity limit at ``now``."""
        history = self._restarts.get(account)
        if not history:
            return 0
        return sum(1 for t in history if t > now - self._config.window_ms)

    def forget(self, account: str) -> None:
        """Drop ``account``'s restart history (the owner removed the account)."""
        self._restarts.pop(account, None)
        self._last.pop(account, None)

    # --- internals -------------------------------------------------------------------

    def _prune(self, history: deque[int], now: int) -> None:
        horizon = now - self._config.window_ms
        while history and history[0] <= horizon:
            history.popleft()

    def _wanted(
        self, snap: ControllerSnapshot, now: int
    ) -> HealthDecision | tuple[HealthReason, str]:
        """Either a final decision (no restart wanted) or the reason a restart is wanted."""
        cfg = self._config
        healthy = partial(_healthy, snap)
        state = snap.state
        if not snap.expected:
            return healthy("account is not expected to run; nothing to restart")
        if state in _NOT_RESTARTABLE:
            reason, detail = _NOT_RESTARTABLE[state]
            return HealthDecision(
                HealthAction.HOLD,
                snap.account,
                snap.generation,
                reason,
                f"{detail}; a restart cannot fix this, so none is made",
            )
        if state is State.EXHAUSTED:
            return HealthReason.GAVE_UP, "controller exhausted its reconnect attempts"
        if state is State.STOPPED:
            return HealthReason.STOPPED, "controller stopped while the account is expected"
        if state is State.OPEN:
            silent = now - snap.last_event_ms
            if silent > cfg.stale_after_ms:
                return (
                    HealthReason.STALE,
                    f"no activity for {_secs(silent)}, over the {_secs(cfg.stale_after_ms)} limit",
                )
            return healthy(f"open, last activity {_secs(silent)} ago")
        age = now - snap.started_at_ms
        if age <= cfg.connect_grace_ms:
            return healthy(
                f"{state}, started {_secs(age)} ago, within the "
                f"{_secs(cfg.connect_grace_ms)} connect grace"
            )
        if snap.max_attempts is None and snap.retries >= cfg.gave_up_attempts:
            return (
                HealthReason.GAVE_UP,
                f"{snap.retries} reconnect attempts (gives up at {cfg.gave_up_attempts})",
            )
        if state is State.CONNECTING:
            since = snap.connecting_since_ms
            took = now - (snap.started_at_ms if since is None else since)
            if took > cfg.connect_grace_ms:
                return (
                    HealthReason.STUCK,
                    f"connecting for {_secs(took)}, over the "
                    f"{_secs(cfg.connect_grace_ms)} connect grace",
                )
            return healthy(f"connecting for {_secs(took)}")
        assert state in _DISCONNECTED_STATES
        return HealthReason.DISCONNECTED, f"{state} with no socket"

    def _held(self, snap: ControllerSnapshot, reason: HealthReason, now: int) -> str | None:
        """Why a wanted restart is suppressed now, or ``None`` when it may go ahead."""
        cfg = self._config
        up = now - self._started_at_ms
        if up < cfg.startup_grace_ms:
            return (
                f"monitor started {_secs(up)} ago, within the "
                f"{_secs(cfg.startup_grace_ms)} start-up grace"
            )
        grace = cfg.retry_grace_ms
        if grace is not None and reason is HealthReason.DISCONNECTED:
            if snap.state is State.BACKOFF and snap.retry_at_ms is not None:
                due = snap.retry_at_ms - now
                if 0 <= due <= grace:
                    return f"retry due in {_secs(due)}, within the {_secs(grace)} retry grace"
                if -grace <= due < 0:
                    return f"retry overdue by {_secs(-due)}, within the {_secs(grace)} retry grace"
            if snap.state is State.CLOSING and snap.closing_since_ms is not None:
                waited = now - snap.closing_since_ms
                if 0 <= waited <= grace:
                    return (
                        f"closing its own silent socket for {_secs(waited)}, within the "
                        f"{_secs(grace)} retry grace"
                    )
        last = self._last.get(snap.account)
        if last is not None and now - last < cfg.cooldown_ms:
            return (
                f"last restart {_secs(now - last)} ago, within the "
                f"{_secs(cfg.cooldown_ms)} cooldown"
            )
        count = self.restarts_in_window(snap.account, now)
        if count >= cfg.max_restarts:
            return (
                f"{count} restarts in the last {_secs(cfg.window_ms)}, "
                f"at the limit of {cfg.max_restarts}"
            )
        return None
